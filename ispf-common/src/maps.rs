//! Map names, sizes, keys and values.
//!
//! Policy-derived maps are double-buffered: every key (or array index)
//! carries a generation slot `0` or `1`. The controller writes a complete
//! policy into the inactive slot, then flips [`MAP_ACTIVE`]; the datapath reads
//! the slot once per packet, so a packet sees one whole policy or the other.

/// Single-entry array holding the active generation slot (`u32`, 0 or 1).
pub const MAP_ACTIVE: &str = "ISPF_ACTIVE";
/// Array of [`Settings`](crate::Settings), one per generation slot.
pub const MAP_SETTINGS: &str = "ISPF_SETTINGS";
/// Array of [`SegmentInfo`](crate::SegmentInfo), index `slot * MAX_SEGMENTS + segment`.
pub const MAP_SEGMENTS: &str = "ISPF_SEGMENTS";
/// Hash [`MacKey`](crate::MacKey) -> [`DeviceVal`](crate::DeviceVal).
pub const MAP_DEV_MAC: &str = "ISPF_DEV_MAC";
/// Hash [`V4Key`](crate::V4Key) -> [`DeviceVal`](crate::DeviceVal).
pub const MAP_DEV_V4: &str = "ISPF_DEV_V4";
/// Hash [`V6Key`](crate::V6Key) -> [`DeviceVal`](crate::DeviceVal).
pub const MAP_DEV_V6: &str = "ISPF_DEV_V6";
/// LPM trie over `[slot, addr..4]` -> `u32` segment.
pub const MAP_SUBNET_V4: &str = "ISPF_SUBNET_V4";
/// LPM trie over `[slot, addr..16]` -> `u32` segment.
pub const MAP_SUBNET_V6: &str = "ISPF_SUBNET_V6";
/// Array `u32` segment (0 = none), index `slot * 4096 + vlan id`.
pub const MAP_VLAN: &str = "ISPF_VLAN";
/// Hash [`MacKey`](crate::MacKey) -> `u32` (1): the care unit's routers.
pub const MAP_ROUTERS: &str = "ISPF_ROUTERS";
/// Array `u32` port class, index `slot * 3 * 65536 + l4 * 65536 + port`.
pub const MAP_PORT_CLASS: &str = "ISPF_PORT_CLASS";
/// Hash [`PolicyKey`](crate::PolicyKey) -> [`PolicyVal`](crate::PolicyVal): the entries of segment pairs
/// whose row ([`MAP_POLICY_ROWS`]) overflows.
pub const MAP_POLICY: &str = "ISPF_POLICY";
/// Hash [`PairKey`](crate::PairKey) -> [`PolicyRow`](crate::PolicyRow): the compiled rule matrix, one row
/// per segment pair that any rule covers, so one lookup answers a pair.
pub const MAP_POLICY_ROWS: &str = "ISPF_POLICY_ROWS";
/// LRU hash [`CtKey`](crate::CtKey) -> [`CtVal`](crate::CtVal): connection tracking of IPv6 flows.
pub const MAP_CONNTRACK: &str = "ISPF_CONNTRACK";
/// LRU hash [`CtKey4`](crate::CtKey4) -> [`CtVal`](crate::CtVal): connection tracking of IPv4 flows.
pub const MAP_CONNTRACK4: &str = "ISPF_CONNTRACK4";
/// Hash [`FragKey`](crate::FragKey) -> [`FragVal`](crate::FragVal): verdicts of first fragments.
pub const MAP_FRAGMENTS: &str = "ISPF_FRAGMENTS";
/// Per-CPU array of [`CounterVal`](crate::CounterVal), indexed by the slot
/// [`MAP_COUNTER_SLOTS`] gives a [`CounterKey`](crate::CounterKey). An array, because
/// established flows remember their slot and count without a hash lookup.
pub const MAP_COUNTERS: &str = "ISPF_COUNTERS";
/// Hash [`CounterKey`](crate::CounterKey) -> `u32` slot in [`MAP_COUNTERS`], assigned by the
/// datapath the first time it counts a key.
pub const MAP_COUNTER_SLOTS: &str = "ISPF_COUNTER_SLOTS";
/// Per-CPU single-entry array of [`CounterAlloc`](crate::CounterAlloc): how many never-used
/// counter slots this CPU has handed out (CPU `c` hands out `c`,
/// `c + cpus`, `c + 2 * cpus`, ...) and how many slots it has taken in all.
pub const MAP_COUNTER_NEXT: &str = "ISPF_COUNTER_NEXT";
/// Queue of `u32` counter slots the controller has recycled (see
/// [`CounterKey::gen`](crate::CounterKey::gen)); the datapath takes from it before handing out a
/// never-used slot.
pub const MAP_COUNTER_FREE: &str = "ISPF_COUNTER_FREE";
/// Hash [`CounterKey`](crate::CounterKey) (with `gen` 0) -> [`CounterVal`](crate::CounterVal): what recycled
/// slots had counted, kept by the controller so that totals never go
/// backwards. Written only by the controller; pinned, so a restarted
/// controller keeps it.
pub const MAP_COUNTERS_RETIRED: &str = "ISPF_COUNTERS_RETIRED";
/// Single-entry array of [`Meta`](crate::Meta): the layout version of the pinned maps
/// and what the controller last made the datapath enforce.
pub const MAP_META: &str = "ISPF_META";
/// Array `u32` of load-time facts the controller writes when it loads the
/// program: [`CONFIG_CPUS`] and [`CONFIG_COUNTER_SLOTS`].
pub const MAP_CPUS: &str = "ISPF_CPUS";
/// [`MAP_CPUS`] index: the number of possible CPUs.
pub const CONFIG_CPUS: u32 = 0;
/// [`MAP_CPUS`] index: how many counter slots the counter maps hold.
pub const CONFIG_COUNTER_SLOTS: u32 = 1;
/// Per-CPU single-entry array of [`LastVerdict`](crate::LastVerdict): the verdict of the last
/// packet judged on this CPU, read by `ispf replay`.
pub const MAP_LAST: &str = "ISPF_LAST";

