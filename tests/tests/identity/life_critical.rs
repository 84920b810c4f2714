//! Role sessions and a file that makes their device life-critical.

use super::*;

/// A role session bound before its device was life-critical ends when the
/// file makes it so: on a reload, and on a start (a decision recorded by a
/// controller that did not check, or under another file). Its next interim
/// is refused like a new session on a pump.
#[test]
fn a_file_that_makes_a_bound_device_life_critical_ends_its_session() {
    require_root();
    let (_topo, ports) = unit("idl");
    let ifaces = [ports[0].as_str(), ports[1].as_str(), ports[2].as_str()];
    let plain = policy();
    let critical = policy_with("pumps", "identity-ws-critical");
    let ctl = Ctl::start(paths("idl"), &plain, &ifaces);
    let open =
        |ctl: &Ctl| String::from_utf8_lossy(&ctl.cli(&["sessions", "--json"]).stdout).into_owned();
    let unlisted = |ctl: &Ctl| {
        let t = Instant::now();
        while open(ctl).contains(LAPTOP) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "still listed: {}",
                open(ctl)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let ended_for_life_critical = |ctl: &Ctl| {
        timeline(ctl, LAPTOP)
            .iter()
            .filter(|e| {
                e["event"] == "session_ended"
                    && e["detail"].as_str().unwrap_or("").contains("life-critical")
            })
            .count()
    };
    let wait_ended = |ctl: &Ctl, n: usize| {
        let t = Instant::now();
        while ended_for_life_critical(ctl) < n {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{n} sessions ended for life-critical: {:?}",
                timeline(ctl, LAPTOP)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(ended_for_life_critical(ctl), n);
    };
    // Seen, so that `ispf devices` lists where it is once no decision
    // names it.
    let _https = Server::start("ispf-idl-pis", &[443]);
    assert!(tcp_ok("ispf-idl-lap", "10.50.0.10", 443, 2.0, None));
    wait_devices(&ctl, Duration::from_secs(10), "the laptop seen", |l| {
        device(l, LAPTOP).is_some()
    });
    assert!(radclient(&acct("Start", "L1", LAPTOP, "biomed"), SECRET));
    assert_eq!(state(&ctl, LAPTOP), "biomed-workstations");

    let dry = ctl.cli(&["reload", "--dry-run", critical.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(said.contains("ends the role decision of"), "{said}");
    assert_eq!(
        state(&ctl, LAPTOP),
        "biomed-workstations",
        "a dry run changes nothing"
    );
    let out = ctl.cli(&["reload", critical.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(state(&ctl, LAPTOP), "pumps");
    wait_ended(&ctl, 1);
    unlisted(&ctl);
    let before = scrape(&ctl.metrics);
    assert!(radclient(
        &acct("Interim-Update", "L1", LAPTOP, "biomed"),
        SECRET
    ));
    let after = scrape(&ctl.metrics);
    let cause = "ispf_identity_ignored_total{cause=\"life_critical\"}";
    assert_eq!(metric(&after, cause) - metric(&before, cause), 1);
    assert_eq!(state(&ctl, LAPTOP), "pumps");

    // A decision recorded under the old file, met by a fresh start (no
    // pinned datapath) with the new one, as a controller without this
    // check would leave it.
    let out = ctl.cli(&["reload", plain.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(radclient(&acct("Start", "L2", LAPTOP, "biomed"), SECRET));
    assert_eq!(state(&ctl, LAPTOP), "biomed-workstations");
    let kept = Paths {
        pin: ctl.paths.pin.clone(),
        run: ctl.paths.run.clone(),
        state: ctl.paths.state.clone(),
    };
    // Killed and detached; the state directory stays.
    drop(ctl);
    let mut ctl = Ctl::start(kept, &critical, &ifaces);
    // Never enforced (below), and recorded as ended once the engine
    // serves, which may be just after the control socket answers.
    assert_eq!(state(&ctl, LAPTOP), "pumps");
    wait_ended(&ctl, 2);
    unlisted(&ctl);

    // Killed within the second between the decision's end and the saving
    // of the session table: the table still holds the session. Planted
    // here, since the race is the kill's timing. The restarted controller
    // (under the file that would allow the role) must not list a session
    // no role decision holds.
    // The session table is saved after the decision's end, within a
    // second; wait for it, so that the row planted below is the only one
    // the restart finds.
    let db = ispf::inventory::db_path(&ctl.paths.state);
    ispf_tests::programs::wait_sqlite(&db, "SELECT count(*) FROM sessions;", "0", 10);
    let kept = Paths {
        pin: ctl.paths.pin.clone(),
        run: ctl.paths.run.clone(),
        state: ctl.paths.state.clone(),
    };
    let log = ctl.kill9();
    // The fresh start left the role out of its first generation: it ended
    // with the generation the start enforced, not with a later one, so
    // the pump's segment was never opened to the role's.
    let first = generation_in(&log, "enforcing ");
    assert!(first.is_some(), "{log}");
    assert_eq!(
        generation_in(&log, &format!("{LAPTOP} session_ended")),
        first,
        "{log}"
    );
    let row = format!(
        "INSERT INTO sessions (nas, id, mac, user, role, segment, since, last_update, timeout_s) \
         VALUES ('127.0.0.1', 'L3', '{LAPTOP}', 'alice', 'biomed-engineer', 'biomed-workstations', \
         strftime('%s','now'), strftime('%s','now'), 3600);"
    );
    let out = command("sqlite3").arg(&db).arg(&row).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ctl = Ctl::start(kept, &plain, &ifaces);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        assert!(!open(&ctl).contains(LAPTOP), "listed: {}", open(&ctl));
        std::thread::sleep(Duration::from_millis(200));
    }
    // A role decision in the database that the pins do not enforce,
    // under a file that refuses it: a fresh start that failed after
    // enforcing without it leaves this. The adopting start must not
    // enforce it for the moment until it serves; it ends it with the
    // generation it adopted.
    let out = ctl.cli(&["reload", critical.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept = Paths {
        pin: ctl.paths.pin.clone(),
        run: ctl.paths.run.clone(),
        state: ctl.paths.state.clone(),
    };
    let log = ctl.kill9();
    assert!(
        log.contains("1 recorded session(s) not restored (session L3 of alice"),
        "{log}"
    );
    let row = format!(
        "INSERT INTO decisions (mac, kind, segment, reason, actor, at) \
         VALUES ('{LAPTOP}', 'role', 'biomed-workstations', 'radius session L4 of alice (biomed)', \
         'radius 127.0.0.1', strftime('%s','now'));"
    );
    let out = command("sqlite3").arg(&db).arg(&row).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ctl = Ctl::start(kept, &critical, &ifaces);
    assert_eq!(state(&ctl, LAPTOP), "pumps");
    wait_ended(&ctl, 3);
    let log = ctl.kill9();
    let adopted = generation_in(&log, "adopted the pinned datapath");
    assert!(adopted.is_some(), "{log}");
    assert!(
        !log.contains("applied the recorded runtime decisions"),
        "{log}"
    );
    assert_eq!(
        generation_in(&log, &format!("{LAPTOP} session_ended")),
        adopted,
        "{log}"
    );
}

/// The generation the first line of `log` that says `said` names.
fn generation_in(log: &str, said: &str) -> Option<u32> {
    let line = log.lines().find(|l| l.contains(said))?;
    let rest = line.split("generation ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A device admitted into a life-critical segment (a new pump whose MAC a
/// NAS also reports) while a role session holds it: the role outranks the
/// admit and would keep it out of its segment, so the admit ends the role.
#[test]
fn an_admit_into_a_life_critical_segment_ends_the_role_held_on_the_device() {
    require_root();
    let (_topo, ports) = unit("ida");
    let ifaces = [ports[0].as_str(), ports[1].as_str(), ports[2].as_str()];
    // The laptop is no device of the file here: an admit may place it.
    let text = std::fs::read_to_string(policy()).unwrap();
    let ws = text
        .lines()
        .find(|l| l.contains(r#""name": "ws""#))
        .unwrap()
        .to_owned();
    let unregistered = write_policy(
        "identity-unregistered",
        &text.replace(&format!(",\n{ws}"), ""),
    );
    let ctl = Ctl::start(paths("ida"), &unregistered, &ifaces);
    let _https = Server::start("ispf-ida-pis", &[443]);
    // Seen (its SYN is refused: unknown devices are quarantined).
    let _ = tcp_ok("ispf-ida-lap", "10.50.0.10", 443, 1.0, None);
    wait_devices(&ctl, Duration::from_secs(10), "the laptop seen", |l| {
        device(l, LAPTOP).is_some()
    });
    assert!(radclient(&acct("Start", "A1", LAPTOP, "biomed"), SECRET));
    assert_eq!(state(&ctl, LAPTOP), "biomed-workstations");

    // Typed in capitals, as a MAC often is: the same device.
    let out = ctl.cli(&["admit", &LAPTOP.to_uppercase(), "--segment", "pumps"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_devices(&ctl, Duration::from_secs(10), "in pumps", |l| {
        device(l, LAPTOP).is_some_and(|d| d["segment"] == "pumps")
    });
    let ended = timeline(&ctl, LAPTOP).iter().any(|e| {
        e["event"] == "session_ended"
            && e["detail"].as_str().unwrap_or("").contains("life-critical")
    });
    assert!(ended, "{:?}", timeline(&ctl, LAPTOP));
    // Its next interim is refused like a new session on a pump.
    assert!(radclient(
        &acct("Interim-Update", "A1", LAPTOP, "biomed"),
        SECRET
    ));
    assert_eq!(state(&ctl, LAPTOP), "pumps");
}

/// A role held by a device that the inventory later sees at an address of
/// a life-critical segment's subnet (a lease there, a pump's MAC reported
/// by a NAS) ends within the controller's ten-second check, with no
/// reload and no interim update from the NAS.
#[test]
fn a_role_ends_once_its_device_is_seen_in_a_life_critical_subnet() {
    require_root();
    let (_topo, ports) = unit("idz");
    let ifaces = [ports[0].as_str(), ports[1].as_str(), ports[2].as_str()];
    let pumps = r#"{"name": "pumps", "life_critical": true}"#;
    let text = std::fs::read_to_string(policy()).unwrap();
    assert!(text.contains(pumps), "{text}");
    let file = write_policy(
        "identity-lc-subnet",
        &text.replace(
            pumps,
            r#"{"name": "pumps", "life_critical": true, "subnets": ["10.10.0.0/24"]}"#,
        ),
    );
    let ctl = Ctl::start(paths("idz"), &file, &ifaces);
    let _https = Server::start("ispf-idz-pis", &[443]);
    assert!(tcp_ok("ispf-idz-lap", "10.50.0.10", 443, 2.0, None));
    wait_devices(&ctl, Duration::from_secs(10), "the laptop seen", |l| {
        device(l, LAPTOP).is_some()
    });
    assert!(radclient(&acct("Start", "Z1", LAPTOP, "biomed"), SECRET));
    assert_eq!(state(&ctl, LAPTOP), "biomed-workstations");
    // Two ten-second checks pass with nothing to end.
    std::thread::sleep(Duration::from_secs(21));
    assert_eq!(state(&ctl, LAPTOP), "biomed-workstations");

    // The laptop sends from an address in the pumps' subnet: dropped as
    // spoofed (its entry names another), but seen there.
    let ns = "ispf-idz-lap";
    let add = [
        "ip",
        "-n",
        ns,
        "addr",
        "add",
        "10.10.0.50/32",
        "dev",
        "eth0",
    ];
    let st = command("ip").args(&add[1..]).status().unwrap();
    assert!(st.success(), "{add:?}");
    let ping = [
        "netns",
        "exec",
        ns,
        "ping",
        "-c",
        "2",
        "-W",
        "1",
        "-I",
        "10.10.0.50",
        "10.50.0.10",
    ];
    let _ = command("ip").args(ping).output().unwrap();
    let t = Instant::now();
    let ended = |ctl: &Ctl| {
        timeline(ctl, LAPTOP).iter().any(|e| {
            e["event"] == "session_ended"
                && e["detail"].as_str().unwrap_or("").contains("life-critical")
        })
    };
    while !ended(&ctl) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the role still holds: {:?}",
            timeline(&ctl, LAPTOP)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Back where its entry places it; once the listener has forgotten
    // the session, its next interim is refused as on a pump.
    assert_eq!(state(&ctl, LAPTOP), "workstations");
    let t = Instant::now();
    while String::from_utf8_lossy(&ctl.cli(&["sessions", "--json"]).stdout).contains(LAPTOP) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the session is still listed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = scrape(&ctl.metrics);
    assert!(radclient(
        &acct("Interim-Update", "Z1", LAPTOP, "biomed"),
        SECRET
    ));
    let after = scrape(&ctl.metrics);
    let cause = "ispf_identity_ignored_total{cause=\"life_critical\"}";
    assert_eq!(metric(&after, cause) - metric(&before, cause), 1);
    assert_eq!(state(&ctl, LAPTOP), "workstations");
}
