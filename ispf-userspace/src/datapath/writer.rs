//! The only code that writes policy into the maps. A policy goes into the
//! inactive generation slot, then one array write makes it active, so a
//! packet is judged wholly by the old or wholly by the new policy.
//!
//! Transactional: the capacity check counts what the active generation
//! really holds (read from the maps after an adoption, never assumed), and a
//! write that fails part-way removes what it wrote, so nothing of a refused
//! policy is ever enforced by a later generation.

use std::{os::fd::BorrowedFd, time::Instant};

use aya::maps::{lpm_trie::Key, LpmTrie, MapData};

use ispf_common::*;

use super::{
    capacity::{check_fits, Counts},
    delta::{diff, diff3, diff_keys, Delta},
    maps::{
        fd, mac_key, map_err, port_index, segment_index, v4_key, v4_lpm, v6_key, v6_lpm, vlan_index,
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

    /// Budgets for writes of `lens` entries made side by side, each
    /// allowed what it would be allowed if they were made in a row. Spends
    /// nothing: the caller spends `lens` after the writes.
    fn split<const N: usize>(&self, lens: [usize; N]) -> [Budget; N] {
        let mut probe = Budget {
            written: self.written,
            fail_at: self.fail_at,
        };
        lens.map(|n| {
            let allowed = probe.allowed(n);
            probe.written += allowed;
            Budget {
                written: 0,
                fail_at: (allowed < n).then_some(allowed),
            }
        })
    }
}

/// A writer thread's result; a panic in one is the caller's panic.
fn join(h: std::thread::ScopedJoinHandle<'_, Result<()>>) -> Result<()> {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
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
pub(super) fn zero<V: Copy>(
    fd: BorrowedFd<'_>,
    name: &'static str,
    indices: &[u32],
    empty: V,
) -> Result<()> {
    bpfsys::update_all(fd, indices, &vec![empty; indices.len()])
        .map_err(|(_, source)| DatapathError::Batch { name, source })
}

/// Applies one hash map's change, its keys put in slot form by `key`:
/// removals first, so the slot never holds more than the new policy.
pub(super) fn hash<K: Copy, V: Copy, M>(
    fd: BorrowedFd<'_>,
    name: &'static str,
    d: Delta<K, V>,
    key: impl Fn(K) -> M,
    b: &mut Budget,
) -> Result<()> {
    let gone: Vec<M> = d.gone.into_iter().map(&key).collect();
    drop_keys(fd, name, &gone)?;
    let (k, v): (Vec<M>, Vec<V>) = d.put.into_iter().map(|(k, v)| (key(k), v)).unzip();
    put(fd, name, &k, &v, b)
}

/// Applies one LPM trie's change entry by entry: tries have no batch
/// operations (subnets are few; feed networks are written this way too).
pub(super) fn lpm<A, const N: usize, V: aya::Pod>(
    trie: &mut LpmTrie<MapData, [u8; N], V>,
    name: &'static str,
    d: Delta<(A, u8), V>,
    key: impl Fn(&A, u8) -> Key<[u8; N]>,
    b: &mut Budget,
) -> Result<()> {
    for (a, plen) in &d.gone {
        let _ = trie.remove(&key(a, *plen));
    }
    for ((a, plen), v) in &d.put {
        b.spend(1)?;
        trie.insert(&key(a, *plen), v, 0).map_err(map_err(name))?;
    }
    Ok(())
}

/// Applies one array's change: removed entries are reset to the default.
fn array<K: Copy, V: Copy + Default>(
    fd: BorrowedFd<'_>,
    name: &'static str,
    d: Delta<K, V>,
    index: impl Fn(K) -> u32,
    b: &mut Budget,
) -> Result<()> {
    let gone: Vec<u32> = d.gone.into_iter().map(&index).collect();
    zero(fd, name, &gone, V::default())?;
    let (k, v): (Vec<u32>, Vec<V>) = d.put.into_iter().map(|(k, v)| (index(k), v)).unzip();
    put(fd, name, &k, &v, b)
}

impl Datapath {
    pub(super) fn active_slot(&self) -> Result<usize> {
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
        // A slot this process wrote is changed in place; one it did not
        // is cleared by scanning and written whole.
        let old = match std::mem::replace(&mut self.gens[target], Gen::Empty) {
            Gen::Holds(old) => Some(old),
            Gen::Unknown(_) => {
                self.clear_slot_by_scan(s).inspect_err(|_| {
                    self.gens[target] = Gen::Unknown(Counts::scan(&self.maps, s))
                })?;
                None
            }
            Gen::Empty => None,
        };
        // Epochs only need to differ from the last two; 0 means "nothing
        // applied yet" (4 billion generations are never reached anyway).
        let epoch = self.epoch.wrapping_add(1).max(1);
        let mut budget = Budget {
            written: 0,
            fail_at: self.fail_after,
        };
        if let Err(e) = self.write_slot(old.as_deref(), c, s, epoch, &mut budget) {
            // Leave nothing of the refused policy behind, nor of the one
            // the slot held, which it partly replaced.
            let cleared = match &old {
                Some(o) => self.clear_slot(o, s),
                None => Ok(()),
            }
            .and_then(|()| self.clear_slot(c, s));
            self.gens[target] = match cleared {
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

    /// Writes `c` into slot `s`, which holds `old` (`None`: nothing):
    /// only what differs is removed or written.
    fn write_slot(
        &mut self,
        old: Option<&Compiled>,
        c: &Compiled,
        s: u8,
        epoch: u32,
        b: &mut Budget,
    ) -> Result<()> {
        let m = &mut self.maps;
        let d = diff(old.map(|o| &o.segments[..]), &c.segments);
        array(
            fd(&m.segments),
            MAP_SEGMENTS,
            d,
            |id| segment_index(s, id),
            b,
        )?;
        // The device maps are the bulk of a large policy and independent
        // of each other: written on threads of their own (a million
        // devices, three maps of a million entries: 1.1 s on one core).
        let dm = diff(old.map(|o| &o.dev_mac[..]), &c.dev_mac);
        let d4 = diff(old.map(|o| &o.dev_v4[..]), &c.dev_v4);
        let d6 = diff(old.map(|o| &o.dev_v6[..]), &c.dev_v6);
        let lens = [dm.put.len(), d4.put.len(), d6.put.len()];
        let [mut bm, mut b4, mut b6] = b.split(lens);
        let (fm, f4, f6) = (fd(&m.dev_mac), fd(&m.dev_v4), fd(&m.dev_v6));
        let written = std::thread::scope(|scope| {
            let mac = scope.spawn(|| hash(fm, MAP_DEV_MAC, dm, |a| mac_key(s, a), &mut bm));
            let v4 = scope.spawn(|| hash(f4, MAP_DEV_V4, d4, |a| v4_key(s, a), &mut b4));
            let v6 = hash(f6, MAP_DEV_V6, d6, |a| v6_key(s, a), &mut b6);
            [join(mac), join(v4), v6]
        });
        for r in written {
            match r {
                // Accounted for below, as the writes in a row would have.
                Err(DatapathError::Injected(_)) | Ok(()) => {}
                Err(e) => return Err(e),
            }
        }
        for n in lens {
            b.spend(n)?;
        }
        // LPM tries have no batch operations; subnets are few.
        let d = diff3(old.map(|o| &o.subnet_v4[..]), &c.subnet_v4);
        lpm(
            &mut m.subnet_v4,
            MAP_SUBNET_V4,
            d,
            |a, p| v4_lpm(s, a, p),
            b,
        )?;
        let d = diff3(old.map(|o| &o.subnet_v6[..]), &c.subnet_v6);
        lpm(
            &mut m.subnet_v6,
            MAP_SUBNET_V6,
            d,
            |a, p| v6_lpm(s, a, p),
            b,
        )?;
        let d = diff(old.map(|o| &o.vlans[..]), &c.vlans);
        array(fd(&m.vlan), MAP_VLAN, d, |vl| vlan_index(s, vl), b)?;
        let d = diff_keys(old.map(|o| &o.routers[..]), &c.routers);
        let d = Delta {
            put: d.put.into_iter().map(|(a, ())| (a, 1u32)).collect(),
            gone: d.gone,
        };
        hash(fd(&m.routers), MAP_ROUTERS, d, |a| mac_key(s, a), b)?;
        let d = diff3(old.map(|o| &o.port_classes[..]), &c.port_classes);
        array(
            fd(&m.port_class),
            MAP_PORT_CLASS,
            d,
            |(t, port)| port_index(s, t, port),
            b,
        )?;
        let d = diff(old.map(|o| &o.policy[..]), &c.policy);
        hash(
            fd(&m.policy),
            MAP_POLICY,
            d,
            |k| PolicyKey { slot: s, ..k },
            b,
        )?;
        let d = diff(old.map(|o| &o.rows[..]), &c.rows);
        hash(
            fd(&m.rows),
            MAP_POLICY_ROWS,
            d,
            |k| PairKey { slot: s, ..k },
            b,
        )?;
        m.feeds.write(old.map(|o| &o.feeds), &c.feeds, s, b)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_budgets_allow_what_writes_in_a_row_would() {
        let b = Budget {
            written: 1,
            fail_at: Some(6),
        };
        let [x, y, z] = b.split([3, 4, 2]);
        assert_eq!(x.fail_at, None, "the first three fit");
        assert_eq!(y.fail_at, Some(2), "two of four before the failure");
        assert_eq!(z.fail_at, Some(0), "nothing after it");
        let unlimited = Budget {
            written: 0,
            fail_at: None,
        };
        assert!(unlimited.split([5, 5]).iter().all(|b| b.fail_at.is_none()));
    }
}
