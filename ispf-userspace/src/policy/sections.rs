//! The optional sections of the policy document beyond segments, devices
//! and rules: threat-intelligence `feeds` and `detection` (the spec's
//! "Threat-intelligence feeds" and "Detection and response").

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{model::Risk, PolicyDoc, Problem};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeedFormat {
    /// One IPv4/IPv6 address or CIDR a line; `#` comments, blank lines.
    #[default]
    Plain,
    /// A STIX 2.1 bundle of indicators.
    Stix2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeedAction {
    #[default]
    Deny,
    Alert,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedDoc {
    pub name: String,
    /// A local file or an `http(s)` URL.
    pub source: String,
    #[serde(default)]
    pub format: FeedFormat,
    /// Seconds between refreshes (files also reload when they change).
    #[serde(default = "refresh_s")]
    pub refresh_s: u32,
    #[serde(default)]
    pub action: FeedAction,
}

fn refresh_s() -> u32 {
    300
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanDoc {
    #[serde(default = "distinct_targets")]
    pub distinct_targets: u32,
    #[serde(default = "window_s")]
    pub window_s: u32,
}

impl Default for ScanDoc {
    fn default() -> Self {
        Self {
            distinct_targets: distinct_targets(),
            window_s: window_s(),
        }
    }
}

fn distinct_targets() -> u32 {
    20
}
fn window_s() -> u32 {
    10
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectionDoc {
    /// A device's new east-west flows are learned as its baseline while it
    /// is younger than this (seconds from its first sighting).
    #[serde(default = "learning_s")]
    pub learning_s: u64,
    #[serde(default)]
    pub scan: ScanDoc,
    /// Risks whose devices are quarantined on a `scan` or `critical` alert.
    #[serde(default)]
    pub auto_quarantine: Vec<Risk>,
    #[serde(default = "quarantine_ttl_s")]
    pub quarantine_ttl_s: u64,
}

fn learning_s() -> u64 {
    604_800
}
fn quarantine_ttl_s() -> u64 {
    3600
}

/// Problems of the `feeds` and `detection` sections, at their JSON paths.
pub(super) fn check(doc: &PolicyDoc) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut add = |path: String, message: String| out.push(Problem { path, message });
    if doc.feeds.len() > ispf_common::MAX_FEEDS as usize {
        add(
            "feeds".into(),
            format!(
                "{} feeds; at most {} are supported: merge some",
                doc.feeds.len(),
                ispf_common::MAX_FEEDS
            ),
        );
    }
    let mut names = std::collections::HashMap::new();
    for (i, f) in doc.feeds.iter().enumerate() {
        let path = format!("feeds[{i}]");
        if f.name.is_empty() || f.name.len() > 64 || f.name.chars().any(|c| c.is_control()) {
            add(
                format!("{path}.name"),
                "a feed needs a name of 1-64 printable characters".into(),
            );
        }
        if let Some(first) = names.insert(f.name.as_str(), i) {
            add(
                format!("{path}.name"),
                format!("feed `{}` is already defined at feeds[{first}]", f.name),
            );
        }
        let s = f.source.trim();
        let url = s.starts_with("http://") || s.starts_with("https://");
        if s.is_empty() || (!url && !s.starts_with('/')) {
            add(
                format!("{path}.source"),
                format!(
                    "`{}` is neither an absolute file path nor an http(s) URL",
                    f.source
                ),
            );
        }
        if f.refresh_s == 0 {
            add(
                format!("{path}.refresh_s"),
                "must be at least 1 second".into(),
            );
        }
    }
    if let Some(d) = &doc.detection {
        if d.scan.distinct_targets == 0 {
            add(
                "detection.scan.distinct_targets".into(),
                "must be at least 1".into(),
            );
        }
        if d.scan.window_s == 0 {
            add(
                "detection.scan.window_s".into(),
                "must be at least 1 second".into(),
            );
        }
        if d.quarantine_ttl_s == 0 {
            add(
                "detection.quarantine_ttl_s".into(),
                "must be at least 1 second".into(),
            );
        }
    }
    out
}
