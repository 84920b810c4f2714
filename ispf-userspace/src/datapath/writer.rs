//! The only code that writes policy into the maps. A policy goes into the
//! inactive generation slot, then one array write makes it active, so a
//! packet is judged wholly by the old or wholly by the new policy.
//!
//! Transactional: the capacity check counts what the active generation
//! really holds (read from the maps after an adoption, never assumed), and a
//! write that fails part-way removes what it wrote, so nothing of a refused
//! policy is ever enforced by a later generation.

use std::time::Instant;

use ispf_common::*;

use super::{
    capacity::{check_fits, Counts},
    maps::{
        mac_key, map_err, port_index, remove_where, segment_index, v4_key, v4_lpm, v6_key, v6_lpm,
        vlan_index,
    },
    Datapath, DatapathError, Result,
};
use crate::policy::{compile::Compiled, Policy};

/// What a generation slot holds, so it can be cleared before reuse.
pub(super) enum Gen {
    Empty,
    Holds(Box<Compiled>),
    /// Written by another process (adopted pins) or left uncertain by a
    /// failed clean-up: cleared by scanning the maps.
    Unknown(Counts),
}

impl Gen {
    fn counts(&self) -> Counts {
        match self {
            Gen::Empty => Counts::default(),
            Gen::Holds(c) => Counts::of(c),
            Gen::Unknown(n) => *n,
        }
    }
}

/// Counts entries written, failing where a test asked it to.
struct Budget {
    written: usize,
    fail_at: Option<usize>,
}

impl Budget {
    fn spend(&mut self) -> Result<()> {
        if self.fail_at == Some(self.written) {
            return Err(DatapathError::Injected(self.written));
        }
        self.written += 1;
        Ok(())
    }
}

impl Datapath {
    fn active_slot(&self) -> Result<usize> {
        Ok(self.maps.active.get(&0, 0).map_err(map_err(MAP_ACTIVE))? as usize & 1)
    }

    /// Writes `c` into the inactive generation slot, then makes it active in
    /// one array write. Packets see the old policy or the new one, never a
    /// mix. On any failure nothing of `c` stays in the maps and the running
    /// generation is untouched. Returns the new epoch.
    pub fn apply(&mut self, c: &Compiled) -> Result<u32> {
        let active = self.active_slot()?;
        let target = if self.epoch == 0 { active } else { 1 - active };
        let kept = if target == active {
            Default::default()
        } else {
            self.gens[active].counts()
        };
        check_fits(&self.sizes, &Counts::of(c), &kept)?;
        self.recycle_counters(target as u8, active as u8)?;
        let s = target as u8;
        match std::mem::replace(&mut self.gens[target], Gen::Empty) {
            Gen::Holds(old) => self.clear_slot(&old, s),
            Gen::Unknown(_) => self.clear_slot_by_scan(s),
            Gen::Empty => Ok(()),
        }
        .inspect_err(|_| self.gens[target] = Gen::Unknown(Counts::scan(&self.maps, s)))?;
        let epoch = self.epoch + 1;
        let mut budget = Budget {
            written: 0,
            fail_at: self.fail_after,
        };
        if let Err(e) = self.write_slot(c, s, epoch, &mut budget) {
            // Leave nothing of the refused policy behind.
            self.gens[target] = match self.clear_slot(c, s) {
                Ok(()) => Gen::Empty,
                Err(_) => Gen::Unknown(Counts::scan(&self.maps, s)),
            };
            return Err(e);
        }
        self.maps
            .active
            .set(0, target as u32, 0)
            .map_err(map_err(MAP_ACTIVE))?;
        self.last_flip = Some(Instant::now());
        self.gens[target] = Gen::Holds(Box::new(c.clone()));
        self.epoch = epoch;
        let recycled = self.stats.meta().recycled;
        self.stats.write_meta(&Meta {
            layout: LAYOUT_VERSION,
            epoch,
            sha256: c.source_sha256,
            recycled,
        })?;
        Ok(epoch)
    }

