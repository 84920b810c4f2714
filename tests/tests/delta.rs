//! The writer changes a generation slot in place: only entries that differ
//! between the policy the slot held and the next one are removed or
//! written. Through generated policies and feeds, one after another, the
//! maps must hold exactly what a datapath that writes each policy whole
//! holds, and judge generated frames exactly as it does. The reference is
//! adopted from its pins before every write, as a restarted controller
//! adopts: it knows nothing of what its slots hold, so it empties the slot
//! by scanning and writes the policy whole.

use ispf::{
    datapath::{Counts, Datapath, MapSizes},
    policy::{compile::compile, Policy, PolicyDoc},
};
use ispf_common::reason_name;
use ispf_tests::{feeds::with_feeds, gen, require_root};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Small maps: a datapath is loaded for every generation, and the
/// generated policies are small.
fn sizes() -> MapSizes {
    MapSizes {
        devices: 1024,
        policy: 4096,
        conntrack: 4096,
        fragments: 1024,
        counters: 4096,
        feeds: 4096,
    }
}

fn generated(rng: &mut StdRng) -> Policy {
    loop {
        let doc: PolicyDoc = serde_json::from_value(gen::policy(rng)).expect("schema");
        if let Ok(p) = Policy::from_doc(doc) {
            return p;
        }
    }
}

#[test]
fn changed_in_place_the_maps_hold_what_a_whole_write_holds() {
    require_root();
    let seed = ispf_tests::gen::seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut dp = Datapath::load(sizes()).expect("load");
    let pin = std::path::PathBuf::from("/sys/fs/bpf/ispf-test-delta");
    let _ = std::fs::remove_dir_all(&pin);
    ispf::system::ensure_bpffs(&pin).unwrap();
    drop(Datapath::load_pinned(sizes(), &pin).expect("load the reference"));
    let mut previous = generated(&mut rng);
    let mut previous_counts = Counts::default();
    let mut feeds = gen::feeds(&mut rng);
    // Compiled once per change of the feeds, shared by the generations
    // in between, as the controller shares them: the writer then skips
    // the slot's feed entries, which must be what the slot still holds.
    let mut feed_entries = with_feeds(&previous, &feeds).feeds;
    for g in 0..200 {
        // Mostly small changes, as runtime decisions make: a device moved,
        // added or removed; now and then a different policy altogether;
        // feeds changing by themselves.
        let mut next = if rng.gen_bool(0.2) {
            generated(&mut rng)
        } else {
            let mut doc = previous.doc.clone();
            let pick = rng.gen_range(0..doc.devices.len().max(1));
            match rng.gen_range(0..3) {
                0 if !doc.devices.is_empty() => {
                    doc.devices.remove(pick);
                }
                1 if !doc.devices.is_empty() => {
                    let segs: Vec<String> = doc.segments.iter().map(|s| s.name.clone()).collect();
                    doc.devices[pick].segment = segs[rng.gen_range(0..segs.len())].clone();
                }
                _ => {
                    if let Some(extra) = generated(&mut rng).doc.devices.first().cloned() {
                        doc.devices.push(extra);
                    }
                }
            }
            Policy::from_doc(doc).unwrap_or_else(|_| generated(&mut rng))
        };
        if rng.gen_bool(0.3) {
            feeds = gen::feeds(&mut rng);
            feed_entries = with_feeds(&next, &feeds).feeds;
        }
        next.keep_ids(&previous.segment_ids());
        let compiled = compile(&next).with_feeds(feed_entries.clone());
        dp.apply(&compiled).expect("apply in place");
        let mut whole = Datapath::adopt(&pin).expect("adopt the reference");
        whole.apply(&compiled).expect("apply whole");
        let (active, inactive) = dp.slot_counts().unwrap();
        let (want, _) = whole.slot_counts().unwrap();
        assert_eq!(
            active, want,
            "generation {g} (ISPF_SEED={seed}): entries of the written slot"
        );
        assert_eq!(
            inactive, previous_counts,
            "generation {g} (ISPF_SEED={seed}): the other slot is the previous generation's"
        );
        dp.reset_state().unwrap();
        whole.reset_state().unwrap();
        let mut earlier = Vec::new();
        for i in 0..20 {
            let frame = gen::frame(&mut rng, &earlier);
            let a = dp.run(&frame).expect("run");
            let b = whole.run(&frame).expect("run");
            assert_eq!(
                (a.pass, reason_name(a.reason), a.src, a.dst, a.rule),
                (b.pass, reason_name(b.reason), b.src, b.dst, b.rule),
                "generation {g}, frame {i} (ISPF_SEED={seed})"
            );
            earlier.push(frame);
        }
        previous_counts = active;
        previous = next;
    }
    std::fs::remove_dir_all(&pin).unwrap();
}
