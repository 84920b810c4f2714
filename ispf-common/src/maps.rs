//! Map names, sizes, keys and values.
//!
//! Policy-derived maps are double-buffered: every key (or array index)
//! carries a generation slot `0` or `1`. The controller writes a complete
//! policy into the inactive slot, then flips [`MAP_ACTIVE`]; the datapath reads
//! the slot once per packet, so a packet sees one whole policy or the other.

/// Single-entry array holding the active generation slot (`u32`, 0 or 1).
pub const MAP_ACTIVE: &str = "ISPF_ACTIVE";
/// Array of [`Settings`], one per generation slot.
pub const MAP_SETTINGS: &str = "ISPF_SETTINGS";
/// Array of [`SegmentInfo`], index `slot * MAX_SEGMENTS + segment`.
pub const MAP_SEGMENTS: &str = "ISPF_SEGMENTS";
/// Hash [`MacKey`] -> [`DeviceVal`].
pub const MAP_DEV_MAC: &str = "ISPF_DEV_MAC";
/// Hash [`V4Key`] -> [`DeviceVal`].
pub const MAP_DEV_V4: &str = "ISPF_DEV_V4";
/// Hash [`V6Key`] -> [`DeviceVal`].
pub const MAP_DEV_V6: &str = "ISPF_DEV_V6";
/// LPM trie over `[slot, addr..4]` -> `u32` segment.
pub const MAP_SUBNET_V4: &str = "ISPF_SUBNET_V4";
/// LPM trie over `[slot, addr..16]` -> `u32` segment.
pub const MAP_SUBNET_V6: &str = "ISPF_SUBNET_V6";
/// Array `u32` segment (0 = none), index `slot * 4096 + vlan id`.
pub const MAP_VLAN: &str = "ISPF_VLAN";
/// Hash [`MacKey`] -> `u32` (1): the care unit's routers.
pub const MAP_ROUTERS: &str = "ISPF_ROUTERS";
/// Array `u32` port class, index `slot * 3 * 65536 + l4 * 65536 + port`.
pub const MAP_PORT_CLASS: &str = "ISPF_PORT_CLASS";
/// Hash [`PolicyKey`] -> [`PolicyVal`]: the entries of segment pairs
/// whose row ([`MAP_POLICY_ROWS`]) overflows.
pub const MAP_POLICY: &str = "ISPF_POLICY";
/// Hash [`PairKey`] -> [`PolicyRow`]: the compiled rule matrix, one row
/// per segment pair that any rule covers, so one lookup answers a pair.
pub const MAP_POLICY_ROWS: &str = "ISPF_POLICY_ROWS";
/// LRU hash [`CtKey`] -> [`CtVal`]: connection tracking of IPv6 flows.
pub const MAP_CONNTRACK: &str = "ISPF_CONNTRACK";
/// LRU hash [`CtKey4`] -> [`CtVal`]: connection tracking of IPv4 flows.
pub const MAP_CONNTRACK4: &str = "ISPF_CONNTRACK4";
/// Hash [`FragKey`] -> [`FragVal`]: verdicts of first fragments.
pub const MAP_FRAGMENTS: &str = "ISPF_FRAGMENTS";
/// Per-CPU array of [`CounterVal`], indexed by the slot
/// [`MAP_COUNTER_SLOTS`] gives a [`CounterKey`]. An array, because
/// established flows remember their slot and count without a hash lookup.
pub const MAP_COUNTERS: &str = "ISPF_COUNTERS";
/// Hash [`CounterKey`] -> `u32` slot in [`MAP_COUNTERS`], assigned by the
/// datapath the first time it counts a key.
pub const MAP_COUNTER_SLOTS: &str = "ISPF_COUNTER_SLOTS";
/// Per-CPU single-entry array of [`CounterAlloc`]: how many never-used
/// counter slots this CPU has handed out (CPU `c` hands out `c`,
/// `c + cpus`, `c + 2 * cpus`, ...) and how many slots it has taken in all.
pub const MAP_COUNTER_NEXT: &str = "ISPF_COUNTER_NEXT";
/// Queue of `u32` counter slots the controller has recycled (see
/// [`CounterKey::gen`]); the datapath takes from it before handing out a
/// never-used slot.
pub const MAP_COUNTER_FREE: &str = "ISPF_COUNTER_FREE";
/// Hash [`CounterKey`] (with `gen` 0) -> [`CounterVal`]: what recycled
/// slots had counted, kept by the controller so that totals never go
/// backwards. Written only by the controller; pinned, so a restarted
/// controller keeps it.
pub const MAP_COUNTERS_RETIRED: &str = "ISPF_COUNTERS_RETIRED";
/// Single-entry array of [`Meta`]: the layout version of the pinned maps
/// and what the controller last made the datapath enforce.
pub const MAP_META: &str = "ISPF_META";
/// Array `u32` of load-time facts the controller writes when it loads the
/// program: [`CONFIG_CPUS`] and [`CONFIG_COUNTER_SLOTS`].
pub const MAP_CPUS: &str = "ISPF_CPUS";
/// [`MAP_CPUS`] index: the number of possible CPUs.
pub const CONFIG_CPUS: u32 = 0;
/// [`MAP_CPUS`] index: how many counter slots the counter maps hold.
pub const CONFIG_COUNTER_SLOTS: u32 = 1;
/// Per-CPU single-entry array of [`LastVerdict`]: the verdict of the last
/// packet judged on this CPU, read by `ispf replay`.
pub const MAP_LAST: &str = "ISPF_LAST";

