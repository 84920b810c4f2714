//! Per-CPU packet and byte counters by (source segment, destination
//! segment, reason), and the per-CPU record of the last verdict.

use ispf_common::{CounterKey, CounterVal};
use ispf_ebpf::decide::Judgement;

use crate::maps::{ISPF_COUNTERS, ISPF_LAST};

#[inline(always)]
pub fn record(src: u16, dst: u16, j: &Judgement, bytes: u64, epoch: u32) {
    let key = CounterKey {
        src,
        dst,
        reason: j.reason,
        verdict: j.verdict,
        _pad: [0; 2],
        rule: j.rule,
    };
    match ISPF_COUNTERS.get_ptr_mut(&key) {
        // SAFETY: per-CPU value, no other writer on this CPU.
        Some(c) => unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        },
        None => {
            // A full counter map loses the count, never the verdict.
            let _ = ISPF_COUNTERS.insert(&key, &CounterVal { packets: 1, bytes }, 0);
        }
    }
    if let Some(last) = ISPF_LAST.get_ptr_mut(0) {
        // SAFETY: per-CPU value, no other writer on this CPU.
        unsafe {
            (*last).seq += 1;
            (*last).rule = j.rule;
            (*last).src = src;
            (*last).dst = dst;
            (*last).verdict = j.verdict;
            (*last).reason = j.reason;
            (*last).epoch = epoch;
        }
    }
}
