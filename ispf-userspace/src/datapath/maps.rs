//! The datapath's maps as typed handles, opened by name from a
//! [`Source`].

use aya::maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, Queue, RingBuf};
use ispf_common::*;

use super::{
    access::{map_err, Source},
    Result,
};

macro_rules! take {
    ($source:expr, $ty:ident, $name:expr) => {{
        let map = $source($name)?;
        $ty::try_from(map).map_err(map_err($name))?
    }};
}

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