/// Ring buffer of [`Event`]s.
pub const MAP_EVENTS: &str = "ISPF_EVENTS";
/// Per-CPU single-entry array of [`EventStats`].
pub const MAP_EVENT_STATS: &str = "ISPF_EVENT_STATS";
/// LRU hash [`CtKey`] (directional: `a` = source) -> `u64` time the denied
/// flow was last reported, so a denied 5-tuple is reported once a minute.
pub const MAP_DENIED_SEEN: &str = "ISPF_DENIED_SEEN";
/// Per-CPU array of [`FlowCacheEntry`], [`FLOW_CACHE_ENTRIES`] long: each
/// CPU's exact-match cache of recent flow directions and their outcome,
/// indexed by a hash of the direction. Datapath-internal.
pub const MAP_FLOW_CACHE: &str = "ISPF_FLOW_CACHE";
/// Array `u32`, [`CT_GENERATIONS`] + 1 long: a generation per group of
/// flows (hash of the flow, either direction), bumped whenever conntrack
/// opens, closes or ends a flow of the group; the last slot is a flush
/// counter the controller bumps to invalidate every cached outcome. A
/// cached outcome holds only while both are unchanged.
pub const MAP_CT_GENERATION: &str = "ISPF_CT_GENERATION";

/// Per-CPU array of [`SourceMemo`], [`SOURCE_MEMO_ENTRIES`] long: the
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
/// A source seen: MAC, VLAN, port and source address ([`Event`]).
pub const EVENT_SIGHTING: u8 = 3;
/// A DHCP client request's options ([`FingerprintEvent`]).
pub const EVENT_DHCP: u8 = 4;
/// An LLDP frame's TLVs ([`FingerprintEvent`]).
pub const EVENT_LLDP: u8 = 5;
/// A flow passed although a feed lists one of its ends (an `alert` feed,
/// or a life-critical segment a `deny` feed never isolates): [`Event`]
/// with the feed's position in `rule`. (Flows a feed drops are `denied`
/// events with reason `threat_feed`.)
pub const EVENT_THREAT: u8 = 6;
/// Offset of the kind byte, the same in every record of the ring buffer.
pub const EVENT_KIND_OFFSET: usize = 22;

