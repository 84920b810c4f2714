//! Which kernel maps a controller's pin directory holds, so a test can
//! check that exactly those were freed. A whole-machine count of `ISPF_`
//! maps would also see another controller's (a benchmark's, a second test
//! run's on the same machine) and fail for what the test did not do.

use std::{
    collections::BTreeSet,
    path::Path,
    thread::sleep,
    time::{Duration, Instant},
};

use aya::maps::MapData;

/// The kernel IDs of the maps pinned under `pin/maps` (and, during an
/// upgrade, `pin/upgrade/maps`); empty when nothing is pinned there.
pub fn pinned_map_ids(pin: &Path) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    for dir in [pin.join("maps"), pin.join("upgrade").join("maps")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let map = MapData::from_pin(e.path())
                .unwrap_or_else(|err| panic!("{}: not a pinned map: {err}", e.path().display()));
            let info = map
                .info()
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            ids.insert(info.id());
        }
    }
    ids
}

/// Those of `ids` still loaded after up to `within` (the kernel frees a
/// map once its last program is gone, a moment after the detach), with
/// their names.
pub fn still_loaded(ids: &BTreeSet<u32>, within: Duration) -> Vec<(u32, String)> {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<(u32, String)> = aya::maps::loaded_maps()
            .filter_map(|m| m.ok())
            .filter(|m| ids.contains(&m.id()))
            .map(|m| (m.id(), m.name_as_str().unwrap_or("?").to_owned()))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        sleep(Duration::from_millis(100));
    }
}
