//! The datapath's maps as typed handles, and the constructors of their
//! generation-slotted keys (so no caller builds a key with its padding by
//! hand).

use std::os::fd::{AsFd, BorrowedFd};

use aya::maps::{
    lpm_trie::Key, Array, HashMap, IterableMap, LpmTrie, MapData, PerCpuArray, Queue, RingBuf,
};
use ispf_common::*;

use super::{DatapathError, Result};

pub(super) fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

macro_rules! take {
    ($source:expr, $ty:ident, $name:expr) => {{
        let map = $source($name)?;
        $ty::try_from(map).map_err(map_err($name))?
    }};
}

/// Where a map comes from: a freshly loaded object, pins, or a second
/// handle on maps already open (by id).
pub(super) type Source<'a> = dyn FnMut(&'static str) -> Result<aya::maps::Map> + 'a;

/// Every map the controller writes: the policy generations, connection
/// and fragment state, counters' bookkeeping.
pub(super) struct Maps {
    pub active: Array<MapData, u32>,
    pub settings: Array<MapData, Settings>,
    pub segments: Array<MapData, SegmentInfo>,
    pub dev_mac: HashMap<MapData, MacKey, DeviceVal>,
    pub dev_v4: HashMap<MapData, V4Key, DeviceVal>,
    pub dev_v6: HashMap<MapData, V6Key, DeviceVal>,
    pub subnet_v4: LpmTrie<MapData, [u8; 5], u32>,
    pub subnet_v6: LpmTrie<MapData, [u8; 17], u32>,
    pub vlan: Array<MapData, u32>,
    pub routers: HashMap<MapData, MacKey, u32>,
    pub port_class: Array<MapData, u32>,
    pub policy: HashMap<MapData, PolicyKey, PolicyVal>,
    pub rows: HashMap<MapData, PairKey, PolicyRow>,
    pub conntrack: HashMap<MapData, CtKey, CtVal>,
    pub conntrack4: HashMap<MapData, CtKey4, CtVal>,
    pub ct_generation: Array<MapData, u32>,
    pub fragments: HashMap<MapData, FragKey, FragVal>,
    pub counter_free: Queue<MapData, u32>,
    pub cpus: Array<MapData, u32>,
    pub last: PerCpuArray<MapData, LastVerdict>,
    pub feeds: super::feedmaps::FeedMaps,
    /// Taken by the one consumer of events (the controller).
    pub events: Option<RingBuf<MapData>>,
}

impl Maps {
    pub fn open(source: &mut Source) -> Result<Self> {
        Ok(Self {
            active: take!(source, Array, MAP_ACTIVE),
            settings: take!(source, Array, MAP_SETTINGS),
            segments: take!(source, Array, MAP_SEGMENTS),
            dev_mac: take!(source, HashMap, MAP_DEV_MAC),
            dev_v4: take!(source, HashMap, MAP_DEV_V4),
            dev_v6: take!(source, HashMap, MAP_DEV_V6),
            subnet_v4: take!(source, LpmTrie, MAP_SUBNET_V4),
            subnet_v6: take!(source, LpmTrie, MAP_SUBNET_V6),
            vlan: take!(source, Array, MAP_VLAN),
            routers: take!(source, HashMap, MAP_ROUTERS),
            port_class: take!(source, Array, MAP_PORT_CLASS),
            policy: take!(source, HashMap, MAP_POLICY),
            rows: take!(source, HashMap, MAP_POLICY_ROWS),
            conntrack: take!(source, HashMap, MAP_CONNTRACK),
            conntrack4: take!(source, HashMap, MAP_CONNTRACK4),
            ct_generation: take!(source, Array, MAP_CT_GENERATION),
            fragments: take!(source, HashMap, MAP_FRAGMENTS),
            counter_free: take!(source, Queue, MAP_COUNTER_FREE),
            cpus: take!(source, Array, MAP_CPUS),
            last: take!(source, PerCpuArray, MAP_LAST),
            feeds: super::feedmaps::FeedMaps::open(source)?,
            events: Some(take!(source, RingBuf, MAP_EVENTS)),
        })
    }
}

