//! Tier 2: the real XDP program under BPF_PROG_TEST_RUN.

use ispf::{
    datapath::{Datapath, Entry, MapSizes},
    policy::{compile::compile, Policy},
};
use ispf_common::{reason_code, reason_name};
use ispf_tests::{care_unit::*, frames::*, require_root};

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
fn reload_ends_flows_the_new_policy_forbids() {
    require_root();
    let p = care_unit();
    let mut dp = load(&p, MapSizes::default());
    let open = pump_hl7(41000, TCP_SYN);
    let ws = eth(
        mac(PIS),
        mac(WS),
        &[130],
        ETH_IP,
        &ipv4(
            v4("10.30.0.31"),
            v4("10.50.0.10"),
            6,
            &tcp(41001, 443, TCP_SYN),
            Frag::default(),
            0,
        ),
    );
    check(
        &mut dp,
        &p,
        "pump flow",
        &open,
        true,
        "allowed",
        "infusion-pumps",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "workstation flow",
        &ws,
        true,
        "allowed",
        "clinical-workstations",
        "pis-servers",
    );
    // New policy: the pump rule is gone, the workstation rule stays.
    let text = std::fs::read_to_string(policy_path()).unwrap().replace(
        r#""ports": [2575], "action": "allow" },
    { "id": "monitor-hl7""#,
        r#""ports": [2575], "action": "deny" },
    { "id": "monitor-hl7""#,
    );
    let p2 = Policy::from_str(&text, "p2.json".as_ref()).unwrap();
    let epoch = dp.apply(&compile(&p2)).unwrap();
    assert_eq!(epoch, 2);
    check(
        &mut dp,
        &p2,
        "reply on a flow the new policy denies",
        &reply_of(&open).unwrap(),
        false,
        "denied_default",
        "pis-servers",
        "infusion-pumps",
    );
    check(
        &mut dp,
        &p2,
        "pump flow continues",
        &open,
        false,
        "denied_rule",
        "infusion-pumps",
        "pis-servers",
    );
    check(
        &mut dp,
        &p2,
        "reply on a flow still allowed",
        &reply_of(&ws).unwrap(),
        true,
        "reply",
        "pis-servers",
        "clinical-workstations",
    );
}

#[test]
fn fragments_deny_drops_every_fragment() {
    require_root();
    let text = std::fs::read_to_string(policy_path())
        .unwrap()
        .replace(r#""fragments": "track""#, r#""fragments": "deny""#);
    let p = Policy::from_str(&text, "f.json".as_ref()).unwrap();
    let mut dp = load(&p, MapSizes::default());
    let first = eth(
        mac(PIS),
        mac(PUMP1),
        &[],
        ETH_IP,
        &ipv4(
            v4("10.10.0.11"),
            v4("10.50.0.10"),
            6,
            &tcp(1, 2575, TCP_SYN),
            Frag {
                offset: 0,
                more: true,
                id: 5,
            },
            0,
        ),
    );
    check(
        &mut dp,
        &p,
        "first fragment",
        &first,
        false,
        "fragment_untracked",
        "infusion-pumps",
        "pis-servers",
    );
    let v6frag = eth(
        mac(PIS),
        mac(MON1),
        &[],
        ETH_IPV6,
        &ipv6(
            v6("fd00:20::21"),
            v6("fd00:50::10"),
            &[Ext::Fragment(Frag {
                offset: 0,
                more: true,
                id: 9,
            })],
            6,
            &tcp(1, 2575, TCP_SYN),
        ),
    );
    check(
        &mut dp,
        &p,
        "IPv6 first fragment",
        &v6frag,
        false,
        "fragment_untracked",
        "patient-monitors",
        "pis-servers",
    );
}

#[test]
fn ipv6_fragments_in_and_out_of_order() {
    require_root();
    let p = care_unit();
    let mut dp = load(&p, MapSizes::default());
    let f = |off, more, payload: &[u8]| {
        eth(
            mac(PIS),
            mac(MON1),
            &[],
            ETH_IPV6,
            &ipv6(
                v6("fd00:20::21"),
                v6("fd00:50::10"),
                &[
                    Ext::HopByHop,
                    Ext::Fragment(Frag {
                        offset: off,
                        more,
                        id: 0xabcdef,
                    }),
                ],
                6,
                payload,
            ),
        )
    };
    check(
        &mut dp,
        &p,
        "later first",
        &f(4, false, &[0u8; 16]),
        false,
        "fragment_untracked",
        "patient-monitors",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "first",
        &f(0, true, &tcp(1, 2575, TCP_SYN)),
        true,
        "allowed",
        "patient-monitors",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "last",
        &f(4, false, &[0u8; 16]),
        true,
        "allowed",
        "patient-monitors",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "after the last, the datagram is closed",
        &f(2, true, &[0u8; 16]),
        false,
        "fragment_untracked",
        "patient-monitors",
        "pis-servers",
    );
}

#[test]
fn full_map_fails_open_only_for_life_critical() {
    require_root();
    let p = care_unit();
    let mut dp = load(
        &p,
        MapSizes {
            fragments: 1,
            ..MapSizes::default()
        },
    );
    let frag = |src_mac, vlans: &[u16], src, id| {
        eth(
            mac(PIS),
            mac(src_mac),
            vlans,
            ETH_IP,
            &ipv4(
                v4(src),
                v4("10.50.0.10"),
                6,
                &tcp(1, if src_mac == WS { 443 } else { 2575 }, TCP_SYN),
                Frag {
                    offset: 0,
                    more: true,
                    id,
                },
                0,
            ),
        )
    };
    check(
        &mut dp,
        &p,
        "fills the one-entry fragment map",
        &frag(PUMP1, &[], "10.10.0.11", 1),
        true,
        "allowed",
        "infusion-pumps",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "workstation: fails closed",
        &frag(WS, &[130], "10.30.0.31", 2),
        false,
        "internal_fault",
        "clinical-workstations",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "pump (life-critical): fails open",
        &frag(PUMP2, &[], "10.10.0.12", 3),
        true,
        "allowed",
        "infusion-pumps",
        "pis-servers",
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

/// The flow cache answers repeated packets of a flow; everything that
/// changes conntrack must reach packets of both directions at once.
#[test]
fn cached_flows_follow_conntrack() {
    require_root();
    let p = care_unit();
    let mut dp = load(&p, MapSizes::default());
    let pump = |flags: u8| pump_hl7(41000, flags);
    let answer = |flags: u8| reply_of(&pump(flags)).unwrap();
    let (fwd, back) = (
        ("infusion-pumps", "pis-servers"),
        ("pis-servers", "infusion-pumps"),
    );
    // Open, then enough packets both ways that both are cached.
    for i in 0..3 {
        let name = format!("pump packet {i}");
        check(
            &mut dp,
            &p,
            &name,
            &pump(TCP_ACK),
            true,
            "allowed",
            fwd.0,
            fwd.1,
        );
        let name = format!("server answer {i}");
        check(
            &mut dp,
            &p,
            &name,
            &answer(TCP_ACK),
            true,
            "reply",
            back.0,
            back.1,
        );
    }
    // The pump resets the connection: the server's cached answers go with it.
    check(
        &mut dp,
        &p,
        "pump RST",
        &pump(TCP_RST),
        true,
        "allowed",
        fwd.0,
        fwd.1,
    );
    check(
        &mut dp,
        &p,
        "answer after RST",
        &answer(TCP_ACK),
        false,
        "denied_default",
        back.0,
        back.1,
    );
    check(
        &mut dp,
        &p,
        "answer after RST, again (cached denial)",
        &answer(TCP_ACK),
        false,
        "denied_default",
        back.0,
        back.1,
    );
    // The pump opens the flow again: the cached denial of the server's
    // direction must not outlive it.
    check(
        &mut dp,
        &p,
        "pump reopens",
        &pump(TCP_SYN),
        true,
        "allowed",
        fwd.0,
        fwd.1,
    );
    check(
        &mut dp,
        &p,
        "answer to the reopened flow",
        &answer(TCP_ACK),
        true,
        "reply",
        back.0,
        back.1,
    );
    // A spoofed copy of a cached packet is judged on its own.
    let mut spoofed = answer(TCP_ACK);
    spoofed[6..12].copy_from_slice(&mac(WS));
    let o = dp.run(&spoofed).unwrap();
    assert_eq!(
        (o.pass, reason_name(o.reason).unwrap()),
        (false, "spoofed"),
        "another MAC with the server's address"
    );
    // Forgetting state (a fresh replay) forgets cached outcomes too.
    dp.reset_state().unwrap();
    check(
        &mut dp,
        &p,
        "answer after reset",
        &answer(TCP_ACK),
        false,
        "denied_default",
        back.0,
        back.1,
    );
}

/// Segment ids survive reloads: a segment added at the top of the file does
/// not renumber the others under live flows, and removing a segment ends
/// its flows rather than handing them to whatever takes its id later.
#[test]
fn reloads_keep_segment_ids_under_live_flows() {
    require_root();
    let p = care_unit();
    let mut dp = load(&p, MapSizes::default());
    let pump = pump_hl7(41000, TCP_SYN);
    let answer = reply_of(&pump).unwrap();
    let pumps = ("infusion-pumps", "pis-servers");
    check(
        &mut dp, &p, "open", &pump, true, "allowed", pumps.0, pumps.1,
    );
    let text = std::fs::read_to_string(policy_path()).unwrap();
    let added = text.replace(
        r#""segments": ["#,
        r#""segments": [
    { "name": "imaging" },"#,
    );
    let mut p2 = Policy::from_str(&added, "p2.json".as_ref()).unwrap();
    assert_eq!(
        p2.segment_id("imaging"),
        Some(1),
        "positions before keep_ids"
    );
    dp.replace_policy(&p, &mut p2).unwrap();
    assert_eq!(
        p2.segment_id("infusion-pumps"),
        p.segment_id("infusion-pumps")
    );
    let imaging = p2.segment_id("imaging").unwrap();
    assert!(
        !p.segment_ids().values().any(|id| *id == imaging),
        "a new segment takes an id no segment had"
    );
    check(
        &mut dp,
        &p2,
        "answer after a segment was added",
        &answer,
        true,
        "reply",
        pumps.1,
        pumps.0,
    );
    check(
        &mut dp,
        &p2,
        "flow continues",
        &pump,
        true,
        "allowed",
        pumps.0,
        pumps.1,
    );

    // The pumps' segment goes (the pump is unregistered now: quarantine).
    let removed = added
        .replace(
            r#"    { "name": "infusion-pumps", "life_critical": true },"#,
            "",
        )
        .replace(r#""segment": "infusion-pumps""#, r#""segment": "guest""#)
        .replace(r#""from": "infusion-pumps""#, r#""from": "guest""#)
        .replace(r#""to": "infusion-pumps""#, r#""to": "guest""#);
    let pumps_id = p2.segment_id("infusion-pumps").unwrap();
    assert!(dp.counters().keys().any(|k| k.src == pumps_id));
    let mut p3 = Policy::from_str(&removed, "p3.json".as_ref()).unwrap();
    dp.replace_policy(&p2, &mut p3).unwrap();
    assert_eq!(p3.segment_id("infusion-pumps"), None);
    assert!(
        !dp.counters()
            .keys()
            .any(|k| k.src == pumps_id || k.dst == pumps_id),
        "a removed segment's counters go with it"
    );
    check(
        &mut dp,
        &p3,
        "the server's answer once the pumps' segment is gone",
        &answer,
        false,
        "denied_default",
        "pis-servers",
        "guest",
    );
}

/// A segment pair with more compiled entries than a row holds keeps them
/// in the entry map: every port still gets its rule.
#[test]
fn a_pair_with_more_entries_than_a_row_holds() {
    require_root();
    let ports: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"from":"a","to":"b","proto":"tcp","ports":[{}],"action":"allow"}}"#,
                1001 + i
            )
        })
        .collect();
    let text = format!(
        r#"{{"version":1,"segments":[{{"name":"a"}},{{"name":"b"}}],
        "devices":[{{"name":"x","mac":"{PUMP1}","ipv4":"10.0.0.1","segment":"a"}},
                   {{"name":"y","mac":"{PIS}","ipv4":"10.0.0.2","segment":"b"}}],
        "rules":[{},{{"from":"a","to":"b","proto":"udp","action":"deny"}},
                 {{"from":"a","to":"b","action":"allow"}}]}}"#,
        ports.join(",")
    );
    let p = Policy::from_str(&text, "rows.json".as_ref()).unwrap();
    let c = compile(&p);
    let (a, b) = (p.segment_id("a").unwrap(), p.segment_id("b").unwrap());
    let row = c
        .rows
        .iter()
        .find(|(k, _)| (k.src, k.dst) == (a, b))
        .unwrap();
    assert_eq!(
        row.1.overflow, 1,
        "the pair's entries must overflow its row"
    );
    let mut dp = load(&p, MapSizes::default());
    let frame = |proto: u8, l4: Vec<u8>| {
        eth(
            mac(PIS),
            mac(PUMP1),
            &[],
            ETH_IP,
            &ipv4(
                v4("10.0.0.1"),
                v4("10.0.0.2"),
                proto,
                &l4,
                Frag::default(),
                0,
            ),
        )
    };
    for i in 0..10u16 {
        let o = dp.run(&frame(6, tcp(2000 + i, 1001 + i, TCP_SYN))).unwrap();
        assert_eq!((o.pass, o.rule), (true, Some(i as u32)), "tcp/{}", 1001 + i);
    }
    let o = dp.run(&frame(6, tcp(3000, 999, TCP_SYN))).unwrap();
    assert_eq!(
        (o.pass, o.rule),
        (true, Some(11)),
        "any other port: the any rule"
    );
    let o = dp.run(&frame(17, udp(3000, 1001, b"x"))).unwrap();
    assert_eq!(
        (o.pass, o.rule, reason_name(o.reason)),
        (false, Some(10), Some("denied_rule"))
    );
    let o = dp.run(&frame(47, vec![0; 8])).unwrap();
    assert_eq!((o.pass, o.rule), (true, Some(11)));
}

/// A first fragment continuing an established flow is judged without the
/// flow cache's probe (fragments are not probed): its outcome must not be
/// cached under the key of the packet probed before it. The long
/// differential run found this after four thousand policies.
#[test]
fn a_fragment_never_enters_the_flow_cache() {
    require_root();
    let p = care_unit();
    let mut dp = load(&p, MapSizes::default());
    let pump_to_pis = |sport: u16, dport: u16, flags: u8, frag: Frag| {
        eth(
            mac(PIS),
            mac(PUMP1),
            &[],
            ETH_IP,
            &ipv4(
                v4("10.10.0.11"),
                v4("10.50.0.10"),
                6,
                &tcp(sport, dport, flags),
                frag,
                0,
            ),
        )
    };
    let hl7 = pump_to_pis(40000, 2575, TCP_SYN, Frag::default());
    check(
        &mut dp,
        &p,
        "open",
        &hl7,
        true,
        "allowed",
        "infusion-pumps",
        "pis-servers",
    );
    // Same MACs, another direction key: denied, and cached as such.
    let https = pump_to_pis(40001, 443, TCP_SYN, Frag::default());
    check(
        &mut dp,
        &p,
        "https",
        &https,
        false,
        "denied_default",
        "infusion-pumps",
        "pis-servers",
    );
    let first_fragment = pump_to_pis(
        40000,
        2575,
        TCP_ACK,
        Frag {
            offset: 0,
            more: true,
            id: 7,
        },
    );
    check(
        &mut dp,
        &p,
        "fragment of the flow",
        &first_fragment,
        true,
        "allowed",
        "infusion-pumps",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "https again",
        &https,
        false,
        "denied_default",
        "infusion-pumps",
        "pis-servers",
    );
}
