//! Frame parsing: Ethernet, up to two VLAN tags, ARP/LLDP/STP, IPv4 with
//! options, IPv6 with a bounded extension-header walk, fragments, and the
//! TCP/UDP/SCTP/ICMP/ICMPv6 header fields policy needs.
//!
//! Every read is bounds-checked against the frame end; anything the frame
//! announces but does not contain is `Err(Malformed)`. The parser is generic
//! over [`Frame`], so the same code runs on XDP packet memory in the kernel
//! and on byte slices in host unit tests.

use ispf_common::{
    FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
};

#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// Bounds-checked access to a frame's bytes.
pub trait Frame {
    /// Length of the frame in bytes.
    fn size(&self) -> usize;
    /// `N` bytes at `off`, or malformed if the frame is shorter.
    fn bytes<const N: usize>(&self, off: usize) -> Result<&[u8; N], Malformed>;
    /// An outer 802.1Q tag the kernel already took out of the frame (TC
    /// sees tags of received frames as skb metadata): `OUTER_TAG | TCI`,
    /// or 0 when the frame carries all its tags in-band.
    #[inline(always)]
    fn outer_tag(&self) -> u32 {
        0
    }
    /// Copies up to `dst.len()` bytes from `off` into `dst` (as far as the
    /// frame goes); returns how many. Entry points override it with their
    /// load-bytes helper: a loop of packet reads does not verify.
    #[inline(always)]
    fn copy_out(&self, off: usize, dst: &mut [u8; ispf_common::FINGERPRINT_BYTES]) -> usize {
        let mut n = 0;
        while n < dst.len() {
            match self.bytes::<1>(off + n) {
                Ok(b) => dst[n] = b[0],
                Err(_) => break,
            }
            n += 1;
        }
        n
    }
}

/// [`Frame::outer_tag`]: a tag is present.
pub const OUTER_TAG: u32 = 1 << 16;

/// A frame in a byte slice (host tests, tools).
pub struct SliceFrame<'a>(pub &'a [u8]);

impl Frame for SliceFrame<'_> {
    fn size(&self) -> usize {
        self.0.len()
    }
    fn bytes<const N: usize>(&self, off: usize) -> Result<&[u8; N], Malformed> {
        if off > MAX_OFF {
            return Err(Malformed);
        }
        self.0
            .get(off..off + N)
            .and_then(|s| s.try_into().ok())
            .ok_or(Malformed)
    }
}

/// What kind of frame this is, for the decision.
pub const KIND_IP: u8 = 0;
/// ARP, LLDP, STP, DHCP, ICMPv6 ND: judged by `defaults.infrastructure`.
pub const KIND_INFRA: u8 = 1;
/// Any other ethertype: judged by `defaults.default_action`.
pub const KIND_OTHER: u8 = 2;

pub const FRAG_NONE: u8 = 0;
/// Offset 0 with more fragments following: judged, verdict remembered.
pub const FRAG_FIRST: u8 = 1;
/// Offset > 0: takes the first fragment's verdict.
pub const FRAG_LATER: u8 = 2;

/// Longest IPv6 extension-header chain the datapath walks; longer chains are
/// malformed (an attacker must not hide the transport header past our reach).
pub const MAX_IPV6_EXT: usize = 6;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_LLDP: u16 = 0x88cc;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// Largest offset we ever read at; keeps offsets provably bounded for the
/// verifier (frames are at most a page).
pub const MAX_OFF: usize = 4096;

/// The parsed headers. 8-aligned, and the fields the per-packet fast path
/// reads as words are written as words: a word load of bytes that were
/// just stored piecemeal stalls the CPU's store forwarding (several ns per
/// packet, measured), and byte-aligned copies compile to calls of a byte
/// loop on BPF.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    /// [`ispf_common::l2_fingerprint`] of the sender (MAC and VLAN).
    pub sender: u64,
    /// [`ispf_common::mac_word`] of the destination MAC.
    pub dst_mac_word: u64,
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub frag_id: u32,
    /// Effective VLAN: the only tag, or the inner tag of QinQ; 0 untagged.
    pub vlan: u16,
    pub kind: u8,
    pub family: u8,
    pub proto: u8,
    pub frag: u8,
    pub more_frags: u8,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub _pad: u8,
    /// Offset of what follows the Ethernet header and its tags.
    pub l3_off: u16,
    /// Offset of the transport header (0: none parsed).
    pub l4_off: u16,
    /// The ethertype after the VLAN tags.
    pub ethertype: u16,
}

