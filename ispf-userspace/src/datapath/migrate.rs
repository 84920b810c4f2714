//! Taking over from the pins of an older map layout without dropping a
//! packet. The new datapath is loaded and pinned beside the old one (under
//! [`staging_dir`]) and given the policy the old one enforces; what of the
//! old maps still means something to the new program — connection state,
//! fragment verdicts, counts — is carried across; then every pinned link is
//! switched to the new program in one BPF_LINK_UPDATE each, so a port runs
//! one program or the other and never none; last, the new pins take the old
//! ones' place. An upgrade interrupted at any point is finished or undone
//! by [`resume`] at the next start.

use std::{
    collections::BTreeMap,
    fs,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, Map, MapData, PerCpuArray},
    programs::{SchedClassifier, Xdp},
};
use aya_obj::programs::XdpAttachType;
use ispf_common::*;

use super::{maps::map_err, Datapath, DatapathError, Result};
use crate::bpfsys;

/// Layouts whose pins this ispf migrates. Layout 3 (before threat feeds)
/// lacks the feed maps and leaves unused the settings byte that says which
/// feed maps hold entries (0: none); its connection-state, fragment and
/// counter maps have exactly this layout's types.
pub const MIGRATES_FROM: &[u32] = &[3];

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

fn pin_err(path: &Path, what: &str, e: impl std::fmt::Display) -> DatapathError {
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
    xdp: OwnedFd,
    tc: OwnedFd,
    maps: BTreeMap<&'static str, OwnedFd>,
}

impl OldPins {
    /// Opens the pins under `dir`, which must be of a layout this ispf
    /// migrates.
    pub fn open(dir: &Path) -> Result<Self> {
        let layout = Datapath::pinned_layout(dir).unwrap_or(0);
        if !MIGRATES_FROM.contains(&layout) {
            return Err(super::adopt::layout_error(dir, layout));
        }
        let get = |rel: &str| {
            let path = dir.join(rel);
            bpfsys::obj_get(&path).map_err(|e| pin_err(&path, "cannot open it", e))
        };
        let mut maps = BTreeMap::new();
        for &name in CARRIED {
            maps.insert(name, get(&format!("maps/{name}"))?);
        }
        let mut old = Self {
            layout,
            meta: Meta::default(),
            xdp: get("prog")?,
            tc: get("prog_tc")?,
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

    /// Switches every link pinned under `links_dir` from `old`'s program
    /// to this datapath's (the XDP entry for XDP links, the TC entry for
    /// TCX links). A link that runs neither of `old`'s programs is left
    /// alone. If one switch fails, those already made are switched back,
    /// so ports never run different layouts. Returns the interfaces
    /// switched.
    pub fn take_over_links(&self, old: &OldPins, links_dir: &Path) -> Result<Vec<String>> {
        let xdp = self.program().fd()?.as_fd();
        let tc = self.tc_program().fd()?.as_fd();
        let mut names: Vec<String> = match fs::read_dir(links_dir) {
            Ok(d) => d
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        let mut done: Vec<(String, OwnedFd, BorrowedFd, BorrowedFd)> = Vec::new();
        for name in names {
            let path = links_dir.join(&name);
            let link = bpfsys::obj_get(&path).map_err(|e| pin_err(&path, "cannot open it", e))?;
            let facts = bpfsys::link_facts(&link).map_err(|e| pin_err(&path, "not a link", e))?;
            let (new, was) = match facts.link_type {
                bpfsys::BPF_LINK_TYPE_XDP => (xdp, old.xdp.as_fd()),
                bpfsys::BPF_LINK_TYPE_TCX => (tc, old.tc.as_fd()),
                _ => continue,
            };
            match bpfsys::link_update(link.as_fd(), new, was) {
                Ok(()) => done.push((name, link, new, was)),
                // The link runs another program: not ours to replace.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
                Err(e) => {
                    for (_, link, new, was) in done.iter().rev() {
                        let _ = bpfsys::link_update(link.as_fd(), *was, *new);
                    }
                    return Err(pin_err(&path, "cannot switch its program", e));
                }
            }
        }
        Ok(done.into_iter().map(|d| d.0).collect())
    }
}

fn remove_pin(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Moves the staged pins into `pin_dir` in place of the old ones (whose
/// program and maps the kernel frees once no link runs them). Each step
/// can be repeated, so an interrupted move is finished by [`resume`].
/// `moved` hears of each pin moved (`moved-maps`, `moved-prog_tc`, ...).
pub fn finish(pin_dir: &Path, moved: impl Fn(&str)) -> Result<()> {
    let staging = staging_dir(pin_dir);
    // The program last: pins with a `prog` are what a start adopts.
    for name in ["maps", "prog_tc", "prog"] {
        let new = staging.join(name);
        if !new.exists() {
            continue;
        }
        let old = pin_dir.join(name);
        remove_pin(&old).map_err(|e| pin_err(&old, "cannot remove it", e))?;
        fs::rename(&new, &old).map_err(|e| pin_err(&new, "cannot move it", e))?;
        moved(&format!("moved-{name}"));
    }
    remove_pin(&staging).map_err(|e| pin_err(&staging, "cannot remove it", e))
}

/// What [`resume`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// No upgrade was under way.
    Nothing,
    /// The links had been switched: the new pins were moved into place.
    Finished,
    /// No link had been switched: the staged datapath was removed and the
    /// old pins, still enforcing, are upgraded again.
    Undone,
}

/// Finishes or undoes an upgrade a controller did not live to finish.
pub fn resume(pin_dir: &Path, moved: impl Fn(&str)) -> Result<Resumed> {
    let staging = staging_dir(pin_dir);
    if !staging.exists() {
        return Ok(Resumed::Nothing);
    }
    let ids = |dir: &Path| -> Option<(u32, u32)> {
        let xdp = Xdp::from_pin(dir.join("prog"), XdpAttachType::Interface).ok()?;
        let tc = SchedClassifier::from_pin(dir.join("prog_tc")).ok()?;
        Some((xdp.info().ok()?.id(), tc.info().ok()?.id()))
    };
    // Pins are moved only once the links run the new program.
    let moving = ["maps", "prog_tc", "prog"]
        .iter()
        .any(|n| !staging.join(n).exists());
    let switched = match ids(&staging) {
        _ if moving => true,
        None => false,
        Some((xdp, tc)) => fs::read_dir(pin_dir.join("links"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| bpfsys::pinned_link_facts(&e.path()).ok())
            .any(|f| f.prog_id == xdp || f.prog_id == tc),
    };
    if switched {
        finish(pin_dir, moved)?;
        Ok(Resumed::Finished)
    } else {
        remove_pin(&staging).map_err(|e| pin_err(&staging, "cannot remove it", e))?;
        Ok(Resumed::Undone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
