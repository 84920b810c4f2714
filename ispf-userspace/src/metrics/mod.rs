//! `/metrics` in the Prometheus text format. Labels are bounded by the
//! policy (segments, rules, reasons, maps, interfaces), never by device or
//! address, so a hospital's Prometheus does not explode with cardinality.

mod detection;
mod devices;
mod feeds;
mod fleet;
pub mod http;
mod identity;

pub use devices::DeviceFacts;

use std::collections::BTreeMap;

use ispf_common::{CounterKey, CounterVal};
use prometheus::{Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::{control::InterfaceStatus, datapath::Stats, events::rule_label, policy::Policy};

/// What the inventory, the feeds and detection report.
pub struct Extra<'a> {
    pub devices: &'a DeviceFacts,
    pub feeds: &'a [crate::feeds::FeedStatus],
    pub detection: &'a crate::detect::Facts,
    pub identity: &'a crate::identity::Facts,
    pub fleet: Option<&'a crate::fleet::Facts>,
}

/// Controller-side facts the datapath does not hold.
pub struct ControllerFacts<'a> {
    pub policy: &'a Policy,
    pub interfaces: &'a [InterfaceStatus],
    pub generation: u32,
    pub last_reload_unix: i64,
    pub last_reload_ok: bool,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub events_written: u64,
    pub events_slow_reader: u64,
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn gauge1(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Renders every metric from the maps as they are now; `counters` are
/// those of the segments `f.policy` has.
pub fn render(
    dp: &Stats,
    counters: &BTreeMap<CounterKey, CounterVal>,
    f: &ControllerFacts,
    x: &Extra,
) -> prometheus::Result<String> {
    let r = Registry::new();
    let labels = ["src_segment", "dst_segment", "verdict", "reason"];
    let packets = counter(
        &r,
        "ispf_packets_total",
        "Packets judged, by segment pair, verdict and reason.",
        &labels,
    )?;
    let bytes = counter(
        &r,
        "ispf_bytes_total",
        "Bytes judged, by segment pair, verdict and reason.",
        &labels,
    )?;
    let rules = counter(
        &r,
        "ispf_rule_hits_total",
        "Packets decided by each rule (its id, else rules[N]), by segment pair.",
        &["rule", "src_segment", "dst_segment"],
    )?;
    let would = counter(
        &r,
        "ispf_would_drop_packets_total",
        "Packets a monitor-mode segment passed that enforcement would drop, by segment pair.",
        &["src_segment", "dst_segment"],
    )?;
    let name = |id| f.policy.segment_name(id).to_owned();
    for (k, v) in counters {
        let (src, dst) = (name(k.src), name(k.dst));
        let verdict = if k.verdict == ispf_common::VERDICT_PASS {
            "pass"
        } else {
            "drop"
        };
        let reason = ispf_common::reason_name(k.reason).unwrap_or("unknown");
        packets
            .with_label_values(&[&src, &dst, verdict, reason])
            .inc_by(v.packets);
        bytes
            .with_label_values(&[&src, &dst, verdict, reason])
            .inc_by(v.bytes);
        if let Some(rule) = rule_label(f.policy, k.rule) {
            rules
                .with_label_values(&[&rule, &src, &dst])
                .inc_by(v.packets);
        }
        if k.reason == ispf_common::REASON_WOULD_DROP {
            would.with_label_values(&[&src, &dst]).inc_by(v.packets);
        }
    }
    let entries = gauge(
        &r,
        "ispf_map_entries",
        "Entries in use per map (both policy generations).",
        &["map"],
    )?;
    let capacity = gauge(
        &r,
        "ispf_map_capacity_entries",
        "Capacity of each map.",
        &["map"],
    )?;
    let (occupancy, by_proto) = dp.occupancy_and_protocols();
    for (map, used, cap) in occupancy {
        entries.with_label_values(&[map]).set(used as i64);
        capacity.with_label_values(&[map]).set(cap as i64);
    }
    let ct = gauge(
        &r,
        "ispf_conntrack_entries",
        "Tracked connections by protocol.",
        &["protocol"],
    )?;
    for (proto, n) in by_proto {
        let family = if proto == 58 {
            ispf_common::FAMILY_V6
        } else {
            ispf_common::FAMILY_V4
        };
        ct.with_label_values(&[&crate::events::protocol_name(family, proto)])
            .set(n as i64);
    }
    gauge1(
        &r,
        "ispf_policy_generation",
        "Generation (epoch) of the enforced policy.",
    )?
    .set(f.generation as i64);
    gauge1(
        &r,
        "ispf_policy_last_reload_timestamp_seconds",
        "Unix time of the last reload attempt (or start).",
    )?
    .set(f.last_reload_unix);
    gauge1(
        &r,
        "ispf_policy_last_reload_success",
        "1 if the last reload attempt was applied, 0 if refused.",
    )?
    .set(f.last_reload_ok as i64);
    let reloads = counter(
        &r,
        "ispf_policy_reloads_total",
        "Reload attempts by result.",
        &["result"],
    )?;
    reloads.with_label_values(&["applied"]).inc_by(f.reloads_ok);
    reloads
        .with_label_values(&["refused"])
        .inc_by(f.reloads_failed);
    let attach = gauge(
        &r,
        "ispf_interface_attached",
        "1 per interface the kernel has ispf attached to, 0 for one ispf should enforce but cannot now (the port is gone), with its XDP mode.",
        &["interface", "mode"],
    )?;
    for i in f.interfaces {
        attach
            .with_label_values(&[&i.name, &i.mode])
            .set(i.attached as i64);
    }
    let t = dp.event_totals();
    let events = counter(
        &r,
        "ispf_events_total",
        "Flow events emitted by the datapath and written by the controller.",
        &["stage"],
    )?;
    // Sightings are the inventory's, counted under its own metrics.
    events
        .with_label_values(&["emitted"])
        .inc_by(t.emitted.saturating_sub(t.sightings));
    events
        .with_label_values(&["written"])
        .inc_by(f.events_written);
    let lost = counter(
        &r,
        "ispf_events_lost_total",
        "Flow events not delivered, by cause.",
        &["cause"],
    )?;
    lost.with_label_values(&["rate_limited"])
        .inc_by(t.rate_limited);
    lost.with_label_values(&["ring_buffer_full"])
        .inc_by(t.ringbuf_full);
    lost.with_label_values(&["slow_reader"])
        .inc_by(f.events_slow_reader);
    devices::render(&r, x.devices, t.sightings_limited)?;
    feeds::render(&r, x.feeds)?;
    detection::render(&r, x.detection)?;
    identity::render(&r, x.identity)?;
    if let Some(f) = x.fleet {
        fleet::render(&r, f)?;
    }

    let mut out = Vec::new();
    TextEncoder::new().encode(&r.gather(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
