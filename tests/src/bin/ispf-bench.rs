//! `cargo xtask bench [--quick]`: measurements, not timed tests. Every
//! comparison is a ratio measured in the same run; every figure is a median
//! of several runs. Writes bench/results.json, bench/RESULTS.md and
//! bench/cost-vs-size.svg.
//!
//! Method (see RESULTS.md for the numbers): per-packet cost is the mean
//! `BPF_PROG_TEST_RUN` duration over a corpus of distinct frames (JIT on,
//! run-time stats off), for ispf, an empty XDP program (the floor) and
//! Debian's xdp-filter; end to end, a live-frames generator in one network
//! namespace sends through a veth pair into the program under test in
//! another, and the receiver's XDP counters give the rate.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use ispf::{
    datapath::{Datapath, MapSizes},
    policy::{compile::compile, Policy, PolicyDoc},
};
use ispf_tests::{frames::*, netns::*, XDP_BASELINES};
use serde_json::{json, Value};

struct Config {
    quick: bool,
    frames: usize,
    repeat: u32,
    runs: usize,
    headline_devices: usize,
    device_sizes: Vec<usize>,
    rule_sizes: Vec<usize>,
    apply_sizes: Vec<usize>,
    live_frames: u32,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// A synthetic hospital: `devices` devices over `segments` segments, and
/// `rules` rules between segment pairs with destination ports.
fn synthetic_policy(devices: usize, segments: usize, rules: usize) -> Result<Policy> {
    let mut segs = Vec::new();
    for s in 0..segments {
        segs.push(json!({ "name": format!("seg-{s}"), "vlans": [100 + s], "subnets": [format!("10.{}.0.0/16", 100 + s % 100)] }));
    }
    // Subnets must be unique: keep one per segment only when it is unique.
    for seg in segs.iter_mut().skip(100) {
        seg.as_object_mut().expect("object").remove("subnets");
    }
    let mut devs = Vec::with_capacity(devices);
    for i in 0..devices {
        let seg = i % segments;
        devs.push(json!({
            "name": format!("d{i}"),
            "mac": mac_of(i),
            "ipv4": v4_of(i).to_string(),
            "ipv6": v6_of(i).to_string(),
            "segment": format!("seg-{seg}"),
        }));
    }
    let mut rs = Vec::with_capacity(rules);
    'outer: for p in 0.. {
        for a in 0..segments {
            for b in 0..segments {
                if rs.len() >= rules {
                    break 'outer;
                }
                let port = 1000 + (p * 7 + a + b) % 60000;
                rs.push(json!({
                    "from": format!("seg-{a}"), "to": format!("seg-{b}"),
                    "proto": if (a + b + p) % 2 == 0 { "tcp" } else { "udp" },
                    "ports": [port as u16], "action": if (a * 31 + b + p) % 3 == 0 { "deny" } else { "allow" },
                }));
            }
        }
    }
    // Make the benchmark's own traffic meet rules: tcp/udp 2575 and icmp
    // between every pair of the first segments are allowed.
    rs.push(json!({ "from": "*", "to": "*", "proto": "tcp", "ports": [2575], "action": "allow" }));
    rs.push(json!({ "from": "*", "to": "*", "proto": "icmp", "action": "allow" }));
    let doc = json!({ "version": 1, "defaults": { "default_action": "deny" }, "segments": segs, "devices": devs, "rules": rs });
    let doc: PolicyDoc = serde_json::from_value(doc)?;
    Policy::from_doc(doc).map_err(|p| anyhow::anyhow!("synthetic policy invalid: {}", p[0]))
}

fn mac_of(i: usize) -> String {
    format!(
        "02:10:{:02x}:{:02x}:{:02x}:{:02x}",
        (i >> 24) & 0xff,
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}
fn mac_bytes(i: usize) -> Mac {
    [
        0x02,
        0x10,
        (i >> 24) as u8,
        (i >> 16) as u8,
        (i >> 8) as u8,
        i as u8,
    ]
}
fn v4_of(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 100 + ((i >> 16) % 100) as u8, (i >> 8) as u8, i as u8)
}
fn v6_of(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, (i >> 16) as u16, i as u16)
}

