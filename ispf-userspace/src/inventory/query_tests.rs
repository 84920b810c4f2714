//! The listing over a real database, large enough to be built in parts.

use std::sync::Arc;

use super::*;
use crate::{decisions::Kind, inventory::store::Batch, policy::Policy};

fn device(i: u32) -> Device {
    let b = i.to_be_bytes();
    Device {
        vendor: Some("Acme".into()),
        ipv4: Some([10, 1, b[2], b[3]].into()),
        first_seen: i as i64,
        last_seen: 1000 + (i as i64 * 7919) % 5003,
        ..crate::inventory::store::tests::seen_device([2, 0, b[0], b[1], b[2], b[3]], 20, "", "")
    }
}

/// Enough devices that the listing is built in parts on every core.
#[test]
fn lists_every_device_newest_first_then_decisions_for_unseen_ones() {
    let dir = std::env::temp_dir().join(format!("ispf-query-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("inventory.db");
    let mut conn = db::open(&path).unwrap();
    let all: Vec<Device> = (0..5003).map(device).collect();
    let mut b = Batch {
        devices: all.iter().collect(),
        ..Default::default()
    };
    for d in &all {
        b.addresses.push((d.mac, d.ipv4.unwrap().into(), 5));
    }
    // A second, newer address for one device: listed first.
    b.addresses
        .push((all[7].mac, "10.9.9.9".parse().unwrap(), 9));
    store::write(&mut conn, &b).unwrap();
    let policy = Policy::from_str(
        r#"{"version":1,"segments":[{"name":"ws","subnets":["10.1.0.0/16"]},
            {"name":"quarantine"}]}"#,
        Path::new("t.json"),
    )
    .unwrap();
    let quarantine = |mac: &str| Decision {
        mac: mac.into(),
        kind: Kind::Quarantine,
        segment: None,
        name: None,
        risk: None,
        reason: "scan".into(),
        forced: false,
        actor: "alice".into(),
        at: 1,
        expires: None,
        addresses: Vec::new(),
    };
    let unseen = "02:00:ff:ff:ff:ff";
    let view = View {
        policy: Arc::new(policy),
        decisions: Arc::new(vec![
            quarantine(unseen),
            quarantine(&mac_string(&all[3].mac)),
        ]),
    };
    let rows = |f: &DeviceFilter| {
        let (n, out) = list(&path, &view, f, 10).unwrap();
        let rows: Vec<DeviceRow> = out
            .split(|c| *c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(n, rows.len());
        rows
    };
    let listed = rows(&DeviceFilter::default());
    assert_eq!(listed.len(), all.len() + 1);
    let mut newest: Vec<&Device> = all.iter().collect();
    newest.sort_by_key(|d| std::cmp::Reverse(d.last_seen));
    for (r, d) in listed.iter().zip(&newest) {
        assert_eq!(r.mac, mac_string(&d.mac));
        assert_eq!(r.last_seen, Some(rfc3339(d.last_seen)));
        assert_eq!(r.segment, "ws", "{}", r.mac);
    }
    let seven = listed
        .iter()
        .find(|r| r.mac == mac_string(&all[7].mac))
        .unwrap();
    assert_eq!(
        seven.ips,
        vec!["10.9.9.9".to_owned(), "10.1.0.7".to_owned()]
    );
    let last = listed.last().unwrap();
    assert_eq!(
        (last.mac.as_str(), last.state.as_str()),
        (unseen, "quarantined")
    );
    assert_eq!((last.first_seen.as_ref(), last.ips.len()), (None, 0));

    let held = rows(&DeviceFilter {
        quarantined: true,
        ..Default::default()
    });
    let macs: Vec<&str> = held.iter().map(|r| r.mac.as_str()).collect();
    assert_eq!(macs, vec![mac_string(&all[3].mac).as_str(), unseen]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Devices the file registers are known before they are seen: on the VLAN
/// their entry names, whatever a decision does to them.
#[test]
fn a_registered_device_never_seen_is_listed_as_registered() {
    let dir = std::env::temp_dir().join(format!("ispf-query-reg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("inventory.db");
    let conn = db::open(&path).unwrap();
    let policy = Policy::from_str(
        r#"{"version":1,"segments":[{"name":"pumps","vlans":[20]},{"name":"quarantine"}],
            "devices":[{"name":"pump-1","mac":"02:00:00:00:10:01","vlan":20,
                        "kind":"infusion-pump","segment":"pumps"},
                       {"name":"pump-2","mac":"02:00:00:00:10:02","vlan":20,"segment":"pumps"}]}"#,
        Path::new("t.json"),
    )
    .unwrap();
    let quarantined = Decision {
        mac: "02:00:00:00:10:01".into(),
        kind: Kind::Quarantine,
        segment: None,
        name: None,
        risk: None,
        reason: "scan".into(),
        forced: true,
        actor: "alice".into(),
        at: 1,
        expires: None,
        addresses: Vec::new(),
    };
    let view = View {
        policy: Arc::new(policy),
        decisions: Arc::new(vec![quarantined]),
    };
    let (_, out) = list(&path, &view, &DeviceFilter::default(), 10).unwrap();
    let r: DeviceRow = serde_json::from_slice(out.split(|c| *c == b'\n').next().unwrap()).unwrap();
    assert_eq!(
        (
            r.state.as_str(),
            r.judged.as_str(),
            r.name.as_deref(),
            r.kind.as_deref()
        ),
        (
            "quarantined",
            "registered",
            Some("pump-1"),
            Some("infusion-pump")
        )
    );
    // Neither seen nor decided: `ispf device` still shows its entry.
    let (r, timeline) = one(&conn, &view, &[2, 0, 0, 0, 0x10, 2], 10)
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.state.as_str(), r.segment.as_str()),
        ("registered", "pumps")
    );
    assert!(timeline.is_empty() && r.last_seen.is_none());
    assert!(one(&conn, &view, &[2, 0, 0, 0, 0x10, 3], 10)
        .unwrap()
        .is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A MAC the file does not register, given an entry by a decision, is
/// placed by that decision, not listed as registered under a name made up
/// of the decision's kind and its MAC.
#[test]
fn a_device_a_decision_added_is_judged_by_the_decision() {
    let dir = std::env::temp_dir().join(format!("ispf-query-dec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("inventory.db");
    let conn = db::open(&path).unwrap();
    let file = Policy::from_str(
        r#"{"version":1,"segments":[{"name":"pumps","vlans":[20]},{"name":"ws"},
            {"name":"quarantine"}],
            "devices":[{"name":"pump-1","mac":"02:00:00:00:10:01","vlan":20,"segment":"pumps"}]}"#,
        Path::new("t.json"),
    )
    .unwrap();
    let decided = |mac: &str, kind, segment: Option<&str>, name: Option<&str>| Decision {
        mac: mac.into(),
        kind,
        segment: segment.map(str::to_owned),
        name: name.map(str::to_owned),
        risk: None,
        reason: "r".into(),
        forced: false,
        actor: "alice".into(),
        at: 1,
        expires: None,
        addresses: Vec::new(),
    };
    let decisions = vec![
        decided("02:00:00:00:99:01", Kind::Quarantine, None, None),
        decided("02:00:00:00:99:02", Kind::Admit, Some("ws"), Some("cart-7")),
        decided("02:00:00:00:10:01", Kind::Quarantine, None, None),
    ];
    let index = crate::policy::DeviceIndex::of(&file);
    let enforced = crate::decisions::overlay(&file, &index, &decisions, 10).unwrap();
    assert_eq!(enforced.file_devices, 1);
    let view = View {
        policy: Arc::new(enforced),
        decisions: Arc::new(decisions),
    };
    let row = |m: [u8; 6]| one(&conn, &view, &m, 10).unwrap().unwrap().0;
    let q = row([2, 0, 0, 0, 0x99, 1]);
    assert_eq!(
        (
            q.state.as_str(),
            q.judged.as_str(),
            q.segment.as_str(),
            q.name
        ),
        ("quarantined", "decision", "quarantine", None)
    );
    let a = row([2, 0, 0, 0, 0x99, 2]);
    assert_eq!(
        (a.state.as_str(), a.judged.as_str(), a.segment.as_str()),
        ("admitted", "decision", "ws")
    );
    assert_eq!(a.name.as_deref(), Some("cart-7"));
    // The file's own device stays registered, whatever a decision does.
    let p = row([2, 0, 0, 0, 0x10, 1]);
    assert_eq!(
        (p.state.as_str(), p.judged.as_str(), p.name.as_deref()),
        ("quarantined", "registered", Some("pump-1"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}
