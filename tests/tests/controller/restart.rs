//! `kill -9` in the middle of enforcing: the pinned program keeps
//! enforcing with no controller, and a restarted controller adopts it
//! without a gap, at either hook.

use super::*;

#[test]
fn kill_9_keeps_enforcing_and_restart_adopts_at_tc() {
    kill_9_keeps_enforcing_and_restart_adopts("tc", "k");
}

#[test]
fn kill_9_keeps_enforcing_and_restart_adopts_at_xdp() {
    kill_9_keeps_enforcing_and_restart_adopts("xdp", "j");
}

/// One of the two hooks, everything else alike.
fn kill_9_keeps_enforcing_and_restart_adopts(hook: &str, tag: &str) {
    require_root();
    let (_topo, ports) = unit(tag);
    let (a, _) = policies();
    let hook_args = ["--hook", hook];
    let mut ctl = Ctl::start_with(
        paths(tag),
        &a,
        &[&ports[0], &ports[1], &ports[2]],
        &hook_args,
    );
    let (pump, pis) = (format!("ispf-{tag}-pump"), format!("ispf-{tag}-pis"));
    let mode = if hook == "tc" { "tc" } else { "native" };
    assert!(ctl.status().interfaces.iter().all(|i| i.mode == mode));
    assert!(loss(&ping(&pump, "10.50.0.10", 3, "0.2")).contains(" 0% packet loss"));
    let before = ctl.status();
    let ct = |s: &control::Status| {
        // IPv4 and IPv6 flows have a map each.
        s.maps
            .iter()
            .filter(|m| m.name.starts_with("ISPF_CONNTRACK"))
            .map(|m| m.entries)
            .sum::<usize>()
    };
    assert!(ct(&before) >= 1, "the ping opened a flow");

    // Traffic across the kill: the allowed flow loses nothing, the denied
    // one stays denied.
    let pump2 = pump.clone();
    let pinger = std::thread::spawn(move || ping(&pump2, "10.50.0.10", 100, "0.03"));
    sleep(Duration::from_millis(500));
    ctl.kill9();
    let out = pinger.join().unwrap();
    assert!(
        loss(&out).contains(" 0% packet loss"),
        "ping across kill -9: {}",
        loss(&out)
    );
    assert!(
        loss(&ping(&pis, "10.10.0.11", 2, "0.2")).contains("100% packet loss"),
        "PIS -> pump stays denied"
    );
    for p in &ports {
        assert!(enforced(p), "{p} lost its program when the controller died");
    }

    // Restart: adopts generation, conntrack and counters instead of reloading.
    let paths_k = ctl.leave_enforcing();
    let mut ctl = Ctl::start_with(paths_k, &a, &[&ports[0], &ports[1], &ports[2]], &hook_args);
    let after = ctl.status();
    assert!(after
        .interfaces
        .iter()
        .all(|i| i.mode == mode && i.attached));
    assert!(after.adopted);
    assert_eq!(after.generation, before.generation);
    assert!(ct(&after) >= 1, "connection state was kept");
    assert!(
        after.packets_passed > before.packets_passed,
        "counters were kept and kept counting"
    );
    // A generation this controller applies is no longer the adopted one.
    let out = ctl.cli(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reloaded = ctl.status();
    assert!(reloaded.generation > after.generation && !reloaded.adopted);

    // Detach leaves nothing behind: no link, no pin, and none of the
    // maps this controller pinned stays loaded.
    let ours = pins::pinned_map_ids(&ctl.paths.pin);
    assert!(!ours.is_empty(), "the controller pinned its maps");
    // Seen loaded now, so "not seen after" means freed, not unlisted.
    assert_eq!(pins::still_loaded(&ours, Duration::ZERO).len(), ours.len());
    let out = ctl.cli(&["detach", "--pin-dir", ctl.paths.pin.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = ctl.stderr_after_exit();
    assert!(stderr.contains("adopted the pinned datapath"), "{stderr}");
    for p in &ports {
        assert!(!enforced(p), "{p} still has ispf after detach");
    }
    assert!(!ctl.paths.pin.exists(), "pins left behind");
    assert!(!ctl.paths.run.join("ispf.sock").exists());
    let leftover = pins::still_loaded(&ours, Duration::from_secs(5));
    assert!(leftover.is_empty(), "maps left loaded: {leftover:?}");
}
