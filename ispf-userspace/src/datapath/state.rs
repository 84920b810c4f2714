//! Connection state the controller ends or reaps: flows of removed
//! segments, a fresh replay, stale fragments.

use ispf_common::*;

use super::{
    access::{map_err, remove_where},
    Datapath, Result,
};

impl Datapath {
    /// Ends every tracked flow to or from the segments `ids` (removed from
    /// the policy: their ids may later name other segments), drops every
    /// CPU's cached outcomes and what the segments counted. Returns how
    /// many flows ended.
    pub fn end_segments(&mut self, ids: &[u16]) -> Result<usize> {
        let hit = |v: &CtVal| ids.contains(&v.orig_src) || ids.contains(&v.orig_dst);
        let ended = remove_where(&mut self.maps.conntrack, |_, v| hit(v))
            + remove_where(&mut self.maps.conntrack4, |_, v| hit(v));
        self.flush_flow_cache()?;
        // A later policy may give the ids to new segments, which must not
        // inherit the counts. (Live keys of the ids are dropped when their
        // generation is recycled: see `recycle_counters`.)
        remove_where(&mut self.stats.maps.retired, |k, _| {
            ids.contains(&k.src) || ids.contains(&k.dst)
        });
        Ok(ended)
    }

    /// Invalidates every CPU's flow cache: bumps the flush generation.
    pub(super) fn flush_flow_cache(&mut self) -> Result<()> {
        let g = &mut self.maps.ct_generation;
        let flush = g
            .get(&CT_GENERATIONS, 0)
            .map_err(map_err(MAP_CT_GENERATION))?;
        g.set(CT_GENERATIONS, flush.wrapping_add(1), 0)
            .map_err(map_err(MAP_CT_GENERATION))
    }

    /// Forgets all connection, fragment and cached-verdict state (a fresh
    /// replay).
    pub fn reset_state(&mut self) -> Result<()> {
        remove_where(&mut self.maps.conntrack, |_, _| true);
        remove_where(&mut self.maps.conntrack4, |_, _| true);
        remove_where(&mut self.maps.fragments, |_, _| true);
        self.flush_flow_cache()
    }

    /// Drops fragment entries older than `timeout_s`: the fragment map is a
    /// plain hash (a flood must not evict live datagrams), so the controller
    /// reaps what the datapath only ignores. Returns how many went.
    pub fn gc_fragments(&mut self, timeout_s: u32) -> usize {
        let now = crate::system::monotonic_ns();
        remove_where(&mut self.maps.fragments, |_, v| {
            now.saturating_sub(v.last_seen_ns) > timeout_s as u64 * 1_000_000_000
        })
    }
}
