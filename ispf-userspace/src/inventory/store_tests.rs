//! Host tests of the inventory's rows.

use super::*;

/// A device seen once at time 0, with nothing learned of it but where:
/// what host tests elsewhere fill in the fields they are about.
pub(crate) fn seen_device(mac: [u8; 6], vlan: u16, segment: &str, judged: &str) -> Device {
    Device {
        mac,
        vendor: None,
        vlan,
        interface: "port1".into(),
        ipv4: None,
        ipv6: None,
        hostname: None,
        vendor_class: None,
        dhcp_params: None,
        first_seen: 0,
        last_seen: 0,
        segment: segment.into(),
        judged: judged.into(),
    }
}

#[test]
fn round_trips_devices_addresses_timeline_and_decisions() {
    let d = std::env::temp_dir().join(format!("ispf-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let mut c = super::super::db::open(&d.join("inventory.db")).unwrap();
    let dev = Device {
        vendor: Some("Acme".into()),
        ipv4: Some("10.0.0.1".parse().unwrap()),
        hostname: Some("pump-1".into()),
        first_seen: 100,
        last_seen: 200,
        ..seen_device([2, 0, 0, 0, 0, 1], 20, "pumps", "registered")
    };
    let entry = TimelineEntry {
        mac: mac_string(&dev.mac),
        at: 100,
        event: "new".into(),
        detail: "on port1".into(),
        actor: None,
    };
    let b = Batch {
        devices: vec![&dev],
        addresses: vec![(dev.mac, "10.0.0.1".parse().unwrap(), 100)],
        timeline: vec![entry.clone()],
        ..Default::default()
    };
    write(&mut c, &b).unwrap();
    write(&mut c, &b).unwrap();
    assert_eq!(devices(&c).unwrap(), vec![dev.clone()]);
    assert_eq!(device(&c, &dev.mac).unwrap(), Some(dev.clone()));
    assert_eq!(addresses_of(&c, &dev.mac).unwrap(), vec!["10.0.0.1"]);
    assert_eq!(timeline(&c, &dev.mac).unwrap().len(), 2);
    let q = Decision {
        mac: mac_string(&dev.mac),
        kind: Kind::Quarantine,
        segment: None,
        name: None,
        risk: None,
        reason: "scan".into(),
        forced: true,
        actor: "alice".into(),
        at: 300,
        expires: Some(400),
        addresses: vec!["10.0.0.1".parse().unwrap()],
    };
    record_decisions(&mut c, std::slice::from_ref(&q), &[], &[entry]).unwrap();
    assert_eq!(decisions(&c).unwrap(), vec![q.clone()]);
    record_decisions(&mut c, &[], &[(q.mac.clone(), Kind::Quarantine)], &[]).unwrap();
    assert!(decisions(&c).unwrap().is_empty());

    // An address unused for the retention goes; the device's row, its
    // last address (10.0.0.1, as old) and its timeline stay.
    let old_one = "10.0.0.9".parse().unwrap();
    let mut newer = dev.clone();
    newer.mac = [2, 0, 0, 0, 0, 2];
    newer.last_seen = 200 + RETAIN_S;
    let b = Batch {
        devices: vec![&newer],
        addresses: vec![(dev.mac, old_one, 50)],
        ..Default::default()
    };
    write(&mut c, &b).unwrap();
    let history = timeline(&c, &dev.mac).unwrap().len();
    assert_eq!(
        prune(&mut c, 50 + RETAIN_S).unwrap(),
        0,
        "seen at the horizon"
    );
    // A clock years ahead counts from the newest sighting (200): 10.0.0.1,
    // last seen at 100, is the device's last address and stays.
    assert_eq!(prune(&mut c, 10 * RETAIN_S).unwrap(), 1);
    assert_eq!(addresses_of(&c, &dev.mac).unwrap(), vec!["10.0.0.1"]);
    assert_eq!(device(&c, &dev.mac).unwrap(), Some(dev.clone()));
    assert_eq!(timeline(&c, &dev.mac).unwrap().len(), history);
    let _ = std::fs::remove_dir_all(&d);
}

/// Detection's baseline of a MAC the inventory does not record (a flood of
/// random MACs) goes after an hour; a recorded device's stays, and so do
/// the services alerted for.
#[test]
fn prune_drops_the_baseline_of_unrecorded_macs() {
    let d = std::env::temp_dir().join(format!("ispf-prune-baseline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let mut c = super::super::db::open(&d.join("inventory.db")).unwrap();
    let dev = Device {
        first_seen: 100,
        last_seen: 100,
        ..seen_device([2, 0, 0, 0, 0, 1], 0, "ws", "registered")
    };
    let b = Batch {
        devices: vec![&dev],
        ..Default::default()
    };
    write(&mut c, &b).unwrap();
    let svc = || ("pis".to_owned(), "tcp".to_owned(), 443u16);
    let rows = vec![
        ("02:00:00:00:00:01".to_owned(), svc()),
        ("02:00:00:00:00:99".to_owned(), svc()),
    ];
    crate::detect::store::remember(&mut c, &rows, 100).unwrap();
    let alerted = vec![("02:00:00:00:00:98".to_owned(), svc())];
    crate::detect::store::remember(&mut c, &alerted, 0).unwrap();
    assert_eq!(
        prune(&mut c, 100 + UNRECORDED_BASELINE_S).unwrap(),
        0,
        "an hour"
    );
    assert_eq!(prune(&mut c, 101 + UNRECORDED_BASELINE_S).unwrap(), 1);
    let left = |mac: &str| crate::detect::store::history(&c, mac).unwrap();
    assert_eq!(left("02:00:00:00:00:01").0.len(), 1, "recorded: kept");
    assert!(left("02:00:00:00:00:99").0.is_empty(), "unrecorded: gone");
    assert_eq!(left("02:00:00:00:00:98").1.len(), 1, "alerted: kept");
    let _ = std::fs::remove_dir_all(&d);
}