/// The maps statistics read: counters, occupancy, event accounting. Opened
/// separately (their own descriptors) so that the controller's metrics and
/// status read them while a reload writes the policy maps.
pub(super) struct StatMaps {
    pub counters: PerCpuArray<MapData, CounterVal>,
    pub counter_slots: HashMap<MapData, CounterKey, u32>,
    pub counter_next: PerCpuArray<MapData, CounterAlloc>,
    pub retired: HashMap<MapData, CounterKey, CounterVal>,
    pub meta: Array<MapData, Meta>,
    pub event_stats: PerCpuArray<MapData, EventStats>,
    pub dev_mac: HashMap<MapData, MacKey, DeviceVal>,
    pub dev_v4: HashMap<MapData, V4Key, DeviceVal>,
    pub dev_v6: HashMap<MapData, V6Key, DeviceVal>,
    pub policy: HashMap<MapData, PolicyKey, PolicyVal>,
    pub rows: HashMap<MapData, PairKey, PolicyRow>,
    pub conntrack: HashMap<MapData, CtKey, CtVal>,
    pub conntrack4: HashMap<MapData, CtKey4, CtVal>,
    pub fragments: HashMap<MapData, FragKey, FragVal>,
    pub feed_hits: PerCpuArray<MapData, u64>,
}

impl StatMaps {
    pub fn open(source: &mut Source) -> Result<Self> {
        Ok(Self {
            counters: take!(source, PerCpuArray, MAP_COUNTERS),
            counter_slots: take!(source, HashMap, MAP_COUNTER_SLOTS),
            counter_next: take!(source, PerCpuArray, MAP_COUNTER_NEXT),
            retired: take!(source, HashMap, MAP_COUNTERS_RETIRED),
            meta: take!(source, Array, MAP_META),
            event_stats: take!(source, PerCpuArray, MAP_EVENT_STATS),
            dev_mac: take!(source, HashMap, MAP_DEV_MAC),
            dev_v4: take!(source, HashMap, MAP_DEV_V4),
            dev_v6: take!(source, HashMap, MAP_DEV_V6),
            policy: take!(source, HashMap, MAP_POLICY),
            rows: take!(source, HashMap, MAP_POLICY_ROWS),
            conntrack: take!(source, HashMap, MAP_CONNTRACK),
            conntrack4: take!(source, HashMap, MAP_CONNTRACK4),
            fragments: take!(source, HashMap, MAP_FRAGMENTS),
            feed_hits: take!(source, PerCpuArray, MAP_FEED_HITS),
        })
    }
}

/// The names of every map, for pinning and for opening a second handle.
pub(super) const ALL: &[&str] = &[
    MAP_ACTIVE,
    MAP_SETTINGS,
    MAP_SEGMENTS,
    MAP_DEV_MAC,
    MAP_DEV_V4,
    MAP_DEV_V6,
    MAP_SUBNET_V4,
    MAP_SUBNET_V6,
    MAP_VLAN,
    MAP_ROUTERS,
    MAP_PORT_CLASS,
    MAP_POLICY,
    MAP_POLICY_ROWS,
    MAP_CONNTRACK,
    MAP_CONNTRACK4,
    MAP_CT_GENERATION,
    MAP_FRAGMENTS,
    MAP_COUNTERS,
    MAP_COUNTER_SLOTS,
    MAP_COUNTER_NEXT,
    MAP_COUNTER_FREE,
    MAP_COUNTERS_RETIRED,
    MAP_CPUS,
    MAP_LAST,
    MAP_META,
    MAP_EVENTS,
    MAP_EVENT_STATS,
    MAP_DENIED_SEEN,
    MAP_FLOW_CACHE,
    MAP_SOURCE_MEMO,
    MAP_SIGHTINGS,
    MAP_FEED_V4,
    MAP_FEED_V6,
    MAP_FEED_NET4,
    MAP_FEED_NET6,
    MAP_FEED_HITS,
    MAP_EVENT_SOURCES,
];

