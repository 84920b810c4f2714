//! The policy document as written (`shared/spec/policy.md`, version 1), with
//! the optional extensions ispf adds. The JSON Schema shipped in
//! `schema/policy.schema.json` is generated from these types.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    identity::IdentityDoc,
    sections::{DetectionDoc, FeedDoc, Risk},
};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Format version; must be 1.
    pub version: u32,
    #[serde(default)]
    pub defaults: Defaults,
    pub segments: Vec<SegmentDoc>,
    #[serde(default)]
    pub devices: Vec<DeviceDoc>,
    #[serde(default)]
    pub rules: Vec<RuleDoc>,
    /// Threat-intelligence feeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feeds: Vec<FeedDoc>,
    /// Detection and automatic response; absent: no detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<DetectionDoc>,
    /// Identity-based clearance: RADIUS accounting and roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityDoc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fragments {
    #[default]
    Track,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Monitor,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Action for traffic no rule matches (and for non-IP frames).
    #[serde(default = "deny")]
    pub default_action: Action,
    /// Segment that unidentified sources join; created if not listed.
    #[serde(default = "quarantine")]
    pub unknown_source: String,
    /// ARP, ND/RA/RS, DHCP/DHCPv6, LLDP, STP.
    #[serde(default = "allow")]
    pub infrastructure: Action,
    #[serde(default)]
    pub fragments: Fragments,
    /// MAC addresses of the care unit's gateways.
    #[serde(default)]
    pub routers: Vec<String>,
    /// Extension: connection-tracking and fragment timeouts, in seconds.
    #[serde(default)]
    pub timeouts: Timeouts,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            default_action: Action::Deny,
            unknown_source: quarantine(),
            infrastructure: Action::Allow,
            fragments: Fragments::Track,
            routers: Vec::new(),
            timeouts: Timeouts::default(),
        }
    }
}

fn deny() -> Action {
    Action::Deny
}
fn allow() -> Action {
    Action::Allow
}
fn quarantine() -> String {
    "quarantine".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default = "t_tcp")]
    pub tcp: u32,
    /// After a FIN: long enough for the last ACKs.
    #[serde(default = "t_tcp_closing")]
    pub tcp_closing: u32,
    #[serde(default = "t_udp")]
    pub udp: u32,
    #[serde(default = "t_icmp")]
    pub icmp: u32,
    #[serde(default = "t_fragment")]
    pub fragment: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp: t_tcp(),
            tcp_closing: t_tcp_closing(),
            udp: t_udp(),
            icmp: t_icmp(),
            fragment: t_fragment(),
        }
    }
}
fn t_tcp() -> u32 {
    3600
}
fn t_tcp_closing() -> u32 {
    10
}
fn t_udp() -> u32 {
    60
}
fn t_icmp() -> u32 {
    30
}
fn t_fragment() -> u32 {
    30
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentDoc {
    /// `[a-z0-9-]{1,32}`, unique.
    pub name: String,
    /// 802.1Q VLAN IDs whose unregistered sources join this segment.
    #[serde(default)]
    pub vlans: Vec<u16>,
    /// IPv4/IPv6 CIDRs owned by the segment; the longest prefix wins.
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "allow")]
    pub intra: Action,
    #[serde(default)]
    pub life_critical: bool,
}

/// One address or a list.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        self.as_slice().to_vec()
    }

    /// The addresses in place, for loops over every device.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Self::One(x) => std::slice::from_ref(x),
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct DeviceDoc {
    pub name: String,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub ipv4: Option<OneOrMany<Ipv4Addr>>,
    #[serde(default)]
    pub ipv6: Option<OneOrMany<Ipv6Addr>>,
    /// When set, the MAC identity only holds on this VLAN.
    #[serde(default)]
    pub vlan: Option<u16>,
    pub segment: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub risk: Option<Risk>,
    #[serde(default)]
    pub location: Option<String>,
    /// Any other string fields: inventory metadata.
    #[serde(flatten)]
    pub extra: BTreeMap<String, String>,
}

/// `tcp`, `udp`, `icmp`, `sctp`, or an IP protocol number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ProtoDoc {
    Number(u8),
    Name(String),
}

/// A destination port or an inclusive `"lo-hi"` range.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PortDoc {
    Port(u16),
    Range(String),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    /// Extension: a stable identifier for counters and events.
    #[serde(default)]
    pub id: Option<String>,
    /// Extension: free text.
    #[serde(default)]
    pub description: Option<String>,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub proto: Option<ProtoDoc>,
    #[serde(default)]
    pub ports: Option<Vec<PortDoc>>,
    pub action: Action,
}
