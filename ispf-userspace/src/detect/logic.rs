//! The spec's detection rules as a pure state machine over flow events:
//! each device's east-west baseline while it is young, `anomaly` alerts
//! for what is outside it afterwards, `scan` alerts for many distinct
//! targets in a window; with the bounds that keep an alert storm (or a MAC
//! flood) from growing memory or drowning the operator. Time is passed in,
//! so it is tested without waiting.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{held::Held, scan};
use crate::policy::DetectionDoc;

/// One new flow of a device, as detection needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub mac: String,
    pub src_segment: String,
    pub dst_segment: String,
    pub dst_ip: String,
    pub protocol: String,
    /// 0 for protocols without ports.
    pub port: u16,
    pub shape: Shape,
    /// Its source address: a device the file registers by address alone
    /// has its risk there.
    pub src_ip: Option<String>,
}

/// How a flow's first packet can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// It opens a flow: learned, an anomaly, a scan's target.
    Opening,
    /// A denied TCP packet that cannot open a connection (no SYN, or SYN
    /// with ACK): a scan's target (an ACK scan is a scan), but neither
    /// learned nor an anomaly, since it opened no flow to a service.
    Midstream,
    /// A denied mid-stream packet that passed in monitor mode, or was
    /// dropped coming from a port its destination may open towards it
    /// (see `shape`): a server answering a monitor-mode client, or
    /// speaking on a connection idle past conntrack's `tcp` timeout. Not
    /// a scan's target either, so that a server answering twenty clients
    /// is not quarantined as a scanner.
    Reply,
}

/// (destination segment, protocol, port)
pub type Service = (String, String, u16);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Scan,
    Anomaly,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Scan => "scan",
            Kind::Anomaly => "anomaly",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub mac: String,
    pub kind: Kind,
    pub critical: bool,
    /// It may quarantine its device (a scan from outside a life-critical
    /// segment, an anomaly towards one from outside): raised first when
    /// alerts are held back.
    pub urgent: bool,
    pub segment: String,
    pub detail: String,
    /// An anomaly's service.
    pub service: Option<Service>,
    /// The flow's source address (see [`Flow::src_ip`]).
    pub src_ip: Option<String>,
}

/// What detection knows of the world outside the events.
pub trait Context {
    /// Unix seconds the device was first seen (None: not yet known).
    fn first_seen(&mut self, mac: &str) -> Option<i64>;
    fn life_critical(&self, segment: &str) -> bool;
    /// The device's learned baseline and the services it already alerted
    /// for, as kept (None: the store cannot be read now).
    fn history(&mut self, mac: &str) -> Option<History>;
}

/// A device's kept detection state: its baseline, the services it
/// alerted for, and when it first learned one (detection's oldest sight
/// of it, for a device the inventory has no row for).
pub type History = (Vec<Service>, Vec<Service>, Option<i64>);

/// Devices whose state is kept at once; the least recently active go.
pub const MAX_TRACKED: usize = 100_000;
/// Services remembered per device (baseline and alerted), beyond which a
/// device's new services are neither learned nor alerted again.
pub const MAX_SERVICES: usize = 4_096;
/// Baseline entries learned and not yet saved (the database down) at
/// most: beyond them, what is learned lives only in memory.
pub const MAX_UNSAVED: usize = 100_000;
/// Anomaly alerts a device may raise a minute (a scan is one `scan`
/// alert, not hundreds of anomalies); critical ones are counted apart,
/// so that warnings cannot use up a critical flow's alert.
pub const ANOMALIES_PER_MINUTE: usize = 3;
/// Alerts per second over all devices.
pub const ALERTS_PER_SECOND: usize = 50;

#[derive(Default)]
struct Device {
    baseline: HashSet<Service>,
    alerted: HashSet<Service>,
    /// The kept baseline and alerted services were read back: a device
    /// state made anew (at a start, or after it was evicted) must not
    /// learn or alert as if it had none. Until they are (the database
    /// busy or unreadable), its flows raise no anomaly: judged against an
    /// empty baseline, every usual flow of a workstation would, and one
    /// to a pump would quarantine it. Its next flow reads them again.
    restored: bool,
    targets: scan::Window,
    last_scan_alert: Option<i64>,
    anomaly_times: VecDeque<i64>,
    critical_times: VecDeque<i64>,
    /// When detection first saw it: its age when the inventory has no
    /// row for it (more unknown devices than it records, or no database),
    /// so that such a device still leaves learning.
    first_event: i64,
    last_active: i64,
}

