//! The only code that writes policy into the maps. A policy goes into the
//! inactive generation slot, then one array write makes it active, so a
//! packet is judged wholly by the old or wholly by the new policy.
//!
//! Transactional: the capacity check counts what the active generation
//! really holds (read from the maps after an adoption, never assumed), and a
//! write that fails part-way removes what it wrote, so nothing of a refused
//! policy is ever enforced by a later generation.

use std::{os::fd::BorrowedFd, time::Instant};

use ispf_common::*;

use super::{
    capacity::{check_fits, Counts},
    maps::{
        fd, keys_where, mac_key, map_err, port_index, remove_where, segment_index, v4_key, v4_lpm,
        v6_key, v6_lpm, vlan_index,
    },
    Datapath, DatapathError, Result,
};
use crate::{
    bpfsys,
    policy::{compile::Compiled, Policy},
};

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
pub(super) struct Budget {
    written: usize,
    fail_at: Option<usize>,
}

impl Budget {
    /// Accounts for `n` entries; fails where a test asked it to.
    pub(super) fn spend(&mut self, n: usize) -> Result<()> {
        let allowed = self.allowed(n);
        self.written += allowed;
        if allowed < n {
            return Err(DatapathError::Injected(self.written));
        }
        Ok(())
    }

    /// How many of `n` entries may be written before the failure.
    fn allowed(&self, n: usize) -> usize {
        match self.fail_at {
            Some(at) => n.min(at.saturating_sub(self.written)),
            None => n,
        }
    }
}

/// Writes `keys[i] -> values[i]` in batches, as far as the budget allows.
pub(super) fn put<K, V>(
    fd: BorrowedFd<'_>,
    name: &'static str,
    keys: &[K],
    values: &[V],
    b: &mut Budget,
) -> Result<()> {
    let n = b.allowed(keys.len());
    bpfsys::update_all(fd, &keys[..n], &values[..n])
        .map_err(|(_, source)| DatapathError::Batch { name, source })?;
    b.spend(keys.len())
}

/// Deletes `keys` in batches (missing ones are fine).
pub(super) fn drop_keys<K>(fd: BorrowedFd<'_>, name: &'static str, keys: &[K]) -> Result<()> {
    bpfsys::delete_all(fd, keys)
        .map(drop)
        .map_err(|source| DatapathError::Batch { name, source })
}

