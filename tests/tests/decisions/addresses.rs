//! A quarantine takes every address its device was seen with: each entry
//! the file registers by one of them alone moves with it, so each one's
//! segment counts for the life-critical check, not only the first. And
//! the check reads the inventory's last day, not only the last frame.

use super::*;

use ispf_tests::programs::sqlite as sql;

#[test]
fn a_quarantine_that_would_move_a_pump_registered_by_its_ipv6_alone_needs_force() {
    require_root();
    let (_topo, ports) = unit("dq");
    let ifaces = [ports[0].as_str(), ports[1].as_str(), ports[2].as_str()];
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(policy_path()).unwrap()).unwrap();
    let devices = doc["devices"].as_array_mut().unwrap();
    // A cart by its IPv4 alone, a pump by its IPv6 alone: one device, as
    // far as the inventory can tell, once one MAC sends from both.
    devices.push(serde_json::json!({
        "name": "cart-by-v4", "ipv4": "10.30.0.77", "segment": "clinical-workstations"
    }));
    devices.push(serde_json::json!({
        "name": "pump-by-v6", "ipv6": "fd00:10::77", "segment": "infusion-pumps"
    }));
    let file = write_policy("dq-addresses", &doc.to_string());
    let mut ctl = Ctl::start(paths("dq"), &file, &ifaces);
    let kept = Paths {
        pin: ctl.paths.pin.clone(),
        run: ctl.paths.run.clone(),
        state: ctl.paths.state.clone(),
    };
    ctl.kill9();
    // Seen with both addresses: planted, as the inventory records the
    // last IPv4 and IPv6 source a MAC sent from.
    let row = format!(
        "INSERT INTO devices (mac, vlan, interface, ipv4, ipv6, first_seen, last_seen, segment, judged) \
         VALUES ('{LAPTOP}', 0, '{}', '10.30.0.77', 'fd00:10::77', strftime('%s','now'), \
         strftime('%s','now'), 'clinical-workstations', 'registered');",
        ports[0]
    );
    let db = ispf::inventory::db_path(&kept.state);
    let out = command("sqlite3").arg(&db).arg(&row).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ctl = Ctl::start(kept, &file, &ifaces);
    let err = refused(&ctl.cli(&["quarantine", LAPTOP, "--reason", "odd traffic"]));
    assert!(
        err.contains("life-critical") && err.contains("infusion-pumps"),
        "{err}"
    );
    assert!(
        ctl.json_lines(&["devices", "--quarantined", "--json"])
            .is_empty(),
        "a refused quarantine changed nothing"
    );
    // By hand, with --force, it is taken, and says so.
    ok(&ctl.cli(&["quarantine", LAPTOP, "--reason", "odd traffic", "--force"]));
    let tl = timeline(&ctl, LAPTOP);
    assert_eq!(tl[0]["event"], "quarantined");
    assert!(
        tl[0]["detail"]
            .as_str()
            .unwrap()
            .contains("forced: life-critical segment infusion-pumps"),
        "{tl:?}"
    );
}

/// A pump the file registers by address alone, whose MAC a forged frame
/// last showed with another address (an attacker on another port): its
/// own traffic placed it in the pumps' segment within the day, so it is
/// no device to quarantine unforced, whatever the last sighting says.
#[test]
fn a_forged_last_sighting_does_not_make_a_pump_quarantinable() {
    require_root();
    let (_topo, ports) = unit("dh");
    let ifaces = [ports[0].as_str(), ports[1].as_str(), ports[2].as_str()];
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(policy_path()).unwrap()).unwrap();
    let pump = doc["devices"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|d| d["mac"] == PUMP1)
        .unwrap();
    pump.as_object_mut().unwrap().remove("mac");
    let file = write_policy("dh-pump-by-address", &doc.to_string());
    let ctl = Ctl::start(paths("dh"), &file, &ifaces);
    let db = ispf::inventory::db_path(&ctl.paths.state);
    let _echo = Echo::start("ispf-dh-pis", 2575);
    let stream = Stream::start("ispf-dh-pump", "10.50.0.10", 2575);
    stream.wait_state(true, 3, Duration::from_secs(5));
    let remembered = format!("SELECT segment FROM life_critical_seen WHERE mac = '{PUMP1}'");
    let t = std::time::Instant::now();
    while sql(&db, &remembered) != "infusion-pumps" {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the pump's placement by its address not remembered: {}",
            sql(&db, "SELECT * FROM life_critical_seen")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(stream);
    std::thread::sleep(Duration::from_secs(2));
    // The last frame with the pump's MAC came from elsewhere.
    sql(
        &db,
        &format!(
            "UPDATE devices SET ipv4 = '10.30.0.99', segment = 'clinical-workstations', \
             judged = 'vlan' WHERE mac = '{PUMP1}'"
        ),
    );
    let err = refused(&ctl.cli(&["quarantine", PUMP1, "--reason", "scan"]));
    assert!(
        err.contains("life-critical") && err.contains("infusion-pumps"),
        "{err}"
    );
}