/// `n` distinct frames: IPv4/IPv6 x TCP/UDP/ICMP x 0/1/2 VLAN tags x
/// allowed/denied x known/unknown devices, over many addresses so the
/// maps are not always hot.
fn corpus(devices: usize, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    let mut k = 0usize;
    while out.len() < n {
        let i = (k * 7919) % devices;
        let j = (k * 104_729 + 1) % devices;
        let known = k % 8 != 7; // one in eight misses every device map
        let (src, dst) = if known {
            (i, j)
        } else {
            (devices + k, devices + k + 1)
        };
        let vlans: &[u16] = match k % 3 {
            0 => &[],
            1 => &[100 + (src % 50) as u16],
            _ => &[300, 100 + (src % 50) as u16],
        };
        let allowed = k.is_multiple_of(2);
        let dport = if allowed { 2575 } else { 9 };
        let l4 = |proto: u8| match proto {
            6 => tcp(40000 + (k % 1000) as u16, dport, TCP_SYN),
            17 => udp(40000 + (k % 1000) as u16, dport, b"bench"),
            _ => icmp(if proto == 1 { 8 } else { 128 }, k as u16),
        };
        let frame = match k % 6 {
            0..=2 => {
                let proto = [6u8, 17, 1][k % 3];
                let (s, d) = if known {
                    (v4_of(src), v4_of(dst))
                } else {
                    (
                        Ipv4Addr::new(172, 16, (k >> 8) as u8, k as u8),
                        Ipv4Addr::new(172, 17, 0, 1),
                    )
                };
                eth(
                    mac_bytes(dst),
                    mac_bytes(src),
                    vlans,
                    ETH_IP,
                    &ipv4(
                        s.octets(),
                        d.octets(),
                        proto,
                        &l4(proto),
                        Frag::default(),
                        0,
                    ),
                )
            }
            _ => {
                let proto = [6u8, 17, 58][k % 3];
                let (s, d) = if known {
                    (v6_of(src), v6_of(dst))
                } else {
                    (
                        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, k as u16),
                        Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
                    )
                };
                eth(
                    mac_bytes(dst),
                    mac_bytes(src),
                    vlans,
                    ETH_IPV6,
                    &ipv6(s.octets(), d.octets(), &[], proto, &l4(proto)),
                )
            }
        };
        out.push(frame);
        k += 1;
    }
    out
}

/// Mean ns per packet of `prog` over the corpus. Each frame runs once
/// unmeasured first, so the figure is the steady state of its flow (an
/// established allowed flow, or an already-reported denied one) rather than
/// the one-off cost of opening it.
fn cost(prog: &Xdp, corpus: &[Vec<u8>], repeat: u32) -> Result<f64> {
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
fn first_packet_cost(prog: &Xdp, corpus: &[Vec<u8>]) -> Result<f64> {
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
struct Anchor {
    link: String,
}

impl Anchor {
    fn hold(prog: &mut Xdp, link: &str) -> Result<Anchor> {
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
        let _in = InNs::enter("ispfb-anchor");
        let _ = sh(&["ip", "link", "del", &self.link]);
    }
}

fn ispf_with(policy: &Policy) -> Result<(Datapath, f64)> {
    let mut dp = Datapath::load(MapSizes {
        devices: 262_144,
        ..MapSizes::default()
    })?;
    let t = Instant::now();
    dp.apply(&compile(policy))?;
    Ok((dp, t.elapsed().as_secs_f64() * 1000.0))
}

/// xdp-filter loaded on a veth in its own namespace, configured with the
/// closest equivalent of the benchmark policy (deny port 9, allow the rest).
struct XdpFilter {
    _topo: Topology,
    prog_id: u64,
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

fn bpf_stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|s| s.trim() == "1")
}

/// veth xdp counters of `iface` in namespace `ns`.
fn veth_xdp(ns: &str, iface: &str) -> (u64, u64) {
    let o = in_ns(ns, &["ethtool", "-S", iface]);
    let mut packets = 0;
    let mut drops = 0;
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let Some((k, v)) = l.trim().split_once(':') else {
            continue;
        };
        let v: u64 = v.trim().parse().unwrap_or(0);
        if k.ends_with("_xdp_packets") {
            packets += v;
        } else if k.ends_with("_xdp_drops") {
            drops += v;
        }
    }
    (packets, drops)
}

