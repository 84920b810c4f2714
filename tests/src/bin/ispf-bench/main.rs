//! `cargo xtask bench [--quick]`: measurements, not timed tests. Every
//! comparison is a ratio measured in the same run; every figure is a median
//! of several runs. Writes bench/results.json, bench/RESULTS.md and
//! bench/cost-vs-size.svg. Each section is a module that records its raw
//! figures and its `summary` keys.
//!
//! Method (see RESULTS.md for the numbers): per-packet cost is the mean
//! `BPF_PROG_TEST_RUN` duration over a corpus of distinct frames (JIT on,
//! run-time stats off), for ispf, an empty XDP program (the floor) and
//! Debian's xdp-filter; end to end, a live-frames generator in one network
//! namespace sends through a veth pair into the program under test in
//! another, and the receiver's XDP counters give the rate.

mod bulk;
mod control;
mod corpus;
mod feeds;
mod fleet;
mod identity;
mod inventory;
mod live;
mod memory;
mod packet;
mod perpacket;
mod report;
mod scan;

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{bail, Result};
use ispf::policy::Policy;
use ispf_tests::netns::*;
use serde_json::{json, Value};

pub struct Config {
    pub quick: bool,
    pub frames: usize,
    pub repeat: u32,
    pub runs: usize,
    pub headline_devices: usize,
    pub device_sizes: Vec<usize>,
    pub rule_sizes: Vec<usize>,
    pub apply_sizes: Vec<usize>,
    pub live_frames: u32,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// What the sections share and what they record.
pub struct Bench {
    pub cfg: Config,
    pub per_packet_only: bool,
    /// The headline policy (100k devices, 1k segment pairs) and its corpus.
    pub headline: Policy,
    pub corpus: Vec<Vec<u8>>,
    pub results: serde_json::Map<String, Value>,
    pub summary: serde_json::Map<String, Value>,
    pub ns_floor: f64,
    pub by_devices: BTreeMap<usize, f64>,
    pub by_rules: BTreeMap<usize, f64>,
}

impl Bench {
    /// Records a summary figure.
    pub fn put(&mut self, key: &str, v: f64) {
        self.summary.insert(key.into(), json!(v));
    }
}

const SECTIONS: &[&str] = &[
    "scan",
    "end-to-end",
    "control",
    "bulk",
    "inventory",
    "feeds",
    "identity",
    "fleet",
];

const USAGE: &str = "usage: ispf-bench [--quick] [--per-packet-only] [--only SECTION] [--out DIR]
  --quick            fewer frames, devices and runs: a check that it runs, not figures
  --per-packet-only  stop after the per-packet section (for profiling)
  --only SECTION     one section, its figures printed and nothing written; SECTION is
                     scan, end-to-end, control, bulk, inventory, feeds, identity or fleet
  --out DIR          where results.json, RESULTS.md and cost-vs-size.svg go (default: bench)
environment: ISPF_BENCH_DEVICES (the headline number of devices), ISPF_BENCH_RUNS (runs per figure)";

/// The command line, checked whole before anything runs: a mistyped flag
/// must not start a full run that overwrites the recorded results.
struct Args {
    quick: bool,
    per_packet_only: bool,
    only: Option<String>,
    out_dir: PathBuf,
}

fn args() -> Result<Option<Args>> {
    let mut a = Args {
        quick: false,
        per_packet_only: false,
        only: None,
        out_dir: PathBuf::from("bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--per-packet-only" => a.per_packet_only = true,
            "--out" => a.out_dir = PathBuf::from(value("--out")?),
            "--only" => {
                let s = value("--only")?;
                if !SECTIONS.contains(&s.as_str()) {
                    bail!("no section `{s}`: {}\n{USAGE}", SECTIONS.join(", "));
                }
                a.only = Some(s);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    Ok(Some(a))
}

fn main() -> Result<()> {
    let Some(Args {
        quick,
        per_packet_only,
        only,
        out_dir,
    }) = args()?
    else {
        return Ok(());
    };
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("benchmarks load XDP programs: run as root (cargo xtask bench does)");
    }
    let _alone = ispf_tests::exclusive::exclusive("the benchmark")?;
    let mut cfg = if quick {
        Config {
            quick,
            frames: 64,
            repeat: 50,
            runs: 1,
            headline_devices: 1000,
            device_sizes: vec![10, 1000],
            rule_sizes: vec![10, 100],
            apply_sizes: vec![1000],
            live_frames: 20_000,
        }
    } else {
        Config {
            quick,
            frames: 1080,
            repeat: 1000,
            runs: 5,
            headline_devices: 100_000,
            device_sizes: vec![10, 1000, 10_000, 100_000],
            rule_sizes: vec![10, 100, 1000, 10_000],
            apply_sizes: vec![1000, 10_000, 100_000, 1_000_000],
            live_frames: 2_000_000,
        }
    };
    // For profiling: the headline size and the number of runs.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    if let Some(d) = env("ISPF_BENCH_DEVICES") {
        cfg.headline_devices = d;
    }
    if let Some(r) = env("ISPF_BENCH_RUNS") {
        cfg.runs = r;
    }
    std::fs::create_dir_all(&out_dir)?;
    // xdp-filter (libxdp) pins under bpffs; a fresh machine may not have it.
    ispf::system::ensure_bpffs(std::path::Path::new("/sys/fs/bpf/ispf-bench"))?;
    if perpacket::bpf_stats_enabled() {
        eprintln!("warning: kernel.bpf_stats_enabled=1 adds ~70 ns per packet; turn it off for real figures");
    }
    let headline = corpus::synthetic_policy(cfg.headline_devices, 32, 1000)?;
    let frames = corpus::corpus(cfg.headline_devices, cfg.frames);
    let mut b = Bench {
        per_packet_only,
        headline,
        corpus: frames,
        results: serde_json::Map::new(),
        summary: serde_json::Map::new(),
        ns_floor: f64::NAN,
        by_devices: BTreeMap::new(),
        by_rules: BTreeMap::new(),
        cfg,
    };
    b.summary.insert("quick".into(), json!(b.cfg.quick));
    // For profiling: one section alone (`--only scan`), its figures printed.
    if let Some(only) = only {
        match only.as_str() {
            "scan" => scan::scan(&mut b)?,
            "end-to-end" => live::end_to_end(&mut b)?,
            "control" => control::control_plane(&mut b)?,
            "bulk" => bulk::bulk_tcp(&mut b)?,
            "inventory" => inventory::inventory(&mut b)?,
            "feeds" => feeds::feeds(&mut b)?,
            "identity" => identity::identity(&mut b)?,
            "fleet" => fleet::fleet(&mut b)?,
            other => unreachable!("section {other} checked with the arguments"),
        }
        println!("{}", serde_json::to_string_pretty(&b.summary)?);
        return Ok(());
    }
    perpacket::per_packet(&mut b)?;
    if b.per_packet_only {
        return Ok(());
    }
    perpacket::scale(&mut b)?;
    live::end_to_end(&mut b)?;
    scan::scan(&mut b)?;
    bulk::bulk_tcp(&mut b)?;
    control::control_plane(&mut b)?;
    inventory::inventory(&mut b)?;
    feeds::feeds(&mut b)?;
    identity::identity(&mut b)?;
    fleet::fleet(&mut b)?;
    let _ = sh(&["ip", "netns", "del", "ispfb-anchor"]);
    // libxdp (xdp-filter) leaves its empty pin directory behind.
    let _ = std::fs::remove_dir("/sys/fs/bpf/xdp");
    let kernel = String::from_utf8_lossy(
        &ispf_tests::programs::command("uname")
            .arg("-r")
            .output()?
            .stdout,
    )
    .trim()
    .to_owned();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    b.summary.insert("kernel".into(), json!(kernel));
    b.summary.insert("cpu".into(), json!(cpu));
    let summary = Value::Object(b.summary.clone());
    b.results.insert("summary".into(), summary.clone());
    let results = Value::Object(b.results.clone());
    // NaN is not JSON: it is written as null.
    let text = serde_json::to_string_pretty(&results)?;
    std::fs::write(out_dir.join("results.json"), &text)?;
    let md = report::markdown(&summary, &b.by_devices, &b.by_rules, &results);
    std::fs::write(out_dir.join("RESULTS.md"), &md)?;
    std::fs::write(
        out_dir.join("cost-vs-size.svg"),
        report::svg(&b.by_devices, &b.by_rules, b.ns_floor),
    )?;
    println!("{md}");
    Ok(())
}
