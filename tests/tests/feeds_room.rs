//! Threat feeds against map room, on a live controller with small feed
//! maps (`--map-size feeds=8`, two generations of at most 4 entries): a
//! feed too large is refused and said, another feed read in the same
//! round is enforced, decisions and reloads still apply, a restart starts
//! with the enforced feed only, and once the large feed shrinks it is
//! enforced at its next retry.

use std::{path::Path, time::Duration};

use ispf_tests::{care_unit::*, controller::*, http::wait, require_root};
use serde_json::Value;

fn policy(dir: &Path) -> std::path::PathBuf {
    let text = format!(
        r#"{{"version": 1,
        "segments": [{{"name": "pis-servers", "subnets": ["10.50.0.0/24"]}}, {{"name": "laptops"}}],
        "devices": [{{"name": "lap", "mac": "{LAPTOP}", "ipv4": "10.99.0.7", "segment": "laptops"}}],
        "rules": [{{"from": "laptops", "to": "pis-servers", "proto": "tcp", "ports": [443], "action": "allow"}}],
        "feeds": [
          {{"name": "big", "source": "{0}/big.txt", "refresh_s": 5}},
          {{"name": "small", "source": "{0}/small.txt"}}
        ]}}"#,
        dir.display()
    );
    write_policy("feeds-room", &text)
}

fn feed(ctl: &Ctl, name: &str) -> Value {
    ctl.json_lines(&["feeds", "--json"])
        .into_iter()
        .find(|f| f["name"] == name)
        .unwrap_or_default()
}

#[test]
fn a_feed_too_large_for_the_maps_is_refused_and_holds_back_nothing() {
    require_root();
    let dir = std::env::temp_dir().join("ispf-test-feeds-room");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let big: String = (1..=6).map(|i| format!("203.0.113.{i}\n")).collect();
    std::fs::write(dir.join("big.txt"), big).unwrap();
    std::fs::write(dir.join("small.txt"), "198.51.100.1\n").unwrap();
    let (_topo, ports) = unit("fr");
    let ifaces = [ports[0].as_str(), ports[1].as_str(), ports[2].as_str()];
    let pol = policy(&dir);
    let args = ["--map-size", "feeds=8"];
    let mut ctl = Ctl::start_with(paths("fr"), &pol, &ifaces, &args);
    let secs = Duration::from_secs(10);
    wait("small enforced, big refused", secs, || {
        feed(&ctl, "small")["entries"] == 1
            && feed(&ctl, "big")["error"]
                .as_str()
                .is_some_and(|e| e.contains("were refused"))
    });
    let b = feed(&ctl, "big");
    assert_eq!(b["entries"], 0, "{b}");
    assert!(
        b["error"].as_str().unwrap().contains("feeds"),
        "names the map: {b}"
    );
    // Later changes still apply: the refused contents were not kept.
    let r = ctl.cli(&["admit", "02:00:00:00:77:01", "--segment", "laptops"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    // A restart begins with what was enforced, not with what was refused.
    ctl.terminate(Duration::from_secs(10));
    let kept = ctl.leave_enforcing();
    let ctl = Ctl::start_with(kept, &pol, &ifaces, &args);
    assert_eq!(feed(&ctl, "small")["entries"], 1, "from the copy kept");
    wait("big refused again", secs, || {
        feed(&ctl, "big")["error"]
            .as_str()
            .is_some_and(|e| e.contains("were refused"))
    });

    // The list shrinks: enforced at its retry.
    std::fs::write(dir.join("big.txt"), "203.0.113.1\n203.0.113.2\n").unwrap();
    wait("big enforced once it fits", Duration::from_secs(15), || {
        let b = feed(&ctl, "big");
        b["entries"] == 2 && b["error"].is_null()
    });
    let _ = std::fs::remove_dir_all(&dir);
}
