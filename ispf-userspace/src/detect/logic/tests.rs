//! Host tests of the detection rules and their bounds.

use super::*;

/// The inventory's first sighting (None: it has no row) and the kept
/// state, as the store would give them.
#[derive(Default)]
struct Ctx {
    first: Option<i64>,
    kept: HashMap<String, History>,
    /// The store cannot be read now.
    unreadable: bool,
}
impl Context for Ctx {
    fn first_seen(&mut self, _: &str) -> Option<i64> {
        self.first
    }
    fn life_critical(&self, s: &str) -> bool {
        s == "pumps"
    }
    fn history(&mut self, mac: &str) -> Option<History> {
        if self.unreadable {
            return None;
        }
        Some(self.kept.get(mac).cloned().unwrap_or_default())
    }
}

fn at(first: i64) -> Ctx {
    Ctx {
        first: Some(first),
        ..Default::default()
    }
}

fn cfg() -> DetectionDoc {
    serde_json::from_str(r#"{"learning_s": 100, "scan": {"distinct_targets": 5, "window_s": 10}}"#)
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
        shape: Shape::Opening,
        src_ip: None,
    }
}

#[test]
fn the_baseline_is_learned_then_only_new_services_alert() {
    let mut c = cfg();
    c.scan.distinct_targets = 100;
    let mut d = Detector::default();
    let mut ctx = at(0);
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
    let mut ctx = at(0);
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

/// A device whose state was evicted (a flood of other MACs), or made anew
/// at a start, has its kept baseline and alerted services back: its usual
/// flows are not anomalies, and what it alerted for does not alert again.
#[test]
fn a_device_made_anew_has_its_kept_baseline_back() {
    let mut c = cfg();
    c.scan.distinct_targets = 100;
    let mut ctx = at(0);
    let pis: Service = ("pis".into(), "tcp".into(), 443);
    let lab: Service = ("lab".into(), "tcp".into(), 22);
    ctx.kept.insert("m".into(), (vec![pis], vec![lab], Some(1)));
    let mut d = Detector::default();
    assert!(d
        .observe(&flow("pis", "10.0.0.1", 443), 500, &c, &mut ctx)
        .is_empty());
    assert!(d
        .observe(&flow("lab", "10.2.0.1", 22), 501, &c, &mut ctx)
        .is_empty());
    assert_eq!(
        d.observe(&flow("lab", "10.2.0.1", 23), 502, &c, &mut ctx)
            .len(),
        1
    );
}

/// A device the inventory has no row for (more unknown devices than it
/// records) still leaves learning, counted from detection's first sight.
#[test]
fn a_device_the_inventory_does_not_record_leaves_learning() {
    let mut c = cfg();
    c.scan.distinct_targets = 100;
    let mut ctx = Ctx::default();
    let mut d = Detector::default();
    assert!(d
        .observe(&flow("pis", "10.0.0.1", 443), 1000, &c, &mut ctx)
        .is_empty());
    assert_eq!(d.learned.len(), 1, "learned while young");
    let a = d.observe(&flow("pis", "10.0.0.1", 22), 1200, &c, &mut ctx);
    assert_eq!(a.len(), 1, "past learning_s: an anomaly");
    // Made anew after an eviction, it is as old as its first learning.
    let mut ctx = Ctx::default();
    let lab: Service = ("lab".into(), "tcp".into(), 22);
    ctx.kept.insert("m".into(), (vec![lab], vec![], Some(1000)));
    let mut d = Detector::default();
    let a = d.observe(&flow("pumps", "10.1.0.1", 5000), 1500, &c, &mut ctx);
    assert!(a.len() == 1 && a[0].critical, "not learned: {a:?}");
}

/// Warnings cannot use up a critical flow's alert, and an alert the global
/// bound held back is raised once the bound allows.
#[test]
fn critical_anomalies_are_not_lost_to_warnings_or_a_storm() {
    let mut c = cfg();
    c.scan.distinct_targets = 1000;
    let mut ctx = at(0);
    let mut d = Detector::default();
    for port in 0..3 {
        assert_eq!(
            d.observe(&flow("lab", "10.2.0.1", port), 500, &c, &mut ctx)
                .len(),
            1
        );
    }
    assert!(d
        .observe(&flow("lab", "10.2.0.1", 9), 500, &c, &mut ctx)
        .is_empty());
    let a = d.observe(&flow("pumps", "10.1.0.1", 5000), 500, &c, &mut ctx);
    assert!(a.len() == 1 && a[0].critical, "{a:?}");
    // A storm of other devices' alerts fills this second's bound.
    for i in 0..ALERTS_PER_SECOND {
        let mut f = flow("lab", "10.2.0.1", 1);
        f.mac = format!("other{i}");
        d.observe(&f, 600, &c, &mut ctx);
    }
    let held = d.observe(&flow("pumps", "10.1.0.2", 6000), 600, &c, &mut ctx);
    assert!(held.is_empty(), "held back by the bound");
    let a = d.release(601);
    assert!(a.len() == 1 && a[0].critical, "raised once it may: {a:?}");
    let again = d.observe(&flow("pumps", "10.1.0.2", 6000), 601, &c, &mut ctx);
    assert!(again.is_empty(), "raised once: {again:?}");
}

/// A patient-information server speaking first on HL7 connections pumps
/// opened, idle past conntrack's timeout: its packets are judged as new
/// flows to the pumps, but they open nothing, so they are no critical
/// anomaly (which would quarantine the server) and nothing is learned of
/// them; many such targets are still a scan (an ACK scan).
#[test]
fn a_midstream_packet_is_no_anomaly_but_counts_for_a_scan() {
    let c = cfg();
    let mut d = Detector::default();
    let mut young = at(450);
    let mut f = flow("pumps", "10.1.0.1", 41000);
    f.shape = Shape::Midstream;
    assert!(d.observe(&f, 500, &c, &mut young).is_empty());
    assert!(d.learned.is_empty(), "nothing learned mid-stream");
    let mut ctx = at(0);
    assert!(d.observe(&f, 600, &c, &mut ctx).is_empty(), "no anomaly");
    let mut scans = 0;
    for port in 0..10 {
        f.port = port;
        scans += d
            .observe(&f, 601, &c, &mut ctx)
            .iter()
            .filter(|a| a.kind == Kind::Scan)
            .count();
    }
    assert_eq!(scans, 1);
}

/// The same server answering twenty pumps from the port they open HL7 to,
/// after a quiet hour: replies, so no scan (and no quarantine of the
/// server), no anomaly, nothing learned.
#[test]
fn replies_on_forgotten_connections_are_no_scan() {
    let c = cfg();
    let mut d = Detector::default();
    let mut ctx = at(0);
    let mut f = flow("pumps", "10.1.0.1", 41000);
    f.shape = Shape::Reply;
    for n in 0..20 {
        f.dst_ip = format!("10.1.0.{n}");
        assert!(d.observe(&f, 600, &c, &mut ctx).is_empty());
    }
    let mut young = at(550);
    assert!(d.observe(&f, 600, &c, &mut young).is_empty());
    assert!(d.learned.is_empty());
}

/// The store cannot be read (busy, gone): a device past learning whose
/// baseline is unknown raises no anomaly, rather than one for every usual
/// flow (and a quarantine for its first flow to a pump); scans still
/// count. Once the store answers, its baseline judges.
#[test]
fn no_anomaly_is_judged_against_a_baseline_not_read() {
    let c = cfg();
    let mut d = Detector::default();
    let mut ctx = at(0);
    ctx.unreadable = true;
    let pis: Service = ("pis".into(), "tcp".into(), 443);
    ctx.kept.insert("m".into(), (vec![pis], vec![], Some(0)));
    assert!(d
        .observe(&flow("pis", "10.0.0.1", 443), 500, &c, &mut ctx)
        .is_empty());
    assert!(d
        .observe(&flow("pumps", "10.1.0.1", 80), 500, &c, &mut ctx)
        .is_empty());
    let mut scans = 0;
    for port in 0..5 {
        scans += d
            .observe(&flow("pis", "10.0.0.1", 1000 + port), 501, &c, &mut ctx)
            .iter()
            .filter(|a| a.kind == Kind::Scan)
            .count();
    }
    assert_eq!(scans, 1, "scans still count");
    ctx.unreadable = false;
    assert!(
        d.observe(&flow("pis", "10.0.0.1", 443), 600, &c, &mut ctx)
            .is_empty(),
        "its usual flow"
    );
    let a = d.observe(&flow("pumps", "10.1.0.1", 80), 600, &c, &mut ctx);
    assert!(a.len() == 1 && a[0].critical, "{a:?}");
}

/// Devices met while the database could not be opened read their kept
/// baselines once it opens, rather than be judged against an empty one.
#[test]
fn devices_met_without_the_database_read_it_once_it_opens() {
    let c = cfg();
    let mut d = Detector::default();
    let mut none = Ctx::default();
    assert!(
        d.observe(&flow("lab", "10.2.0.1", 1), 500, &c, &mut none)
            .is_empty(),
        "learning: its first_seen is its first flow"
    );
    let mut kept = at(0);
    let pumps: Service = ("pumps".into(), "tcp".into(), 80);
    kept.kept.insert("m".into(), (vec![pumps], vec![], Some(0)));
    d.unrestore();
    assert!(
        d.observe(&flow("pumps", "10.1.0.1", 80), 700, &c, &mut kept)
            .is_empty(),
        "its kept baseline"
    );
}

mod held;
