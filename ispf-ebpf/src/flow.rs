//! Flow identity: which packets open or answer a tracked flow, the
//! canonical conntrack key, expiry.

use ispf_common::{
    CtKey, CtKey4, CtVal, Settings, CT_FIN_SEEN, FAMILY_V4, FAMILY_V6, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, REASON_INTERNAL_FAULT, REASON_WOULD_DROP,
};

use crate::{decide::Judgement, parse::Packet};

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_RST: u8 = 0x04;

/// Where a packet's direction lives in the flow cache, and the generation
/// its flow group had before conntrack was consulted.
#[repr(C)]
pub struct Probe {
    pub key: [u64; 5],
    pub index: u32,
    pub group: u32,
    pub generation: u32,
    pub _pad: u32,
}

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

/// A flow's conntrack key in the form of its address family (only the one
/// of the packet's family is filled).
///
/// The short key comes first on purpose: LLVM may merge the two families'
/// map calls into one whose map and key offset are selected separately,
/// and the verifier then also checks the impossible pairing of the long
/// key's map with the short key's offset. With the short key first, that
/// pairing still reads inside the struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtKeys {
    pub v4: CtKey4,
    pub v6: CtKey,
}

// Keys are assembled as little-endian words (see `ct_keys`); the BPF
// target and every host we test on are little-endian.
const _: () = assert!(cfg!(target_endian = "little"));

/// Fills the key of `pkt`'s family in `keys` and returns whether the
/// packet's source is endpoint `a` (endpoints sort by address, then port,
/// so both directions of a flow find the same entry).
///
/// Keys are written as whole words: the kernel hashes and compares them
/// word by word, and loading a word that was just stored in pieces stalls
/// the CPU's store forwarding.
#[inline(always)]
pub fn ct_keys(keys: &mut CtKeys, pkt: &Packet) -> bool {
    let w = pkt.addr_words();
    let (sport, dport) = (u16::from_be_bytes(pkt.sport), u16::from_be_bytes(pkt.dport));
    let src_first = (u64::from_be(w[0]), u64::from_be(w[1]), sport)
        <= (u64::from_be(w[2]), u64::from_be(w[3]), dport);
    let ports = pkt.ports_word() as u64;
    let swapped = (ports >> 16) | ((ports & 0xffff) << 16);
    let (a, b, ports) = if src_first {
        ([w[0], w[1]], [w[2], w[3]], ports)
    } else {
        ([w[2], w[3]], [w[0], w[1]], swapped)
    };
    let proto = (pkt.proto as u64) << 32;
    if pkt.family == FAMILY_V4 {
        // An IPv4 address is the low half of its first word.
        let words = [(a[0] & 0xffff_ffff) | (b[0] << 32), ports | proto];
        // SAFETY: CtKey4 is two 8-aligned words; any bytes are valid.
        unsafe { *(&mut keys.v4 as *mut CtKey4 as *mut [u64; 2]) = words };
    } else {
        let tail = ports | proto | (pkt.family as u64) << 40;
        // SAFETY: CtKey is five 8-aligned words; any bytes are valid.
        unsafe { *(&mut keys.v6 as *mut CtKey as *mut [u64; 5]) = [a[0], a[1], b[0], b[1], tail] };
    }
    src_first
}

/// One direction of a flow as five words: the address words, then ports,
/// protocol, family and ICMP type (an echo request and an echo reply share
/// addresses and ports, not their fate).
#[inline(always)]
pub fn direction_key(pkt: &Packet) -> [u64; 5] {
    let w = pkt.addr_words();
    let tail = pkt.ports_word() as u64
        | (pkt.proto as u64) << 32
        | (pkt.family as u64) << 40
        | (pkt.icmp_type as u64) << 48;
    [w[0], w[1], w[2], w[3], tail]
}

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// The flow cache slot of a direction key: one multiply, because it runs
/// for every packet. Collisions only cost a cache miss (entries hold their
/// whole key), whoever crafts them.
#[inline(always)]
pub fn cache_index(key: &[u64; 5], entries: u32) -> u32 {
    let h = (key[0]
        ^ key[1].rotate_left(13)
        ^ key[2].rotate_left(29)
        ^ key[3].rotate_left(43)
        ^ key[4].rotate_left(53))
    .wrapping_mul(MIX);
    (h >> 32) as u32 & (entries - 1)
}

