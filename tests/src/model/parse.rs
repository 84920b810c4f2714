//! The model's own frame parsing, with etherparse: what it reads out of a
//! frame, or that the frame is malformed, as the spec defines it.

use etherparse::{
    Ethernet2HeaderSlice, IpAuthHeaderSlice, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice,
    Ipv6HeaderSlice, Ipv6RawExtHeaderSlice, SingleVlanHeaderSlice, TcpHeaderSlice,
};

/// What the model reads out of a frame.
#[derive(Debug, Clone, Default)]
pub(super) struct Parsed {
    pub(super) src_mac: [u8; 6],
    pub(super) dst_mac: [u8; 6],
    pub(super) vlan: u16,
    pub(super) infra: bool,
    pub(super) ip: Option<Ip>,
}

#[derive(Debug, Clone)]
pub(super) struct Ip {
    pub(super) v6: bool,
    pub(super) src: std::net::IpAddr,
    pub(super) dst: std::net::IpAddr,
    pub(super) proto: u8,
    /// `Some(true)`: a first fragment; `Some(false)`: a later one.
    pub(super) first_fragment: Option<bool>,
    pub(super) more_fragments: bool,
    pub(super) frag_id: u32,
    pub(super) sport: u16,
    pub(super) dport: u16,
    pub(super) tcp_flags: u8,
    pub(super) icmp_type: u8,
}

impl Default for Ip {
    fn default() -> Self {
        let zero = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        Self {
            v6: false,
            src: zero,
            dst: zero,
            proto: 0,
            first_fragment: None,
            more_fragments: false,
            frag_id: 0,
            sport: 0,
            dport: 0,
            tcp_flags: 0,
            icmp_type: 0,
        }
    }
}

pub(super) struct Malformed;

pub(super) fn parse(frame: &[u8]) -> Result<Parsed, Malformed> {
    let eth = Ethernet2HeaderSlice::from_slice(frame).map_err(|_| Malformed)?;
    let mut p = Parsed {
        src_mac: eth.source(),
        dst_mac: eth.destination(),
        ..Parsed::default()
    };
    let mut ethertype = eth.ether_type().0;
    let mut rest = &frame[14..];
    let mut tags = 0;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        if tags == 2 {
            return Err(Malformed);
        }
        let tag = SingleVlanHeaderSlice::from_slice(rest).map_err(|_| Malformed)?;
        p.vlan = tag.vlan_identifier().value();
        ethertype = tag.ether_type().0;
        rest = &rest[4..];
        tags += 1;
    }
    match ethertype {
        0x0800 => p.ip = Some(parse_v4(rest)?),
        0x86dd => p.ip = Some(parse_v6(rest)?),
        0x0806 => {
            if rest.len() < 28 {
                return Err(Malformed);
            }
            p.infra = true;
        }
        0x88cc => p.infra = true,
        t if t <= 1500 => {
            if rest.len() < 3 {
                return Err(Malformed);
            }
            p.infra = rest[0] == 0x42 && rest[1] == 0x42;
        }
        _ => {}
    }
    if let Some(ip) = &p.ip {
        let dhcp = ip.proto == 17
            && ip.first_fragment != Some(false)
            && if ip.v6 {
                matches!((ip.sport, ip.dport), (546, 547) | (547, 546))
            } else {
                matches!((ip.sport, ip.dport), (68, 67) | (67, 68))
            };
        // Neighbour and router discovery, and multicast group membership:
        // MLD (ICMPv6 130-132, 143) and IGMP.
        let icmpv6 = ip.v6
            && ip.proto == 58
            && ip.first_fragment != Some(false)
            && matches!(ip.icmp_type, 130..=137 | 143);
        let igmp = !ip.v6 && ip.proto == 2 && ip.first_fragment != Some(false);
        p.infra = dhcp || icmpv6 || igmp;
    }
    Ok(p)
}

