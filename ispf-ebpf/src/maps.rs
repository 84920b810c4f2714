//! Every map of the datapath. Static names equal the `ispf_common::MAP_*`
//! constants the controller opens them by.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, Queue, RingBuf},
};
use ispf_common::*;
use ispf_ebpf::flow::CtKeys;

#[map]
pub static ISPF_ACTIVE: Array<u32> = Array::with_max_entries(1, 0);
#[map]
pub static ISPF_SETTINGS: Array<Settings> = Array::with_max_entries(GEN_SLOTS, 0);
#[map]
pub static ISPF_SEGMENTS: Array<SegmentInfo> = Array::with_max_entries(GEN_SLOTS * MAX_SEGMENTS, 0);
#[map]
pub static ISPF_DEV_MAC: HashMap<MacKey, DeviceVal> =
    HashMap::with_max_entries(DEFAULT_DEVICE_ENTRIES, 0);
#[map]
pub static ISPF_DEV_V4: HashMap<V4Key, DeviceVal> =
    HashMap::with_max_entries(DEFAULT_DEVICE_ENTRIES, 0);
#[map]
pub static ISPF_DEV_V6: HashMap<V6Key, DeviceVal> =
    HashMap::with_max_entries(DEFAULT_DEVICE_ENTRIES, 0);
#[map]
pub static ISPF_SUBNET_V4: LpmTrie<[u8; 5], u32> =
    LpmTrie::with_max_entries(DEFAULT_SUBNET_ENTRIES, 0);
#[map]
pub static ISPF_SUBNET_V6: LpmTrie<[u8; 17], u32> =
    LpmTrie::with_max_entries(DEFAULT_SUBNET_ENTRIES, 0);
#[map]
pub static ISPF_VLAN: Array<u32> = Array::with_max_entries(GEN_SLOTS * VLAN_SLOTS, 0);
#[map]
pub static ISPF_ROUTERS: HashMap<MacKey, u32> =
    HashMap::with_max_entries(DEFAULT_ROUTER_ENTRIES, 0);
#[map]
pub static ISPF_PORT_CLASS: Array<u32> =
    Array::with_max_entries(GEN_SLOTS * PORT_TABLES * 65536, 0);
#[map]
pub static ISPF_POLICY: HashMap<PolicyKey, PolicyVal> =
    HashMap::with_max_entries(DEFAULT_POLICY_ENTRIES, 0);
#[map]
pub static ISPF_POLICY_ROWS: HashMap<PairKey, PolicyRow> =
    HashMap::with_max_entries(DEFAULT_POLICY_ENTRIES, 0);
#[map]
pub static ISPF_CONNTRACK: LruHashMap<CtKey, CtVal> =
    LruHashMap::with_max_entries(DEFAULT_CONNTRACK_ENTRIES, 0);
#[map]
pub static ISPF_CONNTRACK4: LruHashMap<CtKey4, CtVal> =
    LruHashMap::with_max_entries(DEFAULT_CONNTRACK_ENTRIES, 0);
// A plain hash, not LRU: a fragment flood must not silently evict the
// verdicts of legitimate datagrams; a full map is a fault handled per segment.
#[map]
pub static ISPF_FRAGMENTS: HashMap<FragKey, FragVal> =
    HashMap::with_max_entries(DEFAULT_FRAGMENT_ENTRIES, 0);
#[map]
pub static ISPF_COUNTERS: PerCpuArray<CounterVal> =
    PerCpuArray::with_max_entries(DEFAULT_COUNTER_ENTRIES, 0);
#[map]
pub static ISPF_COUNTER_SLOTS: HashMap<CounterKey, u32> =
    HashMap::with_max_entries(DEFAULT_COUNTER_ENTRIES, 0);
#[map]
pub static ISPF_COUNTER_NEXT: PerCpuArray<CounterAlloc> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static ISPF_COUNTER_FREE: Queue<u32> = Queue::with_max_entries(DEFAULT_COUNTER_ENTRIES, 0);
/// Only the controller reads and writes it; declared here so that it is
/// created and pinned with the others.
#[map]
pub static ISPF_COUNTERS_RETIRED: HashMap<CounterKey, CounterVal> =
    HashMap::with_max_entries(DEFAULT_COUNTER_ENTRIES, 0);
