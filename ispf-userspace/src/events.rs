//! Flow events as the controller reports them: decoded from the datapath's
//! ring buffer into JSON lines with names instead of numbers.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime},
};

use ispf_common::{
    reason_name, Event, EVENT_NEW_FLOW, EVENT_TCP_MIDSTREAM, EVENT_THREAT, FAMILY_V4, FAMILY_V6,
    RULE_NONE, VERDICT_PASS,
};
use serde::{Deserialize, Serialize};

use crate::policy::Policy;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventRecord {
    /// RFC 3339, millisecond precision.
    pub time: String,
    /// `denied` (first packet of a denied flow) or `new_flow` (an allowed
    /// east-west flow opened).
    pub event: String,
    pub interface: String,
    pub vlan: u16,
    pub src_mac: String,
    pub dst_mac: String,
    pub src_ip: Option<String>,
    pub dst_ip: Option<String>,
    pub protocol: String,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub src_segment: String,
    pub dst_segment: String,
    pub verdict: String,
    pub reason: String,
    /// `id` of the deciding rule, else `rules[N]`; absent when no rule decided.
    pub rule: Option<String>,
    /// `threat` events: the feed that lists an end, its action (`deny`,
    /// `alert`), the STIX indicator or plain-feed line, and the listed
    /// address or network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indicator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<String>,
    /// A TCP packet that cannot open a connection (no SYN, or SYN with
    /// ACK): a flow seen mid-stream, such as a server speaking first on a
    /// connection idle past the `tcp` timeout. Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub midstream: bool,
}

use crate::decisions::mac_string as mac;

fn ip(family: u8, a: &[u8; 16]) -> Option<String> {
    let addr: IpAddr = match family {
        FAMILY_V4 => Ipv4Addr::new(a[0], a[1], a[2], a[3]).into(),
        FAMILY_V6 => Ipv6Addr::from(*a).into(),
        _ => return None,
    };
    Some(addr.to_string())
}

pub fn protocol_name(family: u8, proto: u8) -> String {
    match (family, proto) {
        (0, _) => "non-ip".into(),
        (_, 6) => "tcp".into(),
        (_, 17) => "udp".into(),
        (_, 132) => "sctp".into(),
        (FAMILY_V4, 1) => "icmp".into(),
        (FAMILY_V6, 58) => "icmpv6".into(),
        (_, n) => n.to_string(),
    }
}

/// The label a rule carries in events and metrics.
pub fn rule_label(policy: &Policy, rule: u32) -> Option<String> {
    if rule == RULE_NONE {
        return None;
    }
    Some(
        match policy
            .doc
            .rules
            .get(rule as usize)
            .and_then(|r| r.id.clone())
        {
            Some(id) => id,
            None => format!("rules[{rule}]"),
        },
    )
}

pub fn ifname(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf is IF_NAMESIZE long, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("if{ifindex}");
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

impl EventRecord {
    pub fn decode(e: &Event, policy: &Policy) -> Self {
        let age = Duration::from_nanos(crate::system::monotonic_ns().saturating_sub(e.ts_ns));
        let when = SystemTime::now()
            .checked_sub(age)
            .unwrap_or_else(SystemTime::now);
        let ported = matches!(e.proto, 6 | 17 | 132) && e.family != 0;
        Self {
            time: humantime::format_rfc3339_millis(when).to_string(),
            // A flow a feed listed but let pass is a new flow like another
            // (the `threat` record beside it names the feed).
            event: if e.kind == EVENT_NEW_FLOW || e.kind == EVENT_THREAT {
                "new_flow"
            } else {
                "denied"
            }
            .into(),
            interface: ifname(e.ifindex),
            vlan: e.vlan,
            src_mac: mac(&e.src_mac),
            dst_mac: mac(&e.dst_mac),
            src_ip: ip(e.family, &e.src_ip),
            dst_ip: ip(e.family, &e.dst_ip),
            protocol: protocol_name(e.family, e.proto),
            src_port: ported.then(|| u16::from_be_bytes(e.sport)),
            dst_port: ported.then(|| u16::from_be_bytes(e.dport)),
            src_segment: policy.segment_name(e.src).into(),
            dst_segment: policy.segment_name(e.dst).into(),
            verdict: if e.verdict == VERDICT_PASS {
                "pass"
            } else {
                "drop"
            }
            .into(),
            reason: reason_name(e.reason).unwrap_or("unknown").into(),
            rule: if e.kind == EVENT_THREAT {
                None
            } else {
                rule_label(policy, e.rule)
            },
            feed: None,
            feed_action: None,
            indicator: None,
            listed: None,
            midstream: e.flags & EVENT_TCP_MIDSTREAM != 0,
        }
    }

    /// The `threat` record of a flow one of whose ends a feed lists.
    pub fn threat(&self, index: &crate::feeds::compile::FeedIndex) -> Option<EventRecord> {
        let ends = [&self.src_ip, &self.dst_ip];
        let hit = ends
            .iter()
            .filter_map(|a| a.as_deref()?.parse().ok())
            .filter_map(|ip| index.lookup(ip))
            .max_by_key(|l| l.deny)?;
        let mut t = self.clone();
        t.event = "threat".into();
        t.feed = Some(hit.feed);
        t.feed_action = Some(if hit.deny { "deny" } else { "alert" }.into());
        t.indicator = hit
            .indicator
            .or_else(|| hit.line.map(|l| format!("line {l}")));
        t.listed = Some(hit.net.to_string());
        Some(t)
    }
}

/// What `ispf events` asks to see; every set field must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventFilter {
    /// Matches either end.
    pub segment: Option<String>,
    pub reason: Option<String>,
    pub verdict: Option<String>,
}

impl EventFilter {
    /// Refuses a filter that could never match: a segment the policy does
    /// not have, a reason or verdict that does not exist.
    pub fn validate(&self, policy: &Policy) -> Result<(), String> {
        if let Some(s) = &self.segment {
            if policy.segment_id(s).is_none() {
                let names: Vec<&str> = policy.segments.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "no segment `{s}` in the enforced policy; it has: {}",
                    names.join(", ")
                ));
            }
        }
        if let Some(r) = &self.reason {
            if !ispf_common::REASON_NAMES.contains(&r.as_str()) {
                return Err(format!(
                    "no reason `{r}`; reasons are: {}",
                    ispf_common::REASON_NAMES.join(", ")
                ));
            }
        }
        if let Some(v) = &self.verdict {
            if v != "pass" && v != "drop" {
                return Err(format!("no verdict `{v}`; use pass or drop"));
            }
        }
        Ok(())
    }

    pub fn matches(&self, r: &EventRecord) -> bool {
        self.segment
            .as_ref()
            .is_none_or(|s| &r.src_segment == s || &r.dst_segment == s)
            && self.reason.as_ref().is_none_or(|x| &r.reason == x)
            && self.verdict.as_ref().is_none_or(|x| &r.verdict == x)
    }
}
