//! `cargo xtask demo`: a simulated care unit on this machine, enforced by
//! `ispf run` with the README's example policy.
//!
//! Network namespaces play the devices, a Linux bridge plays the care-unit
//! switch, and ispf runs on every bridge port. The workstation and the guest
//! laptop sit on access ports of VLAN 130 and 140 (their frames carry the
//! tag on the wire). Real traffic is driven through it — allowed flows and
//! their replies, denied flows, a spoofing attempt, and policy reloads while
//! traffic runs — and the demo prints what passed, what was dropped and why.
//! It exits non-zero if any outcome differs from what the policy says.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::Duration,
};

mod baseline;
mod detection;
mod identity;
mod inventory;
mod reloads;

use anyhow::{bail, Result};
use ispf::{datapath::Datapath, policy::Policy};
use ispf_common::{reason_name, VERDICT_PASS};
use ispf_tests::{
    care_unit::policy_path,
    ispf_bin,
    netns::{in_ns, sh, Topology, VlanAccess},
    services::{tcp_ok, udp_ok, Server},
};

const PIN_DIR: &str = "/sys/fs/bpf/ispf-demo";
const RUN_DIR: &str = "/run/ispf-demo";
const STATE_DIR: &str = "/tmp/ispf-demo-state";
const BRIDGE: &str = "ispf-care";

struct Host {
    ns: &'static str,
    port: &'static str,
    mac: &'static str,
    ip: &'static str,
    vlan: Option<u16>,
    role: &'static str,
}

const HOSTS: &[Host] = &[
    Host {
        ns: "care-pump1",
        port: "care-pump1",
        mac: "02:00:00:00:10:01",
        ip: "10.10.0.11",
        vlan: None,
        role: "infusion pump pump-3w-01",
    },
    Host {
        ns: "care-pump2",
        port: "care-pump2",
        mac: "02:00:00:00:10:02",
        ip: "10.10.0.12",
        vlan: None,
        role: "infusion pump pump-3w-02",
    },
    Host {
        ns: "care-mon1",
        port: "care-mon1",
        mac: "02:00:00:00:20:01",
        ip: "10.20.0.21",
        vlan: None,
        role: "patient monitor monitor-3w-01",
    },
    Host {
        ns: "care-mon2",
        port: "care-mon2",
        mac: "02:00:00:00:20:02",
        ip: "10.20.0.22",
        vlan: None,
        role: "patient monitor monitor-3w-02",
    },
    Host {
        ns: "care-nurse",
        port: "care-nurse",
        mac: "02:00:00:00:30:01",
        ip: "10.30.0.31",
        vlan: Some(130),
        role: "nurse workstation ws-3w-nurse (VLAN 130)",
    },
    Host {
        ns: "care-pis",
        port: "care-pis",
        mac: "02:00:00:00:50:01",
        ip: "10.50.0.10",
        vlan: None,
        role: "PIS/EHR server pis-01 (HL7 2575, DICOM 104/11112, HTTPS 443, NTP 123)",
    },
    Host {
        ns: "care-guest",
        port: "care-guest",
        mac: "02:00:00:00:99:05",
        ip: "10.99.0.5",
        vlan: Some(140),
        role: "visitor's phone on guest Wi-Fi (VLAN 140)",
    },
    Host {
        ns: "care-laptop",
        port: "care-laptop",
        mac: inventory::LAPTOP_MAC,
        ip: "10.99.0.7",
        vlan: None,
        role: "unknown laptop plugged into a free wall port",
    },
    Host {
        ns: "care-gw",
        port: "care-gw",
        mac: "02:00:00:00:00:fe",
        ip: detection::GATEWAY_IP,
        vlan: None,
        role: "the unit's gateway (a router: beyond it is world)",
    },
];

fn host(ns: &str) -> &'static Host {
    HOSTS.iter().find(|h| h.ns == ns).expect("known host")
}

pub enum Probe {
    Tcp(u16),
    Udp(u16),
    Ping,
    SpoofTcp(u16, &'static str),
}

fn probe(from: &str, to: &str, p: &Probe) -> bool {
    let ip = host(to).ip;
    match p {
        Probe::Tcp(port) => tcp_ok(from, ip, *port, 1.5, None),
        Probe::Udp(port) => udp_ok(from, ip, *port, 1.5, None),
        Probe::Ping => in_ns(from, &["ping", "-c", "2", "-i", "0.2", "-W", "1", ip])
            .status
            .success(),
        Probe::SpoofTcp(port, src) => tcp_ok(from, ip, *port, 1.5, Some(src)),
    }
}

fn describe(p: &Probe) -> String {
    match p {
        Probe::Tcp(port) => format!("TCP {port}"),
        Probe::Udp(port) => format!("UDP {port}"),
        Probe::Ping => "ping".to_owned(),
        Probe::SpoofTcp(port, src) => format!("TCP {port} from borrowed {src}"),
    }
}

pub fn ispf(args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(ispf_bin()).args(args).output()?)
}

