//! Flow identity: which packets open or answer a tracked flow, the
//! canonical conntrack key, expiry, and infrastructure protocols.

use ispf_common::{
    CtKey, CtVal, Settings, CT_FIN_SEEN, FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_TCP, IPPROTO_UDP,
};

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_RST: u8 = 0x04;

/// How a packet relates to connection tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracking {
    /// Not a tracked protocol (or an ICMP type that is neither echo).
    None,
    /// May open a flow, and may belong to an existing one in either direction.
    Opens,
    /// An ICMP echo reply: can only be the answer of an existing flow.
    AnswerOnly,
}

pub fn tracking(family: u8, proto: u8, icmp_type: u8) -> Tracking {
    match proto {
        IPPROTO_TCP | IPPROTO_UDP => Tracking::Opens,
        IPPROTO_ICMP if family == FAMILY_V4 => match icmp_type {
            ICMP_ECHO_REQUEST => Tracking::Opens,
            ICMP_ECHO_REPLY => Tracking::AnswerOnly,
            _ => Tracking::None,
        },
        IPPROTO_ICMPV6 if family == FAMILY_V6 => match icmp_type {
            ICMPV6_ECHO_REQUEST => Tracking::Opens,
            ICMPV6_ECHO_REPLY => Tracking::AnswerOnly,
            _ => Tracking::None,
        },
        _ => Tracking::None,
    }
}

/// Fills `key` with the direction-independent key of a flow and returns
/// whether this packet's source is endpoint `a`.
#[inline(always)]
pub fn ct_key(
    key: &mut CtKey,
    family: u8,
    proto: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
    sport: [u8; 2],
    dport: [u8; 2],
) -> bool {
    let src_first = endpoint_le(src, sport, dst, dport);
    if src_first {
        key.a_addr = *src;
        key.a_port = sport;
        key.b_addr = *dst;
        key.b_port = dport;
    } else {
        key.a_addr = *dst;
        key.a_port = dport;
        key.b_addr = *src;
        key.b_port = sport;
    }
    key.proto = proto;
    key.family = family;
    key._pad = [0; 2];
    src_first
}

/// `(a, ap) <= (b, bp)` lexicographically, written as a fixed loop the
/// verifier can unroll.
#[inline(always)]
fn endpoint_le(a: &[u8; 16], ap: [u8; 2], b: &[u8; 16], bp: [u8; 2]) -> bool {
    let mut i = 0;
    while i < 16 {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    u16::from_be_bytes(ap) <= u16::from_be_bytes(bp)
}

/// Whether a conntrack entry has outlived the timeout of its protocol.
pub fn ct_expired(now_ns: u64, v: &CtVal, proto: u8, s: &Settings) -> bool {
    let timeout_s = match proto {
        IPPROTO_TCP if v.flags & CT_FIN_SEEN != 0 => s.tcp_closing_timeout_s,
        IPPROTO_TCP => s.tcp_timeout_s,
        IPPROTO_UDP => s.udp_timeout_s,
        _ => s.icmp_timeout_s,
    };
    now_ns.saturating_sub(v.last_seen_ns) > timeout_s as u64 * 1_000_000_000
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

/// ICMPv6 router solicitation/advertisement, neighbour
/// solicitation/advertisement and redirect (RFC 4861 types 133-137).
pub fn is_neighbour_discovery(icmp_type: u8) -> bool {
    (133..=137).contains(&icmp_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[10, 0, 0, last]);
        a
    }

    #[test]
    fn both_directions_share_one_key() {
        let (mut k1, mut k2, mut k3) = (CtKey::default(), CtKey::default(), CtKey::default());
        let a1 = ct_key(
            &mut k1,
            FAMILY_V4,
            IPPROTO_TCP,
            &addr(1),
            &addr(2),
            [0x30, 0x39],
            [0, 80],
        );
        let a2 = ct_key(
            &mut k2,
            FAMILY_V4,
            IPPROTO_TCP,
            &addr(2),
            &addr(1),
            [0, 80],
            [0x30, 0x39],
        );
        assert_eq!(k1, k2);
        assert!(a1 && !a2);
        // Same address, ports decide.
        let a3 = ct_key(
            &mut k3,
            FAMILY_V4,
            IPPROTO_UDP,
            &addr(1),
            &addr(1),
            [0, 9],
            [0, 5],
        );
        assert!(!a3);
        assert_eq!(k3.a_port, [0, 5]);
    }

    #[test]
    fn tracking_classes() {
        assert_eq!(tracking(FAMILY_V4, IPPROTO_ICMP, 8), Tracking::Opens);
        assert_eq!(tracking(FAMILY_V4, IPPROTO_ICMP, 0), Tracking::AnswerOnly);
        assert_eq!(tracking(FAMILY_V4, IPPROTO_ICMP, 3), Tracking::None);
        assert_eq!(tracking(FAMILY_V6, IPPROTO_ICMPV6, 128), Tracking::Opens);
        assert_eq!(
            tracking(FAMILY_V6, IPPROTO_ICMPV6, 129),
            Tracking::AnswerOnly
        );
        assert_eq!(tracking(FAMILY_V6, IPPROTO_ICMP, 8), Tracking::None);
        assert_eq!(tracking(FAMILY_V4, 47, 0), Tracking::None);
    }

    #[test]
    fn expiry_per_protocol() {
        let s = Settings {
            tcp_timeout_s: 100,
            tcp_closing_timeout_s: 10,
            udp_timeout_s: 30,
            icmp_timeout_s: 5,
            ..Settings::default()
        };
        let mut v = CtVal {
            last_seen_ns: 1_000_000_000,
            ..CtVal::default()
        };
        let at = |s_: u64| 1_000_000_000 + s_ * 1_000_000_000 + 1;
        assert!(!ct_expired(at(99), &v, IPPROTO_TCP, &s));
        assert!(ct_expired(at(100), &v, IPPROTO_TCP, &s));
        assert!(ct_expired(at(30), &v, IPPROTO_UDP, &s));
        assert!(ct_expired(at(5), &v, IPPROTO_ICMP, &s));
        v.flags = CT_FIN_SEEN;
        assert!(ct_expired(at(10), &v, IPPROTO_TCP, &s));
        assert!(!ct_expired(at(9), &v, IPPROTO_TCP, &s));
    }

    #[test]
    fn infrastructure_protocols() {
        assert!(is_dhcp(FAMILY_V4, 68, 67) && is_dhcp(FAMILY_V4, 67, 68));
        assert!(!is_dhcp(FAMILY_V4, 1234, 67));
        assert!(is_dhcp(FAMILY_V6, 546, 547) && !is_dhcp(FAMILY_V6, 68, 67));
        assert!(is_neighbour_discovery(135) && !is_neighbour_discovery(128));
    }
}
