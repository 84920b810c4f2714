//! Keys and values of the policy maps, written by the controller per
//! generation slot: settings, segments, devices, the rule matrix.

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

/// Key of a segment pair's row in [`MAP_POLICY_ROWS`](crate::MAP_POLICY_ROWS).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairKey {
    pub src: u16,
    pub dst: u16,
    pub slot: u8,
    pub _pad: [u8; 3],
}

/// Entries a [`PolicyRow`] holds; a pair with more sets `overflow` and
/// keeps them in [`MAP_POLICY`](crate::MAP_POLICY).
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
    /// More entries than fit: look them up in [`MAP_POLICY`](crate::MAP_POLICY).
    pub overflow: u8,
    pub _pad: [u8; 5],
    pub entries: [RowEntry; ROW_ENTRIES],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyVal {
    /// Index of the deciding rule in the policy file, or [`RULE_NONE`](crate::RULE_NONE).
    pub rule: u32,
    pub action: u8,
    pub _pad: [u8; 3],
}
