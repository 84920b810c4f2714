//! Two controllers over one set of pins, as a careless operator starts
//! them: a second `ispf run` with its own run directory, and an offline
//! `ispf detach` aimed at pins a running controller owns. Each would have
//! overwritten or removed the policy the first enforces.

use std::{path::PathBuf, process::Command};

use ispf_tests::{controller::*, ispf_bin, require_root};

/// `ispf run` over `pin` with the run and state directories of `tag`;
/// returns whether it started (still running after 30 s: then stopped
/// and detached) and what it printed.
fn second_run(pin: &PathBuf, tag: &str, policy: &PathBuf, iface: &str) -> (bool, String) {
    let run = PathBuf::from(format!("/tmp/ispf-test-run-{tag}"));
    let state = PathBuf::from(format!("/tmp/ispf-test-state-{tag}"));
    let mut child = Command::new(ispf_bin())
        .arg("run")
        .arg("--policy")
        .arg(policy)
        .arg("--pin-dir")
        .arg(pin)
        .arg("--run-dir")
        .arg(&run)
        .arg("--state-dir")
        .arg(&state)
        .args(["--iface", iface, "--metrics-addr", "127.0.0.1:9479"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let running = child.try_wait().unwrap().is_none();
    if running {
        let _ = Command::new(ispf_bin())
            .arg("detach")
            .arg("--pin-dir")
            .arg(pin)
            .arg("--run-dir")
            .arg(&run)
            .output();
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&run);
    let _ = std::fs::remove_dir_all(&state);
    (
        running || out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_second_controller_on_the_same_pins_is_refused() {
    require_root();
    let (_topo, ports) = unit("xc");
    let (a, b) = policies();
    let mut ctl = Ctl::start(paths("xc"), &a, &[&ports[0]]);
    let pid = ctl.child.as_ref().unwrap().id();
    let before = ctl.status();

    // Another run directory, the same pins: refused before touching them,
    // naming the controller that holds them.
    let (started, err) = second_run(&ctl.paths.pin, "xc2", &b, &ports[1]);
    assert!(!started, "a second controller started over the same pins");
    assert!(
        err.contains(&ctl.paths.pin.display().to_string())
            && err.contains("in use by another ispf"),
        "{err}"
    );
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(!enforced(&ports[1]), "the refused controller attached");

    // An offline detach of those pins from another run directory.
    let out = Command::new(ispf_bin())
        .arg("detach")
        .arg("--pin-dir")
        .arg(&ctl.paths.pin)
        .args(["--run-dir", "/tmp/ispf-test-run-xc3"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "detach removed a running controller's pins"
    );
    assert!(err.contains(&format!("pid {pid}")), "{err}");

    // Pins of its own, the port the first enforces at TC: refused. Both
    // would claim to enforce, and only the first would judge packets.
    let other = PathBuf::from("/sys/fs/bpf/ispf-test-xc-otherpins");
    let (started, err) = second_run(&other, "xc4", &b, &ports[0]);
    assert!(!started, "a second ispf attached to an enforced port");
    assert!(err.contains("already has ispf's TC program"), "{err}");
    assert!(!other.exists(), "the refused start left its pin directory");

    // A detach naming the controller's run directory but other pins (a
    // typo, or another unit's): refused, nothing detached.
    let out = ctl.cli(&["detach", "--pin-dir", "/sys/fs/bpf/ispf-test-xc-other"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "detached the wrong unit");
    assert!(
        err.contains("nothing was detached") && err.contains(&ctl.paths.pin.display().to_string()),
        "{err}"
    );
    // Pins nobody made, with no controller: nothing to do, and it says so.
    let out = Command::new(ispf_bin())
        .args(["detach", "--pin-dir", "/sys/fs/bpf/ispf-test-xc-none"])
        .args(["--run-dir", "/tmp/ispf-test-run-xc-none"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("nothing to detach"), "{said}");

    // The first controller noticed nothing.
    assert!(enforced(&ports[0]));
    assert!(ctl.paths.pin.join("prog").exists());
    let after = ctl.status();
    assert_eq!(
        (after.generation, &after.policy_sha256),
        (before.generation, &before.policy_sha256)
    );

    // The lock dies with its holder, even by SIGKILL: the next controller
    // adopts the pins at once.
    ctl.kill9();
    let paths = Paths {
        pin: ctl.paths.pin.clone(),
        run: ctl.paths.run.clone(),
        state: ctl.paths.state.clone(),
    };
    let mut again = Ctl::start(paths, &a, &[&ports[0]]);
    assert_eq!(again.status().policy_sha256, before.policy_sha256);
    assert!(enforced(&ports[0]));

    // A detach through the controller returns once it has let go, so a
    // start right after is not refused as "in use".
    let pin = again.paths.pin.display().to_string();
    let out = again.cli(&["detach", "--pin-dir", &pin]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("the controller has stopped"), "{said}");
    let _ = again.stderr_after_exit();
    assert!(!enforced(&ports[0]));
    let paths = Paths {
        pin: again.paths.pin.clone(),
        run: again.paths.run.clone(),
        state: again.paths.state.clone(),
    };
    let fresh = Ctl::start(paths, &a, &[&ports[0]]);
    assert!(enforced(&ports[0]));
    assert_eq!(fresh.status().generation, 1);
}

/// A port whose link went away is re-attached on the controller's tick;
/// if another ispf's TC program sits there by then, that is refused as at
/// start: the two would each claim the port while only the first judged.
#[test]
fn a_port_another_ispf_took_meanwhile_is_not_reattached() {
    use aya::programs::{links::PinnedLink, tc::TcAttachType, SchedClassifier};
    require_root();
    let (_topo, ports) = unit("xr");
    let (a, b) = policies();
    let mut ctl = Ctl::start(paths("xr"), &a, &[&ports[0]]);
    let other = Ctl::start(paths("xr2"), &b, &[&ports[1]]);
    let attached = |c: &Ctl| {
        c.status()
            .interfaces
            .iter()
            .any(|i| i.name == ports[0] && i.attached)
    };
    assert!(attached(&ctl));

    // The other controller's program at the first one's port (as a second
    // start racing the first's re-attach would leave it) ...
    let mut tc = SchedClassifier::from_pin(other.paths.pin.join("prog_tc")).unwrap();
    let _foreign = tc.attach(&ports[0], TcAttachType::Ingress).unwrap();
    // ... and the first one's own link gone: nothing else holds it.
    let link = PinnedLink::from_pin(ctl.paths.pin.join("links").join(&ports[0])).unwrap();
    drop(link.unpin().unwrap());

    // Ticks come every second; give it several.
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(
        !attached(&ctl),
        "re-attached beside another ispf's TC program"
    );
    let pin = ctl.paths.pin.display().to_string();
    let _ = ctl.cli(&["detach", "--pin-dir", &pin]);
    let err = ctl.stderr_after_exit();
    assert!(
        err.contains(&format!(
            "{}: the port exists but cannot be enforced",
            ports[0]
        )) && err.contains("already has ispf's TC program"),
        "{err}"
    );
}
