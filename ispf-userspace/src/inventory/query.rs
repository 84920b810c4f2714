//! `ispf devices` and `ispf device MAC`: the inventory's rows joined with
//! what is enforced now — the segment each device is in and why, its
//! state, the file's metadata for registered devices and the decision
//! that holds for it.

use std::{collections::BTreeMap, path::Path};

use foldhash::HashSet;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::{
    db::{self, DbError},
    judge::{Judge, Judged},
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

    /// The row of `mac`, seen as `d` (moved into the row: a listing
    /// builds 100k of them).
    pub fn row(&self, d: Option<Device>, mac: &[u8; 6], ips: Vec<String>) -> DeviceRow {
        let p = self.judge.policy();
        let macs = mac_string(mac);
        let pl = match &d {
            Some(d) => self.judge.place(mac, d.vlan, d.ipv4, d.ipv6),
            None => self.judge.place_unseen(mac),
        };
        let held_d = self.hold.get(macs.as_str()).copied();
        let state = state_of(held_d, pl.judged);
        let doc = pl.device.and_then(|i| p.doc.devices.get(i));
        // An entry a decision added is named by the decision, or not at
        // all: a name made up of its kind and MAC names nothing.
        let named = pl.judged != Judged::Decision || held_d.is_some_and(|d| d.name.is_some());
        let mut r = DeviceRow {
            mac: macs,
            vendor: None,
            ips,
            vlan: None,
            interface: None,
            segment: p.segment_name(pl.segment).to_owned(),
            state: state.as_str().into(),
            judged: pl.judged.as_str().into(),
            first_seen: None,
            last_seen: None,
            hostname: None,
            vendor_class: None,
            dhcp_params: None,
            name: doc.filter(|_| named).map(|x| x.name.clone()),
            kind: doc.and_then(|x| x.kind.clone()),
            risk: doc.and_then(|x| x.risk).map(|r| r.as_str().to_owned()),
            location: doc.and_then(|x| x.location.clone()),
            decision: held_d.map(held),
        };
        if let Some(d) = d {
            r.vendor = d.vendor;
            r.vlan = Some(d.vlan);
            r.interface = Some(d.interface);
            r.first_seen = Some(rfc3339(d.first_seen));
            r.last_seen = Some(rfc3339(d.last_seen));
            r.hostname = d.hostname;
            r.vendor_class = d.vendor_class;
            r.dhcp_params = d.dhcp_params;
        }
        r
    }

    fn wanted(&self, r: &DeviceRow, f: &DeviceFilter, first_seen: Option<i64>) -> bool {
        (!f.unknown || r.state == State::Unknown.as_str())
            && (!f.quarantined || r.state == State::Quarantined.as_str())
            && f.segment.as_ref().is_none_or(|s| &r.segment == s)
            && f.since.is_none_or(|t| first_seen.is_some_and(|fs| fs >= t))
    }
}

/// Every device matching `f` as JSON lines, one [`DeviceRow`] per line,
/// most recently seen first; devices a decision names that were never
/// seen come last. Returns how many lines.
pub fn list(
    db: &Path,
    view: &View,
    f: &DeviceFilter,
    now: i64,
) -> Result<(usize, Vec<u8>), DbError> {
    // Devices and their addresses are read side by side, each by a reader
    // connection of its own (SQLite's reads are CPU-bound here).
    let (devices, mut ips) = std::thread::scope(|s| {
        let ips = s.spawn(|| store::addresses(&db::open_reader(db)?));
        let devices = store::devices(&db::open_reader(db)?).map(|mut d| {
            d.sort_by_key(|d| std::cmp::Reverse(d.last_seen));
            d
        });
        let ips = ips.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        Ok::<_, DbError>((devices?, ips?))
    })?;
    let rows = Rows::new(view, now);
    // Devices a decision names, until the inventory lists them.
    let mut unseen: HashSet<[u8; 6]> = rows
        .hold
        .keys()
        .filter_map(|m| crate::policy::parse_mac(m))
        .collect();
    let mut work = Vec::with_capacity(devices.len());
    for d in devices {
        unseen.remove(&d.mac);
        work.push((d.mac, ips.take(&d.mac), Some(d)));
    }
    for mac in rows.hold.keys() {
        if let Some(m) = crate::policy::parse_mac(mac).filter(|m| unseen.remove(m)) {
            work.push((m, Vec::new(), None));
        }
    }
    let parts = in_parts(work, |part| {
        let (mut n, mut out) = (0, Vec::with_capacity(part.len() * 400));
        for (mac, ips, d) in part {
            let first_seen = d.as_ref().map(|d| d.first_seen);
            let r = rows.row(d, &mac, ips);
            if rows.wanted(&r, f, first_seen) {
                // Infallible: a struct of strings, written to memory.
                serde_json::to_writer(&mut out, &r).expect("a device row serializes");
                out.push(b'\n');
                n += 1;
            }
        }
        (n, out)
    });
    let mut total = (0, Vec::with_capacity(parts.iter().map(|p| p.1.len()).sum()));
    for (n, out) in parts {
        total.0 += n;
        total.1.extend_from_slice(&out);
    }
    Ok(total)
}

/// Runs `f` on consecutive parts of `items`, on two threads when there
/// are two cores, and returns the parts' results in order: a listing of
/// 100k devices is CPU-bound and a second core halves it; more would take
/// cores from the datapath's softirqs and the ingest thread for an
/// operator's query.
fn in_parts<T: Send, R: Send>(mut items: Vec<T>, f: impl Fn(Vec<T>) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parts = if items.len() < 4096 { 1 } else { cores.min(2) };
    let size = items.len().div_ceil(parts).max(1);
    let mut chunks = Vec::with_capacity(parts);
    while items.len() > size {
        chunks.push(items.split_off(items.len() - size));
    }
    chunks.push(items);
    chunks.reverse();
    if chunks.len() == 1 {
        return chunks.into_iter().map(f).collect();
    }
    std::thread::scope(|s| {
        let f = &f;
        let running: Vec<_> = chunks.into_iter().map(|c| s.spawn(move || f(c))).collect();
        running
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
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
    // A device the file registers is known before it is ever seen.
    let registered = || rows.judge.place_unseen(mac).device.is_some();
    if d.is_none() && timeline.is_empty() && !decided && !registered() {
        return Ok(None);
    }
    let ips = store::addresses_of(conn, mac)?;
    Ok(Some((rows.row(d, mac, ips), timeline)))
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

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
