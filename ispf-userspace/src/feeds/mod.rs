//! Threat-intelligence feeds (the spec's "Threat-intelligence feeds"):
//! reading them (`plain`, `stix`), fetching them from files and HTTP(S)
//! with conditional requests and backoff (`fetch`), keeping each feed's
//! last good contents (also on disk, so a restart enforces them before the
//! first fetch) and refreshing them (`refresh`), and compiling them into
//! map entries and the controller's own index for reports (`compile`),
//! without what covers the policy's own subnets (`own`).
//!
//! Owns: feed contents and their status. May call: the policy's types.
//! Never writes maps: a new feed set goes to the engine, which applies it
//! as a generation like any other change of the desired state.

pub mod compile;
pub mod fetch;
pub mod guard;
pub mod own;
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

/// How a note on a network written with host bits ends, before the
/// network enforced.
const HOST_BITS: &str = " has host bits set; enforced as ";
/// Problems kept per feed (the count is exact, the list a sample).
pub const PROBLEMS_KEPT: usize = 20;

/// What one read of a feed yielded.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    pub entries: Vec<Entry>,
    /// Lines or indicators (or networks of an indicator) that could not
    /// be enforced.
    pub skipped: u64,
    /// The first of them, with line numbers or ids.
    pub problems: Vec<String>,
    /// The first networks enforced other than written (host bits set).
    pub notes: Vec<String>,
    /// The earliest `valid_until` of an indicator taken (unix seconds):
    /// then the text is read again, so that the indicator is skipped.
    pub expires: Option<i64>,
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
        if self.problems.len() < PROBLEMS_KEPT {
            self.problems.push(why);
        }
    }

    /// Something to say that skips nothing.
    fn note(&mut self, what: String) {
        if self.notes.len() < PROBLEMS_KEPT {
            self.notes.push(what);
        }
    }

    /// The network a note says was read with its host bits cleared.
    pub fn host_bits_cleared(note: &str) -> Option<IpNet> {
        note.rsplit_once(HOST_BITS)?.1.parse().ok()
    }

    /// What `ispf feeds` shows: what was skipped first (a listing shows
    /// the first few, and a skipped line must not hide behind notes),
    /// then the notes.
    pub fn report(&self) -> Vec<String> {
        self.problems
            .iter()
            .chain(&self.notes)
            .take(PROBLEMS_KEPT)
            .cloned()
            .collect()
    }

    /// Takes `net` (read from `written`, at `at`: a line or an indicator)
    /// unless it is too broad to be a threat (see [`guard::too_broad`]); says
    /// where host bits were cleared.
    fn take(&mut self, written: &str, net: IpNet, at: &str, entry: impl FnOnce(IpNet) -> Entry) {
        // An IPv4 address written IPv4-mapped (`::ffff:203.0.113.5`) is
        // the IPv4 address: the datapath looks IPv4 packets up in the IPv4
        // maps only, where the mapped form would never match.
        let net = unmapped(net);
        if let Some(why) = guard::too_broad(&net) {
            self.skip(format!("{at}: `{written}` {why}; skipped"));
            return;
        }
        if written.contains('/') && net != net.trunc() {
            self.note(format!("{at}: `{written}`{HOST_BITS}{}", net.trunc()));
        }
        self.entries.push(entry(net.trunc()));
    }
}

/// `net` as IPv4 when it is an IPv4-mapped IPv6 network (prefix ≥ 96).
fn unmapped(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// Parses a feed's text in its format. A plain text of which no line is
/// an address or a network, yet some line is not one at all, is not a
/// feed (a proxy's error page answered with 200, an HTML login page): it
/// fails, so the last good contents stay, where taking it would empty the
/// list. A text of comments and blank lines only is an emptied list.
pub fn parse(format: FeedFormat, text: &str, now: i64) -> Result<Contents, FeedError> {
    match format {
        FeedFormat::Plain => {
            // Lines skipped as too broad to be a threat are a feed's.
            let (c, unreadable) = plain::read(text);
            if c.entries.is_empty() && unreadable > 0 && unreadable == c.skipped {
                return Err(FeedError::Parse(format!(
                    "no line is an address or network, {} skipped ({}): not a plain feed, perhaps an error or login page; check the source",
                    c.skipped,
                    c.problems.first().map(String::as_str).unwrap_or("")
                )));
            }
            Ok(c)
        }
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
    /// Shows `c` as the feed's contents: what is enforced of it and what
    /// was skipped.
    pub fn show(&mut self, c: &Contents) {
        self.entries = c.distinct();
        self.skipped = c.skipped;
        self.problems = c.report();
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// An error page answered with 200 is not an emptied list.
    #[test]
    fn a_plain_text_without_one_address_fails_unless_it_is_only_comments() {
        let page = "<html>\n<body>Access denied by proxy</body>\n</html>\n";
        let e = parse(FeedFormat::Plain, page, 0).unwrap_err().to_string();
        assert!(e.contains("3 skipped") && e.contains("line 1"), "{e}");
        let emptied = parse(FeedFormat::Plain, "# nothing listed today\n\n", 0).unwrap();
        assert!(emptied.entries.is_empty());
        // One readable line among bad ones: a feed, its bad lines skipped.
        let c = parse(FeedFormat::Plain, "garbage\n192.0.2.1\n", 0).unwrap();
        assert_eq!((c.entries.len(), c.skipped), (1, 1));
        // IPv4-mapped IPv6 is IPv4, where the datapath looks IPv4 up.
        let c = parse(
            FeedFormat::Plain,
            "::ffff:203.0.113.5\n::ffff:198.51.100.0/120\n",
            0,
        )
        .unwrap();
        let nets: Vec<String> = c.entries.iter().map(|e| e.net.to_string()).collect();
        assert_eq!(nets, ["203.0.113.5/32", "198.51.100.0/24"]);
        // Addresses all skipped as too broad are a feed's lines, skipped.
        let c = parse(FeedFormat::Plain, "0.0.0.0/0\n", 0).unwrap();
        assert_eq!((c.entries.len(), c.skipped), (0, 1));
    }
}
