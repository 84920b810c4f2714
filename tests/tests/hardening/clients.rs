//! The controller against its clients and its host: a port deleted and
//! re-created, clients that stall or flood, and `kill -9` in the middle
//! of reloads.

use super::*;

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
    // A role session is RADIUS accounting's to make: a socket client that
    // sends one (or its end) changes nothing.
    let generation = ctl.status().generation;
    for op in [
        ispf::decisions::DecisionRequest::Session {
            mac: "02:00:00:00:99:01".into(),
            segment: "workstations".into(),
            role: "biomed-engineer".into(),
            user: "mallory".into(),
            nas: "127.0.0.1".into(),
            session: "S1".into(),
            host: None,
        },
        ispf::decisions::DecisionRequest::EndSession {
            mac: "02:00:00:00:99:01".into(),
            why: "by hand".into(),
            host: None,
            session: None,
        },
    ] {
        let r = control::request(
            &ctl.paths.run,
            &Request::Decide { op, by: None },
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(
            matches!(&r, Response::Error { message } if message.contains("only by RADIUS accounting")),
            "{r:?}"
        );
    }
    assert_eq!(ctl.status().generation, generation);
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
