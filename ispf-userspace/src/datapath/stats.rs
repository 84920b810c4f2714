//! Reading what the datapath counted: packets and bytes by counter key,
//! map occupancy, tracked connections, event accounting. A [`Stats`] holds
//! its own descriptors on the maps, so the controller's metrics and status
//! read them while the writer applies a policy.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use aya::maps::{HashMap, Map, MapData, PerCpuValues};
use ispf_common::*;

use crate::bpfsys;

use super::{
    access::{fd, map_err},
    capacity::Counts,
    maps::StatMaps,
    DatapathError, MapSizes, Result,
};

/// What the policy writer holds in both generation slots, shared with
/// every [`Stats`] of its datapath. The device and policy maps are written
/// by the writer alone, so it knows their entries; counting them in the
/// maps copied every entry out (both slots of 100k devices: over 100 ms per
/// `ispf status` or metrics scrape, a second at 1M). `None` until the
/// writer has said, and for a [`Stats`] without a writer: the maps are
/// counted.
pub(super) type Written = Arc<Mutex<Option<Counts>>>;

/// Event accounting summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTotals {
    pub emitted: u64,
    pub rate_limited: u64,
    pub ringbuf_full: u64,
    /// Sightings and fingerprints emitted (among `emitted`).
    pub sightings: u64,
    /// Sightings over their own rate.
    pub sightings_limited: u64,
}

pub struct Stats {
    pub(super) maps: StatMaps,
    sizes: MapSizes,
    pub(super) written: Written,
}

