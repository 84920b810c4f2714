//! The controller as it runs on a care-unit bridge: hot reload under load,
//! kill -9 and adoption, refused reloads, the control socket, and interfaces
//! it must refuse. Each test builds its own bridge and namespaces.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    process::Command,
    thread::sleep,
    time::Duration,
};

use ispf::{
    control::{self, Request, Response},
    datapath::Datapath,
    policy::Policy,
};
use ispf_common::reason_name;
use ispf_tests::{care_unit::*, controller::*, frames::*, ispf_bin, netns::*, pins, require_root};

#[path = "controller/restart.rs"]
mod restart;

#[test]
fn reload_under_load_is_atomic_and_loses_nothing() {
    require_root();
    let (_topo, ports) = unit("r");
    let (a, b) = policies();
    let ctl = Ctl::start(paths("r"), &a, &[&ports[0], &ports[1], &ports[2]]);
    let pa = Policy::from_file(&a).unwrap();
    let pb = Policy::from_file(&b).unwrap();

    // Phase 1: every packet is judged wholly by one generation. Frames run
    // through the pinned program while another thread reloads A/B 200 times;
    // the datapath reports the generation that judged each frame.
    let mut dp = Datapath::adopt(&ctl.paths.pin).unwrap();
    let frames = [
        ("pump HL7", pump_hl7(45000, TCP_SYN)),
        (
            "laptop NTP",
            eth(
                mac(PIS),
                mac(LAPTOP),
                &[],
                ETH_IP,
                &ipv4(
                    v4("10.99.0.7"),
                    v4("10.50.0.10"),
                    17,
                    &udp(45001, 123, b"t"),
                    Frag::default(),
                    0,
                ),
            ),
        ),
        (
            "pump HTTPS",
            eth(
                mac(PIS),
                mac(PUMP1),
                &[],
                ETH_IP,
                &ipv4(
                    v4("10.10.0.11"),
                    v4("10.50.0.10"),
                    6,
                    &tcp(45002, 443, TCP_SYN),
                    Frag::default(),
                    0,
                ),
            ),
        ),
    ];
    let run_dir = ctl.paths.run.clone();
    let (a2, b2) = (a.clone(), b.clone());
    let reloader = std::thread::spawn(move || {
        for i in 0..200 {
            let p = if i % 2 == 0 { &b2 } else { &a2 };
            match control::request(
                &run_dir,
                &Request::Reload {
                    policy: Some(p.clone()),
                    dry_run: false,
                },
                Duration::from_secs(30),
            )
            .unwrap()
            {
                Response::Reload(r) => assert!(r.applied && r.generation == i + 2, "{r:?}"),
                other => panic!("reload {i}: {other:?}"),
            }
        }
    });
    let mut generations = std::collections::BTreeSet::new();
    let mut judged = 0u64;
    let mut busy = 0u64;
    while !reloader.is_finished() {
        for (name, f) in &frames {
            let o = match dp.run(f) {
                Ok(o) => o,
                Err(ispf::datapath::DatapathError::Busy) => {
                    busy += 1;
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            let policy = if o.epoch % 2 == 1 { &pa } else { &pb };
            let expected = match (*name, o.epoch % 2) {
                ("pump HL7", _) => (true, "allowed"),
                ("laptop NTP", 1) => (true, "allowed"),
                ("laptop NTP", _) => (false, "denied_default"),
                _ => (false, "denied_default"),
            };
            assert_eq!(
                (o.pass, reason_name(o.reason).unwrap()),
                expected,
                "{name} under generation {}: {o:?}",
                o.epoch
            );
            assert_eq!(
                policy.segment_name(o.dst),
                "pis-servers",
                "{name} under generation {}: {o:?}",
                o.epoch
            );
            generations.insert(o.epoch);
            judged += 1;
        }
    }
    reloader.join().unwrap();
    assert_eq!(ctl.status().generation, 201);
    assert!(
        generations.len() >= 20,
        "frames ran under only {} generations; the test did not overlap the reloads",
        generations.len()
    );
    eprintln!("phase 1: {judged} frames over {} generations, each judged wholly by one ({busy} records overwritten by live traffic)", generations.len());
    assert!(
        busy * 100 <= judged,
        "{busy} of {judged} records overwritten: there should be no live traffic in phase 1"
    );
    drop(dp);

    // Phase 2: real traffic. A ping flow that both policies allow loses
    // nothing while the policy is reloaded 200 more times.
    let pinger = {
        let ns = "ispf-r-pump".to_owned();
        std::thread::spawn(move || ping(&ns, "10.50.0.10", 800, "0.01"))
    };
    sleep(Duration::from_millis(300));
    for i in 0..200 {
        let p = if i % 2 == 0 { &a } else { &b };
        let out = ctl.cli(&["reload", p.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = pinger.join().unwrap();
    assert!(
        loss(&out).contains(" 0% packet loss"),
        "ping during reloads: {}",
        loss(&out)
    );
    let s = ctl.status();
    assert_eq!(
        (s.generation, s.reloads_ok, s.reloads_failed),
        (401, 400, 0)
    );
}

#[test]
fn invalid_reload_changes_nothing() {
    require_root();
    let (_topo, ports) = unit("i");
    let (a, _) = policies();
    let ctl = Ctl::start(paths("i"), &a, &[&ports[0], &ports[1], &ports[2]]);
    let bad = std::fs::read_to_string(&a).unwrap().replace(
        r#""mac": "02:00:00:00:10:02""#,
        r#""mac": "02:00:00:00:10:01""#,
    );
    let bad = write_policy("bad", &bad);
    let out = ctl.cli(&["reload", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("devices[1].mac: duplicate MAC"), "{err}");
    assert!(err.contains("generation 1) stays enforced"), "{err}");
    let s = ctl.status();
    assert_eq!((s.generation, s.reloads_failed), (1, 1));
    assert!(loss(&ping("ispf-i-pump", "10.50.0.10", 2, "0.2")).contains(" 0% packet loss"));
    // A dry run reports and applies nothing.
    let (_, b) = policies();
    let out = ctl.cli(&["reload", "--dry-run", b.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("- closes quarantine -> pis-servers: udp/123"),
        "{text}"
    );
    assert!(text.contains("dry run: nothing applied"), "{text}");
    assert_eq!(ctl.status().generation, 1);
}

#[test]
fn control_socket_is_root_only() {
    require_root();
    let (_topo, ports) = unit("s");
    let (a, _) = policies();
    let ctl = Ctl::start(paths("s"), &a, &[&ports[0]]);
    let sock = std::fs::metadata(ctl.paths.run.join("ispf.sock")).unwrap();
    assert_eq!((sock.uid(), sock.permissions().mode() & 0o777), (0, 0o600));
    let dir = std::fs::metadata(&ctl.paths.run).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    // An unprivileged user cannot talk to it.
    let (unpriv_bin, _) = ispf_tests::unprivileged_copies(&[]);
    let out = ispf_tests::programs::command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&unpriv_bin)
        .args(["status", "--run-dir"])
        .arg(&ctl.paths.run)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Said plainly: a controller is there, and only root may use it.
    assert!(
        err.contains("permission denied") && err.contains("sudo"),
        "refused for another reason: {err}"
    );
    assert!(!err.contains("no ispf controller"), "{err}");
    let listening = ispf_tests::programs::command("ss")
        .args(["-Htlnup"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // The only network listener is the metrics endpoint, on loopback.
    // Only this controller's sockets: another ispf on the machine (a
    // benchmark's) is not this test's business.
    let pid = format!("pid={},", ctl.child.as_ref().unwrap().id());
    let ours: Vec<&str> = listening.lines().filter(|l| l.contains(&pid)).collect();
    assert!(
        !ours.is_empty(),
        "no listener of the controller:\n{listening}"
    );
    for l in ours {
        assert!(
            l.contains(&ctl.metrics) && ctl.metrics.starts_with("127.0.0.1:"),
            "ispf listens beyond its loopback metrics port {}: {l}",
            ctl.metrics
        );
    }
}

#[test]
fn unusable_interfaces_are_refused_whole() {
    require_root();
    let (_topo, ports) = unit("f");
    let (a, _) = policies();
    let run = |ifaces: &[&str], tag: &str| {
        let p = paths(tag);
        let mut c = Command::new(ispf_bin());
        run_args(&mut c, &p, &a, ifaces, &[]);
        let out = c.output().unwrap();
        assert!(!out.status.success());
        assert!(!p.pin.exists(), "pins left after a refused start");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[&ports[0], "ispf-nope0"], "f1");
    assert!(err.contains("interface ispf-nope0 does not exist"), "{err}");
    must(&["ip", "link", "set", &ports[2], "down"]);
    let err = run(&[&ports[0], &ports[2]], "f2");
    assert!(
        err.contains(&format!("interface {} is down", ports[2])),
        "{err}"
    );
    must(&["ip", "link", "set", &ports[2], "up"]);
    // Another XDP program on the second port: the first must not be left attached.
    let mut other = Datapath::load(Default::default()).unwrap();
    other
        .program_mut()
        .attach(&ports[1], aya::programs::XdpMode::Skb)
        .unwrap();
    let err = run(&[&ports[0], &ports[1]], "f3");
    assert!(
        err.contains(&format!(
            "interface {} already has an XDP program",
            ports[1]
        )),
        "{err}"
    );
    assert!(!enforced(&ports[0]), "nothing half-attached");
    drop(other);
    // Not root: said plainly.
    let (unpriv_bin, unpriv_policy) = ispf_tests::unprivileged_copies(&[&a]);
    let out = ispf_tests::programs::command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&unpriv_bin)
        .args(["run", "--policy"])
        .arg(&unpriv_policy[0])
        .args([
            "--iface",
            &ports[0],
            "--pin-dir",
            "/sys/fs/bpf/ispf-test-f5",
            "--run-dir",
            "/tmp/ispf-test-run-f5",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must run as root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
