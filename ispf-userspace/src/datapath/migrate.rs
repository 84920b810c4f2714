//! Taking over from the pins of an older map layout without dropping a
//! packet. The new datapath is loaded and pinned beside the old one (under
//! [`staging_dir`]) and given the policy the old one enforces; what of the
//! old maps still means something to the new program — connection state,
//! fragment verdicts, counts — is carried across (here); then every pinned
//! link is switched to the new program and the new pins take the old
//! ones' place ([`super::handover`]).

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
};

use aya::maps::{Array, Map, MapData, PerCpuArray};
use ispf_common::*;

use super::{access::map_err, Datapath, DatapathError, Result};
use crate::bpfsys;

/// Layouts whose pins this ispf migrates. Layout 3 (before threat feeds)
/// lacks the feed maps and leaves unused the settings byte that says which
/// feed maps hold entries (0: none); its connection-state, fragment and
/// counter maps have exactly this layout's types.
pub const MIGRATES_FROM: &[u32] = &[3];

/// Pins of layout `found`, which this ispf cannot adopt as they are.
pub(super) fn layout_error(dir: &Path, found: u32) -> DatapathError {
    let fix = if MIGRATES_FROM.contains(&found) {
        "`ispf run` migrates them without an outage".to_owned()
    } else if found < LAYOUT_VERSION {
        format!("they were made by an ispf too old to migrate from (this one migrates layouts {:?}): remove enforcement with `ispf detach --pin-dir {}` (an outage until this controller has started) and start this one", MIGRATES_FROM, dir.display())
    } else {
        format!("they were made by a newer ispf: run that version, or remove enforcement with `ispf detach --pin-dir {}` (an outage) and start this one", dir.display())
    };
    DatapathError::Layout {
        dir: dir.to_owned(),
        found,
        ours: LAYOUT_VERSION,
        fix,
    }
}

/// The maps carried from old pins.
const CARRIED: &[&str] = &[
    MAP_META,
    MAP_CONNTRACK,
    MAP_CONNTRACK4,
    MAP_FRAGMENTS,
    MAP_COUNTERS,
    MAP_COUNTER_SLOTS,
    MAP_COUNTERS_RETIRED,
];

/// Where the new datapath is pinned while the old one still enforces.
pub fn staging_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("upgrade")
}

pub(super) fn pin_err(path: &Path, what: &str, e: impl std::fmt::Display) -> DatapathError {
    DatapathError::Pin {
        path: path.to_owned(),
        message: format!("{what}: {e}"),
    }
}

/// The program and the carried maps of pins of an older layout.
pub struct OldPins {
    pub layout: u32,
    /// What the old controller recorded as enforced.
    pub meta: Meta,
    pub(super) xdp: OwnedFd,
    pub(super) tc: OwnedFd,
    pub(super) xdp_id: u32,
    pub(super) tc_id: u32,
    maps: BTreeMap<&'static str, OwnedFd>,
}

impl OldPins {
    /// Opens the pins under `dir`, which must be of a layout this ispf
    /// migrates.
    pub fn open(dir: &Path) -> Result<Self> {
        let layout = Datapath::pinned_layout(dir).unwrap_or(0);
        if !MIGRATES_FROM.contains(&layout) {
            return Err(layout_error(dir, layout));
        }
        let get = |rel: &str| {
            let path = dir.join(rel);
            bpfsys::obj_get(&path).map_err(|e| pin_err(&path, "cannot open it", e))
        };
        let mut maps = BTreeMap::new();
        for &name in CARRIED {
            maps.insert(name, get(&format!("maps/{name}"))?);
        }
        let (xdp, tc) = (get("prog")?, get("prog_tc")?);
        let id = |fd: &OwnedFd, rel: &str| {
            bpfsys::prog_id(fd.as_fd()).map_err(|e| pin_err(&dir.join(rel), "not a program", e))
        };
        let mut old = Self {
            layout,
            meta: Meta::default(),
            xdp_id: id(&xdp, "prog")?,
            tc_id: id(&tc, "prog_tc")?,
            xdp,
            tc,
            maps,
        };
        let meta: Array<MapData, Meta> = old.typed(MAP_META, 4, size_of::<Meta>())?;
        old.meta = meta.get(&0, 0).map_err(map_err(MAP_META))?;
        Ok(old)
    }

