//! The controller attacked as a hostile client or a careless operator
//! would: reloads that fail half-way, ports deleted and re-created, idle
//! and non-reading clients, `kill -9` in the middle of reloads, policies
//! of 100,000 devices. Each was a finding against an earlier controller.

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use ispf::{
    control::{self, Request, Response},
    datapath::{Datapath, DatapathError, MapSizes},
    policy::{compile::compile, hex, Policy},
};
use ispf_common::{reason_name, Meta, MAP_META};
use ispf_tests::{care_unit::*, controller::*, frames::*, ispf_bin, netns::*, require_root};
use rand::{Rng, SeedableRng};

#[path = "hardening/clients.rs"]
mod clients;

/// A policy of `n` workstations (MAC and IPv4 each) numbered from `base`,
/// plus a PIS server they may reach on 443.
fn workstations(n: usize, base: u32, extra_port: Option<u16>) -> String {
    let devices: Vec<String> = (0..n as u32)
        .map(|i| {
            let k = base + i;
            format!(
                r#"{{"name":"ws{k}","mac":"02:{:02x}:{:02x}:{:02x}:{:02x}:01","ipv4":"10.{}.{}.{}","segment":"ws"}}"#,
                k >> 24 & 0xff,
                k >> 16 & 0xff,
                k >> 8 & 0xff,
                k & 0xff,
                64 + (k >> 16 & 0x3f),
                k >> 8 & 0xff,
                k & 0xff
            )
        })
        .collect();
    let ports = match extra_port {
        Some(p) => format!("[443, {p}]"),
        None => "[443]".into(),
    };
    format!(
        r#"{{"version":1,"segments":[{{"name":"ws"}},{{"name":"pis","subnets":["10.50.0.0/24"]}}],
        "devices":[{}],
        "rules":[{{"from":"ws","to":"pis","proto":"tcp","ports":{ports},"action":"allow"}}]}}"#,
        devices.join(",")
    )
}

fn parse(text: &str) -> Policy {
    Policy::from_str(text, Path::new("generated.json")).unwrap()
}

/// A SYN from workstation number `k` to the PIS.
fn syn_from(k: u32) -> Vec<u8> {
    let m = [
        2,
        (k >> 24) as u8,
        (k >> 16) as u8,
        (k >> 8) as u8,
        k as u8,
        1,
    ];
    let ip = [10, 64 + (k >> 16 & 0x3f) as u8, (k >> 8) as u8, k as u8];
    eth(
        mac(PIS),
        m,
        &[],
        ETH_IP,
        &ipv4(
            ip,
            v4("10.50.0.10"),
            6,
            &tcp(40000, 443, TCP_SYN),
            Frag::default(),
            0,
        ),
    )
}

/// Frames from devices only a refused policy had must be judged as the
/// unknown devices they are, in this generation and every later one.
fn refused_devices_are_unknown(dp: &mut Datapath, p: &Policy, refused: &[u32], when: &str) {
    for &k in refused {
        let o = dp.run(&syn_from(k)).unwrap();
        assert_eq!(
            (reason_name(o.reason).unwrap(), p.segment_name(o.src)),
            ("denied_default", "quarantine"),
            "{when}: device {k} of the refused policy is still known to the datapath"
        );
    }
}

#[test]
fn a_reload_that_fails_half_way_leaves_nothing_behind() {
    require_root();
    let sizes = MapSizes {
        devices: 1024,
        ..MapSizes::default()
    };
    let mut dp = Datapath::load(sizes).unwrap();
    let small = parse(&workstations(2, 1, None));
    let small2 = parse(&workstations(2, 1, Some(8443)));
    dp.apply(&compile(&small)).unwrap();
    let big = parse(&workstations(600, 5000, None));
    dp.fail_writes_after(Some(400));
    let e = dp.apply(&compile(&big)).unwrap_err();
    assert!(matches!(e, DatapathError::Injected(400)), "{e}");
    dp.fail_writes_after(None);
    // What the writer says it holds is what the maps hold.
    let devices = |dp: &Datapath| {
        let (said, counted) = (dp.occupancy(), dp.occupancy_in_maps());
        assert_eq!(said, counted, "the writer's counts against the maps'");
        said[0].1
    };
    assert_eq!(
        devices(&dp),
        2,
        "only the enforced policy's MACs are in the map"
    );
    let refused: Vec<u32> = vec![5000, 5123, 5399, 5599];
    refused_devices_are_unknown(&mut dp, &small, &refused, "after the failure");
    // Every later generation, in both slots.
    for g in 0..6 {
        let p = if g % 2 == 0 { &small2 } else { &small };
        dp.apply(&compile(p)).unwrap();
        let when = format!("generation {}", dp.epoch());
        refused_devices_are_unknown(&mut dp, p, &refused, &when);
        assert_eq!(devices(&dp), 4, "two generations of two devices");
    }
}

