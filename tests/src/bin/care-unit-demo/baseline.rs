//! The example policy's own verdicts: what it allows (replies return
//! through connection tracking), what it blocks, and a spoofing attempt.

use ispf_tests::netns::sh;

use crate::Probe;

pub fn act(check: &dyn Fn(&str, &str, Probe, bool, &str)) {
    println!("\n== Traffic the policy allows (replies return through connection tracking)");
    check(
        "care-pump1",
        "care-pis",
        Probe::Tcp(2575),
        true,
        "pump-hl7: pumps -> PIS HL7",
    );
    check(
        "care-mon1",
        "care-pis",
        Probe::Tcp(2575),
        true,
        "monitor-hl7",
    );
    check(
        "care-nurse",
        "care-pis",
        Probe::Tcp(443),
        true,
        "ws-pis: workstation HTTPS (VLAN 130)",
    );
    check(
        "care-nurse",
        "care-pis",
        Probe::Tcp(11112),
        true,
        "ws-pis: DICOM 11112-11115",
    );
    check(
        "care-nurse",
        "care-pis",
        Probe::Tcp(104),
        true,
        "ws-pis: DICOM 104",
    );
    check(
        "care-nurse",
        "care-mon1",
        Probe::Tcp(443),
        true,
        "ws-monitors: monitor web UI",
    );
    check(
        "care-pump1",
        "care-pis",
        Probe::Udp(123),
        true,
        "ntp: pumps sync time with the PIS",
    );
    check(
        "care-pump1",
        "care-pump2",
        Probe::Tcp(5000),
        true,
        "intra allow: pumps may talk to pumps",
    );
    check(
        "care-laptop",
        "care-pis",
        Probe::Ping,
        true,
        "ping-pis: anyone may ping the PIS",
    );

    println!("\n== Traffic the policy blocks");
    check(
        "care-pump1",
        "care-pis",
        Probe::Tcp(443),
        false,
        "no rule: pumps get HL7 only",
    );
    check(
        "care-pis",
        "care-pump1",
        Probe::Ping,
        false,
        "no rule back into the pumps",
    );
    check(
        "care-mon1",
        "care-mon2",
        Probe::Ping,
        false,
        "intra deny: monitors never talk to monitors",
    );
    check(
        "care-guest",
        "care-pis",
        Probe::Ping,
        false,
        "guest-in beats ping-pis (more specific)",
    );
    check(
        "care-guest",
        "care-pump1",
        Probe::Tcp(5000),
        false,
        "guest-in: guests reach no device",
    );
    check(
        "care-laptop",
        "care-pis",
        Probe::Tcp(2575),
        false,
        "unknown laptop is quarantined",
    );

    println!("\n== A spoofing attempt: the laptop takes infusion pump pump-3w-01's address");
    sh(&[
        "ip",
        "netns",
        "exec",
        "care-laptop",
        "ip",
        "addr",
        "add",
        "10.10.0.11/8",
        "dev",
        "eth0",
    ]);
    check(
        "care-laptop",
        "care-pis",
        Probe::SpoofTcp(2575, "10.10.0.11"),
        false,
        "spoofed: 10.10.0.11 belongs to a registered MAC",
    );
    sh(&[
        "ip",
        "netns",
        "exec",
        "care-laptop",
        "ip",
        "addr",
        "del",
        "10.10.0.11/8",
        "dev",
        "eth0",
    ]);
}
