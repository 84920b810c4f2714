//! Per-packet cost with BPF_PROG_TEST_RUN (known flows and first packets)
//! against an empty program and xdp-filter, and its flatness in the number
//! of devices and rules.

use std::{collections::BTreeMap, time::Instant};

use anyhow::{bail, Context, Result};
use aya::programs::{TestRun, TestRunOptions, Xdp, XdpMode};
use ispf::{
    datapath::{Counts, Datapath, MapSizeRequest},
    policy::{compile::compile, Policy},
};
use ispf_tests::{netns::*, XDP_BASELINES};
use serde_json::json;

use crate::{
    corpus::{corpus, synthetic_policy},
    median, memory, Bench,
};

/// Mean ns per packet of `prog` over the corpus. Each frame runs once
/// unmeasured first, so the figure is the steady state of its flow (an
/// established allowed flow, or an already-reported denied one) rather than
/// the one-off cost of opening it.
pub fn cost<P>(prog: &P, corpus: &[Vec<u8>], repeat: u32) -> Result<f64>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = aya::programs::TestRunResult>,
{
    let mut total = 0f64;
    for f in corpus {
        let mut warm = TestRunOptions::new();
        warm.data_in = Some(f);
        prog.test_run(warm)?;
        let mut o = TestRunOptions::new();
        o.data_in = Some(f);
        o.repeat = repeat;
        let ns = prog.test_run(o)?.duration.as_nanos() as f64;
        if std::env::var_os("ISPF_BENCH_DEBUG").is_some() && ns > 300.0 {
            eprintln!(
                "{ns} ns: {}",
                f.iter()
                    .take(60)
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
        }
        total += ns;
    }
    Ok(total / corpus.len() as f64)
}

/// Mean ns of the first packet of each frame's flow: every frame run once,
/// unwarmed, on state that has never seen it (the caller resets state
/// between runs). This is the full pipeline (identity, spoofing, policy,
/// conntrack), which the steady-state figure of [`cost`] skips through the
/// flow caches. One packet per measurement includes the test-run timer's
/// own overhead, so compare it with the floor measured the same way.
pub fn first_packet_cost(prog: &Xdp, corpus: &[Vec<u8>]) -> Result<f64> {
    let mut total = 0f64;
    for f in corpus {
        let mut o = TestRunOptions::new();
        o.data_in = Some(f);
        total += prog.test_run(o)?.duration.as_nanos() as f64;
    }
    Ok(total / corpus.len() as f64)
}

/// Keeps a program attached natively to a spare veth while it is measured.
/// BPF_PROG_TEST_RUN swaps the program into the kernel's XDP dispatcher and
/// out again on every call, each swap waiting for an RCU grace period
/// (milliseconds); a program already held by an attachment skips that.
pub struct Anchor {
    link: String,
}

impl Anchor {
    pub fn hold(prog: &mut Xdp, link: &str) -> Result<Anchor> {
        let _ = sh(&["ip", "netns", "add", "ispfb-anchor"]);
        let _in = InNs::enter("ispfb-anchor");
        let _ = sh(&["ip", "link", "del", link]);
        must(&[
            "ip",
            "link",
            "add",
            link,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{link}p"),
        ]);
        must(&["ip", "link", "set", link, "up"]);
        prog.attach(link, XdpMode::Driver)?;
        Ok(Anchor {
            link: link.to_owned(),
        })
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        if !std::path::Path::new("/var/run/netns/ispfb-anchor").exists() {
            return;
        }
        {
            let _in = InNs::enter("ispfb-anchor");
            let _ = sh(&["ip", "link", "del", &self.link]);
        }
        // The last anchor out takes its namespace with it: a bench leaves
        // nothing behind.
        let left = sh(&[
            "ip",
            "-n",
            "ispfb-anchor",
            "-o",
            "link",
            "show",
            "type",
            "veth",
        ]);
        if left.status.success() && left.stdout.is_empty() {
            let _ = sh(&["ip", "netns", "del", "ispfb-anchor"]);
        }
    }
}

/// The datapath with `policy` applied, maps sized as `ispf run` sizes them;
/// returns the apply time in ms.
pub fn ispf_with(policy: &Policy) -> Result<(Datapath, f64)> {
    let c = compile(policy);
    let sizes = MapSizeRequest::default().resolve(&Counts::of(&c));
    let mut dp = Datapath::load(sizes)?;
    let t = Instant::now();
    dp.apply(&c)?;
    Ok((dp, t.elapsed().as_secs_f64() * 1000.0))
}

/// xdp-filter loaded on a veth in its own namespace, configured with the
/// closest equivalent of the benchmark policy (deny port 9, allow the rest).
struct XdpFilter {
    _topo: Topology,
    prog_id: u64,
}

impl Drop for XdpFilter {
    /// Unloaded before its namespace goes: xdp-filter keeps its maps
    /// pinned under /sys/fs/bpf until it is unloaded.
    fn drop(&mut self) {
        let _in = InNs::enter("ispfb-xf");
        let _ = ispf_tests::programs::command("xdp-filter")
            .args(["unload", "eth0"])
            .output();
        // libxdp's dispatcher directory, empty once nothing uses it (a
        // directory still in use is not removed).
        let _ = std::fs::remove_dir("/sys/fs/bpf/xdp");
    }
}

fn xdp_filter() -> Result<XdpFilter> {
    let mut topo = Topology::default();
    topo.bridge("ispfbxf0");
    topo.host(
        "ispfb-xf",
        "ispfbxf-p",
        "ispfbxf0",
        "02:00:00:00:aa:01",
        &["10.250.0.1/24"],
    );
    let _in = InNs::enter("ispfb-xf");
    let run = |args: &[&str]| -> Result<()> {
        let o = ispf_tests::programs::command("xdp-filter")
            .args(args)
            .output()
            .context("xdp-filter (Debian's xdp-tools)")?;
        if !o.status.success() {
            bail!(
                "xdp-filter {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(())
    };
    // Native, so that it holds its place in the XDP dispatcher (see Anchor).
    run(&["load", "-m", "native", "eth0"])?;
    run(&["port", "9"])?;
    run(&["ip", "172.17.0.1"])?;
    run(&["ether", "02:10:00:00:00:07"])?;
    let id = ispf::system::attached_xdp("eth0").context("xdp-filter's program id")?;
    Ok(XdpFilter {
        _topo: topo,
        prog_id: id,
    })
}

fn xdp_filter_cost(xf: &XdpFilter, corpus: &[Vec<u8>], repeat: u32) -> Result<f64> {
    let file = std::env::temp_dir().join("ispf-bench-frame.bin");
    let mut total = 0f64;
    for f in corpus {
        std::fs::write(&file, f)?;
        let o = ispf_tests::programs::command("bpftool")
            .args(["prog", "run", "id", &xf.prog_id.to_string(), "data_in"])
            .arg(&file)
            .args(["repeat", &repeat.to_string()])
            .output()
            .context("bpftool")?;
        let text =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        let ns = text
            .split("duration (average): ")
            .nth(1)
            .and_then(|r| r.split("ns").next())
            .and_then(|n| n.trim().parse::<f64>().ok())
            .with_context(|| format!("bpftool prog run said: {text}"))?;
        total += ns;
    }
    Ok(total / corpus.len() as f64)
}

pub fn bpf_stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|s| s.trim() == "1")
}

/// 1. Per-packet cost at the headline size: 1k segment pairs (32x32).
pub fn per_packet(b: &mut Bench) -> Result<()> {
    let cfg = &b.cfg;
    eprintln!(
        "per-packet cost: ispf at {} devices, 1024 segment pairs",
        cfg.headline_devices
    );
    let (mut dp, _) = ispf_with(&b.headline)?;
    let frames = &b.corpus;
    let mut floor_prog = aya::Ebpf::load(XDP_BASELINES)?;
    let empty: &mut Xdp = floor_prog
        .program_mut("xdp_empty")
        .context("xdp_empty")?
        .try_into()?;
    empty.load()?;
    let _a1 = Anchor::hold(dp.program_mut(), "ispfba0")?;
    let _a2 = Anchor::hold(empty, "ispfba1")?;
    let xf = xdp_filter();
    let (mut ispf_runs, mut floor_runs, mut xf_runs) = (vec![], vec![], vec![]);
    let (mut first_runs, mut first_floor_runs) = (vec![], vec![]);
    for _ in 0..cfg.runs {
        dp.reset_state()?;
        first_runs.push(first_packet_cost(dp.program(), frames)?);
        first_floor_runs.push(first_packet_cost(empty, frames)?);
    }
    for _ in 0..cfg.runs {
        ispf_runs.push(cost(dp.program(), frames, cfg.repeat)?);
        floor_runs.push(cost(empty, frames, cfg.repeat)?);
        if let Ok(xf) = &xf {
            xf_runs.push(xdp_filter_cost(xf, frames, cfg.repeat)?);
        }
    }
    let load_runs: Vec<f64> = (0..cfg.runs.min(5))
        .map(|_| memory::dependent_load_ns(memory::WORKING_SET_MB))
        .collect();
    let ns_load = median(load_runs.clone());
    let (ns_ispf, ns_floor) = (median(ispf_runs.clone()), median(floor_runs.clone()));
    let (ns_first, ns_first_floor) = (median(first_runs.clone()), median(first_floor_runs.clone()));
    let ns_xf = median(xf_runs.clone());
    // The same pipeline at TC, against an empty classifier.
    let tc_empty: &mut aya::programs::SchedClassifier = floor_prog
        .program_mut("tc_empty")
        .context("tc_empty")?
        .try_into()?;
    tc_empty.load()?;
    let (mut tc_runs, mut tc_floor_runs) = (vec![], vec![]);
    for _ in 0..cfg.runs {
        tc_runs.push(cost(dp.tc_program(), frames, cfg.repeat)?);
        tc_floor_runs.push(cost(tc_empty, frames, cfg.repeat)?);
    }
    let (ns_tc, ns_tc_floor) = (median(tc_runs.clone()), median(tc_floor_runs.clone()));
    if let Err(e) = &xf {
        eprintln!("warning: xdp-filter unavailable ({e:#}); its figures are NaN");
    }
    if b.per_packet_only {
        println!(
            "ispf {ns_ispf:.2} ns, floor {ns_floor:.2} ns, xdp-filter {ns_xf:.2} ns; first packet: ispf {ns_first:.2} ns, floor {ns_first_floor:.2} ns; a dependent load over {} MB: {ns_load:.1} ns, so the first packet is {:.1} loads",
            memory::WORKING_SET_MB,
            (ns_first - ns_first_floor) / ns_load
        );
    }
    b.results.insert(
        "per_packet".into(),
        json!({
            "frames": cfg.frames,
            "repeat": cfg.repeat,
            "runs_ns": { "ispf": ispf_runs, "floor": floor_runs, "xdp_filter": xf_runs },
            "first_packet_runs_ns": { "ispf": first_runs, "floor": first_floor_runs },
            "dependent_load_runs_ns": load_runs,
            "dependent_load_working_set_mb": memory::WORKING_SET_MB,
        }),
    );
    let quick = cfg.quick;
    b.ns_floor = ns_floor;
    b.put("ns_ispf", ns_ispf);
    b.put("ns_floor", ns_floor);
    b.put("ns_ispf_first_packet", ns_first);
    b.put("ns_floor_first_packet", ns_first_floor);
    b.put("ns_dependent_load", ns_load);
    b.put(
        "first_packet_net_in_dependent_loads",
        (ns_first - ns_first_floor) / ns_load,
    );
    b.put("ns_xdp_filter", ns_xf);
    b.put("ns_ispf_tc", ns_tc);
    b.put("ns_floor_tc", ns_tc_floor);
    b.put("ratio_vs_xdp_filter", ns_ispf / ns_xf);
    b.put(
        "net_ns_100k_devices",
        if quick { f64::NAN } else { ns_ispf - ns_floor },
    );
    Ok(())
}

/// 2. Scale: the per-packet cost at 10 to 100k devices and 10 to 10k rules.
pub fn scale(b: &mut Bench) -> Result<()> {
    let cfg = &b.cfg;
    let mut by_devices = BTreeMap::new();
    for &d in &cfg.device_sizes {
        eprintln!("scale: {d} devices");
        let p = synthetic_policy(d, 32, 100)?;
        let (mut dp, _) = ispf_with(&p)?;
        let _anchor = Anchor::hold(dp.program_mut(), "ispfba2")?;
        let c = corpus(d, cfg.frames.min(512));
        by_devices.insert(
            d,
            median(
                (0..cfg.runs)
                    .map(|_| cost(dp.program(), &c, cfg.repeat))
                    .collect::<Result<Vec<_>>>()?,
            ),
        );
    }
    let mut by_rules = BTreeMap::new();
    for &r in &cfg.rule_sizes {
        eprintln!("scale: {r} rules");
        let p = synthetic_policy(1000, 100, r)?;
        let (mut dp, _) = ispf_with(&p)?;
        let _anchor = Anchor::hold(dp.program_mut(), "ispfba2")?;
        let c = corpus(1000, cfg.frames.min(512));
        by_rules.insert(
            r,
            median(
                (0..cfg.runs)
                    .map(|_| cost(dp.program(), &c, cfg.repeat))
                    .collect::<Result<Vec<_>>>()?,
            ),
        );
    }
    let flat = |m: &BTreeMap<usize, f64>| {
        m.values().last().copied().unwrap_or(f64::NAN)
            / m.values().next().copied().unwrap_or(f64::NAN)
    };
    b.results.insert(
        "scale".into(),
        json!({ "ns_by_devices": by_devices, "ns_by_rules": by_rules }),
    );
    b.put("flatness_devices", flat(&by_devices));
    b.put("flatness_rules", flat(&by_rules));
    b.by_devices = by_devices;
    b.by_rules = by_rules;
    Ok(())
}