/// Resets the array entries `indices` to `empty`.
fn zero<V: Copy>(fd: BorrowedFd<'_>, name: &'static str, indices: &[u32], empty: V) -> Result<()> {
    bpfsys::update_all(fd, indices, &vec![empty; indices.len()])
        .map_err(|(_, source)| DatapathError::Batch { name, source })
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
        // Epochs only need to differ from the last two; 0 means "nothing
        // applied yet" (4 billion generations are never reached anyway).
        let epoch = self.epoch.wrapping_add(1).max(1);
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
        let (ids, infos): (Vec<u32>, Vec<SegmentInfo>) = c
            .segments
            .iter()
            .map(|(id, info)| (segment_index(s, *id), *info))
            .unzip();
        put(fd(&m.segments), MAP_SEGMENTS, &ids, &infos, b)?;
        let (k, v): (Vec<_>, Vec<_>) = c.dev_mac.iter().map(|(a, v)| (mac_key(s, *a), *v)).unzip();
        put(fd(&m.dev_mac), MAP_DEV_MAC, &k, &v, b)?;
        let (k, v): (Vec<_>, Vec<_>) = c.dev_v4.iter().map(|(a, v)| (v4_key(s, *a), *v)).unzip();
        put(fd(&m.dev_v4), MAP_DEV_V4, &k, &v, b)?;
        let (k, v): (Vec<_>, Vec<_>) = c.dev_v6.iter().map(|(a, v)| (v6_key(s, *a), *v)).unzip();
        put(fd(&m.dev_v6), MAP_DEV_V6, &k, &v, b)?;
        // LPM tries have no batch operations; subnets are few.
        for (addr, plen, seg) in &c.subnet_v4 {
            b.spend(1)?;
            m.subnet_v4
                .insert(&v4_lpm(s, addr, *plen), seg, 0)
                .map_err(map_err(MAP_SUBNET_V4))?;
        }
        for (addr, plen, seg) in &c.subnet_v6 {
            b.spend(1)?;
            m.subnet_v6
                .insert(&v6_lpm(s, addr, *plen), seg, 0)
                .map_err(map_err(MAP_SUBNET_V6))?;
        }
        let (k, v): (Vec<_>, Vec<_>) = c
            .vlans
            .iter()
            .map(|(vl, seg)| (vlan_index(s, *vl), *seg))
            .unzip();
        put(fd(&m.vlan), MAP_VLAN, &k, &v, b)?;
        let k: Vec<_> = c.routers.iter().map(|a| mac_key(s, *a)).collect();
        put(fd(&m.routers), MAP_ROUTERS, &k, &vec![1u32; k.len()], b)?;
        let (k, v): (Vec<_>, Vec<_>) = c
            .port_classes
            .iter()
            .map(|(t, port, class)| (port_index(s, *t, *port), *class))
            .unzip();
        put(fd(&m.port_class), MAP_PORT_CLASS, &k, &v, b)?;
        let (k, v): (Vec<_>, Vec<_>) = c
            .policy
            .iter()
            .map(|(k, v)| (PolicyKey { slot: s, ..*k }, *v))
            .unzip();
        put(fd(&m.policy), MAP_POLICY, &k, &v, b)?;
        let (k, v): (Vec<_>, Vec<_>) = c
            .rows
            .iter()
            .map(|(k, r)| (PairKey { slot: s, ..*k }, *r))
            .unzip();
        put(fd(&m.rows), MAP_POLICY_ROWS, &k, &v, b)?;
        m.feeds.write(&c.feeds, s, b)?;
        b.spend(1)?;
        let settings = Settings {
            epoch,
            feeds: c.feeds.flags(),
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
        let ids: Vec<u32> = c
            .segments
            .iter()
            .map(|(id, _)| segment_index(s, *id))
            .collect();
        zero(fd(&m.segments), MAP_SEGMENTS, &ids, SegmentInfo::default())?;
        let k: Vec<_> = c.dev_mac.iter().map(|(a, _)| mac_key(s, *a)).collect();
        drop_keys(fd(&m.dev_mac), MAP_DEV_MAC, &k)?;
        let k: Vec<_> = c.dev_v4.iter().map(|(a, _)| v4_key(s, *a)).collect();
        drop_keys(fd(&m.dev_v4), MAP_DEV_V4, &k)?;
        let k: Vec<_> = c.dev_v6.iter().map(|(a, _)| v6_key(s, *a)).collect();
        drop_keys(fd(&m.dev_v6), MAP_DEV_V6, &k)?;
        for (addr, plen, _) in &c.subnet_v4 {
            let _ = m.subnet_v4.remove(&v4_lpm(s, addr, *plen));
        }
        for (addr, plen, _) in &c.subnet_v6 {
            let _ = m.subnet_v6.remove(&v6_lpm(s, addr, *plen));
        }
        let k: Vec<_> = c.vlans.iter().map(|(v, _)| vlan_index(s, *v)).collect();
        zero(fd(&m.vlan), MAP_VLAN, &k, 0u32)?;
        let k: Vec<_> = c.routers.iter().map(|a| mac_key(s, *a)).collect();
        drop_keys(fd(&m.routers), MAP_ROUTERS, &k)?;
        let k: Vec<_> = c
            .port_classes
            .iter()
            .map(|(t, port, _)| port_index(s, *t, *port))
            .collect();
        zero(fd(&m.port_class), MAP_PORT_CLASS, &k, 0u32)?;
        let k: Vec<_> = c
            .policy
            .iter()
            .map(|(k, _)| PolicyKey { slot: s, ..*k })
            .collect();
        drop_keys(fd(&m.policy), MAP_POLICY, &k)?;
        let k: Vec<_> = c
            .rows
            .iter()
            .map(|(k, _)| PairKey { slot: s, ..*k })
            .collect();
        drop_keys(fd(&m.rows), MAP_POLICY_ROWS, &k)?;
        m.feeds.clear(&c.feeds, s)
    }

    /// Clears a slot whose contents this process did not write: every key
    /// carrying the slot, every array entry of it.
    fn clear_slot_by_scan(&mut self, s: u8) -> Result<()> {
        let m = &mut self.maps;
        let k = keys_where(&m.dev_mac, |k| k.slot == s);
        drop_keys(fd(&m.dev_mac), MAP_DEV_MAC, &k)?;
        let k = keys_where(&m.dev_v4, |k| k.slot == s);
        drop_keys(fd(&m.dev_v4), MAP_DEV_V4, &k)?;
        let k = keys_where(&m.dev_v6, |k| k.slot == s);
        drop_keys(fd(&m.dev_v6), MAP_DEV_V6, &k)?;
        let k = keys_where(&m.routers, |k| k.slot == s);
        drop_keys(fd(&m.routers), MAP_ROUTERS, &k)?;
        let k = keys_where(&m.policy, |k| k.slot == s);
        drop_keys(fd(&m.policy), MAP_POLICY, &k)?;
        let k = keys_where(&m.rows, |k| k.slot == s);
        drop_keys(fd(&m.rows), MAP_POLICY_ROWS, &k)?;
        m.feeds.clear_by_scan(s)?;
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
        let in_slot = |i: u32, per_slot: u32| i / per_slot == s as u32;
        let used = |name, f| -> Result<Vec<u32>> {
            Ok(bpfsys::lookup_all::<u32, u32>(f)
                .map_err(|source| DatapathError::Batch { name, source })?
                .into_iter()
                .filter(|(i, v)| {
                    *v != 0
                        && in_slot(
                            *i,
                            if name == MAP_VLAN {
                                VLAN_SLOTS
                            } else {
                                PORT_TABLES * 65536
                            },
                        )
                })
                .map(|(i, _)| i)
                .collect())
        };
        let k = used(MAP_VLAN, fd(&m.vlan))?;
        zero(fd(&m.vlan), MAP_VLAN, &k, 0u32)?;
        let k = used(MAP_PORT_CLASS, fd(&m.port_class))?;
        zero(fd(&m.port_class), MAP_PORT_CLASS, &k, 0u32)?;
        let k: Vec<u32> = bpfsys::lookup_all::<u32, SegmentInfo>(fd(&m.segments))
            .map_err(|source| DatapathError::Batch {
                name: MAP_SEGMENTS,
                source,
            })?
            .into_iter()
            .filter(|(i, v)| *v != SegmentInfo::default() && in_slot(*i, MAX_SEGMENTS))
            .map(|(i, _)| i)
            .collect();
        zero(fd(&m.segments), MAP_SEGMENTS, &k, SegmentInfo::default())
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