#[derive(Default)]
pub struct Detector {
    devices: HashMap<String, Device>,
    alert_times: VecDeque<i64>,
    /// Alerts over the global bound, with when they were drafted: raised
    /// by [`Detector::release`] once the bound allows, so that a worm's
    /// scanners whose sweeps end during the storm they make are still
    /// alerted for and contained.
    held: Held,
    /// Alerts not raised: over a bound.
    pub suppressed: u64,
    /// Baseline entries learned and not yet persisted.
    pub learned: Vec<(String, Service)>,
}

impl Detector {
    /// A device was released: its next scan alerts again at once.
    pub fn rearm(&mut self, mac: &str) {
        if let Some(d) = self.devices.get_mut(mac) {
            d.targets.clear();
            d.last_scan_alert = None;
            d.anomaly_times.clear();
            d.critical_times.clear();
        }
        self.held.forget(mac);
    }

    pub fn baseline(&self, mac: &str) -> Vec<Service> {
        let mut v: Vec<Service> = self
            .devices
            .get(mac)
            .map(|d| d.baseline.iter().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn bounded(&mut self, now: i64) -> bool {
        while self.alert_times.front().is_some_and(|t| *t < now) {
            self.alert_times.pop_front();
        }
        if self.alert_times.len() >= ALERTS_PER_SECOND {
            return false;
        }
        self.alert_times.push_back(now);
        true
    }

    /// Whether alerts are held back, waiting for the bound.
    pub fn holds(&self) -> bool {
        !self.held.is_empty()
    }

    /// The held-back alerts the global bound allows at `now`, the most
    /// urgent first; those held past `held::HELD_S` are dropped.
    pub fn release(&mut self, now: i64) -> Vec<Draft> {
        self.suppressed += self.held.expire(now) as u64;
        let mut out = Vec::new();
        while !self.held.is_empty() && self.bounded(now) {
            let Some(d) = self.held.next() else { break };
            self.raised(&d, now);
            out.push(d);
        }
        out
    }

    /// The database opened after devices were met without it: they read
    /// their kept baselines at their next flow, rather than be judged
    /// against what they learned in between.
    pub fn unrestore(&mut self) {
        for d in self.devices.values_mut() {
            d.restored = false;
        }
    }

    /// Marks `d` raised on its device: its scan's window, its service.
    fn raised(&mut self, d: &Draft, now: i64) {
        let Some(dev) = self.devices.get_mut(&d.mac) else {
            return;
        };
        match &d.service {
            None => dev.last_scan_alert = Some(now),
            Some(svc) => {
                dev.alerted.insert(svc.clone());
            }
        }
    }

    fn evict(&mut self) {
        if self.devices.len() < MAX_TRACKED {
            return;
        }
        // The least recently active tenth goes.
        let mut by_age: Vec<(i64, String)> = self
            .devices
            .iter()
            .map(|(m, d)| (d.last_active, m.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, m) in by_age.into_iter().take(MAX_TRACKED / 10) {
            self.devices.remove(&m);
        }
    }

    /// One new flow at `now` (unix seconds): the alerts it raises.
    pub fn observe(
        &mut self,
        f: &Flow,
        now: i64,
        cfg: &DetectionDoc,
        ctx: &mut dyn Context,
    ) -> Vec<Draft> {
        if !self.devices.contains_key(&f.mac) {
            self.evict();
        }
        let known_first = ctx.first_seen(&f.mac);
        let src_critical = ctx.life_critical(&f.src_segment);
        let dst_critical = ctx.life_critical(&f.dst_segment);
        let d = self.devices.entry(f.mac.clone()).or_insert_with(|| Device {
            first_event: now,
            ..Default::default()
        });
        d.last_active = now;
        if !d.restored {
            if let Some((baseline, alerted, learned)) = ctx.history(&f.mac) {
                d.baseline.extend(baseline);
                d.alerted.extend(alerted);
                // Made anew (a start, an eviction), it does not learn again.
                d.first_event = learned.map_or(d.first_event, |t| t.min(d.first_event));
                d.restored = true;
            }
        }
        // The earlier of the two: an inventory that recorded the device
        // late (full, or opened late) must not make an old device young.
        let first_seen = known_first.map_or(d.first_event, |k| k.min(d.first_event));

        // Scan: distinct (address, port) targets within the window.
        let window = cfg.scan.window_s as i64;
        let needed = cfg.scan.distinct_targets as usize;
        let targets = if f.shape == Shape::Reply {
            0
        } else {
            d.targets
                .see((f.dst_ip.clone(), f.port), now, window, needed)
        };
        let quiet = d.last_scan_alert.is_none_or(|t| now - t >= window);
        // Held already, it is not drafted again (nor counted).
        let scan = targets >= needed && quiet && !self.held.holds(&f.mac, Kind::Scan, None);

        // Baseline: east-west flows only.
        let east_west = f.shape == Shape::Opening
            && f.src_segment != f.dst_segment
            && f.src_segment != "world"
            && f.dst_segment != "world";
        let mut anomaly = None;
        if east_west {
            let svc: Service = (f.dst_segment.clone(), f.protocol.clone(), f.port);
            let learning = now - first_seen < cfg.learning_s as i64;
            if learning {
                if d.baseline.len() < MAX_SERVICES && d.baseline.insert(svc.clone()) {
                    // Kept for the database while it cannot take them.
                    if self.learned.len() < MAX_UNSAVED {
                        self.learned.push((f.mac.clone(), svc));
                    }
                }
            } else if d.restored
                && !self.held.holds(&f.mac, Kind::Anomaly, Some(&svc))
                && !d.baseline.contains(&svc)
                && !d.alerted.contains(&svc)
                && d.alerted.len() < MAX_SERVICES
            {
                let times = if dst_critical || src_critical {
                    &mut d.critical_times
                } else {
                    &mut d.anomaly_times
                };
                while times.front().is_some_and(|t| *t <= now - 60) {
                    times.pop_front();
                }
                if times.len() < ANOMALIES_PER_MINUTE {
                    anomaly = Some(svc);
                } else {
                    self.suppressed += 1;
                }
            }
        }
        let scan_draft = scan.then(|| Draft {
            mac: f.mac.clone(),
            kind: Kind::Scan,
            critical: src_critical,
            urgent: !src_critical,
            segment: f.src_segment.clone(),
            detail: format!(
                "{targets} distinct targets (address, port) within {window} s, the latest {} {}/{}",
                f.dst_ip, f.protocol, f.port
            ),
            service: None,
            src_ip: f.src_ip.clone(),
        });
        let anomaly_draft = anomaly.map(|svc| {
            let (seg, proto, port) = svc.clone();
            Draft {
                mac: f.mac.clone(),
                kind: Kind::Anomaly,
                critical: dst_critical || src_critical,
                urgent: dst_critical && !src_critical,
                segment: f.src_segment.clone(),
                detail: format!(
                    "a new east-west flow outside its baseline: to {seg} ({}) {proto}/{port}",
                    f.dst_ip
                ),
                service: Some(svc),
                src_ip: f.src_ip.clone(),
            }
        });
        // Over the global bound an alert is held back and raised once the
        // bound allows, marked raised only then: one dropped later (held
        // too long, its device released) is raised by the next flow
        // rather than never. The per-device caps count it at once.
        let mut out = Vec::new();
        for draft in scan_draft.into_iter().chain(anomaly_draft) {
            if draft.service.is_some() {
                let d = self.devices.get_mut(&f.mac).expect("made above");
                if draft.critical {
                    d.critical_times.push_back(now);
                } else {
                    d.anomaly_times.push_back(now);
                }
            }
            if self.bounded(now) {
                self.raised(&draft, now);
                out.push(draft);
            } else {
                let mut displaced = 0;
                if !self.held.hold(now, &draft, &mut displaced) {
                    self.suppressed += 1;
                }
                self.suppressed += displaced;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