/// Live-frames generation through a veth pair into the program under test;
/// returns packets per second the receiver's XDP program handled.
fn live_rate(attach: &mut dyn FnMut(&str) -> Result<()>, frame: &[u8], count: u32) -> Result<f64> {
    live_rate_with(attach, &mut |_| {}, frame, count)
}

/// As [`live_rate`], with `cleanup` run inside the receiver's namespace
/// before it is deleted (for receivers that leave pins behind).
fn live_rate_with(
    attach: &mut dyn FnMut(&str) -> Result<()>,
    cleanup: &mut dyn FnMut(&str),
    frame: &[u8],
    count: u32,
) -> Result<f64> {
    let mut topo = Topology::default();
    topo.bridge("ispfblv0");
    // Generator and receiver as a direct veth pair across two namespaces.
    let _ = sh(&["ip", "netns", "del", "ispfb-gen"]);
    let _ = sh(&["ip", "netns", "del", "ispfb-dut"]);
    must(&["ip", "netns", "add", "ispfb-gen"]);
    must(&["ip", "netns", "add", "ispfb-dut"]);
    must(&[
        "ip",
        "link",
        "add",
        "gen0",
        "netns",
        "ispfb-gen",
        "type",
        "veth",
        "peer",
        "name",
        "dut0",
        "netns",
        "ispfb-dut",
    ]);
    must(&[
        "ip",
        "netns",
        "exec",
        "ispfb-gen",
        "ip",
        "link",
        "set",
        "gen0",
        "up",
    ]);
    must(&[
        "ip",
        "netns",
        "exec",
        "ispfb-dut",
        "ip",
        "link",
        "set",
        "dut0",
        "up",
    ]);
    let result = (|| -> Result<f64> {
        {
            let _in = InNs::enter("ispfb-dut");
            attach("dut0")?;
        }
        let _in = InNs::enter("ispfb-gen");
        let mut gen = aya::Ebpf::load(XDP_BASELINES)?;
        let tx: &mut Xdp = gen.program_mut("xdp_tx").context("xdp_tx")?.try_into()?;
        tx.load()?;
        // The generator needs an XDP program on its own side too, so the
        // veth runs NAPI for the frames bounced back (none here).
        tx.attach("gen0", XdpMode::Driver)?;
        // SAFETY: NUL-terminated literal.
        let ifindex = unsafe { libc::if_nametoindex(c"gen0".as_ptr()) };
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        // Size the run by time, not count: a slow receiver (nftables with
        // thousands of linear rules) would otherwise take minutes.
        let burst = |n: u32| -> Result<f64> {
            let before = veth_xdp("ispfb-dut", "dut0");
            let t = Instant::now();
            let mut o = TestRunOptions::new();
            o.data_in = Some(frame);
            o.ctx_in = Some(&ctx);
            o.repeat = n;
            o.attrs = TestRunAttrs::new().xdp_live_frames(64);
            tx.test_run(o)?;
            let secs = t.elapsed().as_secs_f64();
            std::thread::sleep(Duration::from_millis(50));
            let after = veth_xdp("ispfb-dut", "dut0");
            Ok((after.0 - before.0) as f64 / secs)
        };
        let estimate = burst(count.min(20_000))?;
        let n = ((estimate * 1.0) as u32).clamp(count.min(20_000), count);
        burst(n)
    })();
    {
        let _in = InNs::enter("ispfb-dut");
        cleanup("dut0");
    }
    let _ = sh(&["ip", "netns", "del", "ispfb-gen"]);
    let _ = sh(&["ip", "netns", "del", "ispfb-dut"]);
    drop(topo);
    result
}