/// The generation group of a flow: the same for both directions (sums of
/// the two ends), so conntrack can invalidate both with one bump.
#[inline(always)]
pub fn flow_group(key: &[u64; 5], groups: u32) -> u32 {
    let ports = key[4] & 0xffff_ffff;
    let port_sum = (ports & 0xffff) + (ports >> 16);
    let proto = (key[4] >> 32) & 0xff;
    let h = (key[0].wrapping_add(key[2])
        ^ key[1].wrapping_add(key[3]).rotate_left(23)
        ^ port_sum << 7
        ^ proto << 3)
        .wrapping_mul(MIX);
    (h >> 32) as u32 & (groups - 1)
}

/// Whether a judgement made while conntrack held nothing for the flow may
/// stand for the flow's later packets (until the policy changes or
/// conntrack gains an entry for it). Only outcomes that no conntrack state
/// can come out of: drops, monitor-mode passes and passes of protocols
/// that are not tracked. A tracked pass must reach conntrack every time
/// (to open, refresh or close the flow), and a fault may be transient.
pub fn cacheable(j: &Judgement, track: Tracking) -> bool {
    j.reason != REASON_INTERNAL_FAULT
        && (!j.is_pass() || j.reason == REASON_WOULD_DROP || track == Tracking::None)
}

/// How long a conntrack entry lives without packets, by protocol and state.
pub fn ct_timeout_ns(v: &CtVal, proto: u8, s: &Settings) -> u64 {
    let timeout_s = match proto {
        IPPROTO_TCP if v.flags & CT_FIN_SEEN != 0 => s.tcp_closing_timeout_s,
        IPPROTO_TCP => s.tcp_timeout_s,
        IPPROTO_UDP => s.udp_timeout_s,
        _ => s.icmp_timeout_s,
    };
    timeout_s as u64 * 1_000_000_000
}