pub(super) fn parse_v4(rest: &[u8]) -> Result<Ip, Malformed> {
    let h = Ipv4HeaderSlice::from_slice(rest).map_err(|_| Malformed)?;
    let hlen = h.ihl() as usize * 4;
    let total = h.total_len() as usize;
    if total < hlen || total > rest.len() {
        return Err(Malformed);
    }
    let offset = h.fragments_offset().value();
    let mut ip = Ip {
        v6: false,
        src: h.source_addr().into(),
        dst: h.destination_addr().into(),
        proto: h.protocol().0,
        more_fragments: h.more_fragments(),
        frag_id: h.identification() as u32,
        ..Ip::default()
    };
    ip.first_fragment = fragment_kind(offset, h.more_fragments());
    if ip.first_fragment != Some(false) {
        transport(&mut ip, &rest[hlen..total])?;
    }
    Ok(ip)
}

pub(super) fn fragment_kind(offset: u16, more: bool) -> Option<bool> {
    if offset != 0 {
        Some(false)
    } else if more {
        Some(true)
    } else {
        None
    }
}

/// The datapath walks at most this many IPv6 extension headers.
const MAX_EXT: usize = 6;

pub(super) fn parse_v6(rest: &[u8]) -> Result<Ip, Malformed> {
    let h = Ipv6HeaderSlice::from_slice(rest).map_err(|_| Malformed)?;
    let end = 40 + h.payload_length() as usize;
    if end > rest.len() {
        return Err(Malformed);
    }
    let mut ip = Ip {
        v6: true,
        src: h.source_addr().into(),
        dst: h.destination_addr().into(),
        ..Ip::default()
    };
    let mut next = h.next_header().0;
    let mut payload = &rest[40..end];
    let mut count = 0;
    loop {
        let len = match next {
            0 | 43 | 60 => {
                let e = Ipv6RawExtHeaderSlice::from_slice(payload).map_err(|_| Malformed)?;
                next = e.next_header().0;
                e.slice().len()
            }
            51 => {
                let e = IpAuthHeaderSlice::from_slice(payload).map_err(|_| Malformed)?;
                next = e.next_header().0;
                e.slice().len()
            }
            44 => {
                let f = Ipv6FragmentHeaderSlice::from_slice(payload).map_err(|_| Malformed)?;
                next = f.next_header().0;
                ip.frag_id = f.identification();
                ip.more_fragments = f.more_fragments();
                ip.first_fragment = fragment_kind(f.fragment_offset().value(), f.more_fragments());
                8
            }
            _ => break,
        };
        count += 1;
        if count > MAX_EXT {
            return Err(Malformed);
        }
        payload = &payload[len..];
        if ip.first_fragment == Some(false) {
            break;
        }
    }
    ip.proto = next;
    if ip.first_fragment != Some(false) {
        transport(&mut ip, payload)?;
    }
    Ok(ip)
}

pub(super) fn transport(ip: &mut Ip, l4: &[u8]) -> Result<(), Malformed> {
    let be = |a: u8, b: u8| u16::from_be_bytes([a, b]);
    match (ip.proto, ip.v6) {
        (6, _) => {
            let t = TcpHeaderSlice::from_slice(l4).map_err(|_| Malformed)?;
            ip.sport = t.source_port();
            ip.dport = t.destination_port();
            ip.tcp_flags = l4[13];
        }
        (17, _) | (132, _) => {
            let need = if ip.proto == 17 { 8 } else { 12 };
            if l4.len() < need {
                return Err(Malformed);
            }
            ip.sport = be(l4[0], l4[1]);
            ip.dport = be(l4[2], l4[3]);
        }
        (1, false) | (58, true) => {
            if l4.len() < 8 {
                return Err(Malformed);
            }
            ip.icmp_type = l4[0];
            ip.sport = be(l4[4], l4[5]);
            ip.dport = ip.sport;
        }
        _ => {}
    }
    Ok(())
}
