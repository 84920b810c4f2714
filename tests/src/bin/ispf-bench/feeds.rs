//! Threat feeds at scale: a million-entry plain feed parsed, compiled and
//! applied with the headline policy (what a refresh of such a feed costs
//! the controller), and the per-packet cost of known flows and of first
//! packets with it loaded, against the same run's figures without it.

use std::{sync::Arc, time::Instant};

use anyhow::Result;
use ispf::{
    datapath::{Counts, Datapath, MapSizeRequest},
    feeds::{self, FeedSet},
    policy::{compile::compile, FeedAction, FeedDoc},
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::json;

use crate::{
    median,
    perpacket::{cost, first_packet_cost, Anchor},
    Bench,
};

/// A million lines: addresses in 100.64.0.0/10 and 2001:db8::/32 (none of
/// the corpus's), and one network in a hundred.
pub fn feed_text(lines: usize) -> String {
    let mut rng = StdRng::seed_from_u64(7);
    let mut s = String::with_capacity(lines * 16);
    for i in 0..lines {
        if i % 100 == 0 {
            s.push_str(&format!(
                "100.{}.{}.0/24\n",
                64 + rng.gen_range(0..64),
                rng.gen::<u8>()
            ));
        } else if i % 10 == 0 {
            s.push_str(&format!(
                "2001:db8:{:x}::{:x}\n",
                rng.gen::<u16>(),
                rng.gen::<u32>()
            ));
        } else {
            s.push_str(&format!(
                "100.{}.{}.{}\n",
                64 + rng.gen_range(0..64),
                rng.gen::<u8>(),
                rng.gen::<u8>()
            ));
        }
    }
    s
}

pub fn feeds(b: &mut Bench) -> Result<()> {
    let lines = if b.cfg.quick { 10_000 } else { 1_000_000 };
    eprintln!("feeds: {lines} entries with the headline policy");
    let text = feed_text(lines);
    let docs = vec![FeedDoc {
        name: "bench".into(),
        source: "/bench".into(),
        format: Default::default(),
        refresh_s: 300,
        action: FeedAction::Deny,
    }];
    let plain = compile(&b.headline);
    let mut sizes = MapSizeRequest::default().resolve(&Counts::of(&plain));
    sizes.feeds = sizes.feeds.max((lines * 3) as u32);
    let mut dp = Datapath::load(sizes)?;
    dp.apply(&plain)?;
    let t = Instant::now();
    dp.apply(&plain)?;
    let policy_only_ms = t.elapsed().as_secs_f64() * 1000.0;

    let t = Instant::now();
    let contents = feeds::plain::parse(&text);
    let parse_ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut set = FeedSet::default();
    set.feeds.insert("bench".into(), Arc::new(contents));
    let t2 = Instant::now();
    let compiled = compile(&b.headline).with_feeds(feeds::compile::compile(
        &set,
        &docs,
        &feeds::own::OwnSubnets::of(&b.headline),
    ));
    let compile_ms = t2.elapsed().as_secs_f64() * 1000.0;
    let t3 = Instant::now();
    dp.apply(&compiled)?;
    let apply_ms = t3.elapsed().as_secs_f64() * 1000.0;
    let total_ms = t.elapsed().as_secs_f64() * 1000.0;
    // A refresh replaces a generation that already holds the feed.
    let t4 = Instant::now();
    dp.apply(&compiled)?;
    let refresh_ms = t4.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "feeds: parse {parse_ms:.0} ms, compile {compile_ms:.0} ms, apply {apply_ms:.0} ms (policy alone {policy_only_ms:.0} ms); a refresh {refresh_ms:.0} ms"
    );

    let _anchor = Anchor::hold(dp.program_mut(), "ispfba3")?;
    let frames = &b.corpus;
    let (mut known, mut first) = (vec![], vec![]);
    for _ in 0..b.cfg.runs {
        known.push(cost(dp.program(), frames, b.cfg.repeat)?);
        dp.reset_state()?;
        first.push(first_packet_cost(dp.program(), frames)?);
    }
    let (ns, ns_first) = (median(known.clone()), median(first.clone()));
    eprintln!("feeds: {ns:.1} ns per packet of a known flow, first packet {ns_first:.0} ns");
    let full = lines == 1_000_000;
    let key = |k: &str, v: f64| (k.to_owned(), if full { v } else { f64::NAN });
    for (k, v) in [
        key("ns_ispf_feeds_1m", ns),
        key("ns_ispf_first_packet_feeds_1m", ns_first),
        key("ms_feed_load_1m", total_ms),
    ] {
        b.put(&k, v);
    }
    let ns_ispf = b
        .summary
        .get("ns_ispf")
        .and_then(|v| v.as_f64())
        .unwrap_or(f64::NAN);
    b.put(
        "ratio_feeds_1m_vs_ns_ispf",
        if full { ns / ns_ispf } else { f64::NAN },
    );
    b.results.insert(
        "feeds".into(),
        json!({
            "entries": lines,
            "parse_ms": parse_ms,
            "compile_ms": compile_ms,
            "apply_ms": apply_ms,
            "apply_policy_alone_ms": policy_only_ms,
            "refresh_apply_ms": refresh_ms,
            "known_runs_ns": known,
            "first_packet_runs_ns": first,
        }),
    );
    Ok(())
}
