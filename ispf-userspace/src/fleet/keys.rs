//! The fleet's key layout in etcd, one site under one prefix:
//!
//! ```text
//! /ispf/v1/sites/<site>/policy                 the policy document (JSON bytes)
//! /ispf/v1/sites/<site>/history/<revision>     who pushed which revision, when (JSON)
//! /ispf/v1/sites/<site>/decisions/<mac>/<kind> one runtime decision (JSON)
//! /ispf/v1/sites/<site>/hosts/<hostname>       a host's status, bound to its lease (JSON)
//! ```
//!
//! Pure: names and parsing, unit-tested on the host.

use serde::{Deserialize, Serialize};

use crate::decisions::{Decision, Kind};

pub fn site_prefix(site: &str) -> String {
    format!("/ispf/v1/sites/{site}/")
}

pub fn policy(site: &str) -> String {
    format!("{}policy", site_prefix(site))
}

pub fn history_prefix(site: &str) -> String {
    format!("{}history/", site_prefix(site))
}

/// History keys sort by revision: zero-padded.
pub fn history(site: &str, revision: i64) -> String {
    format!("{}{revision:020}", history_prefix(site))
}

pub fn decisions_prefix(site: &str) -> String {
    format!("{}decisions/", site_prefix(site))
}

pub fn decision(site: &str, mac: &str, kind: Kind) -> String {
    format!("{}{mac}/{}", decisions_prefix(site), kind.as_str())
}

pub fn hosts_prefix(site: &str) -> String {
    format!("{}hosts/", site_prefix(site))
}

pub fn host(site: &str, name: &str) -> String {
    format!("{}{name}", hosts_prefix(site))
}

/// What a key under a site's prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Policy,
    History(i64),
    Decision { mac: String, kind: Kind },
    Host(String),
    Other,
}

pub fn parse(site: &str, key: &[u8]) -> Key {
    let Ok(key) = std::str::from_utf8(key) else {
        return Key::Other;
    };
    let Some(rest) = key.strip_prefix(&site_prefix(site)) else {
        return Key::Other;
    };
    if rest == "policy" {
        return Key::Policy;
    }
    if let Some(r) = rest.strip_prefix("history/") {
        return r.parse().map_or(Key::Other, Key::History);
    }
    if let Some(r) = rest.strip_prefix("decisions/") {
        if let Some((mac, kind)) = r.split_once('/') {
            // Only the spelling ispf writes: another one (capitals,
            // dashes) would stand for the real key in this host's set, and
            // deleting it would lift the decision while the key stays.
            if let (Ok(canonical), Some(kind)) =
                (crate::decisions::canonical_mac(mac), Kind::parse(kind))
            {
                if canonical == mac {
                    return Key::Decision {
                        mac: canonical,
                        kind,
                    };
                }
            }
        }
        return Key::Other;
    }
    if let Some(r) = rest.strip_prefix("hosts/") {
        if !r.is_empty() && !r.contains('/') {
            return Key::Host(r.to_owned());
        }
    }
    Key::Other
}

/// A site name goes into every key: letters, digits, `-`, `_`, `.`.
pub fn valid_site(site: &str) -> bool {
    !site.is_empty()
        && site.len() <= 64
        && site
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && site != "."
        && site != ".."
}

/// One push, as `ispf fleet history` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    pub revision: i64,
    pub by: String,
    /// Unix seconds.
    pub at: i64,
    pub sha256: String,
    pub from_file: String,
    /// etcd's store revision of the write (where `history` finds the
    /// document again, until etcd compacts it).
    #[serde(default)]
    pub etcd_revision: i64,
}

/// A host's status key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub host: String,
    /// The etcd revision of the policy this host enforces (0: its own file).
    pub revision: i64,
    pub generation: u32,
    pub policy_sha256: String,
    pub interfaces: Vec<String>,
    /// `ok`, or what is wrong.
    pub health: String,
    pub last_error: Option<String>,
    /// Unix seconds of this report.
    pub reported: i64,
}

/// A decision as the fleet stores it: exactly the local type.
pub fn decode_decision(value: &[u8]) -> Option<Decision> {
    serde_json::from_slice(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let s = "st-marys";
        assert!(valid_site(s));
        for bad in ["", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(!valid_site(bad), "{bad}");
        }
        assert_eq!(parse(s, policy(s).as_bytes()), Key::Policy);
        assert_eq!(parse(s, history(s, 42).as_bytes()), Key::History(42));
        assert!(history(s, 9) < history(s, 10), "history sorts by revision");
        assert_eq!(
            parse(
                s,
                decision(s, "02:00:00:00:30:01", Kind::Quarantine).as_bytes()
            ),
            Key::Decision {
                mac: "02:00:00:00:30:01".into(),
                kind: Kind::Quarantine
            }
        );
        assert_eq!(
            parse(s, host(s, "bridge-3w-a").as_bytes()),
            Key::Host("bridge-3w-a".into())
        );
        assert_eq!(parse(s, b"/ispf/v1/sites/other/policy"), Key::Other);
        assert_eq!(
            parse(
                s,
                format!("{}decisions/nope/admit", site_prefix(s)).as_bytes()
            ),
            Key::Other
        );
        assert_eq!(parse(s, &[0xff, 0xfe]), Key::Other);
        for spelling in ["02-00-00-00-30-01", "02:00:00:00:30:0A", "2:0:0:0:30:1"] {
            assert_eq!(
                parse(
                    s,
                    format!("{}decisions/{spelling}/quarantine", site_prefix(s)).as_bytes()
                ),
                Key::Other,
                "{spelling}"
            );
        }
    }
}
