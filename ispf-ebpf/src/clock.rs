//! Time for flow state. The coarse clock is CLOCK_MONOTONIC at tick
//! resolution: reading it is a memory load, where the precise clock reads
//! the TSC (about 13 ns per call in the VMs we measure on, twice per
//! packet before). Every deadline it serves (flow and fragment timeouts,
//! the once-a-minute report of a denied flow, the event rate) is
//! milliseconds or longer, and the controller's clock is the same one.

use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The tick counter, for the flow cache's deadlines: cheaper still than
/// the coarse clock (no conversion to nanoseconds), and the cache only
/// needs "a few ticks have passed".
#[inline(always)]
pub fn jiffies() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_jiffies64() }
}