fn main() -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces and loads XDP: run it as root (cargo xtask demo does)");
    }
    let _alone = ispf_tests::exclusive::exclusive("the demo")?;
    let policy_file = policy_path().canonicalize()?;
    let policy = Policy::from_file(&policy_file)?;
    let _ = ispf(&["detach", "--pin-dir", PIN_DIR, "--run-dir", RUN_DIR]);

    println!("== Building the care unit: bridge {BRIDGE}, one namespace per device");
    let mut topo = Topology::default();
    topo.bridge(BRIDGE);
    let mut vlan_ports = Vec::new();
    for h in HOSTS {
        topo.host(h.ns, h.port, BRIDGE, h.mac, &[&format!("{}/8", h.ip)]);
        vlan_ports.push(VlanAccess::new(h.ns, h.vlan));
        println!("   {:<12} {:<15} {}", h.ns, h.ip, h.role);
    }
    inventory::cable_spare(BRIDGE);
    let _ = std::fs::remove_dir_all(STATE_DIR);
    let servers = [
        Server::start("care-pis", &[2575, 104, 11112, 443]),
        Server::start("care-mon1", &[443]),
        Server::start("care-pump2", &[5000, 443]),
    ];

    println!(
        "\n== ispf run --policy {} on every bridge port",
        policy_file.display()
    );
    let mut run = Command::new(ispf_bin());
    run.args(["run", "--policy"]).arg(&policy_file).args([
        "--pin-dir",
        PIN_DIR,
        "--run-dir",
        RUN_DIR,
        "--state-dir",
        STATE_DIR,
    ]);
    for h in HOSTS {
        run.args(["--iface", h.port]);
    }
    run.args(["--iface", inventory::SPARE_PORT]);
    let mut controller = Controller(run.stderr(Stdio::inherit()).spawn()?);
    wait_for_controller()?;

    let failures = std::cell::Cell::new(0u32);
    let check = |from: &str, to: &str, p: Probe, expect: bool, why: &str| {
        let got = probe(from, to, &p);
        let mark = if got == expect { "ok " } else { "FAIL" };
        if got != expect {
            failures.set(failures.get() + 1);
        }
        println!(
            "   [{mark}] {:<12} -> {:<10} {:<26} {:<8} {why}",
            from,
            to,
            describe(&p),
            if got { "passed" } else { "blocked" }
        );
    };

    baseline::act(&check);
    reloads::act(&check, &failures, &policy_file)?;
    inventory::act(&check)?;
    detection::act(&check, &policy_file)?;
    identity::act(&check, &policy_file)?;

    println!("\n== What ispf saw, by segment pair and reason (from its per-CPU counters)");
    {
        let dp = Datapath::adopt(Path::new(PIN_DIR))?;
        println!(
            "   {:<22} {:<22} {:<16} {:<5} {:>7}",
            "from", "to", "reason", "", "packets"
        );
        for (k, v) in dp.counters() {
            println!(
                "   {:<22} {:<22} {:<16} {:<5} {:>7}",
                policy.segment_name(k.src),
                policy.segment_name(k.dst),
                reason_name(k.reason).unwrap_or("?"),
                if k.verdict == VERDICT_PASS {
                    "pass"
                } else {
                    "drop"
                },
                v.packets
            );
        }
    }
    println!("\n== ispf status");
    print_indented(&ispf(&["status", "--run-dir", RUN_DIR])?);

    println!("\n== ispf detach, then tear the care unit down");
    print_indented(&ispf(&[
        "detach",
        "--pin-dir",
        PIN_DIR,
        "--run-dir",
        RUN_DIR,
    ])?);
    let _ = controller.0.wait();
    drop(servers);
    drop(vlan_ports);
    drop(topo);
    let _ = sh(&["ip", "link", "del", inventory::SPARE_PORT]);
    if failures.get() > 0 {
        bail!("{} outcome(s) differed from the policy", failures.get());
    }
    println!("\nevery outcome matched the policy");
    Ok(())
}

struct Controller(Child);
impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = Command::new(ispf_bin())
            .args(["detach", "--pin-dir", PIN_DIR, "--run-dir", RUN_DIR])
            .output();
    }
}

fn wait_for_controller() -> Result<()> {
    for _ in 0..200 {
        if ispf(&["status", "--run-dir", RUN_DIR])?.status.success() {
            return Ok(());
        }
        sleep(Duration::from_millis(50));
    }
    bail!("ispf run did not come up")
}

pub fn print_indented(out: &std::process::Output) {
    for l in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        println!("     {l}");
    }
}
