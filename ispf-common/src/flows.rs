//! Keys and values of the datapath's flow state: conntrack, the per-CPU
//! flow cache and sender memo, first-fragment verdicts; and the words a
//! sender and a MAC are compared as.

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
/// [`MAP_CT_GENERATION`](crate::MAP_CT_GENERATION)) are the ones it was made under.
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
