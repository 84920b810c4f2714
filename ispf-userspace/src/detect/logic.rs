//! The spec's detection rules as a pure state machine over flow events:
//! each device's east-west baseline while it is young, `anomaly` alerts
//! for what is outside it afterwards, `scan` alerts for many distinct
//! targets in a window; with the bounds that keep an alert storm (or a MAC
//! flood) from growing memory or drowning the operator. Time is passed in,
//! so it is tested without waiting.

use std::collections::{HashMap, HashSet, VecDeque};

use super::scan;
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
    /// A denied mid-stream packet that answers a connection its
    /// destination opened (`shape::Shapes`): a server speaking on a
    /// connection idle past conntrack's `tcp` timeout, or answering a
    /// monitor-mode client. Not a scan's target either, so that a server
    /// answering twenty clients is not quarantined as a scanner.
    Reply,
}

/// (destination segment, protocol, port)
pub type Service = (String, String, u16);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub segment: String,
    pub detail: String,
    /// An anomaly's service.
    pub service: Option<Service>,
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
    /// learn or alert as if it had none.
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
            self.suppressed += 1;
            return false;
        }
        self.alert_times.push_back(now);
        true
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
        let mut out = Vec::new();
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
        let first_seen = known_first.unwrap_or(d.first_event);

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
        let scan = targets >= needed && quiet;

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
                    self.learned.push((f.mac.clone(), svc));
                }
            } else if !d.baseline.contains(&svc)
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
        // What is suppressed by the global bound is not marked as alerted:
        // a scan, or the service's next flow, alerts (and responds) once
        // the storm allows, rather than never.
        let scan = scan && self.bounded(now);
        let anomaly = anomaly.filter(|_| self.bounded(now));
        let d = self.devices.get_mut(&f.mac).expect("made above");
        if scan {
            d.last_scan_alert = Some(now);
        }
        if let Some(svc) = &anomaly {
            if dst_critical || src_critical {
                d.critical_times.push_back(now);
            } else {
                d.anomaly_times.push_back(now);
            }
            d.alerted.insert(svc.clone());
        }
        if scan {
            out.push(Draft {
                mac: f.mac.clone(),
                kind: Kind::Scan,
                critical: src_critical,
                segment: f.src_segment.clone(),
                detail: format!(
                    "{targets} distinct targets (address, port) within {window} s, the latest {} {}/{}",
                    f.dst_ip, f.protocol, f.port
                ),
                service: None,
            });
        }
        if let Some(svc) = anomaly {
            let (seg, proto, port) = svc.clone();
            out.push(Draft {
                mac: f.mac.clone(),
                kind: Kind::Anomaly,
                critical: dst_critical || src_critical,
                segment: f.src_segment.clone(),
                detail: format!(
                    "a new east-west flow outside its baseline: to {seg} ({}) {proto}/{port}",
                    f.dst_ip
                ),
                service: Some(svc),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests;
