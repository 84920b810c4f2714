//! Host tests of the alerts the global bound holds back.

use super::*;

/// A worm's outbreak: more scanners at once than the global bound lets
/// alert. The alerts over it are held and raised as the bound allows,
/// though every sweep ended (no further flow brings them up); each scanner
/// alerts once.
#[test]
fn alerts_over_the_global_bound_are_raised_later_without_another_flow() {
    let (mut d, c) = (Detector::default(), cfg());
    // Young devices: their flows are learned, so only scans alert.
    let mut ctx = at(450);
    let scanners = ALERTS_PER_SECOND + 10;
    let mut now_raised = 0;
    for n in 0..scanners {
        for port in 0..5u16 {
            let mut f = flow("pis", "10.0.0.1", port);
            f.mac = format!("m{n}");
            f.src_ip = Some(format!("10.9.0.{n}"));
            now_raised += d
                .observe(&f, 500, &c, &mut ctx)
                .iter()
                .filter(|a| a.kind == Kind::Scan)
                .count();
        }
    }
    assert_eq!(now_raised, ALERTS_PER_SECOND);
    assert!(d.holds());
    assert!(d.release(500).is_empty(), "the bound is spent this second");
    let later = d.release(501);
    assert_eq!(later.len(), 10);
    assert!(later.iter().all(|a| a.kind == Kind::Scan));
    assert_eq!(
        later[0].src_ip.as_deref(),
        Some("10.9.0.50"),
        "its flow's address"
    );
    assert!(!d.holds());
    assert_eq!(d.suppressed, 0, "delayed, not suppressed");
    // Held too long (a storm of minutes): dropped, counted.
    let mut ctx = at(590);
    for n in 0..(ALERTS_PER_SECOND + 1) {
        for port in 0..5u16 {
            let mut f = flow("pis", "10.0.0.2", port);
            f.mac = format!("late{n}");
            d.observe(&f, 600, &c, &mut ctx);
        }
    }
    assert!(d.holds());
    assert!(d.release(600 + crate::detect::held::HELD_S + 1).is_empty());
    assert_eq!(d.suppressed, 1);
    // Dropped, it was never marked raised: the scanner's next scan alerts.
    let mut again = 0;
    for port in 0..5u16 {
        let mut f = flow("pis", "10.0.0.3", port);
        f.mac = format!("late{ALERTS_PER_SECOND}");
        again += d.observe(&f, 1000, &c, &mut ctx).len();
    }
    assert_eq!(again, 1);
}

/// Held critical alerts go first; a device released by hand has what it
/// was held for forgotten, not raised on old evidence.
#[test]
fn held_critical_alerts_go_first_and_a_release_forgets_the_held() {
    let mut c = cfg();
    c.scan.distinct_targets = 1000;
    let mut d = Detector::default();
    let mut ctx = at(0);
    // The bound spent by warnings, then more warnings and one critical
    // anomaly held, and one of a device released.
    for n in 0..(ALERTS_PER_SECOND + 3) {
        let mut f = flow("lab", "10.2.0.1", 1);
        f.mac = format!("w{n}");
        d.observe(&f, 500, &c, &mut ctx);
    }
    let mut crit = flow("pumps", "10.1.0.1", 5000);
    crit.mac = "cart".into();
    assert!(d.observe(&crit, 500, &c, &mut ctx).is_empty(), "held");
    d.rearm(&format!("w{}", ALERTS_PER_SECOND + 2));
    let out = d.release(501);
    assert_eq!(out.len(), 3);
    assert!(out[0].critical && out[0].mac == "cart", "{out:?}");
    assert!(out
        .iter()
        .all(|a| a.mac != format!("w{}", ALERTS_PER_SECOND + 2)));
}

/// While an anomaly is held, its service's later flows neither draft it
/// again nor use up the device's per-minute cap: its next critical
/// anomaly is still drafted.
#[test]
fn a_held_anomaly_does_not_use_up_its_devices_cap() {
    let mut c = cfg();
    c.scan.distinct_targets = 1000;
    let mut d = Detector::default();
    let mut ctx = at(0);
    for n in 0..ALERTS_PER_SECOND {
        let mut f = flow("lab", "10.2.0.1", 1);
        f.mac = format!("w{n}");
        d.observe(&f, 500, &c, &mut ctx);
    }
    for _ in 0..5 {
        assert!(d
            .observe(&flow("pumps", "10.1.0.1", 80), 500, &c, &mut ctx)
            .is_empty());
    }
    assert!(d
        .observe(&flow("pumps", "10.1.0.1", 81), 500, &c, &mut ctx)
        .is_empty());
    let out = d.release(501);
    assert_eq!(out.len(), 2, "both held, each once: {out:?}");
    assert_eq!(d.suppressed, 0);
}