#[map]
pub static ISPF_META: Array<Meta> = Array::with_max_entries(1, 0);
#[map]
pub static ISPF_CPUS: Array<u32> = Array::with_max_entries(2, 0);
#[map]
pub static ISPF_LAST: PerCpuArray<LastVerdict> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch space for the parsed packet and the large map keys, which
/// do not fit the 512-byte BPF stack together. XDP does not nest on a CPU, so
/// one slot per CPU is enough.
#[map]
pub static ISPF_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
pub struct Scratch {
    pub pkt: ispf_ebpf::parse::Packet,
    pub ct: CtKeys,
    pub frag: FragKey,
    pub denied: CtKey,
    pub probe: ispf_ebpf::flow::Probe,
    /// A feed listed an end of this packet's passing flow: the feed's
    /// position + 1 (0: none). Kept here, not in a register, so that the
    /// verifier does not follow every later path once per value.
    pub threat: u8,
    /// The judgement's verdict and reason and the segments, passed
    /// through memory on their way from judging to counting and
    /// reporting (see `pipeline::process`). They fill what was the
    /// struct's trailing padding: the map's value size is unchanged.
    pub verdict: u8,
    pub reason: u8,
    pub _spare: u8,
    pub src: u16,
    pub dst: u16,
}

// The value size of layout 4's pinned map: the judgement's fields must
// stay within what was padding.
const _: () = assert!(core::mem::size_of::<Scratch>() == 272);

#[map]
pub static ISPF_SOURCE_MEMO: PerCpuArray<SourceMemo> =
    PerCpuArray::with_max_entries(SOURCE_MEMO_ENTRIES, 0);
#[map]
pub static ISPF_SIGHTINGS: PerCpuArray<SightingMemo> =
    PerCpuArray::with_max_entries(SIGHTING_MEMO_ENTRIES, 0);
#[map]
pub static ISPF_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);
#[map]
pub static ISPF_EVENT_STATS: PerCpuArray<EventStats> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static ISPF_DENIED_SEEN: LruHashMap<CtKey, u64> =
    LruHashMap::with_max_entries(DENIED_SEEN_ENTRIES, 0);
#[map]
pub static ISPF_FLOW_CACHE: PerCpuArray<FlowCacheEntry> =
    PerCpuArray::with_max_entries(FLOW_CACHE_ENTRIES, 0);
/// One more than the groups: the last slot is the flush counter.
#[map]
pub static ISPF_CT_GENERATION: Array<u32> = Array::with_max_entries(CT_GENERATIONS + 1, 0);

/// Threat-feed addresses and networks (see `ispf_common::feeds`). Hash
/// entries are allocated as used: the capacity costs nothing until a feed
/// fills it.
#[map]
pub static ISPF_FEED_V4: HashMap<V4Key, FeedVal> =
    HashMap::with_max_entries(DEFAULT_FEED_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
pub static ISPF_FEED_V6: HashMap<V6Key, FeedVal> =
    HashMap::with_max_entries(DEFAULT_FEED_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
pub static ISPF_FEED_NET4: LpmTrie<[u8; 5], FeedVal> =
    LpmTrie::with_max_entries(DEFAULT_FEED_NET_ENTRIES, 0);
#[map]
pub static ISPF_FEED_NET6: LpmTrie<[u8; 17], FeedVal> =
    LpmTrie::with_max_entries(DEFAULT_FEED_NET_ENTRIES, 0);
#[map]
pub static ISPF_FEED_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_FEEDS * 2, 0);
#[map]
pub static ISPF_EVENT_SOURCES: LruHashMap<u64, SourceBudget> =
    LruHashMap::with_max_entries(EVENT_SOURCES_ENTRIES, 0);

/// Hash maps whose entries are allocated on insert.
const BPF_F_NO_PREALLOC: u32 = 1;