/// Whether a conntrack entry has outlived the timeout of its protocol.
pub fn ct_expired(now_ns: u64, v: &CtVal, proto: u8, s: &Settings) -> bool {
    now_ns.saturating_sub(v.last_seen_ns) > ct_timeout_ns(v, proto, s)
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
        let there = Packet {
            family: FAMILY_V6,
            proto: IPPROTO_TCP,
            src_ip: addr(1),
            dst_ip: addr(2),
            sport: [0x30, 0x39],
            dport: [0, 80],
            ..Packet::default()
        };
        let back = Packet {
            src_ip: addr(2),
            dst_ip: addr(1),
            sport: [0, 80],
            dport: [0x30, 0x39],
            ..there
        };
        let (mut k1, mut k2) = (CtKeys::default(), CtKeys::default());
        assert!(ct_keys(&mut k1, &there));
        assert!(!ct_keys(&mut k2, &back));
        assert_eq!(k1, k2);
        assert_eq!(
            k1.v6,
            CtKey {
                a_addr: addr(1),
                b_addr: addr(2),
                a_port: [0x30, 0x39],
                b_port: [0, 80],
                proto: IPPROTO_TCP,
                family: FAMILY_V6,
                _pad: [0; 2],
            }
        );
        // Same address: ports decide.
        let same = Packet {
            proto: IPPROTO_UDP,
            dst_ip: addr(1),
            sport: [0, 9],
            dport: [0, 5],
            ..there
        };
        let mut k3 = CtKeys::default();
        assert!(!ct_keys(&mut k3, &same));
        assert_eq!(k3.v6.a_port, [0, 5]);
        // The high word decides before the low one.
        let mut hi = addr(1);
        hi[0] = 11;
        let mut lo = addr(2);
        lo[15] = 0xff;
        let order = Packet {
            src_ip: hi,
            dst_ip: lo,
            ..there
        };
        let mut k4 = CtKeys::default();
        assert!(!ct_keys(&mut k4, &order));
        assert_eq!(k4.v6.a_addr, lo);
    }

    #[test]
    fn ipv4_keys_keep_the_canonical_order() {
        let mut p = Packet {
            family: FAMILY_V4,
            proto: IPPROTO_TCP,
            src_ip: addr(2),
            dst_ip: addr(1),
            sport: [0, 80],
            dport: [0x30, 0x39],
            ..Packet::default()
        };
        let mut there = CtKeys::default();
        let src_is_a = ct_keys(&mut there, &p);
        assert!(!src_is_a);
        assert_eq!(
            there.v4,
            CtKey4 {
                a_addr: [10, 0, 0, 1],
                b_addr: [10, 0, 0, 2],
                a_port: [0x30, 0x39],
                b_port: [0, 80],
                proto: IPPROTO_TCP,
                _pad: [0; 3],
            }
        );
        assert_eq!(
            there.v6,
            CtKey::default(),
            "only the family's key is filled"
        );
        core::mem::swap(&mut p.src_ip, &mut p.dst_ip);
        core::mem::swap(&mut p.sport, &mut p.dport);
        let mut back = CtKeys::default();
        assert!(ct_keys(&mut back, &p));
        assert_eq!(there.v4, back.v4);
        let there_key = direction_key(&p);
        core::mem::swap(&mut p.src_ip, &mut p.dst_ip);
        core::mem::swap(&mut p.sport, &mut p.dport);
        let back_key = direction_key(&p);
        assert_ne!(there_key, back_key);
        assert_eq!(
            flow_group(&there_key, 1 << 16),
            flow_group(&back_key, 1 << 16)
        );
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
    fn cacheable_outcomes() {
        use ispf_common::{REASON_ALLOWED, REASON_DENIED_RULE, REASON_SPOOFED};
        let deny = Judgement::drop(REASON_DENIED_RULE);
        let allow = Judgement::pass(REASON_ALLOWED);
        assert!(cacheable(&deny, Tracking::Opens));
        assert!(cacheable(&Judgement::drop(REASON_SPOOFED), Tracking::Opens));
        assert!(cacheable(
            &Judgement::pass(REASON_WOULD_DROP),
            Tracking::Opens
        ));
        assert!(cacheable(&allow, Tracking::None));
        // Tracked passes must reach conntrack; faults may be transient.
        assert!(!cacheable(&allow, Tracking::Opens));
        assert!(!cacheable(&allow, Tracking::AnswerOnly));
        assert!(!cacheable(
            &Judgement::drop(REASON_INTERNAL_FAULT),
            Tracking::None
        ));
    }

    #[test]
    fn direction_keys_keep_icmp_type_and_direction() {
        let mut p = Packet {
            family: FAMILY_V4,
            proto: IPPROTO_ICMP,
            icmp_type: 8,
            src_ip: addr(1),
            dst_ip: addr(2),
            sport: [0, 7],
            dport: [0, 7],
            ..Packet::default()
        };
        let request = direction_key(&p);
        assert_eq!(request[0] as u32, u32::from_ne_bytes([10, 0, 0, 1]));
        assert_eq!(
            request[4],
            u32::from_ne_bytes([0, 7, 0, 7]) as u64
                | (IPPROTO_ICMP as u64) << 32
                | (FAMILY_V4 as u64) << 40
                | 8 << 48
        );
        p.icmp_type = 0;
        let reply = direction_key(&p);
        assert_ne!(request, reply);
        assert!(cache_index(&reply, 16_384) < 16_384);
        // The reverse direction is another key in the same group.
        core::mem::swap(&mut p.src_ip, &mut p.dst_ip);
        let back = direction_key(&p);
        assert_ne!(back, reply);
        assert_eq!(flow_group(&back, 1 << 16), flow_group(&reply, 1 << 16));
    }
}