/// An address another device sent from within the day (a monitor's DHCP
/// lease, which an attacker borrowed) is not taken by the quarantine of
/// the one seen with it last: traffic to the monitor stays the monitor's.
#[test]
fn a_quarantine_does_not_take_an_address_another_device_used() {
    require_root();
    let (_topo, ports) = unit("dm");
    let ifaces = [ports[0].as_str(), ports[1].as_str(), ports[2].as_str()];
    let ctl = Ctl::start(paths("dm"), &policy_path(), &ifaces);
    let db = ispf::inventory::db_path(&ctl.paths.state);
    let (monitor, other) = ("02:00:00:00:20:09", "02:00:00:00:99:07");
    sql(
        &db,
        &format!(
            "INSERT INTO devices (mac, vlan, interface, ipv4, first_seen, last_seen, segment, judged) VALUES \
             ('{LAPTOP}', 0, 'p', '10.20.0.99', strftime('%s','now'), strftime('%s','now'), 'quarantine', 'unknown'), \
             ('{other}', 0, 'p', '10.60.0.5', strftime('%s','now'), strftime('%s','now'), 'quarantine', 'unknown'); \
             INSERT INTO device_ips (mac, ip, first_seen, last_seen) VALUES \
             ('{monitor}', '10.20.0.99', strftime('%s','now') - 60, strftime('%s','now') - 60), \
             ('{LAPTOP}', '10.20.0.99', strftime('%s','now'), strftime('%s','now')), \
             ('{other}', '10.60.0.5', strftime('%s','now'), strftime('%s','now'));"
        ),
    );
    ok(&ctl.cli(&["quarantine", LAPTOP, "--reason", "scan"]));
    ok(&ctl.cli(&["quarantine", other, "--reason", "scan"]));
    let taken = |mac: &str| {
        sql(
            &db,
            &format!("SELECT addresses FROM decisions WHERE mac = '{mac}' AND kind = 'quarantine'"),
        )
    };
    assert_eq!(taken(LAPTOP), "", "the monitor's address was taken");
    assert_eq!(taken(other), "10.60.0.5", "its own address is taken");
    // Later a monitor sends from it (the quarantined device's lease ended
    // and the address went to the monitor): the quarantine lets it go
    // within the controller's ten-second check, and says so.
    sql(
        &db,
        &format!(
            "INSERT INTO device_ips (mac, ip, first_seen, last_seen) VALUES \
             ('{MON1}', '10.60.0.5', strftime('%s','now'), strftime('%s','now'));"
        ),
    );
    let t = std::time::Instant::now();
    while !taken(other).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(25),
            "still taken: {}",
            taken(other)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let tl = timeline(&ctl, other);
    assert!(
        tl.iter().any(|e| e["event"] == "quarantine_narrowed"
            && e["detail"].as_str().unwrap_or("").contains("10.60.0.5")),
        "{tl:?}"
    );
    let q = ctl.json_lines(&["devices", "--quarantined", "--json"]);
    assert!(
        q.iter().any(|d| d["mac"] == other),
        "the MAC stays quarantined: {q:?}"
    );
}
