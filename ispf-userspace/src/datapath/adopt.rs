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
    access::map_err, dup, maps, maps::Maps, migrate::layout_error, not_root, writer, Counts,
    Datapath, DatapathError, MapSizes, ProgramHandle, Result, Stats,
};

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
        let stats = Stats::open(&ids, sizes, Default::default())?;
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
