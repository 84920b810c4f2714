//! The optional sections of the policy document beyond segments, devices
//! and rules: threat-intelligence `feeds` and `detection` (the spec's
//! "Threat-intelligence feeds" and "Detection and response").

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    pub fn as_str(&self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}
