//! Tier 3: real traffic between network namespaces through a Linux bridge
//! whose ports run the ispf XDP program. The care unit is the README's
//! example: a pump, the PIS server, an unknown laptop.

use std::{thread::sleep, time::Duration};

use aya::programs::XdpMode;
use ispf::{
    datapath::{Datapath, MapSizes},
    policy::{compile::compile, Policy},
};
use ispf_common::reason_name;
use ispf_tests::{
    care_unit::*,
    netns::*,
    require_root,
    services::{tcp_ok, udp_ok, Server},
};

fn ping(ns: &str, ip: &str) -> bool {
    in_ns(ns, &["ping", "-c", "2", "-i", "0.2", "-W", "1", ip])
        .status
        .success()
}

#[test]
fn real_traffic_through_a_bridge() {
    require_root();
    let mut topo = Topology::default();
    topo.bridge("ispfbr0");
    topo.host(
        "ispf-e2e-pump",
        "ispf-pump",
        "ispfbr0",
        PUMP1,
        &["10.10.0.11/8"],
    );
    topo.host(
        "ispf-e2e-pis",
        "ispf-pis",
        "ispfbr0",
        PIS,
        &["10.50.0.10/8"],
    );
    topo.host(
        "ispf-e2e-lap",
        "ispf-lap",
        "ispfbr0",
        LAPTOP,
        &["10.99.0.7/8"],
    );

    let policy = Policy::from_file(&policy_path()).unwrap();
    let mut dp = Datapath::load(MapSizes::default()).unwrap();
    dp.apply(&compile(&policy)).unwrap();
    let mut modes = vec![];
    for port in ["ispf-pump", "ispf-pis", "ispf-lap"] {
        let native = dp.program_mut().attach(port, XdpMode::Driver);
        if native.is_err() {
            dp.program_mut()
                .attach(port, XdpMode::Skb)
                .expect("attach in generic mode");
            modes.push("generic");
        } else {
            modes.push("native");
        }
    }
    eprintln!("attached: {modes:?}");
    for port in ["ispf-pump", "ispf-pis", "ispf-lap"] {
        assert!(
            ispf::system::attached_xdp(port).is_some(),
            "{port}: no XDP program seen"
        );
    }

    let _server = Server::start("ispf-e2e-pis", &[2575, 443]);

    // Allowed flows connect and get their replies through conntrack.
    assert!(
        ping("ispf-e2e-pump", "10.50.0.10"),
        "pump -> PIS ping (rule ping-pis) must work"
    );
    assert!(
        tcp_ok("ispf-e2e-pump", "10.50.0.10", 2575, 2.0, None),
        "pump -> PIS HL7 must connect"
    );
    assert!(
        udp_ok("ispf-e2e-pump", "10.50.0.10", 123, 2.0, None),
        "pump -> PIS NTP must get its answer"
    );
    // Denied flows do not.
    assert!(
        !tcp_ok("ispf-e2e-pump", "10.50.0.10", 443, 2.0, None),
        "pump -> PIS HTTPS is not allowed"
    );
    assert!(
        !ping("ispf-e2e-pis", "10.10.0.11"),
        "PIS -> pump ping is not allowed"
    );
    assert!(
        !tcp_ok("ispf-e2e-lap", "10.50.0.10", 2575, 2.0, None),
        "a quarantined laptop reaches no HL7"
    );
    // The laptop takes the pump's address: spoofed.
    must(&[
        "ip",
        "netns",
        "exec",
        "ispf-e2e-lap",
        "ip",
        "addr",
        "add",
        "10.10.0.11/8",
        "dev",
        "eth0",
    ]);
    assert!(
        !udp_ok("ispf-e2e-lap", "10.50.0.10", 123, 1.0, Some("10.10.0.11")),
        "a borrowed address gets nothing"
    );

    sleep(Duration::from_millis(200));
    let counters = dp.counters();
    let count = |src: &str, dst: &str, reason: &str| {
        ispf_tests::packets(&counters, &policy, src, dst, reason)
    };
    assert!(
        count("infusion-pumps", "pis-servers", "allowed") >= 4,
        "{counters:?}"
    );
    assert!(
        count("pis-servers", "infusion-pumps", "reply") >= 4,
        "{counters:?}"
    );
    assert!(
        count("infusion-pumps", "pis-servers", "denied_default") >= 1,
        "HTTPS SYNs: {counters:?}"
    );
    assert!(
        count("pis-servers", "infusion-pumps", "denied_default") >= 2,
        "PIS pings: {counters:?}"
    );
    assert!(
        count("quarantine", "pis-servers", "denied_default") >= 1,
        "{counters:?}"
    );
    assert!(
        count("quarantine", "pis-servers", "spoofed") >= 1,
        "{counters:?}"
    );
    assert!(
        counters
            .iter()
            .any(|(k, _)| reason_name(k.reason) == Some("infrastructure")),
        "ARP is counted: {counters:?}"
    );
    drop(dp);
    // Dropping the datapath detaches the program from every port (only
    // this test's: another program elsewhere on the machine is not ours).
    for port in ["ispf-pump", "ispf-pis", "ispf-lap"] {
        assert!(std::path::Path::new("/sys/class/net").join(port).exists());
        assert_eq!(
            ispf::system::attached_xdp(port),
            None,
            "XDP left attached to {port}"
        );
    }
}