fn main() -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("benchmarks load XDP programs: run as root (cargo xtask bench does)");
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // For profiling the datapath: stop after the per-packet section.
    let per_packet_only = args.iter().any(|a| a == "--per-packet-only");
    let out_dir = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("bench"));
    let cfg = if quick {
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
            apply_sizes: vec![1000, 10_000, 100_000],
            live_frames: 2_000_000,
        }
    };
    std::fs::create_dir_all(&out_dir)?;
    // xdp-filter (libxdp) pins under bpffs; a fresh machine may not have it.
    ispf::system::ensure_bpffs(std::path::Path::new("/sys/fs/bpf/ispf-bench"))?;
    if bpf_stats_enabled() {
        eprintln!("warning: kernel.bpf_stats_enabled=1 adds ~70 ns per packet; turn it off for real figures");
    }
    let mut results = serde_json::Map::new();

    // 1. Per-packet cost at the headline size: 1k segment pairs (32x32).
    eprintln!(
        "per-packet cost: ispf at {} devices, 1024 segment pairs",
        cfg.headline_devices
    );
    let headline = synthetic_policy(cfg.headline_devices, 32, 1000)?;
    let (dp, _) = ispf_with(&headline)?;
    let corpus_frames = corpus(cfg.headline_devices, cfg.frames);
    let mut floor_prog = aya::Ebpf::load(XDP_BASELINES)?;
    let empty: &mut Xdp = floor_prog
        .program_mut("xdp_empty")
        .context("xdp_empty")?
        .try_into()?;
    empty.load()?;
    let mut dp = dp;
    let _a1 = Anchor::hold(dp.program_mut(), "ispfba0")?;
    let _a2 = Anchor::hold(empty, "ispfba1")?;
    let xf = xdp_filter();
    let (mut ispf_runs, mut floor_runs, mut xf_runs) = (vec![], vec![], vec![]);
    let (mut first_runs, mut first_floor_runs) = (vec![], vec![]);
    for _ in 0..cfg.runs {
        dp.reset_state()?;
        first_runs.push(first_packet_cost(dp.program(), &corpus_frames)?);
        first_floor_runs.push(first_packet_cost(empty, &corpus_frames)?);
    }
    for _ in 0..cfg.runs {
        ispf_runs.push(cost(dp.program(), &corpus_frames, cfg.repeat)?);
        floor_runs.push(cost(empty, &corpus_frames, cfg.repeat)?);
        if let Ok(xf) = &xf {
            xf_runs.push(xdp_filter_cost(xf, &corpus_frames, cfg.repeat)?);
        }
    }
    let (ns_ispf, ns_floor) = (median(ispf_runs.clone()), median(floor_runs.clone()));
    let (ns_first, ns_first_floor) = (median(first_runs.clone()), median(first_floor_runs.clone()));
    let ns_xf = median(xf_runs.clone());
    if let Err(e) = &xf {
        eprintln!("warning: xdp-filter unavailable ({e:#}); its figures are NaN");
    }
    drop(xf);
    drop(_a1);
    drop(dp);
    if per_packet_only {
        println!(
            "ispf {ns_ispf:.2} ns, floor {ns_floor:.2} ns, xdp-filter {ns_xf:.2} ns; first packet: ispf {ns_first:.2} ns, floor {ns_first_floor:.2} ns"
        );
        return Ok(());
    }
    results.insert(
        "per_packet".into(),
        json!({
            "frames": cfg.frames,
            "repeat": cfg.repeat,
            "runs_ns": { "ispf": ispf_runs, "floor": floor_runs, "xdp_filter": xf_runs },
            "first_packet_runs_ns": { "ispf": first_runs, "floor": first_floor_runs },
        }),
    );

    // 2. Scale.
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
    results.insert(
        "scale".into(),
        json!({ "ns_by_devices": by_devices, "ns_by_rules": by_rules }),
    );

    // 3. End to end on veth: a denied frame, dropped by each receiver.
    eprintln!("end to end on veth ({} frames per run)", cfg.live_frames);
    let denied = corpus_frames
        .iter()
        .find(|f| f.len() > 40 && f[12..14] == [0x08, 0x00] && f[36..38] == [0, 9])
        .cloned()
        .unwrap_or_else(|| corpus_frames[1].clone());
    let live = |attach: &mut dyn FnMut(&str) -> Result<()>| -> Result<f64> {
        Ok(median(
            (0..cfg.runs)
                .map(|_| live_rate(attach, &denied, cfg.live_frames))
                .collect::<Result<Vec<_>>>()?,
        ))
    };
    let mut baselines = aya::Ebpf::load(XDP_BASELINES)?;
    let drop_prog: &mut Xdp = baselines
        .program_mut("xdp_drop")
        .context("xdp_drop")?
        .try_into()?;
    drop_prog.load()?;
    let pps_ceiling = live(&mut |iface| {
        drop_prog.attach(iface, XdpMode::Driver)?;
        Ok(())
    })?;
    let (mut dp_live, _) = ispf_with(&headline)?;
    let pps_ispf = live(&mut |iface| {
        dp_live.program_mut().attach(iface, XdpMode::Driver)?;
        Ok(())
    })?;
    drop(dp_live);
    // xdp-filter with the closest equivalent rule: deny the frame's port.
    let pps_xf = median(
        (0..cfg.runs)
            .map(|_| {
                live_rate_with(
                    &mut |iface| {
                        let o = ispf_tests::programs::command("xdp-filter")
                            .args(["load", "-m", "native", iface])
                            .output()?;
                        if !o.status.success() {
                            bail!("xdp-filter load: {}", String::from_utf8_lossy(&o.stderr));
                        }
                        ispf_tests::programs::command("xdp-filter")
                            .args(["port", "9"])
                            .output()?;
                        Ok(())
                    },
                    &mut |iface| {
                        let _ = ispf_tests::programs::command("xdp-filter")
                            .args(["unload", iface])
                            .output();
                    },
                    &denied,
                    cfg.live_frames,
                )
            })
            .collect::<Result<Vec<_>>>()
            .unwrap_or_else(|e| {
                eprintln!("warning: xdp-filter end to end failed: {e:#}");
                vec![]
            }),
    );
    // nftables on a bridge: XDP only passes, the bridge forward hook drops.
    let nft_rules = |n: usize, set: bool| -> String {
        let mut r = String::from("table bridge ispfbench {\n");
        if set {
            let elems: Vec<String> = (0..n)
                .map(|i| (10 + i).to_string())
                .chain(["9".to_owned()])
                .collect();
            r.push_str(&format!(
                "  set deny {{ type inet_service; elements = {{ {} }} }}\n",
                elems.join(", ")
            ));
            r.push_str("  chain forward { type filter hook forward priority 0; policy accept;\n    th dport @deny counter drop\n  }\n");
        } else {
            r.push_str("  chain forward { type filter hook forward priority 0; policy accept;\n");
            for i in 0..n {
                r.push_str(&format!("    th dport {} counter drop\n", 10 + i));
            }
            r.push_str("    th dport 9 counter drop\n  }\n");
        }
        r.push_str("}\n");
        r
    };
    let nft = |rules: String| -> f64 {
        let mut pass_prog = aya::Ebpf::load(XDP_BASELINES).expect("baselines");
        let mut go = || -> Result<f64> {
            let pass: &mut Xdp = pass_prog
                .program_mut("xdp_empty")
                .context("xdp_empty")?
                .try_into()?;
            pass.load()?;
            Ok(median(
                (0..cfg.runs)
                    .map(|_| {
                        live_rate(
                            &mut |iface| {
                                must(&["ip", "link", "add", "nbr0", "type", "bridge"]);
                                must(&[
                                    "ip", "link", "add", "nout0", "type", "veth", "peer", "name",
                                    "nout1",
                                ]);
                                must(&["ip", "link", "set", "nout0", "master", "nbr0", "up"]);
                                must(&["ip", "link", "set", "nout1", "up"]);
                                must(&["ip", "link", "set", iface, "master", "nbr0"]);
                                must(&["ip", "link", "set", "nbr0", "up"]);
                                let _ = sh(&[
                                    "sysctl",
                                    "-qw",
                                    "net.bridge.bridge-nf-call-iptables=0",
                                    "net.bridge.bridge-nf-call-ip6tables=0",
                                ]);
                                let file = std::env::temp_dir().join("ispf-bench.nft");
                                std::fs::write(&file, &rules)?;
                                let o = ispf_tests::programs::command("nft")
                                    .arg("-f")
                                    .arg(&file)
                                    .output()
                                    .context("nft (Debian's nftables)")?;
                                if !o.status.success() {
                                    bail!("nft: {}", String::from_utf8_lossy(&o.stderr));
                                }
                                pass.attach(iface, XdpMode::Driver)?;
                                Ok(())
                            },
                            &denied,
                            cfg.live_frames,
                        )
                    })
                    .collect::<Result<Vec<_>>>()?,
            ))
        };
        go().unwrap_or_else(|e| {
            eprintln!("warning: nftables end to end failed: {e:#}");
            f64::NAN
        })
    };
    let linear_n = if cfg.quick { 100 } else { 10_000 };
    eprintln!("end to end: nftables with a set, and {linear_n} linear rules");
    let pps_nft_sets = nft(nft_rules(linear_n, true));
    let pps_nft_linear = nft(nft_rules(linear_n, false));
    results.insert(
        "end_to_end_veth".into(),
        json!({
            "frames_per_run": cfg.live_frames,
            "frame": "IPv4 TCP SYN to a denied port, dropped by every receiver",
            "nft_linear_rules": linear_n,
            "pps": { "xdp_drop_ceiling": pps_ceiling, "ispf": pps_ispf, "xdp_filter": pps_xf, "nft_sets": pps_nft_sets, "nft_linear": pps_nft_linear },
        }),
    );

    // 4. Control plane.
    let mut apply = BTreeMap::new();
    let mut reload = BTreeMap::new();
    for &d in &cfg.apply_sizes {
        eprintln!("control plane: {d} devices");
        let p = synthetic_policy(d, 32, 1000)?;
        let t = Instant::now();
        let compiled = compile(&p);
        let compile_ms = t.elapsed().as_secs_f64() * 1000.0;
        let mut dp = Datapath::load(MapSizes {
            devices: 262_144,
            ..MapSizes::default()
        })?;
        let t = Instant::now();
        dp.apply(&compiled)?;
        let apply_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        dp.apply(&compiled)?;
        let reload_ms = t.elapsed().as_secs_f64() * 1000.0;
        apply.insert(d, json!({ "compile_ms": compile_ms, "apply_ms": apply_ms, "entries": compiled.entry_count() }));
        reload.insert(d, reload_ms);
    }
    results.insert(
        "control_plane".into(),
        json!({ "apply": apply, "reload_ms": reload }),
    );

    drop(_a2);
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
    let apply_100k = apply
        .get(&100_000)
        .and_then(|v| v["apply_ms"].as_f64())
        .unwrap_or(f64::NAN);
    let summary = json!({
        "quick": cfg.quick,
        "ns_ispf": ns_ispf,
        "ns_floor": ns_floor,
        "ns_ispf_first_packet": ns_first,
        "ns_floor_first_packet": ns_first_floor,
        "ns_xdp_filter": ns_xf,
        "ratio_vs_xdp_filter": ns_ispf / ns_xf,
        "net_ns_100k_devices": if cfg.quick { f64::NAN } else { ns_ispf - ns_floor },
        "flatness_devices": flat(&by_devices),
        "flatness_rules": flat(&by_rules),
        "mpps_ceiling": pps_ceiling / 1e6,
        "mpps_ispf": pps_ispf / 1e6,
        "mpps_xdp_filter": pps_xf / 1e6,
        "mpps_nft_sets": pps_nft_sets / 1e6,
        "mpps_nft_linear_10k": pps_nft_linear / 1e6,
        "ratio_vs_nft_sets": pps_ispf / pps_nft_sets,
        "ratio_vs_nft_linear_10k": pps_ispf / pps_nft_linear,
        "apply_ms_100k_devices": apply_100k,
        "kernel": kernel,
        "cpu": cpu,
    });
    results.insert("summary".into(), summary.clone());
    let results = Value::Object(results);
    // NaN is not JSON: write it as null.
    let text = serde_json::to_string_pretty(&results)?;
    std::fs::write(out_dir.join("results.json"), &text)?;
    std::fs::write(
        out_dir.join("RESULTS.md"),
        markdown(&summary, &by_devices, &by_rules, &results),
    )?;
    std::fs::write(
        out_dir.join("cost-vs-size.svg"),
        svg(&by_devices, &by_rules, ns_floor),
    )?;
    println!("{}", markdown(&summary, &by_devices, &by_rules, &results));
    Ok(())
}

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.is_finite() => format!("{x:.2}"),
        _ => "n/a".into(),
    }
}

