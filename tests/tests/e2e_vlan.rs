//! Tier 3 with VLANs: hosts on access ports of VLAN 130 and 140 (frames
//! tagged in-band on the wire) reach the ispf bridge port, where identity is
//! VLAN-scoped: the workstation's MAC only counts on VLAN 130, and an
//! unregistered laptop on VLAN 140 joins the guest segment.

use std::time::Duration;

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
    services::{tcp_ok, Server},
};

#[test]
fn vlan_scoped_identity_on_real_tagged_traffic() {
    require_root();
    let mut topo = Topology::default();
    topo.bridge("ispfvbr0");
    topo.host("ispf-v-ws", "ispf-vws", "ispfvbr0", WS, &["10.30.0.31/8"]);
    topo.host(
        "ispf-v-pis",
        "ispf-vpis",
        "ispfvbr0",
        PIS,
        &["10.50.0.10/8"],
    );
    topo.host(
        "ispf-v-guest",
        "ispf-vguest",
        "ispfvbr0",
        LAPTOP,
        &["10.99.0.5/8"],
    );
    let policy = Policy::from_file(&policy_path()).unwrap();
    let mut dp = Datapath::load(MapSizes::default()).unwrap();
    dp.apply(&compile(&policy)).unwrap();
    for port in ["ispf-vws", "ispf-vpis", "ispf-vguest"] {
        dp.program_mut().attach(port, XdpMode::Driver).unwrap();
    }
    let _pis_port = VlanAccess::new("ispf-v-pis", None);
    let _server = Server::start("ispf-v-pis", &[443]);
    let count = |dp: &Datapath, src: &str, dst: &str, reason: &str| {
        ispf_tests::packets(&dp.counters(), &policy, src, dst, reason)
    };
    let connect = |ns: &str| tcp_ok(ns, "10.50.0.10", 443, 2.0, None);

    // Untagged, the workstation's MAC is off its VLAN: it borrows its own
    // registered address from an unknown port, which is spoofing.
    assert!(
        !connect("ispf-v-ws"),
        "an untagged workstation must not reach the PIS"
    );
    assert!(
        count(&dp, "quarantine", "pis-servers", "spoofed") >= 1,
        "{:?}",
        dp.counters()
    );

    // On VLAN 130 it is itself, and its HTTPS flow gets its replies.
    let ws_port = VlanAccess::new("ispf-v-ws", Some(130));
    assert!(
        connect("ispf-v-ws"),
        "the workstation on VLAN 130 must reach the PIS on 443: {:?}",
        dp.counters()
            .iter()
            .map(|(k, v)| (
                policy.segment_name(k.src),
                policy.segment_name(k.dst),
                reason_name(k.reason),
                v.packets
            ))
            .collect::<Vec<_>>()
    );
    assert!(
        count(&dp, "clinical-workstations", "pis-servers", "allowed") >= 3,
        "{:?}",
        dp.counters()
    );
    assert!(
        count(&dp, "pis-servers", "clinical-workstations", "reply") >= 2,
        "{:?}",
        dp.counters()
    );

    // An unregistered laptop on the guest VLAN is `guest`, and guest -> * deny
    // outranks * -> pis-servers icmp.
    let _guest_port = VlanAccess::new("ispf-v-guest", Some(140));
    let ping = in_ns(
        "ispf-v-guest",
        &["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.50.0.10"],
    );
    assert!(
        !ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    assert!(
        count(&dp, "guest", "pis-servers", "denied_rule") >= 2,
        "{:?}",
        dp.counters()
    );
    // Its ARP broadcast stays on VLAN 140: `guest`'s, not `world`.
    assert!(
        count(&dp, "guest", "guest", "infrastructure") >= 1,
        "ARP from the guest VLAN: {:?}",
        dp.counters()
    );
    drop(ws_port);
    std::thread::sleep(Duration::from_millis(50));
}
