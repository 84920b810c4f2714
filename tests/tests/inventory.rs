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
    care_unit::*, controller::*, frames::*, http::sample, inventory::*, ispf_bin, netns::*,
    programs::command, raw, require_root,
};
use rand::{Rng, SeedableRng};

#[path = "inventory/flood.rs"]
mod flood;

const SECOND: Duration = Duration::from_secs(1);
/// A Baxter infusion pump's OUI: the vendor must come from the IEEE registry.
const BAXTER_MAC: &str = "58:46:e1:00:00:07";

fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no metric {name} {labels:?}"))
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
    let m = scrape(metrics_addr);
    assert!(metric(&m, "ispf_device_moves_total", &[]) >= 1.0);
    assert!(metric(&m, "ispf_device_sightings_total", &[]) >= 4.0);
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