/// Per-CPU array of [`SightingMemo`], [`SIGHTING_MEMO_ENTRIES`] long: what
/// this CPU last reported of each recent source, so a source is reported
/// when it changes and otherwise at most once a minute.
pub const MAP_SIGHTINGS: &str = "ISPF_SIGHTINGS";
/// A power of two.
pub const SIGHTING_MEMO_ENTRIES: u32 = 4096;
/// An unchanged source is reported again after this long.
pub const SIGHTING_REFRESH_NS: u64 = 60_000_000_000;
/// Payload bytes a [`FingerprintEvent`] carries.
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
/// The device has exactly one IPv4 address, [`DeviceVal::v4`].
pub const DEV_V4_ONE: u8 = 4;
/// The device has several IPv4 addresses; [`DeviceVal::v4`] is the first.
pub const DEV_V4_MANY: u8 = 8;
/// The device has exactly one IPv6 address, [`DeviceVal::v6`].
pub const DEV_V6_ONE: u8 = 16;
/// The device has several IPv6 addresses; [`DeviceVal::v6`] is the first.
pub const DEV_V6_MANY: u8 = 32;

/// `PolicyVal::rule` when the entry records that no rule matched.
pub const RULE_NONE: u32 = u32::MAX;

/// Per-generation policy settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Monotonic policy number; conntrack entries of older epochs are
    /// re-judged against the current policy before they are trusted.
    pub epoch: u32,
    pub world_segment: u16,
    pub unknown_segment: u16,
    pub default_action: u8,
    pub infrastructure: u8,
    pub fragments: u8,
    /// Which feed maps hold entries ([`crate::FEEDS_V4_HOSTS`], ...).
    pub feeds: u8,
    pub tcp_timeout_s: u32,
    pub tcp_closing_timeout_s: u32,
    pub udp_timeout_s: u32,
    pub icmp_timeout_s: u32,
    pub fragment_timeout_s: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentInfo {
    pub flags: u8,
    pub _pad: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacKey {
    pub slot: u8,
    pub _pad: u8,
    pub mac: [u8; 6],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct V4Key {
    pub slot: u8,
    pub _pad: [u8; 3],
    pub addr: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct V6Key {
    pub slot: u8,
    pub _pad: [u8; 3],
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceVal {
    /// Index of the device in the policy plus one.
    pub device: u32,
    pub segment: u16,
    /// VLAN the MAC identity is scoped to, 0 for any.
    pub vlan: u16,
    pub flags: u8,
    pub _pad: [u8; 3],
    /// The device's (first) IPv4 and IPv6 address: the anti-spoofing check
    /// of a frame from the device's MAC usually needs no second lookup.
    pub v4: [u8; 4],
    pub v6: [u8; 16],
}

/// Key of the compiled rule matrix. `family == FAMILY_ANY` (with proto and
/// class 0) is the pair's any-protocol entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    pub src: u16,
    pub dst: u16,
    pub slot: u8,
    pub family: u8,
    pub proto: u8,
    pub _pad: u8,
    pub port_class: u32,
}

/// Key of a segment pair's row in [`MAP_POLICY_ROWS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairKey {
    pub src: u16,
    pub dst: u16,
    pub slot: u8,
    pub _pad: [u8; 3],
}

/// Entries a [`PolicyRow`] holds; a pair with more sets `overflow` and
/// keeps them in [`MAP_POLICY`].
pub const ROW_ENTRIES: usize = 6;

/// `(family, protocol, port class)` of a row entry as one word, so that
/// matching an entry is one comparison.
#[inline(always)]
pub const fn row_selector(family: u8, proto: u8, port_class: u32) -> u64 {
    family as u64 | (proto as u64) << 8 | (port_class as u64) << 32
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowEntry {
    /// [`row_selector`] of the entry.
    pub selector: u64,
    pub val: PolicyVal,
}

/// A segment pair's compiled rules: the entries that differ from the one
/// they fall back to (family, protocol and port class; then family and
/// protocol; then `any`), as the rule matrix stores them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyRow {
    /// The pair's any-protocol entry, if `has_any`.
    pub any: PolicyVal,
    pub has_any: u8,
    /// Entries in `entries`.
    pub n: u8,
    /// More entries than fit: look them up in [`MAP_POLICY`].
    pub overflow: u8,
    pub _pad: [u8; 5],
    pub entries: [RowEntry; ROW_ENTRIES],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyVal {
    /// Index of the deciding rule in the policy file, or [`RULE_NONE`].
    pub rule: u32,
    pub action: u8,
    pub _pad: [u8; 3],
}

/// Conntrack key in canonical order: endpoint `a` sorts before `b`
/// (address, then port), so both directions of a flow find the same entry.
/// IPv4 addresses occupy the first 4 bytes. For ICMP echo both ports hold
/// the echo identifier. 8-aligned so the datapath fills it with word
/// moves.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub a_addr: [u8; 16],
    pub b_addr: [u8; 16],
    pub a_port: [u8; 2],
    pub b_port: [u8; 2],
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// [`CtKey`] for IPv4 flows. IPv4 and IPv6 flows live in separate maps
/// because hashing the key is most of a lookup's cost, and a 16-byte key
/// hashes in about a third of the time of a 40-byte one.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey4 {
    pub a_addr: [u8; 4],
    pub b_addr: [u8; 4],
    pub a_port: [u8; 2],
    pub b_port: [u8; 2],
    pub proto: u8,
    pub _pad: [u8; 3],
}

pub const CT_ORIG_IS_A: u8 = 1;
pub const CT_FIN_SEEN: u8 = 2;
/// A threat feed lists an end of this flow and its packets passed all the
/// same (an `alert` feed, or a life-critical or monitored segment). The
/// exemption was decided on the segments of the packet that was judged,
/// and a reply's destination segment is not recorded, so no packet of
/// such a flow takes the conntrack fast path: each is judged against the
/// feeds with its own segments.
pub const CT_FEED_LISTED: u8 = 4;

/// An L2 sender as one word: source MAC in the low 48 bits (little-endian,
/// so the datapath can take it from one word load), VLAN id in bits
/// 48..60, bit 63 set so that 0 means "none". One word, so another
/// CPU never reads half of one sender and half of another.
pub const L2_VALID: u64 = 1 << 63;

#[inline(always)]
pub fn l2_fingerprint(mac: &[u8; 6], vlan: u16) -> u64 {
    L2_VALID | ((vlan as u64 & 0x0fff) << 48) | mac_word(mac)
}

/// A MAC address as the low 48 bits of a word, little-endian.
#[inline(always)]
pub fn mac_word(mac: &[u8; 6]) -> u64 {
    u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0])
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtVal {
    pub last_seen_ns: u64,
    pub epoch: u32,
    pub rule: u32,
    /// Segments of the originating direction.
    pub orig_src: u16,
    pub orig_dst: u16,
    /// Reason the opening packet was passed with (`allowed`, `intra_allowed`).
    pub reason: u8,
    pub flags: u8,
    pub _pad: [u8; 2],
    /// The [`l2_fingerprint`] of the sender whose identity was checked for
    /// each direction under `epoch` (0: none yet). A packet from that same
    /// sender needs no identity lookups; any other sender is re-identified.
    pub orig_l2: u64,
    pub reply_l2: u64,
    /// Destination MAC ([`mac_word`]) of the opening packet: the
    /// originating direction's destination segment is only reused for
    /// packets to the same MAC.
    pub orig_dst_mac: u64,
    /// Counter slot of each direction's packets, valid with its sender.
    pub orig_slot: u32,
    pub reply_slot: u32,
}

/// [`FlowCacheEntry::kind`]: an established flow, valid until `until_ns`.
pub const CACHED_ESTABLISHED: u8 = 1;
/// [`FlowCacheEntry::kind`]: the full pipeline's judgement of a flow
/// conntrack held nothing for (a denial, a monitor-mode pass, a protocol
/// that is not tracked).
pub const CACHED_JUDGED: u8 = 2;

/// One direction of a flow and what its packets get. Per CPU, so written
/// and read by one CPU only. Valid while the policy epoch, the sender (MAC
/// and VLAN), the destination MAC and the flow group's generation (see
/// [`MAP_CT_GENERATION`]) are the ones it was made under.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCacheEntry {
    /// Source and destination address words, then ports, protocol,
    /// family and ICMP type (the datapath's direction key).
    pub key: [u64; 5],
    /// [`l2_fingerprint`] of the sender.
    pub sender: u64,
    /// [`mac_word`] of the destination.
    pub dst_mac: u64,
    /// For [`CACHED_ESTABLISHED`]: read conntrack again from this jiffy on.
    pub until_jiffies: u64,
    /// For denials: when (jiffies) this CPU last asked whether to report.
    pub checked_jiffies: u64,
    pub epoch: u32,
    pub generation: u32,
    pub slot: u32,
    pub rule: u32,
    pub src: u16,
    pub dst: u16,
    pub verdict: u8,
    pub reason: u8,
    /// 0 (empty), [`CACHED_ESTABLISHED`] or [`CACHED_JUDGED`].
    pub kind: u8,
    pub _pad: u8,
}

