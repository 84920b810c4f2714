//! The loaded XDP program and its maps. This module owns everything that
//! touches them; callers go through narrow operations:
//!
//! - `mod.rs` (here): loading the object and pinning it;
//! - `adopt`: pins' layout versions, adopting pins of this layout;
//! - [`migrate`], [`handover`]: taking over pins of an older layout;
//! - `writer`: applying compiled policy into the inactive generation and
//!   flipping it, transactionally; ending flows; state resets; `feedmaps`
//!   does the same for the threat feeds;
//! - `maps` (typed handles), `access` (slotted keys, whole-map walks),
//!   `delta` (what changed) and `batch` (writing a change in batches):
//!   what the writer is built from;
//! - `counters`: recycling counter slots of retired generations;
//! - `stats`: counters, occupancy and event accounting, readable through
//!   a second handle while a reload writes;
//! - `testrun`: running frames through the program (BPF_PROG_TEST_RUN).

mod access;
mod adopt;
mod batch;
mod capacity;
mod clear;
mod counters;
mod delta;
mod error;
mod feedmaps;
pub mod handover;
mod maps;
pub mod migrate;
mod state;
mod stats;
mod testrun;
mod writer;

use std::{collections::BTreeMap, path::Path, time::Instant};

use aya::{
    maps::{Map, MapData},
    programs::{SchedClassifier, Xdp},
    Ebpf, EbpfLoader,
};
use ispf_common::*;

pub use capacity::{check_fits, suggested_size, Counts, MapSizeRequest, MapSizes};
pub use error::DatapathError;
pub use stats::{EventTotals, Stats};
pub use testrun::{Entry, Outcome};

use access::map_err;
use maps::Maps;

type Result<T, E = DatapathError> = std::result::Result<T, E>;

/// Where the program came from: loaded by this process, or reopened from a
/// bpffs pin left by an earlier controller.
enum ProgramHandle {
    Owned(Box<Ebpf>),
    Pinned(Box<(Xdp, SchedClassifier)>),
}

pub struct Datapath {
    program: ProgramHandle,
    sizes: MapSizes,
    maps: Maps,
    stats: Stats,
    /// Duplicates of the maps' descriptors, to open more handles on them
    /// (re-opening by kernel id needs CAP_SYS_ADMIN, which the service
    /// does not have).
    ids: BTreeMap<&'static str, std::os::fd::OwnedFd>,
    gens: [writer::Gen; 2],
    epoch: u32,
    /// When the active generation last changed (None: not by us).
    last_flip: Option<Instant>,
    test: testrun::State,
    /// Tests only: fail a write after this many entries.
    fail_after: Option<usize>,
}

/// The MapData inside the variants ispf uses.
/// Another descriptor on a map, owned.
fn dup(data: &MapData, name: &'static str) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| DatapathError::Map {
            name,
            source: aya::maps::MapError::IoError(e),
        })
}

fn map_data(m: &Map) -> Option<&MapData> {
    match m {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LpmTrie(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::Queue(d)
        | Map::RingBuf(d) => Some(d),
        _ => None,
    }
}

fn not_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(DatapathError::NotRoot);
    }
    Ok(())
}

impl Datapath {
    /// Loads and verifies the program (not attached anywhere). Nothing is
    /// pinned: the program and its maps live as long as this value.
    pub fn load(sizes: MapSizes) -> Result<Self> {
        Self::load_inner(sizes, None)
    }