    fn fd(&self, name: &'static str) -> BorrowedFd<'_> {
        self.maps[name].as_fd()
    }

    /// An old map whose key and value sizes are checked to be this
    /// layout's: a map whose types changed would be misread.
    fn data(&self, name: &'static str, key: usize, value: usize) -> Result<MapData> {
        let fd = self.maps[name]
            .try_clone()
            .map_err(|e| map_err(name)(aya::maps::MapError::IoError(e)))?;
        let data = MapData::from_fd(fd).map_err(map_err(name))?;
        let info = data.info().map_err(map_err(name))?;
        let found = (info.key_size() as usize, info.value_size() as usize);
        if found != (key, value) {
            return Err(DatapathError::Migration {
                name,
                message: format!(
                    "layout {}'s key and value sizes {found:?} are not the ones this ispf migrates ({key}, {value}); remove enforcement with `ispf detach` (an outage) and start this one",
                    self.layout
                ),
            });
        }
        Ok(data)
    }

    fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(
        &self,
        name: &'static str,
        key: usize,
        value: usize,
    ) -> Result<T> {
        let data = self.data(name, key, value)?;
        T::try_from(Map::from_map_data(data).map_err(map_err(name))?).map_err(map_err(name))
    }
}

/// What was carried from the old maps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    pub flows: usize,
    pub fragments: usize,
    pub counter_keys: usize,
}

/// Whether an upgrade copies everything or only what the old program
/// added since the first copy (flows it opened until its links moved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    All,
    CatchUp,
}

/// A flow as the new program must first see it: its addresses, segments,
/// rule, flags and timers kept; its epoch (0, which no policy has) and
/// its checked senders and counter slots cleared, so its next packet is
/// judged again under the policy this datapath enforces and counted in
/// this datapath's slots.
fn carried_flow(mut v: CtVal) -> CtVal {
    v.epoch = 0;
    v.orig_l2 = 0;
    v.reply_l2 = 0;
    v.orig_slot = 0;
    v.reply_slot = 0;
    v
}

impl Datapath {
    /// Numbers this datapath's generations on from `epoch` (the old
    /// datapath's), so the generation an operator sees never goes back.
    pub fn continue_epochs_after(&mut self, epoch: u32) {
        self.epoch = epoch;
    }

    /// Copies connection state and fragment verdicts from `old`.
    pub fn carry_state(&mut self, old: &OldPins, pass: Pass) -> Result<Carried> {
        old.data(MAP_CONNTRACK, size_of::<CtKey>(), size_of::<CtVal>())?;
        old.data(MAP_CONNTRACK4, size_of::<CtKey4>(), size_of::<CtVal>())?;
        old.data(MAP_FRAGMENTS, size_of::<FragKey>(), size_of::<FragVal>())?;
        let flows = self.carry::<CtKey, CtVal>(old, MAP_CONNTRACK, pass, carried_flow)?
            + self.carry::<CtKey4, CtVal>(old, MAP_CONNTRACK4, pass, carried_flow)?;
        let fragments = self.carry::<FragKey, FragVal>(old, MAP_FRAGMENTS, pass, |v| v)?;
        Ok(Carried {
            flows,
            fragments,
            counter_keys: 0,
        })
    }

    fn carry<K: Copy + Default, V: Copy + Default>(
        &mut self,
        old: &OldPins,
        name: &'static str,
        pass: Pass,
        f: fn(V) -> V,
    ) -> Result<usize> {
        let batch = |e: std::io::Error| DatapathError::Batch { name, source: e };
        let mut keys = Vec::new();
        let mut values = Vec::new();
        bpfsys::scan(old.fd(name), |k: &K, v: &V| {
            keys.push(*k);
            values.push(f(*v));
        })
        .map_err(batch)?;
        let new = self.ids[name].as_fd();
        match pass {
            Pass::All => {
                bpfsys::update_all(new, &keys, &values).map_err(|(_, e)| batch(e))?;
                Ok(keys.len())
            }
            Pass::CatchUp => {
                // What the new program already holds is newer.
                let mut added = 0;
                for (k, v) in keys.iter().zip(&values) {
                    match bpfsys::insert_new(new, k, v) {
                        Ok(true) => added += 1,
                        Ok(false) => {}
                        Err(e) => return Err(batch(e)),
                    }
                }
                Ok(added)
            }
        }
    }

