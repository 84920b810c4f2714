//! Threat-intelligence feeds (the spec's "Threat-intelligence feeds"):
//! reading them (`plain`, `stix`), fetching them from files and HTTP(S)
//! with conditional requests and backoff (`fetch`), keeping each feed's
//! last good contents (also on disk, so a restart enforces them before the
//! first fetch) and refreshing them (`refresh`), and compiling them into
//! map entries and the controller's own index for reports (`compile`).
//!
//! Owns: feed contents and their status. May call: the policy's types.
//! Never writes maps: a new feed set goes to the engine, which applies it
//! as a generation like any other change of the desired state.

pub mod compile;
pub mod fetch;
pub mod plain;
pub mod refresh;
pub mod stix;

use std::{collections::BTreeMap, sync::Arc};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::policy::{FeedDoc, FeedFormat};

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("{0}")]
    Parse(String),
    #[error("reading {path}: {message}")]
    File { path: String, message: String },
    #[error("fetching {url}: {message}")]
    Http { url: String, message: String },
}

/// One address or network a feed lists, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub net: IpNet,
    /// The STIX indicator's id.
    pub indicator: Option<String>,
    /// The line of a plain feed.
    pub line: Option<u32>,
}

/// Problems kept per feed (the count is exact, the list a sample).
const PROBLEMS_KEPT: usize = 20;

/// What one read of a feed yielded.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    pub entries: Vec<Entry>,
    /// Lines or indicators (or networks of an indicator) that could not
    /// be enforced.
    pub skipped: u64,
    /// The first of them, with line numbers or ids, and networks enforced
    /// other than written (host bits set).
    pub problems: Vec<String>,
}

impl Contents {
    /// Distinct networks: what the kernel holds of this feed (a line
    /// listed twice is one entry there).
    pub fn distinct(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.net)
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    fn skip(&mut self, why: String) {
        self.skipped += 1;
        self.note(why);
    }

    /// A problem that does not skip anything.
    fn note(&mut self, what: String) {
        if self.problems.len() < PROBLEMS_KEPT {
            self.problems.push(what);
        }
    }

    /// Takes `net` (read from `written`, at `at`: a line or an indicator)
    /// unless it is too broad to be a threat (see [`too_broad`]); says
    /// where host bits were cleared.
    fn take(&mut self, written: &str, net: IpNet, at: &str, entry: impl FnOnce(IpNet) -> Entry) {
        if let Some(why) = too_broad(&net) {
            self.skip(format!("{at}: `{written}` {why}; skipped"));
            return;
        }
        if written.contains('/') && net != net.trunc() {
            self.note(format!(
                "{at}: `{written}` has host bits set; enforced as {}",
                net.trunc()
            ));
        }
        self.entries.push(entry(net.trunc()));
    }
}

/// Networks a hospital's own devices live in. A feed listing a whole one
/// (a bogon list taken for a blocklist, a typo's `/0`) would cut every
/// device there off from every other but the life-critical ones; a single
/// address or a narrower network inside is an indicator and stays.
const INTERNAL: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "224.0.0.0/4",
    "fc00::/7",
    // The half of fc00::/7 in use (RFC 4193): narrower than the block,
    // and every ULA device of a hospital is in it.
    "fd00::/8",
    "fe80::/10",
    "ff00::/8",
    "::1/128",
];

/// Why `net` cannot be a threat feed's entry, if it cannot: broader than
/// a /8 (IPv4) or a /16 (IPv6), or covering a whole network of
/// [`INTERNAL`]. Deny feeds pass traffic of life-critical segments, but
/// every other device of the hospital would lose its peers.
pub fn too_broad(net: &IpNet) -> Option<String> {
    let floor = match net {
        IpNet::V4(_) => 8,
        IpNet::V6(_) => 16,
    };
    if net.prefix_len() < floor {
        return Some(format!(
            "is broader than a /{floor}: a threat feed lists attackers, not a share of the address space"
        ));
    }
    INTERNAL
        .iter()
        .filter_map(|s| s.parse::<IpNet>().ok())
        .find(|inner| net.contains(inner))
        .map(|inner| {
            format!(
                "covers all of {inner}, where the hospital's own devices are: a feed never isolates a whole internal network (list its addresses or narrower networks)"
            )
        })
}

/// Parses a feed's text in its format.
pub fn parse(format: FeedFormat, text: &str, now: i64) -> Result<Contents, FeedError> {
    match format {
        FeedFormat::Plain => Ok(plain::parse(text)),
        FeedFormat::Stix2 => stix::parse(text, now),
    }
}

/// The last good contents of every feed, by name: part of the desired
/// state.
#[derive(Debug, Clone, Default)]
pub struct FeedSet {
    pub feeds: BTreeMap<String, Arc<Contents>>,
}

impl FeedSet {
    pub fn entries(&self) -> usize {
        self.feeds.values().map(|c| c.entries.len()).sum()
    }
}

/// A feed as `ispf feeds` and the metrics show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedStatus {
    pub name: String,
    pub source: String,
    pub format: String,
    pub action: String,
    /// Addresses and networks enforced (the last good contents).
    pub entries: usize,
    /// Unix seconds of the last successful refresh (a fetch that changed
    /// the contents or confirmed them).
    pub last_refresh: Option<i64>,
    /// The last failure, while the feed is failing.
    pub error: Option<String>,
    pub failures: u64,
    pub skipped: u64,
    pub problems: Vec<String>,
    /// Flows a feed hit: dropped, and passed (alert feeds, life-critical
    /// and monitor-mode segments).
    #[serde(default)]
    pub hits_dropped: u64,
    #[serde(default)]
    pub hits_passed: u64,
}

impl FeedStatus {
    pub fn new(doc: &FeedDoc) -> Self {
        Self {
            name: doc.name.clone(),
            source: doc.source.clone(),
            format: match doc.format {
                FeedFormat::Plain => "plain",
                FeedFormat::Stix2 => "stix2",
            }
            .into(),
            action: match doc.action {
                crate::policy::FeedAction::Deny => "deny",
                crate::policy::FeedAction::Alert => "alert",
            }
            .into(),
            ..Default::default()
        }
    }
}
