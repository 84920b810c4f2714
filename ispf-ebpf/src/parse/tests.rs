//! Host tests of the parser: frames built with etherparse, and the
//! malformed variants an attacker would send.

use etherparse::PacketBuilder;

use ispf_common::{FAMILY_V4, FAMILY_V6, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

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