/// A sender's identity under one policy epoch: the result of the
/// specification's source steps for (MAC and VLAN, source address), which
/// depend on nothing else. Per CPU, so never read half-written.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceMemo {
    /// [`l2_fingerprint`] of the sender (0: empty).
    pub sender: u64,
    /// The source address, as two words.
    pub ip: [u64; 2],
    pub epoch: u32,
    pub segment: u16,
    pub spoofed: u8,
    pub family: u8,
}

/// What a CPU last reported of a source (MAC and VLAN).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SightingMemo {
    /// [`l2_fingerprint`] of the source (0: empty).
    pub sender: u64,
    /// Last IPv6 source address reported, as two words.
    pub v6: [u64; 2],
    /// When last reported (coarse CLOCK_MONOTONIC, ns).
    pub reported_ns: u64,
    /// Last IPv4 source address reported (memory order).
    pub v4: u32,
    pub ifindex: u32,
}

/// A frame's bytes for passive fingerprinting (DHCP options, LLDP TLVs),
/// written by the datapath into [`MAP_EVENTS`]. Starts like [`Event`] so
/// that the kind byte is at [`EVENT_KIND_OFFSET`] in both.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FingerprintEvent {
    pub ts_ns: u64,
    pub _pad: u32,
    pub ifindex: u32,
    /// Source segment.
    pub src: u16,
    pub len: u16,
    pub vlan: u16,
    pub kind: u8,
    pub _pad2: u8,
    pub src_mac: [u8; 6],
    pub _pad3: [u8; 2],
    pub data: [u8; FINGERPRINT_BYTES],
}

