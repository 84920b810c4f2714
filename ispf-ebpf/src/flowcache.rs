//! The flow verdict cache: what the full pipeline decided for one
//! direction of a flow that conntrack does not carry (a denied or
//! monitored flow, a protocol that is not tracked), so the flow's later
//! packets cost one lookup instead of identity and policy lookups.
//!
//! An entry stands only for the sender and destination MAC it was computed
//! for and only under its policy epoch, and it is only consulted when
//! conntrack holds nothing for the flow: the moment the other side opens
//! the flow, conntrack decides again. A reload makes every entry stale at
//! once, without touching the map.

use ispf_common::{FlowVal, Settings, FAMILY_V4};
use ispf_ebpf::{
    decide::Judgement,
    flow::{flow_keys, FlowKeys},
    parse::Packet,
};

use crate::maps::{ISPF_FLOWS, ISPF_FLOWS4};

/// The cached outcome of this packet's flow direction, if any is valid:
/// `(source segment, destination segment, judgement, counter slot, the
/// entry)`.
#[inline(always)]
pub fn lookup(
    s: &Settings,
    pkt: &Packet,
    keys: &mut FlowKeys,
) -> Option<(u16, u16, Judgement, u32, *mut FlowVal)> {
    flow_keys(keys, pkt);
    let p = if pkt.family == FAMILY_V4 {
        ISPF_FLOWS4.get_ptr_mut(&keys.v4)
    } else {
        ISPF_FLOWS.get_ptr_mut(&keys.v6)
    }?;
    // SAFETY: a pointer into an LRU map value. Entries are written whole by
    // map updates (see `remember`), so the fields below belong together.
    let v = unsafe { &*p };
    if v.epoch != s.epoch || v.src_l2 != pkt.sender || v.dst_mac != pkt.dst_mac_word {
        return None;
    }
    let j = Judgement {
        verdict: v.verdict,
        reason: v.reason,
        rule: v.rule,
    };
    Some((v.src, v.dst, j, v.slot, p))
}

/// Caches the outcome of the packet whose key `lookup` left in `keys`.
/// A full map evicts the least recently used entry: a flood of new flows
/// costs speed, never a verdict.
#[inline(always)]
pub fn remember(
    s: &Settings,
    pkt: &Packet,
    keys: &FlowKeys,
    src: u16,
    dst: u16,
    j: &Judgement,
    slot: u32,
    reported_ns: u64,
) {
    let v = FlowVal {
        reported_ns,
        src_l2: pkt.sender,
        dst_mac: pkt.dst_mac_word,
        epoch: s.epoch,
        rule: j.rule,
        src,
        dst,
        verdict: j.verdict,
        reason: j.reason,
        _pad: [0; 2],
        slot,
        _pad2: [0; 4],
    };
    let _ = if pkt.family == FAMILY_V4 {
        ISPF_FLOWS4.insert(&keys.v4, &v, 0)
    } else {
        ISPF_FLOWS.insert(&keys.v6, &v, 0)
    };
}
