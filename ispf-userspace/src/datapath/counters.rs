//! Recycling counter slots. The datapath takes a counter slot the first
//! time it counts a key (segments, reason, verdict, rule, generation slot)
//! and conntrack and the flow cache remember it; every policy brings new
//! keys, so without recycling the slots run out after a few thousand
//! generations and counts are lost for good.
//!
//! A key carries the generation slot it was counted under. Nothing cached
//! outlives its epoch, so once the next-but-one policy is being written into
//! a slot, no packet can reach the keys of that slot any more: their counts
//! are folded into the retired totals (so totals never go backwards), their
//! counters zeroed, and their slots handed back to the datapath.

use std::time::{Duration, Instant};

use aya::maps::PerCpuValues;
use ispf_common::*;

use super::{access::map_err, stats::sum, Datapath, Result};

/// A packet judged under the previous generation has certainly finished
/// after an RCU grace period; one is waited for when the last flip is more
/// recent than this.
const FLIP_SETTLED: Duration = Duration::from_secs(1);

impl Datapath {
    /// Recycles the counter slots of keys counted under generation slot
    /// `gen` (about to be overwritten; `active` is the one enforced), when
    /// slots are running short. Keys of segments the active policy no
    /// longer has are dropped, not retired: their ids may be reused.
    pub(super) fn recycle_counters(&mut self, gen: u8, active: u8) -> Result<()> {
        // Once half the slots are in use: rarely enough that the grace
        // period it may wait for costs nothing in practice.
        let recycle_at = self.sizes.counters as u64 / 2;
        if gen == active || self.stats.counter_slots_in_use() < recycle_at {
            return Ok(());
        }
        self.wait_for_previous_generation();
        let present = self.active_segments()?;
        let known = |id: u16| id == NO_SEGMENT || present.contains(&id);
        let st = &mut self.stats.maps;
        let doomed: Vec<(CounterKey, u32)> = st
            .counter_slots
            .iter()
            .filter_map(|e| e.ok())
            .filter(|(k, _)| k.gen == gen)
            .collect();
        let ncpu = aya::util::nr_cpus().unwrap_or(1);
        let zeros = || PerCpuValues::try_from(vec![CounterVal::default(); ncpu]);
        let mut recycled = 0u64;
        for (key, slot) in doomed {
            let counted = st
                .counters
                .get(&slot, 0)
                .map(|v| sum(&v))
                .unwrap_or_default();
            if known(key.src) && known(key.dst) && counted != CounterVal::default() {
                let k = CounterKey { gen: 0, ..key };
                let mut total = st.retired.get(&k, 0).unwrap_or_default();
                total.packets += counted.packets;
                total.bytes += counted.bytes;
                // A full retired map loses this key's history, not the
                // slot: the count would otherwise be lost anyway.
                let _ = st.retired.insert(k, total, 0);
            }
            if let Ok(z) = zeros() {
                st.counters.set(slot, z, 0).map_err(map_err(MAP_COUNTERS))?;
            }
            st.counter_slots
                .remove(&key)
                .map_err(map_err(MAP_COUNTER_SLOTS))?;
            self.maps
                .counter_free
                .push(slot, 0)
                .map_err(map_err(MAP_COUNTER_FREE))?;
            recycled += 1;
        }
        let mut meta = self.stats.meta();
        meta.recycled += recycled;
        self.stats.write_meta(&meta)
    }

    /// Waits until no packet can still be judged under the generation that
    /// was active before the last flip: an RCU grace period (XDP and TC
    /// programs run inside RCU read-side sections), which
    /// `membarrier(MEMBARRIER_CMD_GLOBAL)` waits for.
    fn wait_for_previous_generation(&mut self) {
        if self.last_flip.is_some_and(|t| t.elapsed() >= FLIP_SETTLED) {
            return;
        }
        // SAFETY: membarrier takes no pointers.
        let rc = unsafe {
            libc::syscall(libc::SYS_membarrier, 1 /* GLOBAL */, 0, 0)
        };
        if rc != 0 {
            // Not available (nohz_full): fall back to time.
            std::thread::sleep(FLIP_SETTLED);
        }
        self.last_flip = Some(Instant::now() - FLIP_SETTLED);
    }
}