fn markdown(
    s: &Value,
    dev: &BTreeMap<usize, f64>,
    rules: &BTreeMap<usize, f64>,
    r: &Value,
) -> String {
    let mut m = String::new();
    m.push_str(&format!(
        "# ispf benchmark results{}\n\nMeasured on kernel `{}`, CPU `{}`, by `cargo xtask bench{}`. Medians of the runs; ratios measured in the same run.\n\n",
        if s["quick"].as_bool() == Some(true) { " (quick run: small sizes, not representative)" } else { "" },
        s["kernel"].as_str().unwrap_or("?"),
        s["cpu"].as_str().unwrap_or("?"),
        if s["quick"].as_bool() == Some(true) { " --quick" } else { "" }
    ));
    m.push_str("## Per-packet cost (BPF_PROG_TEST_RUN, JIT on, stats off)\n\n| program | ns/packet |\n| --- | ---: |\n");
    m.push_str(&format!(
        "| empty XDP (floor) | {} |\n| ispf | {} |\n| xdp-filter (all features) | {} |\n\n",
        f(&s["ns_floor"]),
        f(&s["ns_ispf"]),
        f(&s["ns_xdp_filter"])
    ));
    m.push_str(&format!(
        "ispf − floor: **{} ns** (target ≤ 67 ns); ispf / xdp-filter: **{}** (target ≤ 1.0)\n\n",
        f(&json!(
            s["ns_ispf"].as_f64().unwrap_or(f64::NAN) - s["ns_floor"].as_f64().unwrap_or(f64::NAN)
        )),
        f(&s["ratio_vs_xdp_filter"])
    ));
    m.push_str(&format!(
        "These are packets of known flows (each frame warmed once), which the flow caches answer. The first packet of a flow takes the full pipeline (identity, anti-spoofing, rule matrix, conntrack): measured one unwarmed packet per frame, ispf {} ns against the floor's {} ns measured the same way (timer overhead included in both), **{} ns** net.\n\n",
        f(&s["ns_ispf_first_packet"]),
        f(&s["ns_floor_first_packet"]),
        f(&json!(
            s["ns_ispf_first_packet"].as_f64().unwrap_or(f64::NAN)
                - s["ns_floor_first_packet"].as_f64().unwrap_or(f64::NAN)
        ))
    ));
    m.push_str("## Scale\n\n| devices | ns/packet |\n| ---: | ---: |\n");
    for (k, v) in dev {
        m.push_str(&format!("| {k} | {v:.2} |\n"));
    }
    m.push_str(&format!("\nflatness (largest / smallest): **{}** (target ≤ 1.2)\n\n| rules | ns/packet |\n| ---: | ---: |\n", f(&s["flatness_devices"])));
    for (k, v) in rules {
        m.push_str(&format!("| {k} | {v:.2} |\n"));
    }
    m.push_str(&format!(
        "\nflatness: **{}** (target ≤ 1.2)\n\n",
        f(&s["flatness_rules"])
    ));
    m.push_str(&format!(
        "## End to end on veth (live-frames generator, denied frames)\n\n| receiver | Mpps |\n| --- | ---: |\n| XDP_DROP (ceiling) | {} |\n| ispf | {} |\n| xdp-filter | {} |\n| XDP_PASS + nftables bridge, set | {} |\n| XDP_PASS + nftables bridge, {} linear rules | {} |\n\nispf / nftables with sets: **{}** (target ≥ 4); ispf / nftables linear: **{}** (target ≥ 20)\n\n",
        f(&s["mpps_ceiling"]),
        f(&s["mpps_ispf"]),
        f(&s["mpps_xdp_filter"]),
        f(&s["mpps_nft_sets"]),
        r["end_to_end_veth"]["nft_linear_rules"],
        f(&s["mpps_nft_linear_10k"]),
        f(&s["ratio_vs_nft_sets"]),
        f(&s["ratio_vs_nft_linear_10k"])
    ));
    m.push_str("## Control plane\n\n| devices | compile ms | apply ms | reload ms | map entries |\n| ---: | ---: | ---: | ---: | ---: |\n");
    if let Some(a) = r["control_plane"]["apply"].as_object() {
        for (k, v) in a {
            m.push_str(&format!(
                "| {k} | {} | {} | {} | {} |\n",
                f(&v["compile_ms"]),
                f(&v["apply_ms"]),
                f(&r["control_plane"]["reload_ms"][k]),
                v["entries"]
            ));
        }
    }
    m.push_str("\nMethod: per-packet figures are the mean BPF_PROG_TEST_RUN duration over the corpus, each frame warmed once so the figure is its flow's steady state (for ispf: answered by the per-CPU flow cache; the first-packet figure above is the full pipeline); the corpus mixes IPv4/IPv6, TCP/UDP/ICMP, 0/1/2 VLAN tags, allowed/denied and known/unknown devices over many addresses. End to end: a live-frames XDP_TX generator in one namespace sends one denied frame through a veth pair; the receiver's XDP counters give the rate; generator and receiver share the VM's two vCPUs. NaN/null: a tool was unavailable (see the run's warnings).\n");
    m
}