const PACKET_WORDS: usize = 9;

/// The MAC in the low 48 bits of a [`ispf_common::mac_word`].
#[inline(always)]
fn mac_bytes(w: u64) -> [u8; 6] {
    let b = w.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}
const _: () = assert!(core::mem::size_of::<Packet>() == PACKET_WORDS * 8);

impl Packet {
    /// Source and destination address as four words in memory order
    /// (`[src 0..8, src 8..16, dst 0..8, dst 8..16]`), each one aligned
    /// load. LLVM loses the struct's alignment through `&[u8; 16]`
    /// references and falls back to byte loads and shifts.
    #[inline(always)]
    pub fn addr_words(&self) -> [u64; 4] {
        // SAFETY: the addresses are the first 32 bytes of this 8-aligned
        // struct, and any bytes are valid u64s.
        unsafe { *(self as *const Packet as *const [u64; 4]) }
    }

    /// An IPv6 source a host makes up itself: link-local (`fe80::/10`) or
    /// unspecified (`::`, duplicate address detection). A registered
    /// device sending from one is identified by its MAC alone.
    #[inline(always)]
    pub fn src_is_self_assigned(&self) -> bool {
        if self.family != FAMILY_V6 {
            return false;
        }
        let w = self.addr_words();
        let first = w[0].to_ne_bytes();
        (first[0] == 0xfe && first[1] & 0xc0 == 0x80) || (w[0] | w[1]) == 0
    }

    /// The source MAC (kept only inside [`Packet::sender`]).
    #[inline(always)]
    pub fn src_mac(&self) -> [u8; 6] {
        mac_bytes(self.sender)
    }

    #[inline(always)]
    pub fn dst_mac(&self) -> [u8; 6] {
        mac_bytes(self.dst_mac_word)
    }

    /// Both ports as one word, in memory order (`sport` first).
    #[inline(always)]
    pub fn ports_word(&self) -> u32 {
        // SAFETY: `sport`, `dport` are bytes 48..52 of this 8-aligned struct.
        unsafe { *(self as *const Packet as *const u32).add(12) }
    }

    #[inline(always)]
    fn set_ports(&mut self, sport: [u8; 2], dport: [u8; 2]) {
        let w = u32::from_ne_bytes([sport[0], sport[1], dport[0], dport[1]]);
        // SAFETY: as in `ports_word`.
        unsafe { *(self as *mut Packet as *mut u32).add(12) = w };
    }
}

/// Zeroes `pkt` with word stores. Volatile, because LLVM merges plain
/// stores into a `memset` call, which on BPF is a byte loop in a
/// subprogram: several times slower on the per-packet path.
#[inline(always)]
fn clear(pkt: &mut Packet) {
    let words = pkt as *mut Packet as *mut u64;
    let mut i = 0;
    while i < PACKET_WORDS {
        // SAFETY: Packet is whole words, 8-aligned, and all-zero is valid.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
}

/// Stores the addresses with word stores. The fast path reads them back
/// as words (`Packet::addr_words`); byte stores followed by a word load of
/// the same bytes stall the CPU's store forwarding, which measurably cost
/// more than the byte loads here do.
#[inline(always)]
fn set_addr4(pkt: &mut Packet, src: &[u8], dst: &[u8]) {
    let word = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as u64;
    let (s, d) = (word(src), word(dst));
    // SAFETY: the addresses are the first 32 bytes of the 8-aligned Packet.
    unsafe { *(pkt as *mut Packet as *mut [u64; 4]) = [s, 0, d, 0] };
}

#[inline(always)]
fn set_addr6(pkt: &mut Packet, h: &[u8; 40]) {
    let word = |i: usize| {
        u64::from_ne_bytes([
            h[i],
            h[i + 1],
            h[i + 2],
            h[i + 3],
            h[i + 4],
            h[i + 5],
            h[i + 6],
            h[i + 7],
        ])
    };
    let w = [word(8), word(16), word(24), word(32)];
    // SAFETY: as in `set_addr4`.
    unsafe { *(pkt as *mut Packet as *mut [u64; 4]) = w };
}

#[inline(always)]
pub fn parse<F: Frame>(c: &F, pkt: &mut Packet) -> Result<(), Malformed> {
    let frame_len = c.size();
    let eth = c.bytes::<14>(0)?;
    clear(pkt);
    pkt.kind = KIND_OTHER;
    pkt.frag = FRAG_NONE;
    let mut vlan = 0u16;
    let mut ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let mut off = 14usize;
    // Up to two tags, the offloaded one included; the last one read is the
    // effective VLAN (inner for QinQ).
    let mut tags = 0;
    let outer = c.outer_tag();
    if outer & OUTER_TAG != 0 {
        vlan = outer as u16 & 0x0fff;
        tags = 1;
    }
    while tags < 3 && (ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD) {
        if tags == 2 {
            return Err(Malformed);
        }
        let tag = c.bytes::<4>(off)?;
        vlan = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        off += 4;
        tags += 1;
    }
    pkt.vlan = vlan;
    pkt.l3_off = off as u16;
    pkt.ethertype = ethertype;
    let src = [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]];
    pkt.sender = ispf_common::l2_fingerprint(&src, vlan);
    pkt.dst_mac_word = ispf_common::mac_word(&[eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]]);

    match ethertype {
        ETH_P_IP => parse_ipv4(c, off, frame_len, pkt)?,
        ETH_P_IPV6 => parse_ipv6(c, off, frame_len, pkt)?,
        ETH_P_ARP => {
            // Ethernet/IPv4 ARP is 28 bytes.
            c.bytes::<28>(off)?;
            pkt.kind = KIND_INFRA;
        }
        ETH_P_LLDP => pkt.kind = KIND_INFRA,
        t if t <= 1500 => {
            // 802.3 length frame: spanning tree is LLC DSAP/SSAP 0x42.
            let llc = c.bytes::<3>(off)?;
            if llc[0] == 0x42 && llc[1] == 0x42 {
                pkt.kind = KIND_INFRA;
            }
        }
        _ => {}
    }
    Ok(())
}

