//! The machine's own cost of a cache miss, measured in the same run as the
//! first packet: a new flow's cost is mostly loads that miss the caches
//! (100k devices' tables are larger than this VM's last-level cache), so
//! its figure is also given in these loads, which says how much of a
//! change between runs or machines is the memory's. (The first packet's
//! own run-to-run spread is not removed by this: it is the measurement's.)
//! The buffer is on the allocator's pages (transparent huge pages as the
//! host configures them) and the maps on the kernel's, so a load here and
//! one in a map may differ by a TLB miss.

use std::{hint::black_box, time::Instant};

/// The working set: about what the device tables of the headline policy
/// occupy (three hash maps of 27 MB each at 100k devices).
pub const WORKING_SET_MB: usize = 64;

/// Mean ns of one load that depends on the previous one (a pointer chase
/// through a random cycle of cache lines over `mb` MiB): what one miss of
/// every cache costs, with nothing to overlap it.
pub fn dependent_load_ns(mb: usize) -> f64 {
    const LINE_WORDS: usize = 8;
    let lines = mb * 1024 * 1024 / 64;
    let mut order: Vec<usize> = (0..lines).collect();
    // xorshift: a fixed shuffle, so that every run chases the same cycle.
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..lines).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        order.swap(i, (s % (i as u64 + 1)) as usize);
    }
    let mut next = vec![0usize; lines * LINE_WORDS];
    for w in 0..lines {
        next[order[w] * LINE_WORDS] = order[(w + 1) % lines] * LINE_WORDS;
    }
    // Once round unmeasured: the pages are then mapped.
    let mut p = 0;
    for _ in 0..lines {
        p = next[p];
    }
    let steps = 4_000_000;
    let t = Instant::now();
    for _ in 0..steps {
        p = next[p];
    }
    let ns = t.elapsed().as_nanos() as f64 / steps as f64;
    black_box(p);
    ns
}
