//! A quarantine takes every address its device was seen with: each entry
//! the file registers by one of them alone moves with it, so each one's
//! segment counts for the life-critical check, not only the first.

use super::*;

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