pub(super) fn mac_key(slot: u8, mac: [u8; 6]) -> MacKey {
    MacKey { slot, _pad: 0, mac }
}

pub(super) fn v4_key(slot: u8, addr: [u8; 4]) -> V4Key {
    V4Key {
        slot,
        _pad: [0; 3],
        addr,
    }
}

pub(super) fn v6_key(slot: u8, addr: [u8; 16]) -> V6Key {
    V6Key {
        slot,
        _pad: [0; 3],
        addr,
    }
}

pub(super) fn v4_lpm(slot: u8, a: &[u8; 4], plen: u8) -> Key<[u8; 5]> {
    Key::new(8 + plen as u32, [slot, a[0], a[1], a[2], a[3]])
}

pub(super) fn v6_lpm(slot: u8, a: &[u8; 16], plen: u8) -> Key<[u8; 17]> {
    let mut d = [0u8; 17];
    d[0] = slot;
    d[1..].copy_from_slice(a);
    Key::new(8 + plen as u32, d)
}

pub(super) fn port_index(slot: u8, table: u32, port: u16) -> u32 {
    (slot as u32 * PORT_TABLES + table) * 65536 + port as u32
}

pub(super) fn segment_index(slot: u8, id: u16) -> u32 {
    slot as u32 * MAX_SEGMENTS + id as u32
}

pub(super) fn vlan_index(slot: u8, vlan: u16) -> u32 {
    slot as u32 * VLAN_SLOTS + vlan as u32
}

/// The descriptor of a map, for the batch operations of [`crate::bpfsys`].
pub(super) fn fd<K: aya::Pod, V, M: IterableMap<K, V>>(m: &M) -> BorrowedFd<'_> {
    m.map().fd().as_fd()
}

/// Removes the entries of `map` that `doomed` picks; returns how many.
/// Read and deleted in batches: a walk of one syscall per key took a
/// quarter of a second per hundred thousand entries.
pub(super) fn remove_where<K: aya::Pod + Default, V: aya::Pod + Default>(
    map: &mut HashMap<MapData, K, V>,
    doomed: impl Fn(&K, &V) -> bool,
) -> usize {
    let mut keys = Vec::new();
    let walked = crate::bpfsys::scan(fd(map), |k: &K, v: &V| {
        if doomed(k, v) {
            keys.push(*k);
        }
    });
    if walked.is_err() {
        // Batch operations unavailable: one key at a time.
        keys = map
            .iter()
            .filter_map(|e| e.ok())
            .filter(|(k, v)| doomed(k, v))
            .map(|(k, _)| k)
            .collect();
    }
    match crate::bpfsys::delete_all(fd(map), &keys) {
        Ok(n) => n,
        Err(_) => keys.iter().filter(|k| map.remove(k).is_ok()).count(),
    }
}

/// Keys of an LPM trie whose first byte (the generation slot) is `slot`.
pub(super) fn lpm_keys_of<const N: usize, V: aya::Pod>(
    trie: &LpmTrie<MapData, [u8; N], V>,
    slot: u8,
) -> Vec<Key<[u8; N]>> {
    trie.keys()
        .filter_map(|k| k.ok())
        .filter(|k| k.data()[0] == slot)
        .collect()
}

/// Keys of `map` that `pick` selects, read in batches.
pub(super) fn keys_where<K: aya::Pod + Default, V: aya::Pod + Default>(
    map: &HashMap<MapData, K, V>,
    pick: impl Fn(&K) -> bool,
) -> Vec<K> {
    let mut keys = Vec::new();
    if crate::bpfsys::scan(fd(map), |k: &K, _: &V| {
        if pick(k) {
            keys.push(*k);
        }
    })
    .is_err()
    {
        keys = map
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| pick(k))
            .collect();
    }
    keys
}