/// Ring buffer of [`Event`](crate::Event)s.
pub const MAP_EVENTS: &str = "ISPF_EVENTS";
/// Per-CPU single-entry array of [`EventStats`](crate::EventStats).
pub const MAP_EVENT_STATS: &str = "ISPF_EVENT_STATS";
/// LRU hash [`CtKey`](crate::CtKey) (directional: `a` = source) -> `u64` time the denied
/// flow was last reported, so a denied 5-tuple is reported once a minute.
pub const MAP_DENIED_SEEN: &str = "ISPF_DENIED_SEEN";
/// Per-CPU array of [`FlowCacheEntry`](crate::FlowCacheEntry), [`FLOW_CACHE_ENTRIES`] long: each
/// CPU's exact-match cache of recent flow directions and their outcome,
/// indexed by a hash of the direction. Datapath-internal.
pub const MAP_FLOW_CACHE: &str = "ISPF_FLOW_CACHE";
/// Array `u32`, [`CT_GENERATIONS`] + 1 long: a generation per group of
/// flows (hash of the flow, either direction), bumped whenever conntrack
/// opens, closes or ends a flow of the group; the last slot is a flush
/// counter the controller bumps to invalidate every cached outcome. A
/// cached outcome holds only while both are unchanged.
pub const MAP_CT_GENERATION: &str = "ISPF_CT_GENERATION";

/// Per-CPU array of [`SourceMemo`](crate::SourceMemo), [`SOURCE_MEMO_ENTRIES`] long: the
/// source identity of recent senders, so that a sender opening many flows
/// (a scan, a busy client) is identified once per policy epoch.
pub const MAP_SOURCE_MEMO: &str = "ISPF_SOURCE_MEMO";
/// A power of two.
pub const SOURCE_MEMO_ENTRIES: u32 = 1024;

pub const EVENTS_BYTES: u32 = 1 << 20;
pub const DENIED_SEEN_ENTRIES: u32 = 65_536;
/// A denied flow is reported again after this long.
pub const DENIED_REPORT_INTERVAL_NS: u64 = 60_000_000_000;
/// Per CPU: events per second, and the burst allowed above it. A flood of
/// denied packets cannot make the datapath spend more than this on events.
pub const EVENT_RATE_PER_SEC: u64 = 1000;
pub const EVENT_BURST: u64 = 200;
/// Per CPU: sightings and fingerprints per second, and their burst. A
/// budget of their own, so a MAC flood cannot starve flow events (nor a
/// scan the inventory); a whole ward powering up fits in the burst.
pub const SIGHTING_RATE_PER_SEC: u64 = 20_000;
pub const SIGHTING_BURST: u64 = 4_000;

pub const EVENT_DENIED: u8 = 1;
pub const EVENT_NEW_FLOW: u8 = 2;
/// A source seen: MAC, VLAN, port and source address ([`Event`](crate::Event)).
pub const EVENT_SIGHTING: u8 = 3;
/// A DHCP client request's options ([`FingerprintEvent`](crate::FingerprintEvent)).
pub const EVENT_DHCP: u8 = 4;
/// An LLDP frame's TLVs ([`FingerprintEvent`](crate::FingerprintEvent)).
pub const EVENT_LLDP: u8 = 5;
/// A flow passed although a feed lists one of its ends (an `alert` feed,
/// or a life-critical segment a `deny` feed never isolates): [`Event`](crate::Event)
/// with the feed's position in `rule`. (Flows a feed drops are `denied`
/// events with reason `threat_feed`.)
pub const EVENT_THREAT: u8 = 6;
/// Offset of the kind byte, the same in every record of the ring buffer.
pub const EVENT_KIND_OFFSET: usize = 22;