impl Stats {
    /// Opens new descriptors on the maps whose descriptors are `fds`.
    pub(super) fn open(
        fds: &BTreeMap<&'static str, std::os::fd::OwnedFd>,
        sizes: MapSizes,
        written: Written,
    ) -> Result<Self> {
        let mut by_id = |name: &'static str| {
            let fd = fds
                .get(name)
                .ok_or(DatapathError::Missing { kind: "map", name })?
                .try_clone()
                .map_err(|e| DatapathError::Map {
                    name,
                    source: aya::maps::MapError::IoError(e),
                })?;
            let data = MapData::from_fd(fd).map_err(map_err(name))?;
            Map::from_map_data(data).map_err(map_err(name))
        };
        Ok(Self {
            maps: StatMaps::open(&mut by_id)?,
            sizes,
            written,
        })
    }

    /// [`Self::counters`] of the segments `present` keeps (and of no
    /// segment): a removed segment's counts stay in the maps until its
    /// generation is recycled, but belong to no segment that exists.
    pub fn counters_of(&self, present: impl Fn(u16) -> bool) -> BTreeMap<CounterKey, CounterVal> {
        let known = |id: u16| id == NO_SEGMENT || present(id);
        let mut all = self.counters();
        all.retain(|k, _| known(k.src) && known(k.dst));
        all
    }

    /// Packets and bytes by counter key (`gen` 0), summed over CPUs and
    /// over both generation slots, plus what recycled slots counted: the
    /// totals never go backwards while the keys' segments exist.
    pub fn counters(&self) -> BTreeMap<CounterKey, CounterVal> {
        let mut out: BTreeMap<CounterKey, CounterVal> = BTreeMap::new();
        let mut add = |k: CounterKey, v: CounterVal| {
            let e = out.entry(CounterKey { gen: 0, ..k }).or_default();
            e.packets += v.packets;
            e.bytes += v.bytes;
        };
        for (k, slot) in self.maps.counter_slots.iter().filter_map(|e| e.ok()) {
            let Ok(per_cpu) = self.maps.counters.get(&slot, 0) else {
                continue;
            };
            add(k, sum(&per_cpu));
        }
        for (k, v) in self.maps.retired.iter().filter_map(|e| e.ok()) {
            add(k, v);
        }
        out
    }

    /// Counter slots in use: taken by the datapath and not yet recycled.
    pub fn counter_slots_in_use(&self) -> u64 {
        let taken: u64 = self
            .maps
            .counter_next
            .get(&0, 0)
            .map(|v| v.iter().map(|a| a.taken as u64).sum())
            .unwrap_or(0);
        taken.saturating_sub(self.meta().recycled)
    }

    /// What the controller last recorded as enforced.
    pub fn meta(&self) -> Meta {
        self.maps.meta.get(&0, 0).unwrap_or_default()
    }

    pub(super) fn write_meta(&mut self, m: &Meta) -> Result<()> {
        self.maps.meta.set(0, m, 0).map_err(map_err(MAP_META))
    }

    /// `(map, entries in use, capacity)` for the maps that fill up. Both
    /// generation slots count. The policy writer's own maps are as it last
    /// finished writing them (see [`Written`]; a reload in progress shows
    /// when it ends); the datapath's are counted.
    pub fn occupancy(&self) -> Vec<(&'static str, usize, u32)> {
        self.occupancy_and_protocols().0
    }

    /// [`Self::occupancy`] and [`Self::conntrack_by_proto`] from one walk
    /// of connection tracking (a metrics scrape wants both, and conntrack
    /// may hold hundreds of thousands of flows).
    #[allow(clippy::type_complexity)]
    pub fn occupancy_and_protocols(
        &self,
    ) -> (Vec<(&'static str, usize, u32)>, BTreeMap<u8, usize>) {
        let written = *self.written.lock().unwrap_or_else(|e| e.into_inner());
        self.occupancy_with(written)
    }

    /// [`Self::occupancy`] with every map counted: what the writer's
    /// bookkeeping is checked against.
    #[doc(hidden)]
    pub fn occupancy_in_maps(&self) -> Vec<(&'static str, usize, u32)> {
        self.occupancy_with(None).0
    }

    #[allow(clippy::type_complexity)]
    fn occupancy_with(
        &self,
        written: Option<Counts>,
    ) -> (Vec<(&'static str, usize, u32)>, BTreeMap<u8, usize>) {
        let m = &self.maps;
        let (flows, by_proto) = self.conntrack_tally();
        let z = &self.sizes;
        let w = written.unwrap_or_else(|| Counts {
            dev_mac: count(&m.dev_mac),
            dev_v4: count(&m.dev_v4),
            dev_v6: count(&m.dev_v6),
            rows: count(&m.rows),
            policy: count(&m.policy),
            ..Counts::default()
        });
        let occupancy = vec![
            (MAP_DEV_MAC, w.dev_mac, z.devices),
            (MAP_DEV_V4, w.dev_v4, z.devices),
            (MAP_DEV_V6, w.dev_v6, z.devices),
            (MAP_POLICY_ROWS, w.rows, z.policy),
            (MAP_POLICY, w.policy, z.policy),
            (MAP_CONNTRACK, flows[0], z.conntrack),
            (MAP_CONNTRACK4, flows[1], z.conntrack),
            (MAP_FRAGMENTS, count(&m.fragments), z.fragments),
            (
                MAP_COUNTERS,
                self.counter_slots_in_use() as usize,
                z.counters,
            ),
        ];
        (occupancy, by_proto)
    }

    /// Flows in each conntrack map (IPv6-capable, IPv4) and by protocol.
    fn conntrack_tally(&self) -> ([usize; 2], BTreeMap<u8, usize>) {
        let (mut flows, mut by_proto) = ([0; 2], BTreeMap::new());
        let walked = [
            bpfsys::scan(fd(&self.maps.conntrack), |k: &CtKey, _: &CtVal| {
                flows[0] += 1;
                *by_proto.entry(k.proto).or_default() += 1;
            }),
            bpfsys::scan(fd(&self.maps.conntrack4), |k: &CtKey4, _: &CtVal| {
                flows[1] += 1;
                *by_proto.entry(k.proto).or_default() += 1;
            }),
        ];
        // A batch walk the kernel refuses is counted key by key instead.
        if walked[0].is_err() {
            flows[0] = count(&self.maps.conntrack);
        }
        if walked[1].is_err() {
            flows[1] = count(&self.maps.conntrack4);
        }
        (flows, by_proto)
    }

    /// Number of live conntrack entries.
    pub fn conntrack_len(&self) -> usize {
        self.conntrack_tally().0.iter().sum()
    }

    /// Conntrack entries by protocol number.
    pub fn conntrack_by_proto(&self) -> BTreeMap<u8, usize> {
        self.conntrack_tally().1
    }

    /// Flows each feed hit, summed over CPUs: `(passed, dropped)` by the
    /// feed's position in `feeds`.
    pub fn feed_hits(&self, feeds: usize) -> Vec<(u64, u64)> {
        (0..feeds.min(ispf_common::MAX_FEEDS as usize))
            .map(|i| {
                let n = |idx: u32| {
                    self.maps
                        .feed_hits
                        .get(&idx, 0)
                        .map(|v| v.iter().sum::<u64>())
                        .unwrap_or(0)
                };
                (n(2 * i as u32), n(2 * i as u32 + 1))
            })
            .collect()
    }

    pub fn event_totals(&self) -> EventTotals {
        let mut t = EventTotals::default();
        if let Ok(values) = self.maps.event_stats.get(&0, 0) {
            for v in values.iter() {
                t.emitted += v.emitted;
                t.rate_limited += v.rate_limited;
                t.ringbuf_full += v.ringbuf_full;
                t.sightings += v.sightings;
                t.sightings_limited += v.sightings_limited;
            }
        }
        t
    }
}

/// Entries of a hash map, counted in batches.
fn count<K: aya::Pod + Default, V: aya::Pod + Default>(m: &HashMap<MapData, K, V>) -> usize {
    let mut n = 0;
    match bpfsys::scan(fd(m), |_: &K, _: &V| n += 1) {
        Ok(()) => n,
        Err(_) => m.keys().filter(|k| k.is_ok()).count(),
    }
}

pub(super) fn sum(per_cpu: &PerCpuValues<CounterVal>) -> CounterVal {
    let mut s = CounterVal::default();
    for v in per_cpu.iter() {
        s.packets += v.packets;
        s.bytes += v.bytes;
    }
    s
}
