//! Frame parsing: Ethernet, up to two VLAN tags, ARP/LLDP/STP, IPv4 with
//! options, IPv6 with a bounded extension-header walk, fragments, and the
//! TCP/UDP/SCTP/ICMP/ICMPv6 header fields policy needs.
//!
//! Every read is bounds-checked against the frame end; anything the frame
//! announces but does not contain is `Err(Malformed)`.

use aya_ebpf::programs::XdpContext;
use ispf_common::{
    FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
};
use ispf_ebpf::flow::{is_dhcp, is_neighbour_discovery};

pub struct Malformed;

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
const MAX_OFF: usize = 4096;

#[repr(C)]
pub struct Scratch {
    pub pkt: Packet,
    pub ct: ispf_common::CtKey,
    pub frag: ispf_common::FragKey,
}

#[repr(C)]
pub struct Packet {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Effective VLAN: the only tag, or the inner tag of QinQ; 0 untagged.
    pub vlan: u16,
    pub kind: u8,
    pub family: u8,
    pub proto: u8,
    pub frag: u8,
    pub more_frags: u8,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub frag_id: u32,
}

struct Cursor {
    start: usize,
    end: usize,
}

impl Cursor {
    /// `N` bytes at `off`, or malformed if the frame is shorter.
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Result<&[u8; N], Malformed> {
        if off > MAX_OFF {
            return Err(Malformed);
        }
        let p = self.start + off;
        if p + N > self.end {
            return Err(Malformed);
        }
        // SAFETY: [p, p+N) was checked to lie inside the frame above, and a
        // byte array has alignment 1. Reading in place keeps headers off the
        // 512-byte BPF stack.
        Ok(unsafe { &*(p as *const [u8; N]) })
    }
}

#[inline(always)]
pub fn parse(ctx: &XdpContext, pkt: &mut Packet) -> Result<(), Malformed> {
    let c = Cursor {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    let frame_len = c.end - c.start;
    let eth = c.bytes::<14>(0)?;
    pkt.dst_mac.copy_from_slice(&eth[0..6]);
    pkt.src_mac.copy_from_slice(&eth[6..12]);
    pkt.vlan = 0;
    pkt.kind = KIND_OTHER;
    pkt.family = 0;
    pkt.proto = 0;
    pkt.frag = FRAG_NONE;
    pkt.more_frags = 0;
    pkt.tcp_flags = 0;
    pkt.icmp_type = 0;
    pkt.src_ip = [0; 16];
    pkt.dst_ip = [0; 16];
    pkt.sport = [0; 2];
    pkt.dport = [0; 2];
    pkt.frag_id = 0;
    let mut ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let mut off = 14usize;
    // Up to two tags; the last one read is the effective VLAN (inner for QinQ).
    let mut tags = 0;
    while tags < 3 && (ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD) {
        if tags == 2 {
            return Err(Malformed);
        }
        let tag = c.bytes::<4>(off)?;
        pkt.vlan = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        off += 4;
        tags += 1;
    }

    match ethertype {
        ETH_P_IP => parse_ipv4(&c, off, frame_len, pkt)?,
        ETH_P_IPV6 => parse_ipv6(&c, off, frame_len, pkt)?,
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
fn parse_ipv4(c: &Cursor, l3: usize, frame_len: usize, pkt: &mut Packet) -> Result<(), Malformed> {
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
    pkt.src_ip[..4].copy_from_slice(&h[12..16]);
    pkt.dst_ip[..4].copy_from_slice(&h[16..20]);
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
fn parse_ipv6(c: &Cursor, l3: usize, frame_len: usize, pkt: &mut Packet) -> Result<(), Malformed> {
    let h = c.bytes::<40>(l3)?;
    if h[0] >> 4 != 6 {
        return Err(Malformed);
    }
    let ip_end = l3 + 40 + u16::from_be_bytes([h[4], h[5]]) as usize;
    if ip_end > frame_len {
        return Err(Malformed);
    }
    pkt.family = FAMILY_V6;
    pkt.src_ip.copy_from_slice(&h[8..24]);
    pkt.dst_ip.copy_from_slice(&h[24..40]);
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

#[inline(always)]
fn parse_l4(c: &Cursor, off: usize, ip_end: usize, pkt: &mut Packet) -> Result<(), Malformed> {
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
            pkt.sport = [h[0], h[1]];
            pkt.dport = [h[2], h[3]];
        }
        IPPROTO_UDP | IPPROTO_SCTP => {
            pkt.sport = [h[0], h[1]];
            pkt.dport = [h[2], h[3]];
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
            pkt.sport = [h[4], h[5]];
            pkt.dport = [h[4], h[5]];
            if pkt.family == FAMILY_V6 && is_neighbour_discovery(h[0]) {
                pkt.kind = KIND_INFRA;
            }
        }
    }
    Ok(())
}