/// Per-CPU array of [`SightingMemo`](crate::SightingMemo), [`SIGHTING_MEMO_ENTRIES`] long: what
/// this CPU last reported of each recent source, so a source is reported
/// when it changes and otherwise at most once a minute.
pub const MAP_SIGHTINGS: &str = "ISPF_SIGHTINGS";
/// A power of two.
pub const SIGHTING_MEMO_ENTRIES: u32 = 4096;
/// An unchanged source is reported again after this long.
pub const SIGHTING_REFRESH_NS: u64 = 60_000_000_000;
/// Payload bytes a [`FingerprintEvent`](crate::FingerprintEvent) carries.
pub const FINGERPRINT_BYTES: usize = 256;

/// Version of the pinned maps' layout (names, key and value types, sizes
/// that cannot change in place). A controller adopts pins of its own
/// version and migrates older ones; see the README on upgrades.
pub const LAYOUT_VERSION: u32 = 4;

/// Name of the XDP program in the object.
pub const PROGRAM_NAME: &str = "ispf";
/// Name of the TC (clsact ingress) program in the object: the same
/// pipeline.
pub const TC_PROGRAM_NAME: &str = "ispf_tc";

/// Segment ids are `1..MAX_SEGMENTS`; 0 means "no segment".
pub const MAX_SEGMENTS: u32 = 4096;
pub const NO_SEGMENT: u16 = 0;
pub const VLAN_SLOTS: u32 = 4096;
pub const GEN_SLOTS: u32 = 2;
/// TCP, UDP, SCTP each get a 65536-entry port-class table.
pub const PORT_TABLES: u32 = 3;
pub const PORT_TABLE_TCP: u32 = 0;
pub const PORT_TABLE_UDP: u32 = 1;
pub const PORT_TABLE_SCTP: u32 = 2;

pub const DEFAULT_DEVICE_ENTRIES: u32 = 131_072;
pub const DEFAULT_SUBNET_ENTRIES: u32 = 16_384;
pub const DEFAULT_ROUTER_ENTRIES: u32 = 1024;
pub const DEFAULT_POLICY_ENTRIES: u32 = 65_536;
pub const DEFAULT_CONNTRACK_ENTRIES: u32 = 262_144;
pub const DEFAULT_FRAGMENT_ENTRIES: u32 = 8192;
pub const DEFAULT_COUNTER_ENTRIES: u32 = 65_536;
/// Per CPU; a power of two (the cache is indexed by hash bits).
pub const FLOW_CACHE_ENTRIES: u32 = 16_384;
/// A power of two.
pub const CT_GENERATIONS: u32 = 65_536;
/// How long, in jiffies, a cached established flow is trusted before its
/// conntrack entry is read (and refreshed) again: the most a flow's idle
/// timeout can start early, and the longest a flow evicted from a full
/// conntrack map keeps passing. 16 jiffies are 16 to 160 ms (HZ 1000 to
/// 100), under every timeout but 0 s, which is never cached. Jiffies,
/// because reading them is much cheaper than any clock.
pub const FLOW_CACHE_REFRESH_JIFFIES: u64 = 16;
/// How often, in jiffies, a CPU asks the denied-flow map whether a cached
/// denial is due to be reported again: 60 s at HZ 100, 6 s at HZ 1000. The
/// map decides with real time ([`DENIED_REPORT_INTERVAL_NS`]).
pub const DENIED_RECHECK_JIFFIES: u64 = 6000;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;

/// Address family values used in keys.
pub const FAMILY_ANY: u8 = 0;
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// `Settings` enumerations.
pub const ACTION_DENY: u8 = 0;
pub const ACTION_ALLOW: u8 = 1;
pub const FRAGMENTS_TRACK: u8 = 0;
pub const FRAGMENTS_DENY: u8 = 1;

/// `SegmentInfo::flags`.
pub const SEG_MONITOR: u8 = 1;
pub const SEG_INTRA_DENY: u8 = 2;
pub const SEG_LIFE_CRITICAL: u8 = 4;
pub const SEG_PRESENT: u8 = 8;

/// `DeviceVal::flags`.
pub const DEV_HAS_IP: u8 = 1;
pub const DEV_HAS_MAC: u8 = 2;
/// The device has exactly one IPv4 address, [`DeviceVal::v4`](crate::DeviceVal::v4).
pub const DEV_V4_ONE: u8 = 4;
/// The device has several IPv4 addresses; [`DeviceVal::v4`](crate::DeviceVal::v4) is the first.
pub const DEV_V4_MANY: u8 = 8;
/// The device has exactly one IPv6 address, [`DeviceVal::v6`](crate::DeviceVal::v6).
pub const DEV_V6_ONE: u8 = 16;
/// The device has several IPv6 addresses; [`DeviceVal::v6`](crate::DeviceVal::v6) is the first.
pub const DEV_V6_MANY: u8 = 32;

/// `PolicyVal::rule` when the entry records that no rule matched.
pub const RULE_NONE: u32 = u32::MAX;
