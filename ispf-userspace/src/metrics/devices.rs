//! The inventory's metrics: devices by segment and state, sightings,
//! moves, address changes, quarantines, and what the inventory could not
//! record. Labels are segments and states, never a MAC or an address.

use std::{collections::BTreeMap, sync::atomic::Ordering};

use prometheus::Registry;

use super::{counter, gauge, gauge1};
use crate::{
    clock::unix_now,
    decisions::{holding, Decision, Kind},
    inventory::Facts,
};

/// What the inventory reports, read once per scrape.
#[derive(Debug, Clone, Default)]
pub struct DeviceFacts {
    pub counts: BTreeMap<(String, &'static str), u64>,
    pub sightings: u64,
    pub moves: u64,
    pub ip_changes: u64,
    pub new_devices: u64,
    pub overflow: u64,
    pub behind: u64,
    pub timeline_dropped: u64,
    pub up: bool,
    pub quarantined: u64,
    pub admitted: u64,
}

impl DeviceFacts {
    pub fn of(f: &Facts, decisions: &[Decision]) -> Self {
        let hold = holding(decisions, unix_now());
        let n = |k: Kind| hold.values().filter(|d| d.kind == k).count() as u64;
        Self {
            counts: f.counts.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            sightings: f.sightings.load(Ordering::Relaxed),
            moves: f.moves.load(Ordering::Relaxed),
            ip_changes: f.ip_changes.load(Ordering::Relaxed),
            new_devices: f.new_devices.load(Ordering::Relaxed),
            overflow: f.overflow.load(Ordering::Relaxed),
            behind: f.behind.load(Ordering::Relaxed),
            timeline_dropped: f.timeline_dropped.load(Ordering::Relaxed),
            up: f.error().is_none(),
            quarantined: n(Kind::Quarantine),
            admitted: n(Kind::Admit),
        }
    }
}

pub(super) fn render(
    r: &Registry,
    d: &DeviceFacts,
    sightings_limited: u64,
) -> prometheus::Result<()> {
    let devices = gauge(
        r,
        "ispf_devices",
        "Devices in the inventory, by the segment they are in now and their state (registered, admitted, role, learned, unknown, quarantined).",
        &["segment", "state"],
    )?;
    for ((segment, state), n) in &d.counts {
        devices
            .with_label_values(&[segment.as_str(), state])
            .set(*n as i64);
    }
    let c1 = |name: &str, help: &str, v: u64| -> prometheus::Result<()> {
        let c = prometheus::IntCounter::new(name, help)?;
        r.register(Box::new(c.clone()))?;
        c.inc_by(v);
        Ok(())
    };
    c1(
        "ispf_device_sightings_total",
        "Sightings of devices (and DHCP/LLDP fingerprints) the inventory took in.",
        d.sightings,
    )?;
    c1(
        "ispf_device_moves_total",
        "Devices seen on another port or VLAN than before.",
        d.moves,
    )?;
    c1(
        "ispf_device_ip_changes_total",
        "Devices seen with a new source address.",
        d.ip_changes,
    )?;
    c1(
        "ispf_devices_new_total",
        "Devices seen for the first time.",
        d.new_devices,
    )?;
    let lost = counter(
        r,
        "ispf_inventory_lost_total",
        "What the inventory could not record, by cause: over the cap on unknown devices (--max-unknown-devices), the ingest thread behind, the datapath's sighting rate limit, the timeline while the database could not be written.",
        &["cause"],
    )?;
    lost.with_label_values(&["unknown_device_cap"])
        .inc_by(d.overflow);
    lost.with_label_values(&["ingest_behind"]).inc_by(d.behind);
    lost.with_label_values(&["rate_limited"])
        .inc_by(sightings_limited);
    lost.with_label_values(&["timeline_unwritable"])
        .inc_by(d.timeline_dropped);
    gauge1(
        r,
        "ispf_inventory_up",
        "1 if the inventory database can be written, 0 if not (enforcement is unaffected; the log says why).",
    )?
    .set(d.up as i64);
    gauge1(
        r,
        "ispf_quarantined_devices",
        "Devices a quarantine decision holds for.",
    )?
    .set(d.quarantined as i64);
    gauge1(
        r,
        "ispf_admitted_devices",
        "Devices an admit decision holds for.",
    )?
    .set(d.admitted as i64);
    Ok(())
}
