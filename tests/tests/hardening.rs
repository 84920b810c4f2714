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
    let devices = |dp: &Datapath| dp.occupancy()[0].1;
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
    drop(dp);
    std::fs::remove_dir_all(&pin).unwrap();
}

fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn attached_metric(body: &str, iface: &str) -> Option<u32> {
    body.lines()
        .find(|l| {
            l.starts_with("ispf_interface_attached{")
                && l.contains(&format!("interface=\"{iface}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn port_state(ctl: &Ctl, iface: &str) -> (bool, u32) {
    let s = ctl.status();
    let i = s.interfaces.iter().find(|i| i.name == iface).unwrap();
    (i.attached, i.ifindex)
}

#[test]
fn a_recreated_port_is_enforced_again_within_a_second() {
    require_root();
    let (_topo, ports) = unit("q");
    let (a, _) = policies();
    let metrics = "127.0.0.1:19470";
    let ctl = Ctl::start_with(
        paths("q"),
        &a,
        &[&ports[0], &ports[1], &ports[2]],
        &["--metrics-addr", metrics],
    );
    assert!(port_state(&ctl, &ports[0]).0);
    // The pump's port goes away (unplugged; a VM's tap removed).
    must(&["ip", "link", "del", &ports[0]]);
    let t = Instant::now();
    while port_state(&ctl, &ports[0]) != (false, 0) {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the deleted port is still reported as enforced"
        );
        sleep(Duration::from_millis(20));
    }
    assert_eq!(attached_metric(&scrape(metrics), &ports[0]), Some(0));
    // It comes back with the same name: enforced again within a second.
    cable("ispf-q-pump", &ports[0], "ispfbq", PUMP1, &["10.10.0.11/8"]);
    let t = Instant::now();
    while !port_state(&ctl, &ports[0]).0 {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "the re-created port was not enforced within a second"
        );
        sleep(Duration::from_millis(10));
    }
    eprintln!("re-attached after {:?}", t.elapsed());
    assert_eq!(attached_metric(&scrape(metrics), &ports[0]), Some(1));
    let ok = ping("ispf-q-pump", "10.50.0.10", 3, "0.2");
    assert!(ok.status.success(), "allowed ping lost: {}", loss(&ok));
    // And it is ispf judging it: the pump's replies to a denied probe
    // from the laptop are counted as drops on the re-created port.
    let before = ctl.status().packets_dropped;
    let denied = ping("ispf-q-lap", "10.10.0.11", 2, "0.2");
    assert!(!denied.status.success(), "a denied ping passed");
    assert!(ctl.status().packets_dropped > before);
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn no_client_can_stall_the_controller() {
    require_root();
    let (_topo, ports) = unit("n");
    let (a, b) = policies();
    let metrics = "127.0.0.1:19471";
    let ctl = Ctl::start_with(paths("n"), &a, &[&ports[0]], &["--metrics-addr", metrics]);
    let pid = ctl.child.as_ref().unwrap().id();
    let sock = ctl.paths.run.join("ispf.sock");
    let idle_metrics: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(metrics).unwrap())
        .collect();
    let idle_control: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    // A scraper that asks and never reads.
    let mut stuck = TcpStream::connect(metrics).unwrap();
    stuck
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let rss_before = rss_kb(pid);
    // A request line of 20 MB is cut off, not buffered.
    let mut huge = UnixStream::connect(&sock).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..20 {
        if huge.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut answer = String::new();
    huge.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = huge.read_to_string(&mut answer);
    assert!(answer.contains("longer than"), "{answer}");
    assert!(
        rss_kb(pid) < rss_before + 16 * 1024,
        "a long request line grew the controller from {rss_before} kB to {} kB",
        rss_kb(pid)
    );
    // A FIFO as the policy is refused at once.
    let fifo = std::env::temp_dir().join("ispf-test-fifo.json");
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let t = Instant::now();
    let r = control::request(
        &ctl.paths.run,
        &Request::Reload {
            policy: Some(fifo.clone()),
            dry_run: false,
        },
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(
        matches!(&r, Response::Error { message } if message.contains("a FIFO")),
        "{r:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(1));
    std::fs::remove_file(&fifo).unwrap();
    // With all of that hanging on, a reload and a status are prompt.
    for policy in [&b, &a, &b] {
        let t = Instant::now();
        let r = control::request(
            &ctl.paths.run,
            &Request::Reload {
                policy: Some(policy.clone()),
                dry_run: false,
            },
            Duration::from_secs(10),
        )
        .unwrap();
        let took = t.elapsed();
        assert!(matches!(r, Response::Reload(ref r) if r.applied), "{r:?}");
        assert!(took < Duration::from_millis(100), "a reload took {took:?}");
        let t = Instant::now();
        ctl.status();
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "status took {:?}",
            t.elapsed()
        );
        assert!(scrape(metrics).contains("ispf_policy_generation"));
    }
    drop((idle_metrics, idle_control, stuck));
}

fn kernel_policy_sha(pin: &Path) -> String {
    let data = aya::maps::MapData::from_pin(pin.join("maps").join(MAP_META)).unwrap();
    let arr: aya::maps::Array<_, Meta> =
        aya::maps::Array::try_from(aya::maps::Map::from_map_data(data).unwrap()).unwrap();
    hex(&arr.get(&0, 0).unwrap().sha256)
}

#[test]
fn kill_9_at_random_points_of_reloads_adopts_what_the_kernel_enforces() {
    require_root();
    let (_topo, ports) = unit("x");
    let (a, b) = policies();
    let c = write_policy(
        "c",
        &std::fs::read_to_string(&b)
            .unwrap()
            .replace(r#""ports": [2575]"#, r#""ports": [2575, 2576]"#),
    );
    let seed: u64 = rand::thread_rng().gen();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let files = [&a, &b, &c];
    let bin = ispf_bin();
    let ctl = Ctl::start(paths("x"), &a, &[&ports[0]]);
    // How long a reload takes here after a restart, from the client's
    // start to its answer (the first writes after adopting pins scan the
    // maps: about 120 ms on a 2-vCPU VM, not the few milliseconds of a
    // warm controller). The kills are spread over twice that, so they land
    // before, during and after reloads on a fast machine and a slow one.
    let mut ctl = Ctl::start(ctl.leave_enforcing(), &a, &[&ports[0]]);
    let t = std::time::Instant::now();
    let st = Command::new(&bin)
        .arg("reload")
        .arg(&b)
        .arg("--run-dir")
        .arg(&ctl.paths.run)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let window_us = (2 * t.elapsed().as_micros() as u64).max(120_000);
    eprintln!("a reload after a restart took {:?}", t.elapsed());
    let mut adopted_other = 0;
    for i in 0..200 {
        let target = files[i % 3];
        let mut reload = Command::new(&bin)
            .arg("reload")
            .arg(target)
            .arg("--run-dir")
            .arg(&ctl.paths.run)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The kill lands before, during or after the reload.
        sleep(Duration::from_micros(rng.gen_range(0..window_us)));
        ctl.kill9();
        let _ = reload.wait();
        let paths = Paths {
            pin: ctl.paths.pin.clone(),
            run: ctl.paths.run.clone(),
            state: ctl.paths.state.clone(),
        };
        std::mem::forget(ctl); // its pins are the next controller's
        ctl = Ctl::start(paths, &a, &[&ports[0]]);
        let s = ctl.status();
        let kernel = kernel_policy_sha(&ctl.paths.pin);
        assert_eq!(
            s.policy_sha256, kernel,
            "cycle {i}: the restarted controller reports another policy than the kernel's"
        );
        let file = std::fs::read(&s.policy_path).unwrap();
        assert_eq!(hex(&ispf::policy::sha256(&file)), kernel, "cycle {i}");
        assert!(s.adopted);
        if s.policy_path != a {
            adopted_other += 1;
        }
    }
    // The kill must have landed after some reloads and before others.
    eprintln!("{adopted_other} of 200 restarts adopted a reloaded policy");
    assert!(
        (1..200).contains(&adopted_other),
        "the kills did not land both before and after reloads"
    );
    // Enforcement still works after all that.
    let p = ping("ispf-x-pump", "10.50.0.10", 2, "0.2");
    assert!(p.status.success(), "{}", loss(&p));
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
