//! IPv4 with options, IPv6 with a bounded extension-header walk,
//! fragments, and the transport header fields policy needs; and which of
//! these packets are infrastructure (DHCP, IGMP, ICMPv6 ND and MLD).

use ispf_common::{
    FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
};

use super::{
    packet::{set_addr4, set_addr6},
    Frame, Malformed, Packet, FRAG_FIRST, FRAG_LATER, FRAG_NONE, KIND_INFRA, KIND_IP, MAX_IPV6_EXT,
};

#[inline(always)]
pub(super) fn parse_ipv4<F: Frame>(
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
pub(super) fn parse_ipv6<F: Frame>(
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
