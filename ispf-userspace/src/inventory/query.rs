//! `ispf devices` and `ispf device MAC`: the inventory's rows joined with
//! what is enforced now — the segment each device is in and why, its
//! state, the file's metadata for registered devices and the decision
//! that holds for it.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::{
    db::DbError,
    judge::Judge,
    state_of,
    store::{self, Device, TimelineEntry},
    State, View,
};
use crate::{
    clock::rfc3339,
    decisions::{holding, mac_string, Decision, Kind},
};

/// What `ispf devices` asks for; every set field must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeviceFilter {
    /// Only devices in state `unknown`.
    #[serde(default)]
    pub unknown: bool,
    /// Only devices in state `quarantined`.
    #[serde(default)]
    pub quarantined: bool,
    /// Only devices in this segment now.
    #[serde(default)]
    pub segment: Option<String>,
    /// Only devices first seen at or after this (unix seconds).
    #[serde(default)]
    pub since: Option<i64>,
}

/// The decision that holds for a device, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldDecision {
    pub kind: String,
    pub segment: Option<String>,
    pub reason: String,
    pub by: String,
    pub at: String,
    pub expires: Option<String>,
    pub forced: bool,
}

/// One device as `ispf devices --json` prints it (one object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRow {
    pub mac: String,
    pub vendor: Option<String>,
    /// Every address seen, newest first.
    pub ips: Vec<String>,
    pub vlan: Option<u16>,
    pub interface: Option<String>,
    /// The segment the enforced policy places it in now.
    pub segment: String,
    /// `registered`, `admitted`, `role`, `learned`, `unknown`, `quarantined`.
    pub state: String,
    /// How the policy places it: `registered`, `router`, `subnet`, `vlan`,
    /// `unknown`.
    pub judged: String,
    /// RFC 3339; absent for a device a decision names that was never seen.
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp_params: Option<String>,
    /// The policy device it is (registered or admitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<HeldDecision>,
}

fn held(d: &Decision) -> HeldDecision {
    HeldDecision {
        kind: d.kind.as_str().into(),
        segment: d.segment.clone(),
        reason: d.reason.clone(),
        by: d.actor.clone(),
        at: rfc3339(d.at),
        expires: d.expires.map(rfc3339),
        forced: d.forced,
    }
}

/// Builds rows; one [`Judge`] for all of them.
pub struct Rows<'a> {
    judge: Judge,
    hold: BTreeMap<&'a str, &'a Decision>,
}

impl<'a> Rows<'a> {
    pub fn new(view: &'a View, now: i64) -> Self {
        Self {
            judge: Judge::new(view.policy.clone()),
            hold: holding(&view.decisions, now),
        }
    }

    /// Rows of one device, or a few: the policy is scanned, not indexed.
    pub fn once(view: &'a View, now: i64) -> Self {
        Self {
            judge: Judge::once(view.policy.clone()),
            hold: holding(&view.decisions, now),
        }
    }

    pub fn row(&self, d: Option<&Device>, mac: &[u8; 6], ips: Vec<String>) -> DeviceRow {
        let p = self.judge.policy();
        let macs = mac_string(mac);
        let (vlan, v4, v6) = d.map_or((0, None, None), |d| (d.vlan, d.ipv4, d.ipv6));
        let pl = self.judge.place(mac, vlan, v4, v6);
        let held_d = self.hold.get(macs.as_str()).copied();
        let state = state_of(held_d, pl.judged);
        let doc = pl.device.and_then(|i| p.doc.devices.get(i));
        DeviceRow {
            mac: macs,
            vendor: d.and_then(|d| d.vendor.clone()),
            ips,
            vlan: d.map(|d| d.vlan),
            interface: d.map(|d| d.interface.clone()),
            segment: p.segment_name(pl.segment).to_owned(),
            state: state.as_str().into(),
            judged: pl.judged.as_str().into(),
            first_seen: d.map(|d| rfc3339(d.first_seen)),
            last_seen: d.map(|d| rfc3339(d.last_seen)),
            hostname: d.and_then(|d| d.hostname.clone()),
            vendor_class: d.and_then(|d| d.vendor_class.clone()),
            dhcp_params: d.and_then(|d| d.dhcp_params.clone()),
            name: doc.map(|x| x.name.clone()),
            kind: doc.and_then(|x| x.kind.clone()),
            risk: doc.and_then(|x| x.risk).map(|r| r.as_str().to_owned()),
            location: doc.and_then(|x| x.location.clone()),
            decision: held_d.map(held),
        }
    }

    fn wanted(&self, r: &DeviceRow, f: &DeviceFilter, first_seen: Option<i64>) -> bool {
        (!f.unknown || r.state == State::Unknown.as_str())
            && (!f.quarantined || r.state == State::Quarantined.as_str())
            && f.segment.as_ref().is_none_or(|s| &r.segment == s)
            && f.since.is_none_or(|t| first_seen.is_some_and(|fs| fs >= t))
    }
}

/// Every device matching `f`, most recently seen first; devices a decision
/// names that were never seen come last.
pub fn list(
    conn: &Connection,
    view: &View,
    f: &DeviceFilter,
    now: i64,
) -> Result<Vec<DeviceRow>, DbError> {
    let mut devices = store::devices(conn)?;
    devices.sort_by_key(|d| std::cmp::Reverse(d.last_seen));
    let mut ips = store::addresses(conn)?;
    let rows = Rows::new(view, now);
    let mut out = Vec::with_capacity(devices.len());
    let mut seen = std::collections::HashSet::with_capacity(devices.len());
    for d in devices {
        seen.insert(d.mac);
        let r = rows.row(Some(&d), &d.mac, ips.remove(&d.mac).unwrap_or_default());
        if rows.wanted(&r, f, Some(d.first_seen)) {
            out.push(r);
        }
    }
    for mac in rows.hold.keys() {
        let Some(m) = crate::policy::parse_mac(mac).filter(|m| !seen.contains(m)) else {
            continue;
        };
        let r = rows.row(None, &m, Vec::new());
        if rows.wanted(&r, f, None) {
            out.push(r);
        }
    }
    Ok(out)
}

/// One device with its timeline, newest first; `None` if the inventory
/// has never seen it and no decision names it.
pub fn one(
    conn: &Connection,
    view: &View,
    mac: &[u8; 6],
    now: i64,
) -> Result<Option<(DeviceRow, Vec<TimelineEntry>)>, DbError> {
    let d = store::device(conn, mac)?;
    let timeline = store::timeline(conn, mac)?;
    let rows = Rows::once(view, now);
    let decided = rows.hold.contains_key(mac_string(mac).as_str());
    if d.is_none() && timeline.is_empty() && !decided {
        return Ok(None);
    }
    let ips = store::addresses_of(conn, mac)?;
    Ok(Some((rows.row(d.as_ref(), mac, ips), timeline)))
}

/// The admitted devices as policy `devices` entries, to move into the file.
pub fn export_admitted(view: &View, now: i64) -> Vec<serde_json::Value> {
    holding(&view.decisions, now)
        .values()
        .filter(|d| d.kind == Kind::Admit)
        .map(|d| {
            let mut v = serde_json::json!({
                "name": d.name.clone().unwrap_or_else(|| format!("admitted-{}", d.mac.replace(':', ""))),
                "mac": d.mac,
                "segment": d.segment,
            });
            if let Some(r) = &d.risk {
                v["risk"] = serde_json::json!(r);
            }
            v["admitted_by"] = serde_json::json!(d.actor);
            v["admitted_reason"] = serde_json::json!(d.reason);
            v
        })
        .collect()
}