#[test]
fn after_a_restart_the_capacity_check_counts_what_the_maps_hold() {
    require_root();
    let pin = PathBuf::from("/sys/fs/bpf/ispf-test-capacity");
    let _ = std::fs::remove_dir_all(&pin);
    ispf::system::ensure_bpffs(&pin).unwrap();
    let sizes = MapSizes {
        devices: 1024,
        ..MapSizes::default()
    };
    let a = parse(&workstations(400, 1, None));
    let a2 = parse(&workstations(400, 1, Some(8443)));
    {
        let mut dp = Datapath::load_pinned(sizes, &pin).unwrap();
        dp.apply(&compile(&a)).unwrap();
        dp.apply(&compile(&a2)).unwrap();
    }
    // A new controller: both generations hold 400 devices, and it must
    // know that without having written them.
    let mut dp = Datapath::adopt(&pin).unwrap();
    let b = parse(&workstations(700, 5000, None));
    let e = dp.apply(&compile(&b)).unwrap_err();
    assert!(
        matches!(
            e,
            DatapathError::Capacity {
                name: "ISPF_DEV_MAC",
                new: 700,
                kept: 400,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("--map-size devices="), "{e}");
    let small = parse(&workstations(2, 1, None));
    dp.apply(&compile(&small)).unwrap();
    refused_devices_are_unknown(&mut dp, &small, &[5000, 5699], "after the refusal");
    assert_eq!(
        dp.occupancy()[0].1,
        402,
        "the adopted generation and the new one"
    );
    assert_eq!(dp.occupancy(), dp.occupancy_in_maps());
    drop(dp);
    std::fs::remove_dir_all(&pin).unwrap();
}

#[test]
fn a_policy_of_100k_devices_is_checked_and_reloaded_ten_times() {
    require_root();
    let (_topo, ports) = unit("h");
    let big_a = write_policy("100k-a", &workstations(100_000, 1, None));
    let big_b = write_policy("100k-b", &workstations(100_000, 1, Some(8443)));
    // `check` applies the reload rule: two generations must fit.
    let out = Command::new(ispf_bin())
        .args(["check", "--map-size", "devices=131072"])
        .arg(&big_a)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("needs 200000 entries") && err.contains("--map-size devices="),
        "{err}"
    );
    let out = Command::new(ispf_bin())
        .arg("check")
        .arg(&big_a)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("devices 262144"),
        "{text}"
    );
    let ctl = Ctl::start(paths("h"), &big_a, &[&ports[0]]);
    for i in 0..10 {
        let file = if i % 2 == 0 { &big_b } else { &big_a };
        let t = Instant::now();
        let out = ctl.cli(&["reload", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "reload {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("reload {i} of 100k devices: {:?}", t.elapsed());
    }
    let s = ctl.status();
    assert_eq!(s.generation, 11);
    let dev = s.maps.iter().find(|m| m.name == "ISPF_DEV_MAC").unwrap();
    assert_eq!((dev.entries, dev.capacity), (200_000, 262_144));
}

/// `reload --dry-run` says what the apply would refuse for the maps'
/// size, and either warns when the maps would then hold no room for a
/// generation as large (every later reload and decision would fail).
#[test]
fn a_dry_run_says_what_the_maps_would_refuse() {
    require_root();
    let (_topo, ports) = unit("hc");
    let small = write_policy("dry-small", &workstations(10, 1, None));
    let mid = write_policy("dry-mid", &workstations(600, 1, None));
    let big = write_policy("dry-big", &workstations(1100, 1, None));
    let mut ctl = Ctl::start_with(
        paths("hc"),
        &small,
        &[&ports[0], &ports[1]],
        &["--map-size", "devices=1024"],
    );
    let g = ctl.status().generation;
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let out = ctl.cli(&["reload", "--dry-run", big.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("would not fit the maps") && text(&out).contains("--map-size devices="),
        "{}",
        text(&out)
    );
    // 600 beside the 10 enforced fit; another 600 beside them would not.
    let out = ctl.cli(&["reload", "--dry-run", mid.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("no room for another generation as large"),
        "{}",
        text(&out)
    );
    assert_eq!(ctl.status().generation, g, "a dry run applies nothing");
    let out = ctl.cli(&["reload", mid.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("no room for another generation as large"),
        "{}",
        text(&out)
    );
    assert_eq!(ctl.status().generation, g + 1);
    // Restarted with larger maps and one port fewer: the adopted pins
    // keep both, and the start says so and how to change them.
    let kept = Paths {
        pin: ctl.paths.pin.clone(),
        run: ctl.paths.run.clone(),
        state: ctl.paths.state.clone(),
    };
    ctl.kill9();
    let mut ctl = Ctl::start_with(
        kept,
        &mid,
        &[&ports[0]],
        &["--map-size", "devices=4096", "--hook", "xdp"],
    );
    assert_eq!(ctl.status().generation, g + 1, "adopted");
    let log = ctl.kill9();
    assert!(
        log.contains("map sizes devices=4096 (the pinned maps hold 1024) are not applied"),
        "{log}"
    );
    // veth ports: the first start attached them at TC.
    assert!(
        log.contains(&format!(
            "warning: {} stays attached at tc (--hook xdp is not applied)",
            ports[0]
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "warning: {} stay enforced although this start does not name them",
            ports[1]
        )),
        "{log}"
    );
}

/// A reload that would take a device out of the life-critical segment the
/// datapath placed it in, where the file's own diff cannot tell (a new,
/// narrower subnet of another segment over a pump placed by its subnet;
/// the same holds for one placed by its VLAN), says so in the dry run and
/// the reload, naming the device.
#[test]
fn a_reload_says_which_seen_devices_would_leave_a_life_critical_segment() {
    require_root();
    let (_topo, ports) = unit("hl");
    let file = |guest: &str| {
        format!(
            r#"{{"version": 1,
            "segments": [
              {{"name": "pumps", "life_critical": true, "subnets": ["10.10.0.0/24"]}},
              {{"name": "pis-servers", "subnets": ["10.50.0.0/24"]}},
              {{"name": "guest", "subnets": [{guest}]}}
            ],
            "rules": [{{"from": "pumps", "to": "pis-servers", "proto": "icmp", "action": "allow"}}]}}"#
        )
    };
    let before = write_policy("leave-before", &file(r#""10.99.0.0/24""#));
    let after = write_policy("leave-after", &file(r#""10.99.0.0/24", "10.10.0.0/28""#));
    let ctl = Ctl::start(paths("hl"), &before, &[&ports[0], &ports[1], &ports[2]]);
    let ping = [
        "netns",
        "exec",
        "ispf-hl-pump",
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        "10.50.0.10",
    ];
    let _ = ispf_tests::programs::command("ip")
        .args(ping)
        .output()
        .unwrap();
    ispf_tests::inventory::wait_devices(&ctl, Duration::from_secs(10), "the pump seen", |l| {
        ispf_tests::inventory::device(l, PUMP1).is_some_and(|d| d["segment"] == "pumps")
    });
    let said = format!(
        "! 1 device(s) the datapath last placed in a life-critical segment would leave it: {PUMP1} (VLAN 0, 10.10.0.11): pumps -> guest (subnet)"
    );
    let g = ctl.status().generation;
    for args in [&["reload", "--dry-run"][..], &["reload"][..]] {
        let mut args = args.to_vec();
        args.push(after.to_str().unwrap());
        let out = ctl.cli(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && text.contains(&said),
            "{args:?}: {text}"
        );
    }
    assert_eq!(
        ctl.status().generation,
        g + 1,
        "the dry run applied nothing"
    );
}
