//! Threat feeds in the kernel under BPF_PROG_TEST_RUN: the exemption of a
//! life-critical segment belongs to each packet's own segments, including
//! the replies of a flow that a feed lists.

use ispf::{
    datapath::{Datapath, Entry, MapSizes},
    policy::{Policy, PolicyDoc},
};
use ispf_common::{reason_name, Event, EVENT_OPENED, EVENT_THREAT};
use ispf_tests::{feeds::with_feeds, frames::*, require_root};

const PUMP: &str = "02:00:00:00:10:01";
const LAPTOP: &str = "02:00:00:00:10:02";
const SERVER: &str = "02:00:00:00:99:a3";

fn policy() -> Policy {
    let doc: PolicyDoc = serde_json::from_value(serde_json::json!({
        "version": 1,
        "defaults": { "default_action": "allow", "unknown_source": "quarantine" },
        "segments": [
            { "name": "pumps", "life_critical": true },
            { "name": "laptops" },
            { "name": "quarantine", "intra": "deny" }
        ],
        "devices": [
            { "name": "pump", "mac": PUMP, "segment": "pumps" },
            { "name": "lap", "mac": LAPTOP, "segment": "laptops" }
        ],
        "rules": []
    }))
    .expect("schema");
    Policy::from_doc(doc).expect("valid policy")
}

fn udp_frame(
    dst_mac: &str,
    src_mac: &str,
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    eth(
        mac(dst_mac),
        mac(src_mac),
        &[],
        0x0800,
        &ipv4(
            v4(src),
            v4(dst),
            17,
            &udp(sport, dport, b"x"),
            Frag::default(),
            0,
        ),
    )
}

/// A pump's flow to a listed server passes (a feed never isolates a
/// life-critical segment), and so do the server's replies to the pump; a
/// packet of that flow sent to a laptop's MAC is the laptop's traffic,
/// not the pump's, and stops — however often the flow's packets passed
/// before, on either entry point.
#[test]
fn replies_of_a_listed_flow_are_judged_on_their_own_segments() {
    require_root();
    let p = policy();
    for entry in [Entry::Xdp, Entry::Tc] {
        let mut dp = Datapath::load(MapSizes::default()).expect("load");
        dp.apply(&with_feeds(&p, &[("10.77.0.9\n".into(), true)]))
            .expect("apply");
        let mut run = |frame: &[u8]| {
            let o = dp.run_on(entry, frame).expect("test run");
            (
                o.pass,
                reason_name(o.reason).unwrap().to_owned(),
                p.segment_name(o.src).to_owned(),
                p.segment_name(o.dst).to_owned(),
            )
        };
        let expect = |pass: bool, reason: &str, src: &str, dst: &str| {
            (pass, reason.to_owned(), src.to_owned(), dst.to_owned())
        };
        let out = udp_frame(SERVER, PUMP, "10.10.0.11", "10.77.0.9", 5000, 53);
        let back = udp_frame(PUMP, SERVER, "10.77.0.9", "10.10.0.11", 53, 5000);
        let astray = udp_frame(LAPTOP, SERVER, "10.77.0.9", "10.10.0.11", 53, 5000);
        for round in 0..3 {
            assert_eq!(
                run(&out),
                expect(true, "allowed", "pumps", "quarantine"),
                "{entry:?}, round {round}: the pump's packet"
            );
            assert_eq!(
                run(&back),
                expect(true, "reply", "quarantine", "pumps"),
                "{entry:?}, round {round}: the server's reply to the pump"
            );
            assert_eq!(
                run(&astray),
                expect(false, "threat_feed", "quarantine", "laptops"),
                "{entry:?}, round {round}: the server's packet to the laptop"
            );
        }
        // An unlisted server's flow from the same pump is ordinary.
        let other = udp_frame(PUMP, SERVER, "10.77.0.10", "10.10.0.11", 53, 5001);
        assert_eq!(
            run(&other),
            expect(true, "allowed", "quarantine", "pumps"),
            "{entry:?}: an unlisted address"
        );
        // Every passed packet of the listed flow is reported; only the
        // pump's first opened it. The server's replies are no new flows
        // (detection once took them for flows the server opened to pumps).
        let mut ring = dp.take_events().expect("the ring buffer");
        let mut threats = Vec::new();
        while let Some(item) = ring.next() {
            if item.len() == std::mem::size_of::<Event>() {
                // SAFETY: the datapath writes whole `Event`s; read unaligned.
                let e = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) };
                if e.kind == EVENT_THREAT {
                    threats.push((e.sport, e.flags & EVENT_OPENED != 0));
                }
            }
        }
        let opened: Vec<_> = threats.iter().filter(|t| t.1).collect();
        assert_eq!(
            opened,
            vec![&(5000u16.to_be_bytes(), true)],
            "{entry:?}: {threats:?}"
        );
        assert!(
            threats.iter().any(|t| t.0 == 53u16.to_be_bytes() && !t.1),
            "{entry:?}: the replies are reported too: {threats:?}"
        );
    }
}
