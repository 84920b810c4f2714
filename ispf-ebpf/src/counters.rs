//! Per-CPU packet and byte counters by (source segment, destination
//! segment, reason, verdict, rule), and the per-CPU record of the last
//! verdict.
//!
//! A counter key is hashed once, to find its slot in a per-CPU array;
//! conntrack entries and flow cache entries keep the slot, so the packets
//! of a known flow count with an array index instead of a hash lookup.

use aya_ebpf::helpers::bpf_get_smp_processor_id;
use ispf_common::{
    CounterKey, CONFIG_COUNTER_SLOTS, CONFIG_CPUS, COUNTER_SLOT_NONE, DEFAULT_COUNTER_ENTRIES,
};
use ispf_ebpf::decide::Judgement;

use crate::maps::{
    ISPF_COUNTERS, ISPF_COUNTER_FREE, ISPF_COUNTER_NEXT, ISPF_COUNTER_SLOTS, ISPF_CPUS, ISPF_LAST,
};

const BPF_NOEXIST: u64 = 1;

/// The slot of `(src, dst, judgement)` under generation slot `gen`,
/// assigned on first use: a slot the controller recycled if there is one,
/// else a never-used one; [`COUNTER_SLOT_NONE`] once every slot is taken
/// (the count is lost, never the verdict).
#[inline(always)]
pub fn slot(gen: u8, src: u16, dst: u16, j: &Judgement) -> u32 {
    let key = CounterKey {
        src,
        dst,
        reason: j.reason,
        verdict: j.verdict,
        gen,
        _pad: 0,
        rule: j.rule,
    };
    // SAFETY: copied out at once.
    if let Some(s) = unsafe { ISPF_COUNTER_SLOTS.get(&key) } {
        return *s;
    }
    let Some(alloc) = ISPF_COUNTER_NEXT.get_ptr_mut(0) else {
        return COUNTER_SLOT_NONE;
    };
    // SAFETY: this CPU's own allocation state; XDP does not nest on a CPU.
    let alloc = unsafe { &mut *alloc };
    let n = match ISPF_COUNTER_FREE.pop() {
        Ok(Some(n)) => n,
        _ => match fresh(&mut alloc.next) {
            Some(n) => n,
            None => return COUNTER_SLOT_NONE,
        },
    };
    if ISPF_COUNTER_SLOTS.insert(&key, &n, BPF_NOEXIST).is_ok() {
        alloc.taken = alloc.taken.wrapping_add(1);
        return n;
    }
    // Another CPU assigned this key first, or the slot map is full: the
    // slot goes back for the next key.
    let _ = ISPF_COUNTER_FREE.push(&n, 0);
    // SAFETY: copied out at once.
    unsafe { ISPF_COUNTER_SLOTS.get(&key) }
        .copied()
        .unwrap_or(COUNTER_SLOT_NONE)
}

/// A never-used slot from this CPU's stripe (`cpu`, `cpu + cpus`, ...), so
/// no two CPUs can take the same one: the generic BPF CPU we build for has
/// no atomic fetch-and-add. The controller writes `cpus` at load; until
/// then nothing is counted.
#[inline(always)]
fn fresh(next: &mut u32) -> Option<u32> {
    let cpus = ISPF_CPUS.get(CONFIG_CPUS).copied().unwrap_or(0);
    let capacity = match ISPF_CPUS.get(CONFIG_COUNTER_SLOTS).copied().unwrap_or(0) {
        0 => DEFAULT_COUNTER_ENTRIES,
        n => n,
    };
    // SAFETY: helper without preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if cpus == 0 || cpu >= cpus {
        return None;
    }
    let n = *next as u64 * cpus as u64 + cpu as u64;
    if n >= capacity as u64 {
        return None;
    }
    *next += 1;
    Some(n as u32)
}

/// Counts a packet in `slot` and records it as this CPU's last verdict.
#[inline(always)]
pub fn record(slot: u32, src: u16, dst: u16, j: &Judgement, bytes: u64, epoch: u32) {
    if let Some(c) = ISPF_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU value, no other writer on this CPU.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
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