fn svg(dev: &BTreeMap<usize, f64>, rules: &BTreeMap<usize, f64>, floor: f64) -> String {
    let (w, h, pad) = (640.0, 360.0, 50.0);
    let max = dev
        .values()
        .chain(rules.values())
        .cloned()
        .fold(floor, f64::max)
        .max(1.0)
        * 1.2;
    let x_of = |i: usize, n: usize| {
        pad + (w - 2.0 * pad)
            * if n > 1 {
                i as f64 / (n - 1) as f64
            } else {
                0.5
            }
    };
    let y_of = |v: f64| h - pad - (h - 2.0 * pad) * v / max;
    let line = |m: &BTreeMap<usize, f64>, color: &str, label: &str, dy: f64| {
        let pts: Vec<String> = m
            .values()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x_of(i, m.len()), y_of(*v)))
            .collect();
        let labels: String = m
            .iter()
            .enumerate()
            .map(|(i, (k, v))| format!("<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{color}\">{k}: {v:.0} ns</text>", x_of(i, m.len()), y_of(*v) - 6.0 + dy))
            .collect();
        format!("<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>{labels}<text x=\"{}\" y=\"{}\" fill=\"{color}\" font-size=\"12\">{label}</text>", pts.join(" "), w - 200.0, 20.0 + dy.abs() * 1.5)
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/><text x=\"{pad}\" y=\"24\" font-size=\"14\">ispf ns/packet against table size (log steps)</text><line x1=\"{pad}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"4\"/><text x=\"{pad}\" y=\"{:.1}\" font-size=\"10\" fill=\"#999\">empty XDP floor {floor:.0} ns</text>{}{}</svg>\n",
        y_of(floor),
        w - pad,
        y_of(floor),
        y_of(floor) + 12.0,
        line(dev, "#1f77b4", "devices (10 .. 100k)", 0.0),
        line(rules, "#d62728", "rules (10 .. 10k)", 14.0),
    )
}