    /// Adds what the old datapath counted (live slots and retired totals)
    /// to this one's retired totals, so no counter goes backwards across
    /// the upgrade. Run once the old program no longer counts.
    pub fn carry_counters(&mut self, old: &OldPins) -> Result<usize> {
        let batch = |name| move |e| DatapathError::Batch { name, source: e };
        let counters: PerCpuArray<MapData, CounterVal> =
            old.typed(MAP_COUNTERS, 4, size_of::<CounterVal>())?;
        old.data(MAP_COUNTER_SLOTS, size_of::<CounterKey>(), 4)?;
        old.data(
            MAP_COUNTERS_RETIRED,
            size_of::<CounterKey>(),
            size_of::<CounterVal>(),
        )?;
        let mut totals: BTreeMap<CounterKey, CounterVal> = BTreeMap::new();
        let mut add = |k: CounterKey, v: CounterVal| {
            let t = totals.entry(CounterKey { gen: 0, ..k }).or_default();
            t.packets += v.packets;
            t.bytes += v.bytes;
        };
        let slots: Vec<(CounterKey, u32)> =
            bpfsys::lookup_all(old.fd(MAP_COUNTER_SLOTS)).map_err(batch(MAP_COUNTER_SLOTS))?;
        for (k, slot) in slots {
            if let Ok(per_cpu) = counters.get(&slot, 0) {
                add(k, super::stats::sum(&per_cpu));
            }
        }
        let retired: Vec<(CounterKey, CounterVal)> =
            bpfsys::lookup_all(old.fd(MAP_COUNTERS_RETIRED))
                .map_err(batch(MAP_COUNTERS_RETIRED))?;
        for (k, v) in retired {
            add(k, v);
        }
        let st = &mut self.stats.maps;
        for (k, v) in &totals {
            let mut t = st.retired.get(k, 0).unwrap_or_default();
            t.packets += v.packets;
            t.bytes += v.bytes;
            st.retired
                .insert(k, t, 0)
                .map_err(map_err(MAP_COUNTERS_RETIRED))?;
        }
        Ok(totals.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_layout_is_told_what_to_do() {
        let dir = Path::new("/sys/fs/bpf/ispf");
        let fix = |found| match layout_error(dir, found) {
            DatapathError::Layout { fix, .. } => fix,
            e => panic!("{e}"),
        };
        for &l in MIGRATES_FROM {
            assert!(fix(l).contains("migrates them without an outage"), "{l}");
        }
        assert!(fix(1).contains("too old to migrate from"));
        assert!(fix(1).contains("ispf detach --pin-dir /sys/fs/bpf/ispf"));
        assert!(fix(LAYOUT_VERSION + 1).contains("newer ispf"));
    }

    #[test]
    fn a_carried_flow_is_judged_again_and_counted_afresh() {
        let v = CtVal {
            last_seen_ns: 7,
            epoch: 41,
            rule: 3,
            orig_src: 1,
            orig_dst: 5,
            reason: REASON_ALLOWED,
            flags: CT_ORIG_IS_A | CT_FIN_SEEN,
            orig_l2: 9,
            reply_l2: 10,
            orig_dst_mac: 11,
            orig_slot: 12,
            reply_slot: 13,
            ..Default::default()
        };
        let c = carried_flow(v);
        // No policy has epoch 0: the next packet is judged again.
        assert_eq!((c.epoch, c.orig_l2, c.reply_l2), (0, 0, 0));
        assert_eq!((c.orig_slot, c.reply_slot), (0, 0));
        assert_eq!(
            CtVal {
                epoch: 41,
                orig_l2: 9,
                reply_l2: 10,
                orig_slot: 12,
                reply_slot: 13,
                ..c
            },
            v
        );
    }
}
