//! Over a hundred thousand generations: every runtime decision and every
//! reload is one, so a busy hospital makes thousands a day. Counting once
//! degraded for good after a few thousand (counter slots were never given
//! back); this drives well past every point where slots run out and are
//! recycled, and checks each generation's verdict and, all along, that the
//! counters add up exactly — per rule — to the frames sent.

use std::collections::BTreeMap;

use ispf::{
    datapath::{Datapath, MapSizes},
    policy::{compile::compile, compile::Compiled, Policy},
};
use ispf_common::{reason_name, RULE_NONE};
use ispf_tests::{care_unit::*, frames::*, require_root};

/// Distinct deciding rules: generation `g` is decided by rule `g % RULES`
/// (odd, so each rule meets both generation slots): a thousand counter keys
/// take turns in far fewer slots.
const RULES: usize = 499;
/// Counter slots: small, so that slots run out and are recycled every few
/// dozen generations instead of every few thousand.
const SLOTS: u32 = 256;

fn policies() -> Vec<(Policy, Compiled)> {
    (0..RULES)
        .map(|i| {
            // `i` rules that never match a -> b come first.
            let padding: Vec<String> = (0..i)
                .map(|k| {
                    format!(
                        r#"{{"from":"c","to":"c","proto":"udp","ports":[{}],"action":"allow"}}"#,
                        1000 + k
                    )
                })
                .collect();
            let text = format!(
                r#"{{"version":1,
                "segments":[{{"name":"a"}},{{"name":"b"}},{{"name":"c"}}],
                "devices":[{{"name":"ws","mac":"{WS}","ipv4":"10.1.0.1","segment":"a"}},
                           {{"name":"srv","mac":"{PIS}","ipv4":"10.2.0.1","segment":"b"}}],
                "rules":[{}{}{{"from":"a","to":"b","proto":"tcp","ports":[443],"action":"allow"}}]}}"#,
                padding.join(","),
                if i > 0 { "," } else { "" }
            );
            let p = Policy::from_str(&text, "g.json".as_ref()).unwrap();
            let c = compile(&p);
            (p, c)
        })
        .collect()
}

fn syn(sport: u16) -> Vec<u8> {
    eth(
        mac(PIS),
        mac(WS),
        &[],
        ETH_IP,
        &ipv4(
            v4("10.1.0.1"),
            v4("10.2.0.1"),
            6,
            &tcp(sport, 443, TCP_SYN),
            Frag::default(),
            0,
        ),
    )
}

#[test]
fn verdicts_and_counters_hold_over_100k_generations() {
    require_root();
    let generations: usize = std::env::var("ISPF_GENERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let ps = policies();
    let mut dp = Datapath::load(MapSizes {
        counters: SLOTS,
        ..MapSizes::default()
    })
    .unwrap();
    let (a, b) = (
        ps[0].0.segment_id("a").unwrap(),
        ps[0].0.segment_id("b").unwrap(),
    );
    let mut sent = vec![0u64; RULES];
    let started = std::time::Instant::now();
    for g in 0..generations {
        let i = g % RULES;
        let (p, c) = &ps[i];
        dp.apply(c).unwrap();
        let o = dp.run(&syn(1024 + (g % 60000) as u16)).unwrap();
        assert_eq!(
            (o.pass, reason_name(o.reason).unwrap(), o.src, o.dst, o.rule),
            (true, "allowed", a, b, Some(p.rules.len() as u32 - 1)),
            "generation {}",
            dp.epoch()
        );
        assert_eq!(o.epoch, dp.epoch());
        sent[i] += 1;
        if g % 2000 == 1999 || g + 1 == generations {
            let mut counted = BTreeMap::<u32, u64>::new();
            for (k, v) in dp.counters() {
                assert!(k.src == a && k.dst == b && k.rule != RULE_NONE, "{k:?}");
                *counted.entry(k.rule).or_default() += v.packets;
            }
            // Rule `i` of policy `i` sits at index `i`.
            let expected: BTreeMap<u32, u64> = sent
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(r, n)| (r as u32, *n))
                .collect();
            assert_eq!(
                counted,
                expected,
                "counters disagree with the frames after generation {}",
                dp.epoch()
            );
        }
    }
    let s = dp.stats();
    eprintln!(
        "{generations} generations in {:?}; {} counter slots recycled, {} in use",
        started.elapsed(),
        s.meta().recycled,
        s.counter_slots_in_use()
    );
    assert!(
        s.meta().recycled > generations as u64 / 4,
        "slots were recycled only {} times: the run did not test recycling",
        s.meta().recycled
    );
}
