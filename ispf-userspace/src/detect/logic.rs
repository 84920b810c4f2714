//! The spec's detection rules as a pure state machine over flow events:
//! each device's east-west baseline while it is young, `anomaly` alerts
//! for what is outside it afterwards, `scan` alerts for many distinct
//! targets in a window; with the bounds that keep an alert storm (or a MAC
//! flood) from growing memory or drowning the operator. Time is passed in,
//! so it is tested without waiting.

use std::collections::{HashMap, HashSet, VecDeque};

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
}

/// Devices whose state is kept at once; the least recently active go.
pub const MAX_TRACKED: usize = 100_000;
/// Services remembered per device (baseline and alerted), beyond which a
/// device's new services are neither learned nor alerted again.
pub const MAX_SERVICES: usize = 4_096;
/// Anomaly alerts a device may raise a minute (a scan is one `scan`
/// alert, not hundreds of anomalies).
pub const ANOMALIES_PER_MINUTE: usize = 3;
/// Alerts per second over all devices.
pub const ALERTS_PER_SECOND: usize = 50;

#[derive(Default)]
struct Device {
    baseline: HashSet<Service>,
    alerted: HashSet<Service>,
    recent: VecDeque<(i64, (String, u16))>,
    last_scan_alert: Option<i64>,
    anomaly_times: VecDeque<i64>,
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
    /// Baselines and alerted services from the database.
    pub fn restore(&mut self, baseline: Vec<(String, Service)>, alerted: Vec<(String, Service)>) {
        for (mac, s) in baseline {
            self.devices.entry(mac).or_default().baseline.insert(s);
        }
        for (mac, s) in alerted {
            self.devices.entry(mac).or_default().alerted.insert(s);
        }
    }

    /// A device was released: its next scan alerts again at once.
    pub fn rearm(&mut self, mac: &str) {
        if let Some(d) = self.devices.get_mut(mac) {
            d.recent.clear();
            d.last_scan_alert = None;
            d.anomaly_times.clear();
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
        let first_seen = ctx.first_seen(&f.mac).unwrap_or(now);
        let src_critical = ctx.life_critical(&f.src_segment);
        let dst_critical = ctx.life_critical(&f.dst_segment);
        let d = self.devices.entry(f.mac.clone()).or_default();
        d.last_active = now;

        // Scan: distinct (address, port) targets within the window.
        let window = cfg.scan.window_s as i64;
        d.recent.push_back((now, (f.dst_ip.clone(), f.port)));
        while d.recent.front().is_some_and(|(t, _)| *t <= now - window) {
            d.recent.pop_front();
        }
        while d.recent.len() > 4 * cfg.scan.distinct_targets as usize + 64 {
            d.recent.pop_front();
        }
        let distinct: HashSet<&(String, u16)> = d.recent.iter().map(|(_, t)| t).collect();
        let targets = distinct.len();
        let quiet = d.last_scan_alert.is_none_or(|t| now - t >= window);
        let scan = targets >= cfg.scan.distinct_targets as usize && quiet;
        if scan {
            d.last_scan_alert = Some(now);
        }

        // Baseline: east-west flows only.
        let east_west =
            f.src_segment != f.dst_segment && f.src_segment != "world" && f.dst_segment != "world";
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
                while d.anomaly_times.front().is_some_and(|t| *t <= now - 60) {
                    d.anomaly_times.pop_front();
                }
                if d.anomaly_times.len() < ANOMALIES_PER_MINUTE {
                    d.anomaly_times.push_back(now);
                    d.alerted.insert(svc.clone());
                    anomaly = Some(svc);
                } else {
                    self.suppressed += 1;
                }
            }
        }
        if scan && self.bounded(now) {
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
            if self.bounded(now) {
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
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ctx {
        first: i64,
    }
    impl Context for Ctx {
        fn first_seen(&mut self, _: &str) -> Option<i64> {
            Some(self.first)
        }
        fn life_critical(&self, s: &str) -> bool {
            s == "pumps"
        }
    }

    fn cfg() -> DetectionDoc {
        serde_json::from_str(
            r#"{"learning_s": 100, "scan": {"distinct_targets": 5, "window_s": 10}}"#,
        )
        .unwrap()
    }

    fn flow(dst_seg: &str, ip: &str, port: u16) -> Flow {
        Flow {
            mac: "m".into(),
            src_segment: "ws".into(),
            dst_segment: dst_seg.into(),
            dst_ip: ip.into(),
            protocol: "tcp".into(),
            port,
        }
    }

    #[test]
    fn the_baseline_is_learned_then_only_new_services_alert() {
        let mut c = cfg();
        c.scan.distinct_targets = 100;
        let mut d = Detector::default();
        let mut ctx = Ctx { first: 0 };
        assert!(d
            .observe(&flow("pis", "10.0.0.1", 443), 10, &c, &mut ctx)
            .is_empty());
        assert_eq!(d.learned.len(), 1);
        // After the window: the learned service is quiet, a new one alerts
        // once, a flow to a life-critical segment is critical.
        assert!(d
            .observe(&flow("pis", "10.0.0.2", 443), 200, &c, &mut ctx)
            .is_empty());
        let a = d.observe(&flow("pis", "10.0.0.1", 22), 201, &c, &mut ctx);
        assert_eq!(
            (a.len(), a[0].kind, a[0].critical),
            (1, Kind::Anomaly, false)
        );
        assert!(d
            .observe(&flow("pis", "10.0.0.1", 22), 202, &c, &mut ctx)
            .is_empty());
        let a = d.observe(&flow("pumps", "10.1.0.1", 5000), 203, &c, &mut ctx);
        assert!(a[0].critical);
        // Neither world nor intra-segment flows are east-west.
        assert!(d
            .observe(&flow("world", "8.8.8.8", 53), 204, &c, &mut ctx)
            .is_empty());
        assert!(d
            .observe(&flow("ws", "10.3.0.1", 80), 205, &c, &mut ctx)
            .is_empty());
        assert_eq!(d.baseline("m").len(), 1);
    }

    #[test]
    fn scans_alert_once_per_window_and_storms_are_bounded() {
        let (mut d, c) = (Detector::default(), cfg());
        let mut ctx = Ctx { first: 0 };
        let mut alerts = 0;
        for port in 0..200u16 {
            alerts += d
                .observe(
                    &flow("pis", "10.0.0.1", port),
                    5 + port as i64 / 100,
                    &c,
                    &mut ctx,
                )
                .iter()
                .filter(|a| a.kind == Kind::Scan)
                .count();
        }
        assert_eq!(
            alerts, 1,
            "one scan alert while the scan goes on within a window"
        );
        // Anomalies per device per minute are capped.
        let mut anomalies = 0;
        for port in 0..100u16 {
            anomalies += d
                .observe(&flow("lab", "10.9.0.1", port), 1000, &c, &mut ctx)
                .len();
        }
        assert!(anomalies <= ANOMALIES_PER_MINUTE + 1, "{anomalies}");
        assert!(d.suppressed > 0);
        // A scan from a life-critical device is critical.
        let mut p = flow("pis", "10.0.0.1", 1);
        p.src_segment = "pumps".into();
        p.mac = "pump".into();
        let mut crit = false;
        for port in 0..10u16 {
            p.port = port;
            crit |= d
                .observe(&p, 2000, &c, &mut ctx)
                .iter()
                .any(|a| a.kind == Kind::Scan && a.critical);
        }
        assert!(crit);
    }
}
