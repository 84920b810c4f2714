//! Upgrading across a change of the map layout, as `apt install` of a new
//! package does: the controller of layout 3 (built from the source kept in
//! tests/layouts) enforces on a care unit under traffic, is stopped, and
//! the current controller starts over its pins. It must carry the old
//! datapath's state and runtime decisions into its own and switch the
//! ports' links to its program without a lost packet of an allowed flow,
//! keeping established connections — and an upgrade killed part-way must
//! be finished or undone by the next start, still without a loss.

use std::{
    collections::BTreeSet,
    path::Path,
    thread::{sleep, JoinHandle},
    time::{Duration, Instant},
};

use ispf::{datapath::Datapath, policy::Policy};
use ispf_common::{reason_name, REASON_ALLOWED};
use ispf_tests::{
    care_unit::*, controller::*, frames::*, hl7::Hl7, ispf_bin, layouts, pins, programs,
    require_root,
};

/// `ispf status --json` of the running controller, through its own client.
fn status_json(ctl: &Ctl) -> serde_json::Value {
    let out = ctl.cli(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A ping every 10 ms from the pump to the PIS server, for `secs`.
fn pinging(tag: &str, secs: u32) -> JoinHandle<std::process::Output> {
    let ns = format!("ispf-{tag}-pump");
    std::thread::spawn(move || ping(&ns, "10.50.0.10", secs * 100, "0.01"))
}

/// The layout-3 controller on a fresh care unit; stopped (as systemd
/// stops the service: SIGTERM, enforcement left pinned) by [`stop`].
fn old_controller(tag: &str, hook: &str, policy: &Path) -> Ctl {
    let old_bin = layouts::layout3_bin();
    let i = ifaces(tag);
    let ctl = Ctl::start_bin(
        &old_bin,
        paths(tag),
        policy,
        &[&i[0], &i[1], &i[2]],
        &["--hook", hook],
    );
    assert_eq!(Datapath::pinned_layout(&ctl.paths.pin), Some(3));
    ctl
}

fn ifaces(tag: &str) -> [String; 3] {
    [
        format!("ip{tag}pump"),
        format!("ip{tag}pis"),
        format!("ip{tag}lap"),
    ]
}

fn stop(mut ctl: Ctl, tag: &str) -> Paths {
    let stderr = ctl.terminate(Duration::from_secs(10));
    for p in ifaces(tag) {
        assert!(
            enforced(&p),
            "{p} lost its program when the controller stopped:\n{stderr}"
        );
    }
    ctl.leave_enforcing()
}

/// The current controller, with only the capabilities the packaged
/// service has: an upgrade needs no more than a start.
fn start_new(paths: Paths, tag: &str, hook: &str, policy: &Path) -> Ctl {
    let i = ifaces(tag);
    Ctl::start_as_service(paths, policy, &[&i[0], &i[1], &i[2]], &["--hook", hook])
}

/// What must hold once the upgrade is done, whichever way it went.
/// `before`: the maps pinned before the new controller started (the old
/// datapath's, and any a killed upgrade had staged).
fn upgraded(new: &Ctl, hook: &str, before: &BTreeSet<u32>) {
    assert_eq!(Datapath::pinned_layout(&new.paths.pin), Some(4));
    assert!(!new.paths.pin.join("upgrade").exists(), "staging pins left");
    let s = new.status();
    assert!(s.adopted);
    let mode = if hook == "tc" { "tc" } else { "native" };
    assert!(
        s.interfaces.iter().all(|i| i.mode == mode && i.attached),
        "{:?}",
        s.interfaces
    );
    // The old program and maps, and any staged ones the new datapath did
    // not take, are freed once no link runs them.
    let kept = pins::pinned_map_ids(&new.paths.pin);
    let dropped: BTreeSet<u32> = before.difference(&kept).copied().collect();
    assert!(!dropped.is_empty(), "the upgrade replaced no map");
    let left = pins::still_loaded(&dropped, Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "the old datapath's maps were not freed: {left:?}"
    );
}

fn detach(mut new: Ctl) -> String {
    let out = new.cli(&["detach", "--pin-dir", new.paths.pin.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    new.stderr_after_exit()
}

#[test]
fn an_upgrade_from_layout_3_at_tc_drops_nothing() {
    upgrade_from_layout_3("tc", "ut");
}

#[test]
fn an_upgrade_from_layout_3_at_xdp_drops_nothing() {
    upgrade_from_layout_3("xdp", "ux");
}

fn upgrade_from_layout_3(hook: &str, tag: &str) {
    require_root();
    let (_topo, _) = unit(tag);
    let (a, _) = policies();
    let old = old_controller(tag, hook, &a);
    // A runtime decision of the old controller: the unknown laptop is
    // admitted as a clinical workstation.
    let out = old.cli(&[
        "admit",
        LAPTOP,
        "--segment",
        "clinical-workstations",
        "--reason",
        "upgrade test",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut hl7 = Hl7::open(tag);
    laptop_pings(tag);
    let before = status_json(&old);

    let pinger = pinging(tag, 5);
    sleep(Duration::from_secs(1));
    let paths = stop(old, tag);
    let old_maps = pins::pinned_map_ids(&paths.pin);
    let started = Instant::now();
    let new = start_new(paths, tag, hook, &a);
    let took = started.elapsed();
    let out = pinger.join().unwrap();
    assert!(
        loss(&out).contains(" 0% packet loss"),
        "ping across the upgrade: {}",
        loss(&out)
    );
    // The established connection carries on, first in its reply direction.
    hl7.exchange("after the upgrade", Duration::from_secs(3))
        .expect("the connection established before the upgrade was kept");
    assert!(
        loss(&ping(&format!("ispf-{tag}-pis"), "10.10.0.11", 2, "0.2"))
            .contains("100% packet loss"),
        "PIS -> pump stays denied"
    );
    upgraded(&new, hook, &old_maps);

    let after = new.status();
    assert_eq!(
        after.generation as u64,
        before["generation"].as_u64().unwrap() + 1,
        "generations are numbered on from the old controller's"
    );
    assert!(
        after.packets_passed > before["packets_passed"].as_u64().unwrap(),
        "counters were carried and kept counting: {} before, {} after",
        before["packets_passed"],
        after.packets_passed
    );
    assert_eq!(
        laptop_counted(&new, &a, "clinical-workstations"),
        LAPTOP_PINGS,
        "the laptop's pings, counted only by the old controller, were carried"
    );
    // The decision holds, in the kernel too: the laptop's HTTPS to the
    // PIS server is a workstation's.
    assert_eq!(after.decisions, 1);
    let policy = Policy::from_file(&a).unwrap();
    let mut dp = Datapath::adopt(&new.paths.pin).unwrap();
    let frame = eth(
        mac(PIS),
        mac(LAPTOP),
        &[],
        ETH_IP,
        &ipv4(
            v4("10.99.0.7"),
            v4("10.50.0.10"),
            6,
            &tcp(45003, 443, TCP_SYN),
            Frag::default(),
            0,
        ),
    );
    let o = dp.run(&frame).unwrap();
    assert_eq!(
        (
            policy.segment_name(o.src),
            o.pass,
            reason_name(o.reason).unwrap()
        ),
        ("clinical-workstations", true, "allowed"),
        "{o:?}"
    );
    drop(dp);
    drop(hl7);
    let stderr = detach(new);
    assert!(
        stderr.contains("from map layout 3 to 4 without detaching"),
        "{stderr}"
    );
    eprintln!("the upgrade took {took:?} from start to serving:\n{stderr}");
}

/// A controller killed at `point` of the upgrade (the test build's crash
/// points, as a `kill -9` there would).
fn killed_at(paths: &Paths, tag: &str, hook: &str, policy: &Path, point: &str) -> String {
    let mut c = programs::command("setpriv");
    c.args(["--bounding-set=-all,+bpf,+net_admin,+perfmon", "--"])
        .arg(ispf_bin())
        .env("ISPF_TEST_UPGRADE_ABORT", point);
    let i = ifaces(tag);
    run_args(
        &mut c,
        paths,
        policy,
        &[&i[0], &i[1], &i[2]],
        &["--hook", hook],
    );
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && stderr.contains(&format!("aborting the upgrade at {point}")),
        "{stderr}"
    );
    stderr
}

#[test]
fn an_upgrade_killed_part_way_at_tc_is_finished_or_undone_at_the_next_start() {
    killed_part_way(
        "tc",
        "uk",
        &[
            ("during-staging", UNDONE),
            ("before-switch", UNDONE),
            ("between-ports", UNDONE),
            ("after-switch", FINISHED),
            ("moved-maps", FINISHED),
            ("moved-prog_tc", FINISHED),
            ("moved-prog", FINISHED),
        ],
    );
}

/// At XDP, a port left on the old program cannot be attached again (the
/// link holds the device): the points where ports run different programs.
#[test]
fn an_upgrade_killed_part_way_at_xdp_is_finished_or_undone_at_the_next_start() {
    killed_part_way(
        "xdp",
        "uj",
        &[("between-ports", UNDONE), ("after-switch", FINISHED)],
    );
}

const UNDONE: &str = "undid the upgrade";
const FINISHED: &str = "finished the upgrade";

fn killed_part_way(hook: &str, tag: &str, points: &[(&str, &str)]) {
    require_root();
    let (_topo, _) = unit(tag);
    let (a, _) = policies();
    for &(point, then) in points {
        let old = old_controller(tag, hook, &a);
        let mut hl7 = Hl7::open(tag);
        laptop_pings(tag);
        let pinger = pinging(tag, 8);
        sleep(Duration::from_millis(500));
        let paths = stop(old, tag);
        let mut before = pins::pinned_map_ids(&paths.pin);
        killed_at(&paths, tag, hook, &a, point);
        before.extend(pins::pinned_map_ids(&paths.pin));
        for p in ifaces(tag) {
            assert!(enforced(&p), "{p} is not enforced after a kill at {point}");
        }
        hl7.exchange("after the kill", Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("after a kill at {point}: {e}"));
        let new = start_new(paths, tag, hook, &a);
        let out = pinger.join().unwrap();
        assert!(
            loss(&out).contains(" 0% packet loss"),
            "ping across an upgrade killed at {point}: {}",
            loss(&out)
        );
        hl7.exchange("after the restart", Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("after a kill at {point} and a restart: {e}"));
        upgraded(&new, hook, &before);
        assert!(
            laptop_counted(&new, &a, "quarantine") == LAPTOP_PINGS,
            "the old counters after a kill at {point}"
        );
        drop(hl7);
        let stderr = detach(new);
        assert!(stderr.contains(then), "after a kill at {point}:\n{stderr}");
        eprintln!("killed at {point}: {then}");
    }
}

/// Pings from the laptop to the PIS server, only ever under the old
/// controller: what the new one counts of them was carried.
const LAPTOP_PINGS: u64 = 5;

fn laptop_pings(tag: &str) {
    let out = ping(
        &format!("ispf-{tag}-lap"),
        "10.50.0.10",
        LAPTOP_PINGS as u32,
        "0.05",
    );
    assert!(loss(&out).contains(" 0% packet loss"), "{}", loss(&out));
}

/// Packets allowed from the laptop's segment `from` to the PIS servers.
fn laptop_counted(ctl: &Ctl, policy: &Path, from: &str) -> u64 {
    let p = Policy::from_file(policy).unwrap();
    let (src, dst) = (
        p.segment_id(from).unwrap(),
        p.segment_id("pis-servers").unwrap(),
    );
    Datapath::adopt(&ctl.paths.pin)
        .unwrap()
        .counters()
        .iter()
        .filter(|(k, _)| k.src == src && k.dst == dst && k.reason == REASON_ALLOWED)
        .map(|(_, v)| v.packets)
        .sum()
}
