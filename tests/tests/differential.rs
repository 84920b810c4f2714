//! The kernel against the reference model on generated policies and frames.
//! `ISPF_CASES` sets the number of frames (default 100000), `ISPF_SEED` the
//! seed (default: random, printed so a failure can be replayed).

use ispf::{
    datapath::{Datapath, Entry, MapSizes},
    policy::{Policy, PolicyDoc},
};
use std::collections::BTreeMap;

use ispf_common::{reason_name, CounterKey, CounterVal, VERDICT_PASS};
use ispf_tests::{
    feeds::{with_feeds, with_feeds_over},
    gen,
    model::Model,
    require_root,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

const FRAMES_PER_POLICY: usize = 100;

#[test]
fn kernel_agrees_with_reference_model() {
    require_root();
    let cases: usize = std::env::var("ISPF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seed = ispf_tests::gen::seed();
    eprintln!("differential test: {cases} cases");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut dp = Datapath::load(MapSizes::default()).expect("load datapath");
    let mut done = 0;
    let mut reasons = std::collections::BTreeMap::<&str, usize>::new();
    let mut policies = 0;
    let mut reloads = 0;
    let (mut decided, mut from_decided) = (0, 0);
    while done < cases {
        // Draw until the generator produces a policy without conflicts.
        let mut policy = loop {
            let v = gen::policy(&mut rng);
            let doc: PolicyDoc = serde_json::from_value(v).expect("generator writes the schema");
            if let Ok(p) = Policy::from_doc(doc) {
                break p;
            }
        };
        policies += 1;
        dp.reset_state().unwrap();
        let feed_set = gen::feeds(&mut rng);
        dp.apply(&with_feeds(&policy, &feed_set)).expect("apply");
        let mut model = Model::new(policy.doc.clone());
        model.set_feeds(&feed_set);
        let mut feeds_now = feed_set;
        let mut decided_macs: Vec<String> = Vec::new();
        let mut earlier: Vec<Vec<u8>> = Vec::new();
        // Counters must tell the same story as the verdicts: per (source,
        // destination, reason, verdict), what this policy's frames added.
        let mut before = dp.counters();
        let mut tally = Tally::new();
        for i in 0..FRAMES_PER_POLICY.min(cases - done) {
            // Now and then the policy changes under live flows and cached
            // verdicts, as a reload does.
            if i == FRAMES_PER_POLICY / 2 && rng.gen_bool(0.4) {
                let mut next = loop {
                    let v = gen::policy(&mut rng);
                    let doc: PolicyDoc = serde_json::from_value(v).expect("schema");
                    if let Ok(p) = Policy::from_doc(doc) {
                        break p;
                    }
                };
                // As the controller reloads: segment ids carried over,
                // flows (and counters) of removed segments ended.
                check_counters(&dp, &before, &tally, policies, seed);
                let next_feeds = gen::feeds(&mut rng);
                let gone = next.keep_ids(&policy.segment_ids());
                dp.apply(&with_feeds(&next, &next_feeds)).expect("reload");
                if !gone.is_empty() {
                    dp.end_segments(&gone).expect("end removed segments");
                }
                before = dp.counters();
                tally.clear();
                model.reload(next.doc.clone());
                model.set_feeds(&next_feeds);
                feeds_now = next_feeds;
                policy = next;
                reloads += 1;
            }
            // Later, runtime decisions over the file, applied as the
            // controller applies them: one generation of the file with the
            // decisions in it, the feeds still judged against the file
            // (the model applies them its own way).
            if i == FRAMES_PER_POLICY * 3 / 4 && rng.gen_bool(0.4) {
                let ds = gen::decisions(&mut rng, &policy.doc);
                // Decisions the controller would refuse (an address two
                // devices claim) are skipped.
                if let Some(enforced) = with_decisions(&policy, &ds) {
                    check_counters(&dp, &before, &tally, policies, seed);
                    dp.apply(&with_feeds_over(&policy, &enforced, &feeds_now))
                        .expect("decisions");
                    before = dp.counters();
                    tally.clear();
                    model.decide(ispf_tests::model::decisions::apply(&policy.doc, &ds));
                    decided_macs = ds.iter().map(|d| d.mac.clone()).collect();
                    policy = enforced;
                    decided += 1;
                }
            }
            let frame = gen::frame(&mut rng, &earlier);
            // Either entry point, on shared state: a flow may open through
            // TC and continue through XDP; both are one pipeline.
            let entry = if rng.gen_bool(0.5) {
                Entry::Xdp
            } else {
                Entry::Tc
            };
            let k = dp
                .run_on(entry, &frame)
                .unwrap_or_else(|e| panic!("test run via {entry:?} of {}: {e}", hex(&frame)));
            let m = model.judge(&frame);
            let kernel = (
                k.pass,
                reason_name(k.reason).unwrap(),
                policy.segment_name(k.src).to_owned(),
                policy.segment_name(k.dst).to_owned(),
                k.rule.map(|r| r as usize),
            );
            let expected = (m.pass, m.reason, m.src.clone(), m.dst.clone(), m.rule);
            assert_eq!(
                kernel,
                expected,
                "kernel via {entry:?} (left) and model (right) disagree on frame {i} of policy {policies} (ISPF_SEED={seed})\nframe: {}\npolicy now: {}",
                hex(&frame),
                serde_json::to_string(&policy.doc).unwrap()
            );
            *reasons.entry(m.reason).or_default() += 1;
            if frame.len() >= 12 && decided_macs.contains(&mac_of(&frame[6..12])) {
                from_decided += 1;
            }
            if frame.len() >= 14 {
                *tally
                    .entry((k.src, k.dst, k.reason, u8::from(!k.pass)))
                    .or_default() += 1;
            }
            earlier.push(frame);
            done += 1;
        }
        check_counters(&dp, &before, &tally, policies, seed);
    }
    eprintln!(
        "{done} cases over {policies} policies ({reloads} reloaded mid-sequence, {decided} given runtime decisions; {from_decided} frames sent by a decided MAC) agree; reasons seen: {reasons:?}"
    );
    if cases >= 10_000 {
        assert!(
            decided > 0 && from_decided > 0,
            "no generated case met a runtime decision"
        );
    }
    // The generator must reach every verdict reason the spec defines, or the
    // agreement above proves less than it claims.
    // (Every reason but the extension `internal_fault`, which needs a full
    // map and has its own kernel test.)
    let spec_reasons = ispf_common::REASON_NAMES
        .iter()
        .filter(|r| **r != "internal_fault");
    for r in spec_reasons {
        if cases >= 10_000 {
            assert!(reasons.contains_key(r), "no generated case produced `{r}`");
        }
    }
}

type Tally = BTreeMap<(u16, u16, u8, u8), u64>;

/// The counters added since `before`, by (source, destination, reason,
/// dropped), must be the verdicts tallied since then.
fn check_counters(
    dp: &Datapath,
    before: &BTreeMap<CounterKey, CounterVal>,
    tally: &Tally,
    policies: usize,
    seed: u64,
) {
    let mut counted = Tally::new();
    for (key, v) in dp.counters() {
        let earlier = before.get(&key).map_or(0, |b| b.packets);
        if v.packets > earlier {
            let dropped = u8::from(key.verdict != VERDICT_PASS);
            *counted
                .entry((key.src, key.dst, key.reason, dropped))
                .or_default() += v.packets - earlier;
        }
    }
    assert_eq!(
        &counted, tally,
        "counters (left) disagree with the verdicts (right) of policy {policies} (ISPF_SEED={seed})"
    );
}

fn mac_of(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The file with `ds` applied, as the controller's engine applies
/// decisions: on the file's device index where it can, else by validating
/// the whole document; `None` where the controller would refuse them.
fn with_decisions(file: &Policy, ds: &[ispf::decisions::Decision]) -> Option<Policy> {
    let index = ispf::policy::DeviceIndex::of(file);
    let file = std::sync::Arc::new(file.clone());
    let p = ispf::decisions::applied(&file, Some(&index), ds, 0).ok()?;
    Some(std::sync::Arc::unwrap_or_clone(p))
}