#[inline(always)]
fn parse_ipv4<F: Frame>(
    c: &F,
    l3: usize,
    frame_len: usize,
    pkt: &mut Packet,
) -> Result<(), Malformed> {
    let h = c.bytes::<20>(l3)?;
    if h[0] >> 4 != 4 {
        return Err(Malformed);
    }
    let hlen = ((h[0] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    if hlen < 20 || total < hlen || l3 + total > frame_len {
        return Err(Malformed);
    }
    pkt.family = FAMILY_V4;
    pkt.proto = h[9];
    set_addr4(pkt, &h[12..16], &h[16..20]);
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let offset = frag & 0x1fff;
    let more = frag & 0x2000 != 0;
    pkt.frag_id = u16::from_be_bytes([h[4], h[5]]) as u32;
    set_fragment(pkt, offset, more);
    pkt.kind = KIND_IP;
    if pkt.frag == FRAG_LATER {
        return Ok(());
    }
    parse_l4(c, l3 + hlen, l3 + total, pkt)
}

#[inline(always)]
fn parse_ipv6<F: Frame>(
    c: &F,
    l3: usize,
    frame_len: usize,
    pkt: &mut Packet,
) -> Result<(), Malformed> {
    let h = c.bytes::<40>(l3)?;
    if h[0] >> 4 != 6 {
        return Err(Malformed);
    }
    let ip_end = l3 + 40 + u16::from_be_bytes([h[4], h[5]]) as usize;
    if ip_end > frame_len {
        return Err(Malformed);
    }
    pkt.family = FAMILY_V6;
    set_addr6(pkt, h);
    pkt.kind = KIND_IP;
    let mut nh = h[6];
    let mut off = l3 + 40;
    let mut walked = 0;
    while walked <= MAX_IPV6_EXT {
        let len = match nh {
            // Hop-by-hop, routing, destination options: (len + 1) * 8.
            0 | 43 | 60 => {
                let e = c.bytes::<2>(off)?;
                nh = e[0];
                (e[1] as usize + 1) * 8
            }
            // Authentication header: (len + 2) * 4.
            51 => {
                let e = c.bytes::<2>(off)?;
                nh = e[0];
                (e[1] as usize + 2) * 4
            }
            44 => {
                let f = c.bytes::<8>(off)?;
                nh = f[0];
                let field = u16::from_be_bytes([f[2], f[3]]);
                pkt.frag_id = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
                set_fragment(pkt, field >> 3, field & 1 != 0);
                8
            }
            _ => break,
        };
        if walked == MAX_IPV6_EXT {
            return Err(Malformed);
        }
        off += len;
        if off > ip_end {
            return Err(Malformed);
        }
        walked += 1;
        if pkt.frag == FRAG_LATER {
            // The rest of the chain is in the first fragment.
            pkt.proto = nh;
            return Ok(());
        }
    }
    pkt.proto = nh;
    parse_l4(c, off, ip_end, pkt)
}

#[inline(always)]
fn set_fragment(pkt: &mut Packet, offset: u16, more: bool) {
    pkt.more_frags = more as u8;
    pkt.frag = if offset != 0 {
        FRAG_LATER
    } else if more {
        FRAG_FIRST
    } else {
        FRAG_NONE
    };
}

/// DHCP (client 68 <-> server 67) and DHCPv6 (546 <-> 547), in either
/// direction. Requiring both ports keeps "any UDP to port 67" from riding
/// the infrastructure exemption.
pub fn is_dhcp(family: u8, sport: u16, dport: u16) -> bool {
    match family {
        FAMILY_V4 => matches!((sport, dport), (68, 67) | (67, 68)),
        FAMILY_V6 => matches!((sport, dport), (546, 547) | (547, 546)),
        _ => false,
    }
}

/// ICMPv6 that the spec counts as infrastructure: router solicitation and
/// advertisement, neighbour solicitation and advertisement, redirect (RFC
/// 4861 types 133-137), and multicast listener query, report and done
/// (MLD, types 130-132, and MLDv2 report, 143): hosts send these while
/// they boot, before they have addresses a policy could know.
pub fn is_icmpv6_infrastructure(icmp_type: u8) -> bool {
    matches!(icmp_type, 130..=137 | 143)
}

/// IPv4 multicast group membership (IGMP), infrastructure like MLD.
pub const IPPROTO_IGMP: u8 = 2;

#[inline(always)]
fn parse_l4<F: Frame>(c: &F, off: usize, ip_end: usize, pkt: &mut Packet) -> Result<(), Malformed> {
    pkt.l4_off = off as u16;
    if pkt.proto == IPPROTO_IGMP && pkt.family == FAMILY_V4 {
        pkt.kind = KIND_INFRA;
        return Ok(());
    }
    let need = match pkt.proto {
        IPPROTO_TCP => 20,
        IPPROTO_UDP => 8,
        IPPROTO_SCTP => 12,
        IPPROTO_ICMP if pkt.family == FAMILY_V4 => 8,
        IPPROTO_ICMPV6 if pkt.family == FAMILY_V6 => 8,
        _ => return Ok(()),
    };
    if off + need > ip_end {
        return Err(Malformed);
    }
    let h = c.bytes::<8>(off)?;
    match pkt.proto {
        IPPROTO_TCP => {
            let t = c.bytes::<14>(off)?;
            let doff = (t[12] >> 4) as usize * 4;
            if doff < 20 || off + doff > ip_end {
                return Err(Malformed);
            }
            pkt.tcp_flags = t[13];
            pkt.set_ports([h[0], h[1]], [h[2], h[3]]);
        }
        IPPROTO_UDP | IPPROTO_SCTP => {
            pkt.set_ports([h[0], h[1]], [h[2], h[3]]);
            if pkt.proto == IPPROTO_UDP
                && is_dhcp(
                    pkt.family,
                    u16::from_be_bytes(pkt.sport),
                    u16::from_be_bytes(pkt.dport),
                )
            {
                pkt.kind = KIND_INFRA;
            }
        }
        _ => {
            pkt.icmp_type = h[0];
            // Echo identifier stands in for both ports of the flow.
            pkt.set_ports([h[4], h[5]], [h[4], h[5]]);
            if pkt.family == FAMILY_V6 && is_icmpv6_infrastructure(h[0]) {
                pkt.kind = KIND_INFRA;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    const SRC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const DST: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn parse_bytes(b: &[u8]) -> Result<Packet, Malformed> {
        let mut p = Packet::default();
        parse(&SliceFrame(b), &mut p).map(|()| p)
    }

    fn tcp4(vlans: &[u16], sport: u16, dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        let b = PacketBuilder::ethernet2(SRC, DST);
        let payload = [0u8; 4];
        match vlans {
            [] => b
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(sport, dport, 1, 1000)
                .syn()
                .write(&mut out, &payload),
            [v] => b
                .single_vlan((*v).try_into().unwrap())
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(sport, dport, 1, 1000)
                .syn()
                .write(&mut out, &payload),
            [o, i] => b
                .double_vlan((*o).try_into().unwrap(), (*i).try_into().unwrap())
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(sport, dport, 1, 1000)
                .syn()
                .write(&mut out, &payload),
            _ => unreachable!(),
        }
        .unwrap();
        out
    }

    #[test]
    fn word_views_match_the_fields() {
        let p = parse_bytes(&tcp4(&[130], 40000, 80)).unwrap();
        assert_eq!(p.sender, ispf_common::l2_fingerprint(&SRC, 130));
        assert_eq!(p.dst_mac_word, ispf_common::mac_word(&DST));
        let w = p.addr_words();
        assert_eq!(w[0].to_ne_bytes(), p.src_ip[..8]);
        assert_eq!(w[3].to_ne_bytes(), p.dst_ip[8..]);
        assert_eq!(p.src_ip[..4], [10, 0, 0, 1]);
        assert_eq!(p.ports_word().to_ne_bytes(), [0x9c, 0x40, 0, 80]);
        assert_eq!((p.sport, p.dport), ([0x9c, 0x40], [0, 80]));
    }

    #[test]
    fn ipv4_tcp_fields() {
        let p = parse_bytes(&tcp4(&[], 40000, 2575)).unwrap();
        assert_eq!(
            (p.kind, p.family, p.proto),
            (KIND_IP, FAMILY_V4, IPPROTO_TCP)
        );
        assert_eq!((p.src_mac(), p.dst_mac()), (SRC, DST));
        assert_eq!(&p.src_ip[..4], &[10, 0, 0, 1]);
        assert_eq!(&p.dst_ip[..4], &[10, 0, 0, 2]);
        assert_eq!(
            (u16::from_be_bytes(p.sport), u16::from_be_bytes(p.dport)),
            (40000, 2575)
        );
        assert_eq!(p.tcp_flags & 0x02, 0x02);
        assert_eq!((p.vlan, p.frag), (0, FRAG_NONE));
    }

    #[test]
    fn vlan_and_qinq_take_the_inner_tag() {
        assert_eq!(parse_bytes(&tcp4(&[130], 1, 2)).unwrap().vlan, 130);
        let qinq = tcp4(&[300, 140], 1, 2);
        assert_eq!(&qinq[12..14], &[0x88, 0xa8]);
        assert_eq!(parse_bytes(&qinq).unwrap().vlan, 140);
        // A third tag: splice another 802.1Q header after the two.
        let mut three = qinq.clone();
        three.splice(20..20, [0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(parse_bytes(&three), Err(Malformed));
    }

    #[test]
    fn ipv4_header_lengths() {
        let good = tcp4(&[], 1, 2);
        let mut bad_ihl = good.clone();
        bad_ihl[14] = 0x44;
        assert_eq!(parse_bytes(&bad_ihl), Err(Malformed));
        let mut long_total = good.clone();
        long_total[16..18].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(parse_bytes(&long_total), Err(Malformed));
        let mut v6_in_v4 = good.clone();
        v6_in_v4[14] = 0x65;
        assert_eq!(parse_bytes(&v6_in_v4), Err(Malformed));
        // Truncated TCP header (IP total length shrunk to 12 bytes of TCP).
        let mut short = good.clone();
        short[16..18].copy_from_slice(&32u16.to_be_bytes());
        assert_eq!(parse_bytes(&short), Err(Malformed));
        // Ethernet padding after the IP datagram is fine.
        let mut padded = good;
        padded.extend_from_slice(&[0u8; 20]);
        assert!(parse_bytes(&padded).is_ok());
        assert_eq!(parse_bytes(&[0u8; 13]), Err(Malformed));
    }

    #[test]
    fn ipv4_fragments() {
        let mut f = tcp4(&[], 1, 2);
        f[20..22].copy_from_slice(&0x2000u16.to_be_bytes()); // MF, offset 0
        let p = parse_bytes(&f).unwrap();
        assert_eq!((p.frag, p.more_frags), (FRAG_FIRST, 1));
        f[20..22].copy_from_slice(&0x0003u16.to_be_bytes()); // offset 3, last
        let p = parse_bytes(&f).unwrap();
        assert_eq!(
            (p.frag, p.more_frags, u16::from_be_bytes(p.dport)),
            (FRAG_LATER, 0, 0)
        );
    }

    fn ipv6(exts: &[u8], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, e) in exts.iter().enumerate() {
            let next = exts.get(i + 1).copied().unwrap_or(proto);
            match e {
                44 => body.extend_from_slice(&[next, 0, 0, 1, 0, 0, 0, 9]),
                51 => body.extend_from_slice(&[next, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                _ => body.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]),
            }
        }
        body.extend_from_slice(l4);
        let mut f = Vec::new();
        f.extend_from_slice(&DST);
        f.extend_from_slice(&SRC);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(body.len() as u16).to_be_bytes());
        f.push(exts.first().copied().unwrap_or(proto));
        f.push(64);
        f.extend_from_slice(&[0xfd; 16]);
        f.extend_from_slice(&[0xfe; 16]);
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn ipv6_extension_walk() {
        let udp = [0x30, 0x39, 0x00, 0x7b, 0, 8, 0, 0];
        let p = parse_bytes(&ipv6(&[0, 60, 43, 51], IPPROTO_UDP, &udp)).unwrap();
        assert_eq!(
            (p.family, p.proto, u16::from_be_bytes(p.dport)),
            (FAMILY_V6, IPPROTO_UDP, 123)
        );
        assert!(parse_bytes(&ipv6(&[0, 60, 43, 51, 60, 43], IPPROTO_UDP, &udp)).is_ok());
        assert_eq!(
            parse_bytes(&ipv6(&[0, 60, 43, 51, 60, 43, 60], IPPROTO_UDP, &udp)),
            Err(Malformed)
        );
        let first = parse_bytes(&ipv6(&[0, 44], IPPROTO_UDP, &udp)).unwrap();
        assert_eq!(
            (first.frag, first.frag_id, first.proto),
            (FRAG_FIRST, 9, IPPROTO_UDP)
        );
        let mut later = ipv6(&[44], IPPROTO_UDP, &[0u8; 8]);
        later[54 + 3] = 0x10; // offset 2, last
        let p = parse_bytes(&later).unwrap();
        assert_eq!((p.frag, p.proto), (FRAG_LATER, IPPROTO_UDP));
        // An extension header that runs past the payload.
        let mut cut = ipv6(&[0], IPPROTO_UDP, &udp);
        cut[54 + 1] = 9;
        assert_eq!(parse_bytes(&cut), Err(Malformed));
    }

    /// A frame whose outer tag the kernel took out (skb metadata).
    struct Offloaded<'a>(&'a [u8], u16);

    impl Frame for Offloaded<'_> {
        fn size(&self) -> usize {
            self.0.len()
        }
        fn bytes<const N: usize>(&self, off: usize) -> Result<&[u8; N], Malformed> {
            self.0
                .get(off..off + N)
                .and_then(|s| s.try_into().ok())
                .ok_or(Malformed)
        }
        fn outer_tag(&self) -> u32 {
            OUTER_TAG | self.1 as u32
        }
    }

    #[test]
    fn offloaded_tags_count_like_in_band_ones() {
        let tagged = |tags: &[u16]| {
            let mut f = Vec::new();
            f.extend_from_slice(&[2, 0, 0, 0, 0, 2]);
            f.extend_from_slice(&SRC);
            for t in tags {
                f.extend_from_slice(&[0x81, 0x00]);
                f.extend_from_slice(&t.to_be_bytes());
            }
            f.extend_from_slice(&[0x88, 0xb5]);
            f.extend_from_slice(&[0u8; 30]);
            f
        };
        // Outer tag offloaded, nothing in band: that tag is the VLAN.
        let p = {
            let mut p = Packet::default();
            parse(&Offloaded(&tagged(&[]), 130), &mut p).unwrap();
            p
        };
        assert_eq!(p.vlan, 130);
        // Offloaded outer plus an in-band inner tag (QinQ): the inner.
        let mut p = Packet::default();
        parse(&Offloaded(&tagged(&[140]), 300), &mut p).unwrap();
        assert_eq!(p.vlan, 140);
        // Three tags in all are malformed, as three in band are.
        assert_eq!(
            parse(
                &Offloaded(&tagged(&[140, 150]), 300),
                &mut Packet::default()
            ),
            Err(Malformed)
        );
        assert_eq!(
            parse(
                &SliceFrame(&tagged(&[300, 140, 150])),
                &mut Packet::default()
            ),
            Err(Malformed)
        );
    }

    #[test]
    fn self_assigned_sources() {
        let mut p = Packet {
            family: FAMILY_V6,
            ..Packet::default()
        };
        assert!(p.src_is_self_assigned(), "::");
        p.src_ip = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert!(p.src_is_self_assigned());
        p.src_ip[1] = 0xbf;
        assert!(p.src_is_self_assigned(), "fe80::/10 reaches febf::");
        p.src_ip[1] = 0xc0;
        assert!(!p.src_is_self_assigned(), "fec0:: is not link-local");
        p.src_ip = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert!(!p.src_is_self_assigned());
        p.src_ip = [0; 16];
        p.family = FAMILY_V4;
        assert!(
            !p.src_is_self_assigned(),
            "0.0.0.0 is DHCP's, not this rule's"
        );
    }

    #[test]
    fn infrastructure_protocols() {
        assert!(is_dhcp(FAMILY_V4, 68, 67) && is_dhcp(FAMILY_V4, 67, 68));
        assert!(!is_dhcp(FAMILY_V4, 1234, 67));
        assert!(is_dhcp(FAMILY_V6, 546, 547) && !is_dhcp(FAMILY_V6, 68, 67));
        for t in [130, 131, 132, 133, 135, 137, 143] {
            assert!(is_icmpv6_infrastructure(t), "{t}");
        }
        for t in [128, 129, 1, 138, 142, 144] {
            assert!(!is_icmpv6_infrastructure(t), "{t}");
        }
    }

    #[test]
    fn infrastructure_frames() {
        let nd = parse_bytes(&ipv6(&[], IPPROTO_ICMPV6, &[135, 0, 0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!(nd.kind, KIND_INFRA);
        let mld = parse_bytes(&ipv6(&[], IPPROTO_ICMPV6, &[143, 0, 0, 0, 0, 0, 0, 1])).unwrap();
        assert_eq!(mld.kind, KIND_INFRA);
        let mut igmp = Vec::new();
        PacketBuilder::ethernet2(SRC, [1, 0, 0x5e, 0, 0, 0x16])
            .ipv4([10, 0, 0, 1], [224, 0, 0, 22], 1)
            .write(
                &mut igmp,
                etherparse::IpNumber(IPPROTO_IGMP),
                &[0x22, 0, 0, 0, 0, 0, 0, 0],
            )
            .unwrap();
        assert_eq!(parse_bytes(&igmp).unwrap().kind, KIND_INFRA);
        let echo = parse_bytes(&ipv6(&[], IPPROTO_ICMPV6, &[128, 0, 0, 0, 0, 7, 0, 1])).unwrap();
        assert_eq!(
            (echo.kind, echo.icmp_type, u16::from_be_bytes(echo.sport)),
            (KIND_IP, 128, 7)
        );
        let dhcp6 = parse_bytes(&ipv6(&[], IPPROTO_UDP, &[2, 34, 2, 35, 0, 8, 0, 0])).unwrap();
        assert_eq!(dhcp6.kind, KIND_INFRA);
        let mut dhcp = Vec::new();
        PacketBuilder::ethernet2(SRC, [0xff; 6])
            .ipv4([0; 4], [255; 4], 64)
            .udp(68, 67)
            .write(&mut dhcp, &[0u8; 8])
            .unwrap();
        assert_eq!(parse_bytes(&dhcp).unwrap().kind, KIND_INFRA);
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&SRC);
        arp.extend_from_slice(&[0x08, 0x06]);
        assert_eq!(
            parse_bytes(&[&arp[..], &[0u8; 27]].concat()),
            Err(Malformed)
        );
        assert_eq!(
            parse_bytes(&[&arp[..], &[0u8; 28]].concat()).unwrap().kind,
            KIND_INFRA
        );
        let mut stp = vec![0x01, 0x80, 0xc2, 0, 0, 0];
        stp.extend_from_slice(&SRC);
        stp.extend_from_slice(&[0, 38, 0x42, 0x42, 0x03]);
        assert_eq!(parse_bytes(&stp).unwrap().kind, KIND_INFRA);
        let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e];
        lldp.extend_from_slice(&SRC);
        lldp.extend_from_slice(&[0x88, 0xcc, 0, 0]);
        assert_eq!(parse_bytes(&lldp).unwrap().kind, KIND_INFRA);
        let mut other = lldp.clone();
        other[12..14].copy_from_slice(&[0x88, 0xb5]);
        assert_eq!(parse_bytes(&other).unwrap().kind, KIND_OTHER);
    }
}
