//! Role sessions that put a device in a life-critical segment, and
//! reloads that take a role's segment away.

use super::*;

/// A role that puts a cart among the pumps does not make it a pump: the
/// spec protects a device in a life-critical segment "by the file or by
/// an admit". Seen there, the cart is quarantined by hand without
/// `--force` (as detection's automatic quarantine asks), and its user's
/// next session moves it out.
#[test]
fn a_cart_a_role_put_among_the_pumps_is_no_pump() {
    require_root();
    let (_topo, ports) = unit("idc");
    let ifaces = [ports[0].as_str(), ports[1].as_str(), ports[2].as_str()];
    let ctl = Ctl::start(paths("idc"), &policy(), &ifaces);
    let _hl7 = Server::start("ispf-idc-pis", &[2575]);
    assert!(radclient(&acct("Start", "C1", LAPTOP, "cart"), SECRET));
    assert_eq!(state(&ctl, LAPTOP), "pumps");
    // First seen under the role: the inventory places it among the pumps.
    assert!(
        tcp_ok("ispf-idc-lap", "10.50.0.10", 2575, 2.0, None),
        "the cart speaks HL7 as its role allows"
    );
    wait_devices(&ctl, Duration::from_secs(10), "the cart seen", |l| {
        device(l, LAPTOP).is_some_and(|d| d["first_seen"].is_string())
    });
    let q = ctl.cli(&["quarantine", LAPTOP, "--reason", "EDR alert"]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    assert_eq!(state(&ctl, LAPTOP), "quarantine");
    assert!(ctl.cli(&["release", LAPTOP]).status.success());
    assert_eq!(state(&ctl, LAPTOP), "pumps", "released: the role holds");
    assert!(radclient(&acct("Start", "C2", LAPTOP, "biomed"), SECRET));
    assert_eq!(state(&ctl, LAPTOP), "biomed-workstations");

    // A reload that removes the biomed role with its segment ends the
    // role held there, in the generation that applies the file (before,
    // the reload was refused, with advice to release what `release`
    // cannot end).
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(policy()).unwrap()).unwrap();
    let biomed = |v: &serde_json::Value| {
        ["name", "from", "to", "segment"]
            .iter()
            .any(|k| v[*k] == "biomed-workstations")
    };
    doc["segments"]
        .as_array_mut()
        .unwrap()
        .retain(|v| !biomed(v));
    doc["rules"].as_array_mut().unwrap().retain(|v| !biomed(v));
    doc["identity"]["roles"]
        .as_array_mut()
        .unwrap()
        .retain(|v| !biomed(v));
    let without = write_policy("identity-no-biomed", &doc.to_string());
    let out = ctl.cli(&["reload", without.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("no segment `biomed-workstations`"), "{said}");
    assert_eq!(state(&ctl, LAPTOP), "workstations");
}
