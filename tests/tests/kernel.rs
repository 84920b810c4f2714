//! Tier 2: the real XDP program under BPF_PROG_TEST_RUN.

use ispf::{
    datapath::{Datapath, Entry, MapSizes},
    policy::{compile::compile, Policy},
};
use ispf_common::{reason_code, reason_name};
use ispf_tests::{care_unit::*, frames::*, require_root};

#[path = "kernel/events.rs"]
mod events;
#[path = "kernel/fragments.rs"]
mod fragments;
#[path = "kernel/reloads.rs"]
mod reloads;
#[path = "kernel/state.rs"]
mod state;

fn load(policy: &Policy, sizes: MapSizes) -> Datapath {
    let mut dp = Datapath::load(sizes).expect("load");
    dp.apply(&compile(policy)).expect("apply");
    dp
}

fn care_unit() -> Policy {
    Policy::from_file(&policy_path()).expect("example policy is valid")
}

#[expect(
    clippy::too_many_arguments,
    reason = "one argument per column of a test-case row"
)]
fn check(
    dp: &mut Datapath,
    p: &Policy,
    name: &str,
    frame: &[u8],
    pass: bool,
    reason: &str,
    src: &str,
    dst: &str,
) {
    let o = dp.run(frame).expect("test run");
    let got = (
        o.pass,
        reason_name(o.reason).unwrap(),
        p.segment_name(o.src),
        p.segment_name(o.dst),
    );
    assert_eq!(got, (pass, reason, src, dst), "case `{name}`");
}

/// The written scenario through each entry point (XDP and TC), each on
/// fresh state: one pipeline, one answer.
#[test]
fn care_unit_scenario() {
    require_root();
    let p = care_unit();
    for entry in [Entry::Xdp, Entry::Tc] {
        let mut dp = load(&p, MapSizes::default());
        let mut seen = std::collections::BTreeSet::new();
        for c in scenario() {
            let o = dp.run_on(entry, &c.frame).expect("test run");
            let got = (
                o.pass,
                reason_name(o.reason).unwrap(),
                p.segment_name(o.src),
                p.segment_name(o.dst),
            );
            assert_eq!(
                got,
                (c.pass, c.reason, c.src, c.dst),
                "case `{}` through {entry:?}",
                c.name
            );
            seen.insert(c.reason);
        }
        // Every spec reason but `would_drop` (see `monitor_mode`) is exercised.
        assert_eq!(seen.len(), 10, "reasons covered: {seen:?}");
    }
}

#[test]
fn monitor_mode_passes_would_be_drops() {
    require_root();
    let text = std::fs::read_to_string(policy_path())
        .unwrap()
        .replace(r#""mode": "enforce""#, r#""mode": "monitor""#);
    let p = Policy::from_str(&text, "monitor.json".as_ref()).unwrap();
    let mut dp = load(&p, MapSizes::default());
    let guest_to_pis = eth(
        mac(PIS),
        mac(LAPTOP),
        &[140],
        ETH_IP,
        &ipv4(
            v4("10.99.0.5"),
            v4("10.50.0.10"),
            6,
            &tcp(1, 443, TCP_SYN),
            Frag::default(),
            0,
        ),
    );
    check(
        &mut dp,
        &p,
        "guest denied by rule, monitored",
        &guest_to_pis,
        true,
        "would_drop",
        "guest",
        "pis-servers",
    );
    // Malformed and spoofed drops are not softened.
    let mut bad = guest_to_pis.clone();
    bad[18] = 0x44;
    check(
        &mut dp,
        &p,
        "malformed in monitor",
        &bad,
        false,
        "malformed",
        "-",
        "-",
    );
    let spoof = eth(
        mac(PIS),
        mac(LAPTOP),
        &[140],
        ETH_IP,
        &ipv4(
            v4("10.10.0.11"),
            v4("10.50.0.10"),
            6,
            &tcp(1, 443, TCP_SYN),
            Frag::default(),
            0,
        ),
    );
    check(
        &mut dp,
        &p,
        "spoofed in monitor",
        &spoof,
        false,
        "spoofed",
        "guest",
        "pis-servers",
    );
    // A would-drop opens no flow: the answer is judged on its own, not
    // passed as a reply. (The unregistered guest on VLAN 140 is `guest` as a
    // destination, so the answer is a would-drop of its own.)
    let answer = reply_of(&guest_to_pis).unwrap();
    check(
        &mut dp,
        &p,
        "answer to a would-drop",
        &answer,
        true,
        "would_drop",
        "pis-servers",
        "guest",
    );
}

#[test]
fn counters_count_every_verdict_by_pair_and_reason() {
    require_root();
    let p = care_unit();
    let mut dp = load(&p, MapSizes::default());
    let frames = scenario();
    let mut expected = std::collections::BTreeMap::<(String, String, &str), (u64, u64)>::new();
    let mut outcomes = Vec::new();
    for c in &frames {
        let o = dp.run(&c.frame).unwrap();
        outcomes.push(o);
        if c.frame.len() >= 14 {
            let e = expected
                .entry((
                    p.segment_name(o.src).to_owned(),
                    p.segment_name(o.dst).to_owned(),
                    reason_name(o.reason).unwrap(),
                ))
                .or_default();
            e.0 += 1;
            e.1 += c.frame.len() as u64;
        }
    }
    // The datapath also splits by deciding rule; sum that away here.
    let mut got = std::collections::BTreeMap::<(String, String, &str), (u64, u64)>::new();
    let mut rule_hits = std::collections::BTreeMap::<u32, u64>::new();
    for (k, v) in dp.counters() {
        let e = got
            .entry((
                p.segment_name(k.src).to_owned(),
                p.segment_name(k.dst).to_owned(),
                reason_name(k.reason).unwrap(),
            ))
            .or_default();
        e.0 += v.packets;
        e.1 += v.bytes;
        if k.rule != ispf_common::RULE_NONE {
            *rule_hits.entry(k.rule).or_default() += v.packets;
        }
    }
    // pump-hl7 (rules[0]) decided the pump's opening packets, allowed ones
    // and the denied later ones after the reset alike.
    let expected_hits = frames
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| o.rule == Some(0))
        .count() as u64;
    assert!(expected_hits >= 3);
    assert_eq!(rule_hits.get(&0).copied(), Some(expected_hits));
    assert_eq!(got, expected);
    assert_eq!(reason_code("reply").map(|c| c as usize), Some(1));
}