/// A counter key that got no slot: the counter map is full.
pub const COUNTER_SLOT_NONE: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub id: u32,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragVal {
    pub last_seen_ns: u64,
    pub rule: u32,
    pub verdict: u8,
    pub reason: u8,
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub src: u16,
    pub dst: u16,
    pub reason: u8,
    /// `VERDICT_PASS` or `VERDICT_DROP` (`infrastructure` can be either).
    pub verdict: u8,
    /// The generation slot the packet was judged under. A slot's keys are
    /// unreferenced once the next-but-one policy is being written (nothing
    /// cached outlives its epoch), so the controller can then fold their
    /// counts into [`MAP_COUNTERS_RETIRED`] and recycle their slots:
    /// without this, every policy's new keys used up slots for good.
    pub gen: u8,
    pub _pad: u8,
    /// Deciding rule, or [`RULE_NONE`]: per-rule hit counts come from here.
    pub rule: u32,
}

/// Per-CPU counter-slot allocation state (see [`MAP_COUNTER_NEXT`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterAlloc {
    /// Never-used slots this CPU has handed out.
    pub next: u32,
    /// Slots this CPU has taken, fresh or recycled: with what the
    /// controller recycled, how many are in use.
    pub taken: u32,
}

/// What the controller last made the datapath enforce (see [`MAP_META`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// [`LAYOUT_VERSION`] of the controller that created the maps.
    pub layout: u32,
    /// Epoch of the active generation.
    pub epoch: u32,
    /// SHA-256 of what the active generation was compiled from.
    pub sha256: [u8; 32],
    /// Counter slots the controller has recycled, in all.
    pub recycled: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterVal {
    pub packets: u64,
    pub bytes: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastVerdict {
    /// Incremented for every packet judged on this CPU.
    pub seq: u64,
    pub rule: u32,
    pub src: u16,
    pub dst: u16,
    pub verdict: u8,
    pub reason: u8,
    pub _pad: [u8; 2],
    /// Policy epoch the packet was judged under.
    pub epoch: u32,
}

/// A flow event, written by the datapath into [`MAP_EVENTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC at tick resolution (`bpf_ktime_get_coarse_ns`).
    pub ts_ns: u64,
    pub rule: u32,
    pub ifindex: u32,
    pub src: u16,
    pub dst: u16,
    pub vlan: u16,
    pub kind: u8,
    pub reason: u8,
    pub verdict: u8,
    pub family: u8,
    pub proto: u8,
    pub _pad: u8,
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    pub _pad2: [u8; 4],
}

