//! Runtime decisions on live flows: admit, quarantine and release change
//! the verdict of an established TCP flow at its next packet, survive
//! `ispf reload` and `kill -9` + restart, expire, and a life-critical
//! device is only quarantined by hand with `--force`. And the inventory
//! database broken every way an operator meets it — corrupt, read-only,
//! locked by another process, its directory impossible — never changes
//! what is enforced and says what to do.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use ispf_tests::{
    care_unit::*,
    controller::*,
    inventory::*,
    netns::*,
    programs::command,
    require_root,
    services::{tcp_ok, Server},
};

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn decisions_change_live_flows_at_the_next_packet_and_survive_reloads_and_restarts() {
    require_root();
    let (_topo, ports) = unit("dc");
    let ifaces = [ports[0].as_str(), ports[1].as_str(), ports[2].as_str()];
    let mut ctl = Ctl::start(paths("dc"), &policy_path(), &ifaces);
    let pis = "10.50.0.10";
    let _echo = Echo::start("ispf-dc-pis", 2575);
    let _https = Server::start("ispf-dc-pis", &[443]);
    let stream = Stream::start("ispf-dc-pump", pis, 2575);
    stream.wait_state(true, 5, Duration::from_secs(5));

    // A pump is life-critical: no quarantine without --force, nothing changed.
    let err = refused(&ctl.cli(&["quarantine", PUMP1, "--reason", "odd traffic"]));
    assert!(
        err.contains("life-critical") && err.contains("--force"),
        "{err}"
    );
    let t = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stream.since(t).1, 0, "a refused quarantine changed nothing");

    // With --force: the established HL7 flow stops at its next packet.
    ok(&ctl.cli(&[
        "quarantine",
        PUMP1,
        "--reason",
        "odd traffic",
        "--force",
        "--by",
        "dr-jones",
    ]));
    let took = stream.wait_state(false, 3, Duration::from_secs(2));
    eprintln!("quarantine blocked the live flow after {took:?}");
    let tl = timeline(&ctl, PUMP1);
    assert_eq!(tl[0]["event"], "quarantined");
    assert!(
        tl[0]["actor"].as_str().unwrap().starts_with("dr-jones"),
        "{tl:?}"
    );
    assert!(
        tl[0]["detail"].as_str().unwrap().contains("forced"),
        "{tl:?}"
    );
    let q = wait_devices(&ctl, Duration::from_secs(1), "the pump quarantined", |l| {
        device(l, PUMP1)
            .is_some_and(|d| d["state"] == "quarantined" && d["segment"] == "quarantine")
    });
    eprintln!("listed as quarantined after {q:?}");
    // Released: the same connection passes again (its retransmission is
    // judged by the file again).
    ok(&ctl.cli(&["release", PUMP1]));
    let took = stream.wait_state(true, 3, Duration::from_secs(8));
    eprintln!("release let the same flow through after {took:?}");

    // Admit the unknown laptop as a workstation: HTTPS to the PIS opens.
    assert!(
        !tcp_ok("ispf-dc-lap", pis, 443, 1.0, None),
        "an unknown laptop is quarantined"
    );
    ok(&ctl.cli(&[
        "admit",
        LAPTOP,
        "--segment",
        "clinical-workstations",
        "--name",
        "cart-7",
        "--by",
        "it-desk",
    ]));
    assert!(
        tcp_ok("ispf-dc-lap", pis, 443, 2.0, None),
        "admitted: the laptop reaches the PIS"
    );
    let exported: serde_json::Value =
        serde_json::from_str(&ok(&ctl.cli(&["export-devices"]))).unwrap();
    assert_eq!(exported["devices"][0]["mac"], LAPTOP);
    assert_eq!(exported["devices"][0]["segment"], "clinical-workstations");
    assert_eq!(exported["devices"][0]["name"], "cart-7");
    // The exported entry is a valid policy device: paste it into the file.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(policy_path()).unwrap()).unwrap();
    doc["devices"]
        .as_array_mut()
        .unwrap()
        .push(exported["devices"][0].clone());
    let with_laptop = write_policy("dc-with-laptop", &doc.to_string());
    let dry = ok(&ctl.cli(&["reload", with_laptop.to_str().unwrap(), "--dry-run"]));
    assert!(
        dry.contains("the file now registers") && dry.contains(LAPTOP),
        "{dry}"
    );

    // Reload: decisions stay.
    ok(&ctl.cli(&["reload"]));
    assert!(
        tcp_ok("ispf-dc-lap", pis, 443, 2.0, None),
        "the admit survives a reload"
    );

    // Quarantine beats admit; it survives kill -9 and a restart.
    ok(&ctl.cli(&["quarantine", LAPTOP, "--reason", "malware alert"]));
    assert!(!tcp_ok("ispf-dc-lap", pis, 443, 1.0, None));
    let generation = ctl.status().generation;
    ctl.kill9();
    let p = Paths {
        pin: ctl.paths.pin.clone(),
        run: ctl.paths.run.clone(),
        state: ctl.paths.state.clone(),
    };
    std::mem::forget(ctl);
    let ctl = Ctl::start(p, &policy_path(), &ifaces);
    let st = ctl.status();
    assert_eq!(st.generation, generation, "adopted as it was, no reapply");
    assert_eq!(st.decisions, 1, "one device, one decision holding");
    assert!(
        !tcp_ok("ispf-dc-lap", pis, 443, 1.0, None),
        "still quarantined after kill -9"
    );
    // Released: back to admitted, not to the file.
    ok(&ctl.cli(&["release", LAPTOP]));
    assert!(tcp_ok("ispf-dc-lap", pis, 443, 2.0, None));
    let d = devices(&ctl);
    assert_eq!(device(&d, LAPTOP).unwrap()["state"], "admitted");

    // A quarantine that expires by itself.
    ok(&ctl.cli(&["quarantine", LAPTOP, "--reason", "brief", "--expires", "2s"]));
    assert!(!tcp_ok("ispf-dc-lap", pis, 443, 1.0, None));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        tcp_ok("ispf-dc-lap", pis, 443, 2.0, None),
        "the quarantine expired"
    );
    assert!(timeline(&ctl, LAPTOP)
        .iter()
        .any(|e| e["event"] == "expired"));

    // Bad requests change nothing and say why.
    let e = refused(&ctl.cli(&["admit", LAPTOP2, "--segment", "nowhere"]));
    assert!(e.contains("nowhere") && e.contains("guest"), "{e}");
    let e = refused(&ctl.cli(&["release", LAPTOP2]));
    assert!(e.contains("no decision"), "{e}");
    let e = refused(&ctl.cli(&["quarantine", "ff:ff:ff:ff:ff:ff", "--reason", "x"]));
    assert!(e.contains("multicast"), "{e}");
    // A pump the file registers is not admitted elsewhere: the file says
    // where it belongs, and its HL7 flow goes on.
    let e = refused(&ctl.cli(&["admit", PUMP1, "--segment", "guest"]));
    assert!(e.contains("registered in the policy file"), "{e}");
    stream.wait_state(true, 5, Duration::from_secs(5));

    // An incident script quarantines a dozen devices at once, then
    // releases them: every request is applied, none refused as busy.
    let macs: Vec<String> = (0..12).map(|i| format!("02:00:00:00:77:{i:02x}")).collect();
    let all = |verb: &[&str]| {
        let running: Vec<_> = macs
            .iter()
            .map(|m| {
                std::process::Command::new(ispf_tests::ispf_bin())
                    .args(verb)
                    .arg(m)
                    .args(["--run-dir", ctl.paths.run.to_str().unwrap()])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for r in running {
            ok(&r.wait_with_output().unwrap());
        }
    };
    all(&["quarantine", "--reason", "incident 42"]);
    let held = ctl.json_lines(&["devices", "--quarantined", "--json"]);
    for m in &macs {
        assert!(
            held.iter().any(|d| d["mac"] == m.as_str()),
            "{m} not quarantined"
        );
    }
    all(&["release"]);
    let held = ctl.json_lines(&["devices", "--quarantined", "--json"]);
    assert!(!held
        .iter()
        .any(|d| macs.iter().any(|m| d["mac"] == m.as_str())));

    // Stopped as systemd stops it: the controller exits, enforcement and
    // the decisions stay.
    let mut ctl = ctl;
    let log = ctl.terminate(Duration::from_secs(5));
    assert!(log.contains("enforcement continues"), "{log}");
    assert!(
        tcp_ok("ispf-dc-lap", pis, 443, 2.0, None),
        "the admit outlives the controller"
    );
}

/// A controller whose inventory is broken as `break_it` breaks it: it
/// starts, enforces the file exactly, reports the database's trouble in
/// `ispf status` with the file and a fix, and refuses decisions clearly.
fn broken(tag: &str, what: &str, break_it: impl FnOnce(&Path), fix_words: &[&str]) {
    let (_topo, ports) = unit(tag);
    let p = paths(tag);
    break_it(&p.state);
    let ctl = Ctl::start(p, &policy_path(), &[&ports[0], &ports[1], &ports[2]]);
    let pis = "10.50.0.10";
    let _s = Server::start(&format!("ispf-{tag}-pis"), &[2575, 443]);
    assert!(
        tcp_ok(&format!("ispf-{tag}-pump"), pis, 2575, 2.0, None),
        "{what}: the pump's HL7 passes"
    );
    assert!(
        !tcp_ok(&format!("ispf-{tag}-lap"), pis, 443, 1.0, None),
        "{what}: the laptop stays out"
    );
    std::thread::sleep(Duration::from_millis(500));
    let status = ok(&ctl.cli(&["status"]));
    let line = status
        .lines()
        .find(|l| l.starts_with("inventory"))
        .unwrap_or_else(|| panic!("{what}: no inventory line in\n{status}"));
    assert!(
        line.contains("UNAVAILABLE") && line.contains("inventory.db"),
        "{what}: {line}"
    );
    for w in fix_words {
        assert!(line.contains(w), "{what}: `{w}` missing from: {line}");
    }
    let e = refused(&ctl.cli(&["quarantine", LAPTOP, "--reason", "x"]));
    assert!(
        e.contains("inventory.db") && e.contains("not applied"),
        "{what}: {e}"
    );
    let e = refused(&ctl.cli(&["devices"]));
    assert!(e.contains("enforcement is unaffected"), "{what}: {e}");
    assert!(
        tcp_ok(&format!("ispf-{tag}-pump"), pis, 2575, 2.0, None),
        "{what}: still enforcing"
    );
    eprintln!("{what}: {line}");
}

fn fresh_db(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let db = dir.join("inventory.db");
    ispf::inventory::db::open(&db).unwrap();
    db
}

#[test]
fn a_broken_inventory_database_never_changes_what_is_enforced() {
    require_root();
    broken(
        "bc",
        "corrupt",
        |dir| {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("inventory.db"), vec![0x5a; 16384]).unwrap();
        },
        &["move it aside"],
    );
    // Read-only: the state directory mounted read-only, as a full or
    // remounted disk leaves it.
    let ro_dir = PathBuf::from("/tmp/ispf-test-state-br");
    let _ = sh(&["umount", ro_dir.to_str().unwrap()]);
    broken(
        "br",
        "read-only",
        |dir| {
            assert_eq!(dir, ro_dir);
            fresh_db(dir);
            must(&[
                "mount",
                "--bind",
                dir.to_str().unwrap(),
                dir.to_str().unwrap(),
            ]);
            must(&["mount", "-o", "remount,ro,bind", dir.to_str().unwrap()]);
        },
        &["read-only"],
    );
    must(&["umount", ro_dir.to_str().unwrap()]);
    // Locked by another process: an sqlite3 shell holding an exclusive
    // transaction on a rollback-journal database.
    let mut locker = None;
    broken(
        "bl",
        "locked",
        |dir| {
            std::fs::create_dir_all(dir).unwrap();
            let db = dir.join("inventory.db");
            let mut child = command("sqlite3")
                .arg(&db)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let stdin = child.stdin.as_mut().unwrap();
            writeln!(stdin, "PRAGMA journal_mode=DELETE; CREATE TABLE hold(x); BEGIN EXCLUSIVE; INSERT INTO hold VALUES (1);").unwrap();
            stdin.flush().unwrap();
            std::thread::sleep(Duration::from_millis(500));
            locker = Some(child);
        },
        &["locked"],
    );
    if let Some(mut c) = locker {
        let _ = c.kill();
        let _ = c.wait();
    }
    // Its directory cannot be created: a file stands where it should be.
    broken(
        "bm",
        "missing",
        |dir| {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::write(dir, b"not a directory").unwrap();
        },
        &["--state-dir"],
    );
    let _ = std::fs::remove_file("/tmp/ispf-test-state-bm");
}

#[path = "decisions/addresses.rs"]
mod addresses;
