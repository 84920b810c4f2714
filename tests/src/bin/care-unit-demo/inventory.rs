//! The demo's inventory act: an unknown laptop appears (listed with its
//! port, VLAN, vendor and DHCP host name), a pump is re-cabled to another
//! bridge port and its HL7 permission follows it, the laptop is admitted to
//! the guest segment and its traffic changes at once, and a workstation is
//! quarantined and released.

use std::{process::Stdio, thread::sleep, time::Duration};

use anyhow::Result;
use ispf_tests::netns::{in_ns, must, sh};

use crate::{ispf, print_indented, Probe, RUN_DIR};

pub const LAPTOP_MAC: &str = "98:e7:43:00:99:07";
/// The pump's second cable's bridge port (enforced from the start).
pub const SPARE_PORT: &str = "care-spare";

/// The spare port: a second cable into the pump's namespace, unplugged.
pub fn cable_spare(bridge: &str) {
    let _ = sh(&["ip", "link", "del", SPARE_PORT]);
    must(&[
        "ip",
        "link",
        "add",
        SPARE_PORT,
        "type",
        "veth",
        "peer",
        "name",
        "eth1",
        "netns",
        "care-pump1",
    ]);
    must(&["ip", "link", "set", SPARE_PORT, "master", bridge, "up"]);
    must(&[
        "ip",
        "netns",
        "exec",
        "care-pump1",
        "ip",
        "link",
        "set",
        "eth1",
        "address",
        "02:00:00:00:10:01",
    ]);
}

fn show(args: &[&str]) -> Result<()> {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--run-dir", RUN_DIR]);
    println!("   $ ispf {}", args.join(" "));
    print_indented(&ispf(&full)?);
    Ok(())
}

pub fn act(check: &dyn Fn(&str, &str, Probe, bool, &str)) -> Result<()> {
    println!(
        "\n== The inventory: an unknown laptop asks for an address (a real DHCP client and server)"
    );
    let dnsmasq = ispf_tests::programs::command("ip")
        .args([
            "netns",
            "exec",
            "care-pis",
            "dnsmasq",
            "--no-daemon",
            "--port=0",
        ])
        .args([
            "--interface=eth0",
            "--dhcp-range=10.99.0.100,10.99.0.150,255.0.0.0,1h",
        ])
        .args(["--no-resolv", "--no-hosts", "--dhcp-leasefile=/dev/null"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _dnsmasq = Kill(dnsmasq);
    sleep(Duration::from_millis(300));
    let out = in_ns(
        "care-laptop",
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
            "hostname:visitor-laptop",
            "-V",
            "MSFT 5.0",
            "-s",
            "/bin/true",
        ],
    );
    println!(
        "   udhcpc: {}",
        if out.status.success() {
            "lease offered"
        } else {
            "no lease"
        }
    );
    sleep(Duration::from_millis(500));
    show(&["devices", "--unknown"])?;

    println!("\n== A pump is unplugged from its port and plugged into another");
    check(
        "care-pump1",
        "care-pis",
        Probe::Tcp(2575),
        true,
        "HL7 before the move",
    );
    must(&[
        "ip",
        "netns",
        "exec",
        "care-pump1",
        "ip",
        "link",
        "set",
        "eth0",
        "down",
    ]);
    must(&[
        "ip",
        "netns",
        "exec",
        "care-pump1",
        "ip",
        "addr",
        "add",
        "10.10.0.11/8",
        "dev",
        "eth1",
    ]);
    must(&[
        "ip",
        "netns",
        "exec",
        "care-pump1",
        "ip",
        "link",
        "set",
        "eth1",
        "up",
    ]);
    check(
        "care-pump1",
        "care-pis",
        Probe::Tcp(2575),
        true,
        "HL7 follows the pump to its new port",
    );
    sleep(Duration::from_millis(300));
    show(&["device", "02:00:00:00:10:01"])?;

    println!("\n== The laptop is admitted to the guest segment: its traffic changes at once");
    check(
        "care-laptop",
        "care-pis",
        Probe::Ping,
        true,
        "unknown: ping-pis lets anyone ping the PIS",
    );
    show(&[
        "admit",
        LAPTOP_MAC,
        "--segment",
        "guest",
        "--name",
        "visitor-laptop",
        "--expires",
        "8h",
        "--by",
        "front-desk",
    ])?;
    check(
        "care-laptop",
        "care-pis",
        Probe::Ping,
        false,
        "a guest now: guest-in blocks it",
    );

    println!("\n== A workstation is quarantined, then released");
    check(
        "care-nurse",
        "care-pis",
        Probe::Tcp(443),
        true,
        "ws-pis before",
    );
    show(&[
        "quarantine",
        "02:00:00:00:30:01",
        "--reason",
        "EDR alert: suspicious process",
        "--by",
        "soc",
    ])?;
    check(
        "care-nurse",
        "care-pis",
        Probe::Tcp(443),
        false,
        "quarantined: unknown_source segment",
    );
    show(&["release", "02:00:00:00:30:01", "--by", "soc"])?;
    check(
        "care-nurse",
        "care-pis",
        Probe::Tcp(443),
        true,
        "released: the file decides again",
    );
    show(&["devices"])?;
    show(&["export-devices"])?;
    Ok(())
}