    fn write_slot(&mut self, c: &Compiled, s: u8, epoch: u32, b: &mut Budget) -> Result<()> {
        let m = &mut self.maps;
        for (id, info) in &c.segments {
            b.spend()?;
            m.segments
                .set(segment_index(s, *id), info, 0)
                .map_err(map_err(MAP_SEGMENTS))?;
        }
        for (mac, v) in &c.dev_mac {
            b.spend()?;
            m.dev_mac
                .insert(mac_key(s, *mac), v, 0)
                .map_err(map_err(MAP_DEV_MAC))?;
        }
        for (addr, v) in &c.dev_v4 {
            b.spend()?;
            m.dev_v4
                .insert(v4_key(s, *addr), v, 0)
                .map_err(map_err(MAP_DEV_V4))?;
        }
        for (addr, v) in &c.dev_v6 {
            b.spend()?;
            m.dev_v6
                .insert(v6_key(s, *addr), v, 0)
                .map_err(map_err(MAP_DEV_V6))?;
        }
        for (addr, plen, seg) in &c.subnet_v4 {
            b.spend()?;
            m.subnet_v4
                .insert(&v4_lpm(s, addr, *plen), seg, 0)
                .map_err(map_err(MAP_SUBNET_V4))?;
        }
        for (addr, plen, seg) in &c.subnet_v6 {
            b.spend()?;
            m.subnet_v6
                .insert(&v6_lpm(s, addr, *plen), seg, 0)
                .map_err(map_err(MAP_SUBNET_V6))?;
        }
        for (vlan, seg) in &c.vlans {
            b.spend()?;
            m.vlan
                .set(vlan_index(s, *vlan), seg, 0)
                .map_err(map_err(MAP_VLAN))?;
        }
        for mac in &c.routers {
            b.spend()?;
            m.routers
                .insert(mac_key(s, *mac), 1, 0)
                .map_err(map_err(MAP_ROUTERS))?;
        }
        for (t, port, class) in &c.port_classes {
            b.spend()?;
            m.port_class
                .set(port_index(s, *t, *port), class, 0)
                .map_err(map_err(MAP_PORT_CLASS))?;
        }
        for (k, v) in &c.policy {
            b.spend()?;
            m.policy
                .insert(PolicyKey { slot: s, ..*k }, v, 0)
                .map_err(map_err(MAP_POLICY))?;
        }
        b.spend()?;
        let settings = Settings {
            epoch,
            ..c.settings
        };
        m.settings
            .set(s as u32, settings, 0)
            .map_err(map_err(MAP_SETTINGS))
    }

    /// Removes everything of `c` from slot `s`. Hash entries that are not
    /// there are fine (a failed write stopped before them); a failure to
    /// reset an array entry is returned, since the entry would stay.
    fn clear_slot(&mut self, c: &Compiled, s: u8) -> Result<()> {
        let m = &mut self.maps;
        for (id, _) in &c.segments {
            m.segments
                .set(segment_index(s, *id), SegmentInfo::default(), 0)
                .map_err(map_err(MAP_SEGMENTS))?;
        }
        for (mac, _) in &c.dev_mac {
            let _ = m.dev_mac.remove(&mac_key(s, *mac));
        }
        for (addr, _) in &c.dev_v4 {
            let _ = m.dev_v4.remove(&v4_key(s, *addr));
        }
        for (addr, _) in &c.dev_v6 {
            let _ = m.dev_v6.remove(&v6_key(s, *addr));
        }
        for (addr, plen, _) in &c.subnet_v4 {
            let _ = m.subnet_v4.remove(&v4_lpm(s, addr, *plen));
        }
        for (addr, plen, _) in &c.subnet_v6 {
            let _ = m.subnet_v6.remove(&v6_lpm(s, addr, *plen));
        }
        for (vlan, _) in &c.vlans {
            m.vlan
                .set(vlan_index(s, *vlan), 0, 0)
                .map_err(map_err(MAP_VLAN))?;
        }
        for mac in &c.routers {
            let _ = m.routers.remove(&mac_key(s, *mac));
        }
        for (t, port, _) in &c.port_classes {
            m.port_class
                .set(port_index(s, *t, *port), 0, 0)
                .map_err(map_err(MAP_PORT_CLASS))?;
        }
        for (k, _) in &c.policy {
            let _ = m.policy.remove(&PolicyKey { slot: s, ..*k });
        }
        Ok(())
    }

