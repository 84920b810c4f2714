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
    access::{
        fd, mac_key, map_err, port_index, segment_index, v4_key, v4_lpm, v6_key, v6_lpm, vlan_index,
    },
    batch::{array, hash, lpm, Budget},
    capacity::{check_fits, Counts},
    delta::{diff, diff3, diff_keys, Delta},
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

/// A writer thread's result; a panic in one is the caller's panic.
fn join(h: std::thread::ScopedJoinHandle<'_, Result<()>>) -> Result<()> {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

impl Datapath {
    pub(super) fn active_slot(&self) -> Result<usize> {
        Ok(self.maps.active.get(&0, 0).map_err(map_err(MAP_ACTIVE))? as usize & 1)
    }

    /// Writes `c` into the inactive generation slot, then makes it active in
    /// one array write. Packets see the old policy or the new one, never a
    /// mix. On any failure nothing of `c` is enforced (a failed write is
    /// removed; should the flip itself fail, `c` stays in the inactive slot
    /// until the next write replaces it) and the running generation is
    /// untouched. Returns the new epoch.
    pub fn apply(&mut self, c: &Compiled) -> Result<u32> {
        let r = self.apply_to_slots(c);
        // Whatever became of the slots, failure or not.
        self.publish_counts();
        r
    }

    /// Tells every [`Stats`](super::Stats) what the generation slots now
    /// hold (they share this datapath's own statistics' record).
    pub(super) fn publish_counts(&self) {
        let both = self.gens[0].counts().plus(&self.gens[1].counts());
        *self.stats.written.lock().unwrap_or_else(|e| e.into_inner()) = Some(both);
    }

    /// Whether [`Self::apply`] would find room for `c` beside the
    /// generation that stays enforced while it is written, and room after
    /// it for a generation as large (else every later change would fail
    /// at the capacity check): a caller trying sets of runtime decisions
    /// sets aside those that do not fit before applying any.
    pub fn fits(&self, c: &Compiled) -> Result<()> {
        self.fits_beside_enforced(c)?;
        let new = Counts::of(c);
        check_fits(&self.sizes, &new, &new)
    }

    /// What [`Self::apply`] checks of `c` before writing it.
    pub fn fits_beside_enforced(&self, c: &Compiled) -> Result<()> {
        check_fits(&self.sizes, &Counts::of(c), &self.kept()?.1)
    }

    /// The slot the next generation is written to, and what the other
    /// slot keeps meanwhile.
    fn kept(&self) -> Result<(usize, Counts)> {
        let active = self.active_slot()?;
        let target = if self.epoch == 0 { active } else { 1 - active };
        let kept = if target == active {
            Default::default()
        } else {
            self.gens[active].counts()
        };
        Ok((target, kept))
    }

    fn apply_to_slots(&mut self, c: &Compiled) -> Result<u32> {
        let active = self.active_slot()?;
        let (target, kept) = self.kept()?;
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
        // Recorded before the flip: should the flip fail, the inactive slot
        // holds `c` (never enforced), and the next write must know it to
        // remove what the next policy lacks.
        self.gens[target] = Gen::Holds(Box::new(c.clone()));
        self.maps
            .active
            .set(0, target as u32, 0)
            .map_err(map_err(MAP_ACTIVE))?;
        self.last_flip = Some(Instant::now());
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
