//! The device inventory on a live care unit: real hosts in network
//! namespaces behind a bridge, a real DHCP client against a real dnsmasq,
//! a device re-cabled to another port, an address changed, and a MAC
//! flood. Each must show in `ispf devices --json` within a second, and the
//! flood must neither grow the controller without bound nor touch an
//! established flow.

use std::{
    io::Read,
    process::Stdio,
    time::{Duration, Instant},
};

use ispf_tests::{
    care_unit::*, controller::*, frames::*, inventory::*, ispf_bin, netns::*, programs::command,
    raw, require_root,
};
use rand::{Rng, SeedableRng};

const SECOND: Duration = Duration::from_secs(1);
/// A Baxter infusion pump's OUI: the vendor must come from the IEEE registry.
const BAXTER_MAC: &str = "58:46:e1:00:00:07";

fn metrics(addr: &str) -> String {
    scrape(addr)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

#[test]
fn new_devices_dhcp_moves_and_address_changes_show_within_a_second() {
    require_root();
    let (mut topo, ports) = unit("iv");
    let pump_ns = "ispf-iv-pump";
    let lap_ns = "ispf-iv-lap";
    let pis_ns = "ispf-iv-pis";
    // The pump's second cable, unplugged for now; and a DHCP client.
    let spare = "ipivspare";
    let _ = sh(&["ip", "link", "del", spare]);
    must(&[
        "ip", "link", "add", spare, "type", "veth", "peer", "name", "eth1", "netns", pump_ns,
    ]);
    must(&["ip", "link", "set", spare, "master", "ispfbiv", "up"]);
    must(&[
        "ip", "netns", "exec", pump_ns, "ip", "link", "set", "eth1", "address", PUMP1,
    ]);
    let dhcp_port = "ipivdhcp";
    topo.host("ispf-iv-dhcp", dhcp_port, "ispfbiv", BAXTER_MAC, &[]);
    let metrics_addr = "127.0.0.1:19471";
    let ctl = Ctl::start_with(
        paths("iv"),
        &policy_path(),
        &[&ports[0], &ports[1], &ports[2], spare, dhcp_port],
        &["--metrics-addr", metrics_addr],
    );
    let mut follower = std::process::Command::new(ispf_bin())
        .args(["events", "--run-dir"])
        .arg(&ctl.paths.run)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    // A new device: an unregistered laptop.
    ping(lap_ns, "10.50.0.10", 1, "0.2");
    let took = wait_devices(&ctl, SECOND, "the laptop listed", |l| {
        device(l, LAPTOP).is_some_and(|d| {
            d["state"] == "unknown"
                && d["segment"] == "quarantine"
                && d["interface"] == ports[2].as_str()
                && d["ips"][0] == "10.99.0.7"
        })
    });
    eprintln!("new device listed after {took:?}");
    let list = devices(&ctl);
    let pis = device(&list, PIS).expect("the PIS answered, so it was seen");
    assert_eq!(pis["state"], "registered");
    assert_eq!(pis["name"], "pis-01");
    assert_eq!(pis["risk"], "critical");

    // A real DHCP client against a real dnsmasq: host name, vendor class
    // and parameter list, the vendor from the OUI registry, and the leased
    // address once the device uses it.
    must(&[
        "ip",
        "netns",
        "exec",
        pis_ns,
        "ip",
        "addr",
        "add",
        "10.50.0.1/24",
        "dev",
        "eth0",
    ]);
    let pidfile = std::env::temp_dir().join("ispf-iv-dnsmasq.pid");
    let dnsmasq = command("ip")
        .args([
            "netns",
            "exec",
            pis_ns,
            "dnsmasq",
            "--no-daemon",
            "--port=0",
            "--interface=eth0",
        ])
        .args([
            "--dhcp-range=10.50.0.100,10.50.0.150,255.255.255.0,1h",
            "--no-resolv",
            "--no-hosts",
        ])
        .arg(format!("--pid-file={}", pidfile.display()))
        .arg("--dhcp-leasefile=/dev/null")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _dnsmasq = Kill(dnsmasq);
    std::thread::sleep(Duration::from_millis(300));
    let script = std::env::temp_dir().join("ispf-iv-udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && ip addr add \"$ip/24\" dev \"$interface\"\nexit 0\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let t = Instant::now();
    let out = in_ns(
        "ispf-iv-dhcp",
        &[
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-t",
            "4",
            "-T",
            "1",
            "-x",
            "hostname:icu-pump-7",
            "-V",
            "BaxterSigma",
            "-s",
            script.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "udhcpc got no lease: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = wait_devices(
        &ctl,
        t.elapsed() + SECOND,
        "the DHCP client's fingerprint",
        |l| {
            device(l, BAXTER_MAC).is_some_and(|d| {
                d["hostname"] == "icu-pump-7"
                    && d["vendor_class"] == "BaxterSigma"
                    && d["vendor"] == "Baxter International Inc"
                    && d["interface"] == dhcp_port
            })
        },
    );
    eprintln!("DHCP fingerprint listed {took:?} after the client started");
    ping("ispf-iv-dhcp", "10.50.0.10", 1, "0.2");
    wait_devices(&ctl, SECOND, "the leased address", |l| {
        device(l, BAXTER_MAC).is_some_and(|d| {
            d["ips"][0]
                .as_str()
                .is_some_and(|ip| ip.starts_with("10.50.0.1") && ip.len() > 9)
        })
    });

    // The pump is unplugged and plugged into another port: its timeline
    // shows the move, and its HL7 permission follows it.
    let _hl7 = ispf_tests::services::Server::start(pis_ns, &[2575]);
    assert!(ispf_tests::services::tcp_ok(
        pump_ns,
        "10.50.0.10",
        2575,
        2.0,
        None
    ));
    must(&[
        "ip", "netns", "exec", pump_ns, "ip", "link", "set", "eth0", "down",
    ]);
    must(&[
        "ip",
        "netns",
        "exec",
        pump_ns,
        "ip",
        "addr",
        "add",
        "10.10.0.11/8",
        "dev",
        "eth1",
    ]);
    must(&[
        "ip", "netns", "exec", pump_ns, "ip", "link", "set", "eth1", "up",
    ]);
    ping(pump_ns, "10.50.0.10", 1, "0.2");
    let took = wait_devices(&ctl, SECOND, "the pump's move", |l| {
        device(l, PUMP1)
            .is_some_and(|d| d["interface"] == spare && d["segment"] == "infusion-pumps")
    });
    eprintln!("move listed after {took:?}");
    assert!(
        ispf_tests::services::tcp_ok(pump_ns, "10.50.0.10", 2575, 2.0, None),
        "HL7 from the new port"
    );
    let tl = timeline(&ctl, PUMP1);
    assert_eq!(tl[0]["event"], "moved", "newest first: {tl:?}");
    assert!(
        tl[0]["detail"].as_str().unwrap().contains(&ports[0]),
        "{tl:?}"
    );

    // A new address for the laptop.
    must(&[
        "ip", "netns", "exec", lap_ns, "ip", "addr", "flush", "dev", "eth0",
    ]);
    must(&[
        "ip",
        "netns",
        "exec",
        lap_ns,
        "ip",
        "addr",
        "add",
        "10.99.0.8/8",
        "dev",
        "eth0",
    ]);
    ping(lap_ns, "10.50.0.10", 1, "0.2");
    let took = wait_devices(&ctl, SECOND, "the laptop's new address", |l| {
        device(l, LAPTOP).is_some_and(|d| d["ips"][0] == "10.99.0.8")
    });
    eprintln!("address change listed after {took:?}");
    assert!(timeline(&ctl, LAPTOP)
        .iter()
        .any(|e| e["event"] == "ip_changed" && e["detail"] == "10.99.0.7 -> 10.99.0.8"));

    // Metrics and events, bounded labels.
    let m = metrics(metrics_addr);
    assert!(metric(&m, "ispf_device_moves_total") >= 1.0);
    assert!(metric(&m, "ispf_device_sightings_total") >= 4.0);
    assert!(
        m.contains("ispf_devices{segment=\"quarantine\",state=\"unknown\"} 1"),
        "{m}"
    );
    assert!(
        !m.contains(LAPTOP) && !m.contains("10.99.0.8"),
        "no MAC or address in labels"
    );
    let _ = follower.kill();
    let mut text = String::new();
    follower
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let _ = follower.wait();
    for action in ["new", "moved", "ip_changed"] {
        assert!(
            text.lines().any(|l| l.contains("\"event\":\"device\"")
                && l.contains(&format!("\"action\":\"{action}\""))),
            "no device event {action} among:\n{text}"
        );
    }
    let _ = sh(&["ip", "link", "del", spare]);
}

#[test]
fn a_mac_flood_is_counted_not_stored_and_never_touches_an_established_flow() {
    require_root();
    let (_topo, ports) = unit("mf");
    let metrics_addr = "127.0.0.1:19472";
    let cap = 5000;
    let ctl = Ctl::start_with(
        paths("mf"),
        &policy_path(),
        &[&ports[0], &ports[1], &ports[2]],
        &[
            "--max-unknown-devices",
            &cap.to_string(),
            "--metrics-addr",
            metrics_addr,
        ],
    );
    let pid = ctl.child.as_ref().unwrap().id();
    let rss = || -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let _echo = Echo::start("ispf-mf-pis", 2575);
    let stream = Stream::start("ispf-mf-pump", "10.50.0.10", 2575);
    stream.wait_state(true, 5, Duration::from_secs(5));
    let rss_before = rss();

    // 100,000 frames, each from a new random unicast MAC and address, to
    // the PIS, from the laptop's port.
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let frames: Vec<Vec<u8>> = (0..100_000)
        .map(|_| {
            let mut src: [u8; 6] = rng.gen();
            src[0] = (src[0] & 0xfc) | 0x02;
            let ip = [10, 99, rng.gen(), rng.gen()];
            let udp = udp(40000, 9, b"flood");
            eth(
                mac(PIS),
                src,
                &[],
                0x0800,
                &ipv4(ip, v4("10.50.0.10"), 17, &udp, Frag::default(), 0),
            )
        })
        .collect();
    let flood_start = Instant::now();
    let sender = std::thread::spawn(move || raw::send("ispf-mf-lap", "eth0", frames));
    // The controller answers while the flood runs.
    let mut slowest = Duration::ZERO;
    while !sender.is_finished() {
        let t = Instant::now();
        let s = ctl.status();
        slowest = slowest.max(t.elapsed());
        assert!(s.inventory.is_some());
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = sender.join().unwrap();
    eprintln!(
        "flood of {sent} frames took {:?}; slowest status answer {slowest:?}",
        flood_start.elapsed()
    );
    assert_eq!(sent, 100_000);
    assert!(
        slowest < Duration::from_secs(2),
        "status took {slowest:?} during the flood"
    );
    std::thread::sleep(Duration::from_secs(1));

    // Bounded: at most the cap of unknown devices, the rest counted.
    let list = devices(&ctl);
    let unknown = list.iter().filter(|d| d["state"] == "unknown").count();
    assert!(
        unknown <= cap,
        "{unknown} unknown devices recorded, cap {cap}"
    );
    let m = metrics(metrics_addr);
    let capped = metric(
        &m,
        "ispf_inventory_lost_total{cause=\"unknown_device_cap\"}",
    );
    let limited = metric(&m, "ispf_inventory_lost_total{cause=\"rate_limited\"}");
    let behind = metric(&m, "ispf_inventory_lost_total{cause=\"ingest_behind\"}");
    eprintln!("recorded {unknown} unknown; over the cap {capped}, rate-limited in the datapath {limited}, ingest behind {behind}");
    assert!(
        capped + limited > 0.0,
        "the flood must be counted somewhere"
    );
    assert!(
        unknown as f64 + capped + limited + behind >= 99_000.0,
        "every flooded MAC is recorded or counted"
    );
    let st = ctl.status();
    assert_eq!(st.inventory.as_ref().unwrap().overflow as f64, capped);
    let rss_after = rss();
    eprintln!("controller RSS {rss_before} kB before, {rss_after} kB after");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "the controller grew by {} kB",
        rss_after - rss_before
    );

    // The established, allowed flow lost nothing.
    let (ok, stalled) = stream.since(flood_start);
    assert!(
        ok > 10 && stalled == 0,
        "pump -> PIS during the flood: {ok} answered, {stalled} stalled"
    );
    // Still responsive, still enforcing.
    assert!(!ispf_tests::services::tcp_ok(
        "ispf-mf-lap",
        "10.50.0.10",
        2575,
        1.0,
        None
    ));
}