    /// Clears a slot whose contents this process did not write: every key
    /// carrying the slot, every array entry of it.
    fn clear_slot_by_scan(&mut self, s: u8) -> Result<()> {
        let m = &mut self.maps;
        remove_where(&mut m.dev_mac, |k, _| k.slot == s);
        remove_where(&mut m.dev_v4, |k, _| k.slot == s);
        remove_where(&mut m.dev_v6, |k, _| k.slot == s);
        remove_where(&mut m.routers, |k, _| k.slot == s);
        remove_where(&mut m.policy, |k, _| k.slot == s);
        let v4: Vec<_> = m
            .subnet_v4
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.data()[0] == s)
            .collect();
        for k in v4 {
            let _ = m.subnet_v4.remove(&k);
        }
        let v6: Vec<_> = m
            .subnet_v6
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.data()[0] == s)
            .collect();
        for k in v6 {
            let _ = m.subnet_v6.remove(&k);
        }
        for i in 0..MAX_SEGMENTS as u16 {
            let idx = segment_index(s, i);
            if m.segments.get(&idx, 0).map_err(map_err(MAP_SEGMENTS))? != SegmentInfo::default() {
                m.segments
                    .set(idx, SegmentInfo::default(), 0)
                    .map_err(map_err(MAP_SEGMENTS))?;
            }
        }
        for v in 0..VLAN_SLOTS as u16 {
            let idx = vlan_index(s, v);
            if m.vlan.get(&idx, 0).map_err(map_err(MAP_VLAN))? != 0 {
                m.vlan.set(idx, 0, 0).map_err(map_err(MAP_VLAN))?;
            }
        }
        for t in 0..PORT_TABLES {
            for port in 0..=u16::MAX {
                let idx = port_index(s, t, port);
                if m.port_class.get(&idx, 0).map_err(map_err(MAP_PORT_CLASS))? != 0 {
                    m.port_class
                        .set(idx, 0, 0)
                        .map_err(map_err(MAP_PORT_CLASS))?;
                }
            }
        }
        Ok(())
    }

    /// The segment ids the active generation has.
    pub(super) fn active_segments(&self) -> Result<Vec<u16>> {
        let active = self.active_slot()?;
        if let Gen::Holds(c) = &self.gens[active] {
            return Ok(c.segments.iter().map(|(id, _)| *id).collect());
        }
        let mut ids = Vec::new();
        for i in 0..MAX_SEGMENTS as u16 {
            let info = self
                .maps
                .segments
                .get(&segment_index(active as u8, i), 0)
                .map_err(map_err(MAP_SEGMENTS))?;
            if info.flags & SEG_PRESENT != 0 {
                ids.push(i);
            }
        }
        Ok(ids)
    }

    /// Replaces the enforced policy `previous` with `next`: `next` keeps
    /// the segment ids of `previous` (connection state holds ids), is
    /// applied atomically, and then the flows of segments `next` no longer
    /// has are ended. Returns the new epoch.
    pub fn replace_policy(&mut self, previous: &Policy, next: &mut Policy) -> Result<u32> {
        let gone = next.keep_ids(&previous.segment_ids());
        let epoch = self.apply(&crate::policy::compile::compile(next))?;
        if !gone.is_empty() {
            self.end_segments(&gone)?;
        }
        Ok(epoch)
    }

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
        let now = monotonic_ns();
        remove_where(&mut self.maps.fragments, |_, v| {
            now.saturating_sub(v.last_seen_ns) > timeout_s as u64 * 1_000_000_000
        })
    }
}

/// Now on the clock `bpf_ktime_get_ns` reads (CLOCK_MONOTONIC).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
