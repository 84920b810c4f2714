//! Threat-intelligence feeds and per-source event budgets, as the datapath
//! and the controller share them.
//!
//! Feed addresses live in two maps per family, each entry keyed with the
//! generation slot like every policy map: single addresses (the bulk of a
//! blocklist) in a hash map written in batches, and networks in an LPM
//! trie. The controller resolves overlaps when it compiles: a host or a
//! network inside a `deny` network of any feed is itself `deny`, so the
//! first hit the datapath finds is the strongest.

/// Hash of [`crate::V4Key`] -> [`FeedVal`]: single IPv4 addresses (/32).
pub const MAP_FEED_V4: &str = "ISPF_FEED_V4";
/// Hash of [`crate::V6Key`] -> [`FeedVal`]: single IPv6 addresses (/128).
pub const MAP_FEED_V6: &str = "ISPF_FEED_V6";
/// LPM trie, key `[slot, a, b, c, d]` (prefix 8 + length) -> [`FeedVal`].
pub const MAP_FEED_NET4: &str = "ISPF_FEED_NET4";
/// LPM trie, key `[slot, 16 bytes]` -> [`FeedVal`].
pub const MAP_FEED_NET6: &str = "ISPF_FEED_NET6";
/// Per-CPU array of `u64`, `MAX_FEEDS * 2` long: per feed, packets of
/// flows it hit that were dropped (`2 * feed + 1`) or passed (`2 * feed`).
pub const MAP_FEED_HITS: &str = "ISPF_FEED_HITS";
/// LRU hash of sender ([`crate::l2_fingerprint`]) -> [`SourceBudget`].
pub const MAP_EVENT_SOURCES: &str = "ISPF_EVENT_SOURCES";

pub const MAX_FEEDS: u32 = 64;
/// Address entries (both generations), allocated as used.
pub const DEFAULT_FEED_ENTRIES: u32 = 4_194_304;
pub const DEFAULT_FEED_NET_ENTRIES: u32 = 262_144;
pub const EVENT_SOURCES_ENTRIES: u32 = 16_384;

pub const FEED_ALERT: u8 = 1;
pub const FEED_DENY: u8 = 2;

/// [`crate::Settings::feeds`]: which feed maps hold entries in a generation
/// (lookups of empty maps are skipped).
pub const FEEDS_V4_HOSTS: u8 = 1;
pub const FEEDS_V4_NETS: u8 = 2;
pub const FEEDS_V6_HOSTS: u8 = 4;
pub const FEEDS_V6_NETS: u8 = 8;

/// Flow events a source may cause per second, and their burst: one
/// scanner cannot spend the per-CPU budget that reports everyone's flows.
pub const SOURCE_EVENT_RATE_PER_SEC: u64 = 200;
pub const SOURCE_EVENT_BURST: u64 = 100;

/// What a feed says of an address: which feed (its position in `feeds`)
/// and [`FEED_DENY`] or [`FEED_ALERT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedVal {
    pub feed: u8,
    pub action: u8,
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceBudget {
    pub tokens: u64,
    pub refill_ns: u64,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), Copy, no implicit padding.
    unsafe impl aya::Pod for FeedVal {}
    unsafe impl aya::Pod for SourceBudget {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn layouts() {
        assert_eq!((size_of::<FeedVal>(), align_of::<FeedVal>()), (4, 1));
        assert_eq!(
            (size_of::<SourceBudget>(), align_of::<SourceBudget>()),
            (16, 8)
        );
        const { assert!(MAX_FEEDS <= 255) };
    }
}
