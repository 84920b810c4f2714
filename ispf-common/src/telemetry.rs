//! What the datapath reports: counters and their slots, the last verdict,
//! the layout record, ring-buffer events and their rate limits, sightings.

use crate::maps::FINGERPRINT_BYTES;

/// What a CPU last reported of a source (MAC and VLAN).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SightingMemo {
    /// [`l2_fingerprint`](crate::l2_fingerprint) of the source (0: empty).
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
/// written by the datapath into [`MAP_EVENTS`](crate::MAP_EVENTS). Starts like [`Event`] so
/// that the kind byte is at [`EVENT_KIND_OFFSET`](crate::EVENT_KIND_OFFSET) in both.
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
    /// counts into [`MAP_COUNTERS_RETIRED`](crate::MAP_COUNTERS_RETIRED) and recycle their slots:
    /// without this, every policy's new keys used up slots for good.
    pub gen: u8,
    pub _pad: u8,
    /// Deciding rule, or [`RULE_NONE`](crate::RULE_NONE): per-rule hit counts come from here.
    pub rule: u32,
}

/// Per-CPU counter-slot allocation state (see [`MAP_COUNTER_NEXT`](crate::MAP_COUNTER_NEXT)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterAlloc {
    /// Never-used slots this CPU has handed out.
    pub next: u32,
    /// Slots this CPU has taken, fresh or recycled: with what the
    /// controller recycled, how many are in use.
    pub taken: u32,
}

/// What the controller last made the datapath enforce (see [`MAP_META`](crate::MAP_META)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// [`LAYOUT_VERSION`](crate::LAYOUT_VERSION) of the controller that created the maps.
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

/// [`Event::flags`]: the packet opened its flow. A `threat` event is
/// written for every passed packet of a listed flow; only its first is a
/// new flow (detection must not take a server's replies for flows it opens).
pub const EVENT_OPENED: u8 = 1;
/// [`Event::flags`]: a TCP packet that cannot open a connection (no SYN,
/// or SYN with ACK): a flow seen mid-stream, such as a server speaking
/// first on a connection idle past conntrack's timeout. Detection does
/// not take it for the sender opening a flow to a new service.
pub const EVENT_TCP_MIDSTREAM: u8 = 2;

/// A flow event, written by the datapath into [`MAP_EVENTS`](crate::MAP_EVENTS).
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
    /// [`EVENT_OPENED`]: this packet opened its flow (a flow event's
    /// first packet, not a later one of a flow reported per packet);
    /// [`EVENT_TCP_MIDSTREAM`].
    pub flags: u8,
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
