//! The compiled rule matrix: at most one array read (port class) and two
//! hash lookups per packet, whatever the number of rules.

use ispf_common::{
    PolicyKey, PolicyVal, SegmentInfo, FAMILY_ANY, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
    MAX_SEGMENTS, PORT_TABLES, PORT_TABLE_SCTP, PORT_TABLE_TCP, PORT_TABLE_UDP,
};

use crate::maps::{ISPF_POLICY, ISPF_PORT_CLASS, ISPF_SEGMENTS};

/// The matrix entry for a packet from `src` to `dst`: the entry for its
/// family, protocol and destination-port class, else its family and
/// protocol, else the pair's any-protocol entry. `None` when no rule covers
/// the pair at all. The compiler only stores an entry where it differs from
/// the one it falls back to, which keeps the matrix small.
#[inline(always)]
pub fn lookup(
    slot: u8,
    src: u16,
    dst: u16,
    family: u8,
    proto: u8,
    dport: u16,
) -> Option<PolicyVal> {
    let table = match proto {
        IPPROTO_TCP => Some(PORT_TABLE_TCP),
        IPPROTO_UDP => Some(PORT_TABLE_UDP),
        IPPROTO_SCTP => Some(PORT_TABLE_SCTP),
        _ => None,
    };
    let port_class = match table {
        Some(t) => {
            let idx = (slot as u32 * PORT_TABLES + t) * 65536 + dport as u32;
            ISPF_PORT_CLASS.get(idx).copied().unwrap_or(0)
        }
        None => 0,
    };
    let mut key = PolicyKey {
        src,
        dst,
        slot,
        family,
        proto,
        _pad: 0,
        port_class,
    };
    // SAFETY (all three): values are copied out at once; see
    // identity::device_by_mac.
    if port_class != 0 {
        if let Some(v) = unsafe { ISPF_POLICY.get(&key) } {
            return Some(*v);
        }
        key.port_class = 0;
    }
    if let Some(v) = unsafe { ISPF_POLICY.get(&key) } {
        return Some(*v);
    }
    key.family = FAMILY_ANY;
    key.proto = 0;
    unsafe { ISPF_POLICY.get(&key) }.copied()
}

/// `SEG_*` flags of a segment in the active policy (0 for unknown ids).
#[inline(always)]
pub fn segment_flags(slot: u8, seg: u16) -> u8 {
    let idx = slot as u32 * MAX_SEGMENTS + (seg as u32 % MAX_SEGMENTS);
    ISPF_SEGMENTS
        .get(idx)
        .map(|i: &SegmentInfo| i.flags)
        .unwrap_or(0)
}
