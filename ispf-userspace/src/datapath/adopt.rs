//! Pins an earlier controller left: their layout version, and adopting
//! them as they are when it is this ispf's (see [`super::migrate`] for
//! older ones).

use std::{collections::BTreeMap, path::Path};

use aya::{
    maps::{Map, MapData},
    programs::{SchedClassifier, Xdp},
};
use aya_obj::programs::XdpAttachType;
use ispf_common::*;

use super::{
    dup, maps,
    maps::{map_err, Maps},
    migrate, not_root, writer, Counts, Datapath, DatapathError, MapSizes, ProgramHandle, Result,
    Stats,
};

/// Pins of layout `found`, which this ispf cannot adopt as they are.
pub(super) fn layout_error(dir: &Path, found: u32) -> DatapathError {
    let fix = if migrate::MIGRATES_FROM.contains(&found) {
        "`ispf run` migrates them without an outage".to_owned()
    } else if found < LAYOUT_VERSION {
        format!("they were made by an ispf too old to migrate from (this one migrates layouts {:?}): remove enforcement with `ispf detach --pin-dir {}` (an outage until this controller has started) and start this one", migrate::MIGRATES_FROM, dir.display())
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

impl Datapath {
    /// The layout version of the maps pinned under `dir`: 1 for pins of
    /// an ispf that predates versioning (no meta map), `None` when nothing
    /// is pinned there.
    pub fn pinned_layout(dir: &Path) -> Option<u32> {
        if !dir.join("prog").exists() {
            return None;
        }
        let meta = dir.join("maps").join(MAP_META);
        let Ok(data) = MapData::from_pin(&meta) else {
            return Some(1);
        };
        let arr: Option<aya::maps::Array<MapData, Meta>> = Map::from_map_data(data)
            .ok()
            .and_then(|m| aya::maps::Array::try_from(m).ok());
        Some(arr.and_then(|a| a.get(&0, 0).ok()).map_or(1, |m| m.layout))
    }

    /// Reopens the program and maps an earlier controller pinned under
    /// `dir`, keeping everything they hold: the enforced policy, its epoch,
    /// connection state and counters. Pins of another layout are refused
    /// with what to do.
    pub fn adopt(dir: &Path) -> Result<Self> {
        not_root()?;
        let found = Self::pinned_layout(dir).unwrap_or(0);
        if found != LAYOUT_VERSION {
            return Err(layout_error(dir, found));
        }
        let prog = Xdp::from_pin(dir.join("prog"), XdpAttachType::Interface)?;
        let tc = SchedClassifier::from_pin(dir.join("prog_tc"))?;
        let mut ids = BTreeMap::new();
        let mut capacity = BTreeMap::new();
        let mut taken = BTreeMap::new();
        for &name in maps::ALL {
            let data = MapData::from_pin(dir.join("maps").join(name)).map_err(map_err(name))?;
            let info = data.info().map_err(map_err(name))?;
            ids.insert(name, dup(&data, name)?);
            capacity.insert(name, info.max_entries());
            taken.insert(name, Map::from_map_data(data).map_err(map_err(name))?);
        }
        let m = Maps::open(&mut |name: &'static str| {
            taken
                .remove(name)
                .ok_or(DatapathError::Missing { kind: "map", name })
        })?;
        let sizes = MapSizes {
            devices: capacity[MAP_DEV_MAC],
            policy: capacity[MAP_POLICY],
            conntrack: capacity[MAP_CONNTRACK],
            fragments: capacity[MAP_FRAGMENTS],
            counters: capacity[MAP_COUNTERS],
            feeds: capacity[MAP_FEED_V4],
        };
        let stats = Stats::open(&ids, sizes)?;
        let active = m.active.get(&0, 0).map_err(map_err(MAP_ACTIVE))? as usize & 1;
        let epoch = m
            .settings
            .get(&(active as u32), 0)
            .map_err(map_err(MAP_SETTINGS))?
            .epoch;
        // What each generation holds is read from the maps, never assumed.
        let gens = [
            writer::Gen::Unknown(Counts::scan(&m, 0)),
            writer::Gen::Unknown(Counts::scan(&m, 1)),
        ];
        Self::assemble(
            ProgramHandle::Pinned(Box::new((prog, tc))),
            m,
            stats,
            ids,
            sizes,
            gens,
            epoch,
        )
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
        for &l in migrate::MIGRATES_FROM {
            assert!(fix(l).contains("migrates them without an outage"), "{l}");
        }
        assert!(fix(1).contains("too old to migrate from"));
        assert!(fix(1).contains("ispf detach --pin-dir /sys/fs/bpf/ispf"));
        assert!(fix(LAYOUT_VERSION + 1).contains("newer ispf"));
    }
}