    /// Loads the program and pins it and every map under `dir` (on bpffs,
    /// as `prog` and `maps/NAME`), so enforcement outlives this process and
    /// a later controller can [`adopt`](Self::adopt) it.
    pub fn load_pinned(sizes: MapSizes, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("maps")).map_err(|e| DatapathError::Pin {
            path: dir.to_owned(),
            message: e.to_string(),
        })?;
        Self::load_inner(sizes, Some(dir))
    }

    fn load_inner(sizes: MapSizes, pin_dir: Option<&Path>) -> Result<Self> {
        not_root()?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_DEV_MAC, sizes.devices)
            .map_max_entries(MAP_DEV_V4, sizes.devices)
            .map_max_entries(MAP_DEV_V6, sizes.devices)
            .map_max_entries(MAP_POLICY, sizes.policy)
            .map_max_entries(MAP_POLICY_ROWS, sizes.policy)
            .map_max_entries(MAP_CONNTRACK, sizes.conntrack)
            .map_max_entries(MAP_CONNTRACK4, sizes.conntrack)
            .map_max_entries(MAP_FRAGMENTS, sizes.fragments)
            .map_max_entries(MAP_COUNTERS, sizes.counters)
            .map_max_entries(MAP_COUNTER_SLOTS, sizes.counters)
            .map_max_entries(MAP_COUNTER_FREE, sizes.counters)
            .map_max_entries(MAP_FEED_V4, sizes.feeds)
            .map_max_entries(MAP_FEED_V6, sizes.feeds)
            .load(crate::ISPF_OBJECT)
            .map_err(DatapathError::Load)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(DatapathError::Missing {
                kind: "program",
                name: PROGRAM_NAME,
            })?
            .try_into()?;
        prog.load()?;
        let tc: &mut SchedClassifier = ebpf
            .program_mut(TC_PROGRAM_NAME)
            .ok_or(DatapathError::Missing {
                kind: "program",
                name: TC_PROGRAM_NAME,
            })?
            .try_into()?;
        tc.load()?;
        let mut taken = BTreeMap::new();
        let mut ids = BTreeMap::new();
        for &name in maps::ALL {
            let map = ebpf
                .take_map(name)
                .ok_or(DatapathError::Missing { kind: "map", name })?;
            let data = map_data(&map).ok_or(DatapathError::Missing { kind: "map", name })?;
            ids.insert(name, dup(data, name)?);
            if let Some(dir) = pin_dir {
                let path = dir.join("maps").join(name);
                map.pin(&path).map_err(|e| DatapathError::Pin {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            }
            taken.insert(name, map);
        }
        let mut from_load = |name: &'static str| {
            taken
                .remove(name)
                .ok_or(DatapathError::Missing { kind: "map", name })
        };
        let mut m = Maps::open(&mut from_load)?;
        // The datapath stripes counter slots by CPU (see MAP_COUNTER_NEXT).
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Map {
            name: MAP_CPUS,
            source: aya::maps::MapError::IoError(e),
        })?;
        m.cpus
            .set(CONFIG_CPUS, cpus as u32, 0)
            .map_err(map_err(MAP_CPUS))?;
        m.cpus
            .set(CONFIG_COUNTER_SLOTS, sizes.counters, 0)
            .map_err(map_err(MAP_CPUS))?;
        let mut stats = Stats::open(&ids, sizes, Default::default())?;
        stats.write_meta(&Meta {
            layout: LAYOUT_VERSION,
            ..Meta::default()
        })?;
        let mut dp = Self::assemble(
            ProgramHandle::Owned(Box::new(ebpf)),
            m,
            stats,
            ids,
            sizes,
            [writer::Gen::Empty, writer::Gen::Empty],
            0,
        )?;
        if let Some(dir) = pin_dir {
            let pin_err = |path: std::path::PathBuf| {
                move |e: aya::pin::PinError| DatapathError::Pin {
                    path,
                    message: e.to_string(),
                }
            };
            let path = dir.join("prog");
            dp.program_mut().pin(&path).map_err(pin_err(path.clone()))?;
            let path = dir.join("prog_tc");
            dp.tc_program_mut()
                .pin(&path)
                .map_err(pin_err(path.clone()))?;
        }
        Ok(dp)
    }

    fn assemble(
        program: ProgramHandle,
        maps: Maps,
        stats: Stats,
        ids: BTreeMap<&'static str, std::os::fd::OwnedFd>,
        sizes: MapSizes,
        gens: [writer::Gen; 2],
        epoch: u32,
    ) -> Result<Self> {
        let test = testrun::State::new(&maps)?;
        let dp = Self {
            program,
            sizes,
            maps,
            stats,
            ids,
            gens,
            epoch,
            last_flip: None,
            test,
            fail_after: None,
        };
        dp.publish_counts();
        Ok(dp)
    }

    pub fn program(&self) -> &Xdp {
        match &self.program {
            // Checked to exist and be XDP in `load`.
            ProgramHandle::Owned(ebpf) => ebpf
                .program(PROGRAM_NAME)
                .and_then(|p| <&Xdp>::try_from(p).ok())
                .expect("program checked at load"),
            ProgramHandle::Pinned(p) => &p.0,
        }
    }

    pub fn program_mut(&mut self) -> &mut Xdp {
        match &mut self.program {
            ProgramHandle::Owned(ebpf) => ebpf
                .program_mut(PROGRAM_NAME)
                .and_then(|p| <&mut Xdp>::try_from(p).ok())
                .expect("program checked at load"),
            ProgramHandle::Pinned(p) => &mut p.0,
        }
    }

    /// The same pipeline as a TC (clsact ingress) classifier.
    pub fn tc_program(&self) -> &SchedClassifier {
        match &self.program {
            ProgramHandle::Owned(ebpf) => ebpf
                .program(TC_PROGRAM_NAME)
                .and_then(|p| <&SchedClassifier>::try_from(p).ok())
                .expect("program checked at load"),
            ProgramHandle::Pinned(p) => &p.1,
        }
    }

    pub fn tc_program_mut(&mut self) -> &mut SchedClassifier {
        match &mut self.program {
            ProgramHandle::Owned(ebpf) => ebpf
                .program_mut(TC_PROGRAM_NAME)
                .and_then(|p| <&mut SchedClassifier>::try_from(p).ok())
                .expect("program checked at load"),
            ProgramHandle::Pinned(p) => &mut p.1,
        }
    }

    /// The policy epoch currently enforced (0 before the first apply).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn sizes(&self) -> MapSizes {
        self.sizes
    }

    /// This datapath's statistics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A second, independent handle on the statistics maps, for readers
    /// that run beside the writer (metrics, status).
    pub fn open_stats(&self) -> Result<Stats> {
        Stats::open(&self.ids, self.sizes, self.stats.written.clone())
    }

    /// Tests only: make the next writes fail after `n` entries (None: never),
    /// as a full map or a kernel error would.
    #[doc(hidden)]
    pub fn fail_writes_after(&mut self, n: Option<usize>) {
        self.fail_after = n;
    }

    /// Counters summed over CPUs and generations (see [`Stats::counters`]),
    /// of the segments the enforced policy has.
    pub fn counters(&self) -> BTreeMap<CounterKey, CounterVal> {
        let present = self.active_segments().unwrap_or_default();
        self.stats.counters_of(|id| present.contains(&id))
    }

    /// `(map, entries in use, capacity)` for the maps that fill up.
    pub fn occupancy(&self) -> Vec<(&'static str, usize, u32)> {
        self.stats.occupancy()
    }

    /// Tests only: [`Self::occupancy`] with every map counted.
    #[doc(hidden)]
    pub fn occupancy_in_maps(&self) -> Vec<(&'static str, usize, u32)> {
        self.stats.occupancy_in_maps()
    }

    pub fn conntrack_len(&self) -> usize {
        self.stats.conntrack_len()
    }

    pub fn conntrack_by_proto(&self) -> BTreeMap<u8, usize> {
        self.stats.conntrack_by_proto()
    }

    pub fn event_totals(&self) -> EventTotals {
        self.stats.event_totals()
    }

    /// Kernel memory of every map (what `bpftool map` shows as
    /// `bytes_memlock`), from each map's fdinfo.
    pub fn map_memory_bytes(&self) -> u64 {
        use std::os::fd::{AsFd, AsRawFd};
        self.ids
            .values()
            .filter_map(|fd| {
                let info = std::fs::read_to_string(format!(
                    "/proc/self/fdinfo/{}",
                    fd.as_fd().as_raw_fd()
                ))
                .ok()?;
                info.lines()
                    .find_map(|l| l.strip_prefix("memlock:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .sum()
    }

    /// The ring buffer of flow events; only one reader may have it.
    pub fn take_events(&mut self) -> Option<aya::maps::RingBuf<MapData>> {
        self.maps.events.take()
    }
}
