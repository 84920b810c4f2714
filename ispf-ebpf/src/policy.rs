//! The compiled rule matrix: one array read (port class) and one hash
//! lookup (the pair's row) per packet, whatever the number of rules.

use ispf_common::{
    row_selector, PairKey, PolicyKey, PolicyVal, SegmentInfo, IPPROTO_SCTP, IPPROTO_TCP,
    IPPROTO_UDP, MAX_SEGMENTS, PORT_TABLES, PORT_TABLE_SCTP, PORT_TABLE_TCP, PORT_TABLE_UDP,
    ROW_ENTRIES,
};

use crate::maps::{ISPF_POLICY, ISPF_POLICY_ROWS, ISPF_PORT_CLASS, ISPF_SEGMENTS};

/// The matrix entry for a packet from `src` to `dst`: the entry for its
/// family, protocol and destination-port class, else its family and
/// protocol, else the pair's any-protocol entry. `None` when no rule covers
/// the pair at all. One lookup finds the pair's row; only a pair with more
/// entries than a row holds needs the entry map.
#[inline(always)]
pub fn lookup(
    slot: u8,
    src: u16,
    dst: u16,
    family: u8,
    proto: u8,
    dport: u16,
) -> Option<PolicyVal> {
    let pair = PairKey {
        src,
        dst,
        slot,
        _pad: [0; 3],
    };
    // SAFETY: read in place, never kept; see identity::device_by_mac.
    let row = unsafe { ISPF_POLICY_ROWS.get(&pair) }?;
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
    let exact = row_selector(family, proto, port_class);
    let base = row_selector(family, proto, 0);
    let mut found_base = None;
    let n = row.n as usize;
    for i in 0..ROW_ENTRIES {
        if i >= n {
            break;
        }
        let e = &row.entries[i];
        if port_class != 0 && e.selector == exact {
            return Some(e.val);
        }
        if e.selector == base {
            found_base = Some(e.val);
        }
    }
    if found_base.is_some() {
        return found_base;
    }
    if row.overflow != 0 {
        let mut key = PolicyKey {
            src,
            dst,
            slot,
            family,
            proto,
            _pad: 0,
            port_class,
        };
        // SAFETY (both): values are copied out at once.
        if port_class != 0 {
            if let Some(v) = unsafe { ISPF_POLICY.get(&key) } {
                return Some(*v);
            }
            key.port_class = 0;
        }
        if let Some(v) = unsafe { ISPF_POLICY.get(&key) } {
            return Some(*v);
        }
    }
    (row.has_any != 0).then_some(row.any)
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