/// Per-CPU event accounting; nothing the datapath drops goes uncounted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventStats {
    pub emitted: u64,
    /// Sightings and fingerprints among `emitted`.
    pub sightings: u64,
    /// Over the per-CPU rate.
    pub rate_limited: u64,
    /// The ring buffer was full (the reader is behind).
    pub ringbuf_full: u64,
    /// Token-bucket state (datapath-internal).
    pub tokens: u64,
    pub refill_ns: u64,
    /// Sightings and fingerprints over their own per-CPU rate.
    pub sightings_limited: u64,
    /// Their token bucket.
    pub sighting_tokens: u64,
    pub sighting_refill_ns: u64,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), Copy, and have no implicit padding
    // (checked by the size tests), so any byte pattern is a valid value.
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for SegmentInfo {}
    unsafe impl aya::Pod for MacKey {}
    unsafe impl aya::Pod for V4Key {}
    unsafe impl aya::Pod for V6Key {}
    unsafe impl aya::Pod for DeviceVal {}
    unsafe impl aya::Pod for PolicyKey {}
    unsafe impl aya::Pod for PolicyVal {}
    unsafe impl aya::Pod for PairKey {}
    unsafe impl aya::Pod for RowEntry {}
    unsafe impl aya::Pod for PolicyRow {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtVal {}
    unsafe impl aya::Pod for CtKey4 {}
    unsafe impl aya::Pod for FlowCacheEntry {}
    unsafe impl aya::Pod for FragKey {}
    unsafe impl aya::Pod for FragVal {}
    unsafe impl aya::Pod for CounterKey {}
    unsafe impl aya::Pod for CounterVal {}
    unsafe impl aya::Pod for CounterAlloc {}
    unsafe impl aya::Pod for SourceMemo {}
    unsafe impl aya::Pod for SightingMemo {}
    unsafe impl aya::Pod for FingerprintEvent {}
    unsafe impl aya::Pod for Meta {}
    unsafe impl aya::Pod for LastVerdict {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for EventStats {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    /// A size equal to the sum of the fields proves there is no implicit
    /// padding, which both `aya::Pod` and byte-exact hashing of keys need.
    #[test]
    fn layouts_are_fixed() {
        assert_eq!((size_of::<Settings>(), align_of::<Settings>()), (32, 4));
        assert_eq!(
            (size_of::<SegmentInfo>(), align_of::<SegmentInfo>()),
            (4, 1)
        );
        assert_eq!((size_of::<MacKey>(), align_of::<MacKey>()), (8, 1));
        assert_eq!((size_of::<V4Key>(), align_of::<V4Key>()), (8, 1));
        assert_eq!((size_of::<V6Key>(), align_of::<V6Key>()), (20, 1));
        assert_eq!((size_of::<DeviceVal>(), align_of::<DeviceVal>()), (32, 4));
        assert_eq!((size_of::<PolicyKey>(), align_of::<PolicyKey>()), (12, 4));
        assert_eq!((size_of::<PolicyVal>(), align_of::<PolicyVal>()), (8, 4));
        assert_eq!((size_of::<PairKey>(), align_of::<PairKey>()), (8, 2));
        assert_eq!((size_of::<RowEntry>(), align_of::<RowEntry>()), (16, 8));
        assert_eq!((size_of::<PolicyRow>(), align_of::<PolicyRow>()), (112, 8));
        assert_eq!((size_of::<CtKey>(), align_of::<CtKey>()), (40, 8));
        assert_eq!((size_of::<CtVal>(), align_of::<CtVal>()), (56, 8));
        assert_eq!((size_of::<CtKey4>(), align_of::<CtKey4>()), (16, 8));
        assert_eq!(
            (size_of::<FlowCacheEntry>(), align_of::<FlowCacheEntry>()),
            (96, 8)
        );
        assert!(FLOW_CACHE_ENTRIES.is_power_of_two() && CT_GENERATIONS.is_power_of_two());
        assert_eq!((size_of::<FragKey>(), align_of::<FragKey>()), (40, 4));
        assert_eq!((size_of::<FragVal>(), align_of::<FragVal>()), (16, 8));
        assert_eq!((size_of::<CounterKey>(), align_of::<CounterKey>()), (12, 4));
        assert_eq!((size_of::<Event>(), align_of::<Event>()), (80, 8));
        assert_eq!((size_of::<EventStats>(), align_of::<EventStats>()), (72, 8));
        assert_eq!((size_of::<CounterVal>(), align_of::<CounterVal>()), (16, 8));
        assert_eq!(
            (size_of::<CounterAlloc>(), align_of::<CounterAlloc>()),
            (8, 4)
        );
        assert_eq!((size_of::<Meta>(), align_of::<Meta>()), (48, 8));
        assert_eq!((size_of::<SourceMemo>(), align_of::<SourceMemo>()), (32, 8));
        assert!(SOURCE_MEMO_ENTRIES.is_power_of_two());
        assert!(SIGHTING_MEMO_ENTRIES.is_power_of_two());
        assert_eq!(
            (size_of::<SightingMemo>(), align_of::<SightingMemo>()),
            (40, 8)
        );
        assert_eq!(size_of::<FingerprintEvent>(), 32 + FINGERPRINT_BYTES);
        assert_eq!(core::mem::offset_of!(Event, kind), EVENT_KIND_OFFSET);
        assert_eq!(
            core::mem::offset_of!(FingerprintEvent, kind),
            EVENT_KIND_OFFSET
        );
        assert_eq!(
            (size_of::<LastVerdict>(), align_of::<LastVerdict>()),
            (24, 8)
        );
    }

    #[test]
    fn l2_fingerprint_separates_mac_and_vlan() {
        let a = [2, 0, 0, 0, 0, 1];
        let b = [2, 0, 0, 0, 0, 2];
        assert_ne!(l2_fingerprint(&a, 0), 0, "0 must mean no sender");
        assert_ne!(l2_fingerprint(&a, 130), l2_fingerprint(&a, 140));
        assert_ne!(l2_fingerprint(&a, 130), l2_fingerprint(&b, 130));
        assert_eq!(l2_fingerprint(&a, 130), l2_fingerprint(&a, 130 | 0xf000));
        assert_eq!(l2_fingerprint(&[0xff; 6], 0xfff), u64::MAX >> 4 | L2_VALID);
    }
}
