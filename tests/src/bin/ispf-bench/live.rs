//! End to end on veth: a live-frames generator in one namespace sends
//! through a veth pair into the receiver under test in another (ispf,
//! xdp-filter, nftables on a bridge, the XDP_DROP ceiling); the receiver's
//! XDP counters give the rate. The same denied frame over and over, or a
//! scan: every frame the first packet of a new flow.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use ispf_tests::{netns::*, XDP_BASELINES};
use serde_json::json;

use crate::{median, packet, perpacket::ispf_with, Bench};

/// Set once the kernel refused live frames: every later run sends through
/// AF_PACKET ([`packet`]).
static FELL_BACK: AtomicBool = AtomicBool::new(false);

/// The generator the end-to-end figures were measured with.
pub fn generator() -> &'static str {
    if FELL_BACK.load(Ordering::Relaxed) {
        "af_packet (the kernel refused XDP live frames; rates are capped by the sender)"
    } else {
        "xdp_live_frames"
    }
}

/// Which generator sends, and what else happens around the measurement.
#[derive(Clone, Copy)]
pub enum Generator<'a> {
    /// The same frame every time (`xdp_tx`).
    Same,
    /// Every frame a new flow (`xdp_scan`); `during` runs at each stage.
    Scan(&'a dyn Fn(Stage) -> Result<()>),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stage {
    Started,
    Measuring,
    Done,
}

impl Generator<'_> {
    fn program(&self) -> &'static str {
        match self {
            Generator::Same => "xdp_tx",
            Generator::Scan(_) => "xdp_scan",
        }
    }

    fn during(&self, s: Stage) -> Result<()> {
        match self {
            Generator::Same => Ok(()),
            Generator::Scan(f) => f(s),
        }
    }
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
pub fn live_rate(
    attach: &mut dyn FnMut(&str) -> Result<()>,
    frame: &[u8],
    count: u32,
    gen: Generator,
) -> Result<f64> {
    live_rate_with(attach, &mut |_| {}, frame, count, gen)
}

/// As [`live_rate`], with `cleanup` run inside the receiver's namespace
/// before it is deleted (for receivers that leave pins behind).
fn live_rate_with(
    attach: &mut dyn FnMut(&str) -> Result<()>,
    cleanup: &mut dyn FnMut(&str),
    frame: &[u8],
    count: u32,
    gen: Generator,
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
        let mut progs = aya::Ebpf::load(XDP_BASELINES)?;
        // The generator's side needs an XDP program too, so that the veth
        // runs NAPI; one that passes, so answers to a real flow arrive.
        let pass: &mut Xdp = progs
            .program_mut("xdp_empty")
            .context("xdp_empty")?
            .try_into()?;
        pass.load()?;
        pass.attach("gen0", XdpMode::Driver)?;
        gen.during(Stage::Started)?;
        let tx: &mut Xdp = progs
            .program_mut(gen.program())
            .context("generator")?
            .try_into()?;
        tx.load()?;
        // SAFETY: NUL-terminated literal.
        let ifindex = unsafe { libc::if_nametoindex(c"gen0".as_ptr()) };
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let scan = matches!(gen, Generator::Scan(_));
        let seq = std::cell::Cell::new(0u32);
        // Size the run by time, not count: a slow receiver (nftables with
        // thousands of linear rules) would otherwise take minutes.
        let burst = |n: u32| -> Result<f64> {
            let before = veth_xdp("ispfb-dut", "dut0");
            let t = Instant::now();
            let mut live = !FELL_BACK.load(Ordering::Relaxed);
            if live {
                let mut o = TestRunOptions::new();
                o.data_in = Some(frame);
                o.ctx_in = Some(&ctx);
                o.repeat = n;
                o.attrs = TestRunAttrs::new().xdp_live_frames(64);
                if let Err(e) = tx.test_run(o) {
                    if !packet::refused(&e) {
                        return Err(e.into());
                    }
                    eprintln!("  this kernel refuses XDP live frames (EPERM): sending through AF_PACKET, which caps every end-to-end rate");
                    FELL_BACK.store(true, Ordering::Relaxed);
                    live = false;
                }
            }
            if !live {
                packet::send(ifindex, frame, n, scan.then_some(&seq))?;
            }
            let secs = t.elapsed().as_secs_f64();
            std::thread::sleep(Duration::from_millis(50));
            let after = veth_xdp("ispfb-dut", "dut0");
            Ok((after.0 - before.0) as f64 / secs)
        };
        let estimate = burst(count.min(20_000))?;
        let n = ((estimate * 1.0) as u32).clamp(count.min(20_000), count);
        gen.during(Stage::Measuring)?;
        let rate = burst(n);
        gen.during(Stage::Done)?;
        rate
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

/// nftables on a bridge: XDP only passes, the bridge forward hook drops
/// port 9 — through a set with `n` other ports, or `n` linear rules.
pub fn nft_rules(n: usize, set: bool) -> String {
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
}

/// Median rate of nftables with `rules` on a bridge behind the receiving
/// port; NaN (with a warning) when nftables is unavailable.
pub fn nft_rate(b: &Bench, rules: &str, frame: &[u8], gen: Generator) -> f64 {
    let mut pass_prog = match aya::Ebpf::load(XDP_BASELINES) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warning: {e}");
            return f64::NAN;
        }
    };
    let mut go = || -> Result<f64> {
        let pass: &mut Xdp = pass_prog
            .program_mut("xdp_empty")
            .context("xdp_empty")?
            .try_into()?;
        pass.load()?;
        let runs = (0..b.cfg.runs)
            .map(|_| {
                live_rate(
                    &mut |iface| {
                        must(&["ip", "link", "add", "nbr0", "type", "bridge"]);
                        must(&[
                            "ip", "link", "add", "nout0", "type", "veth", "peer", "name", "nout1",
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
                        std::fs::write(&file, rules)?;
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
                    frame,
                    b.cfg.live_frames,
                    gen,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(median(runs))
    };
    go().unwrap_or_else(|e| {
        eprintln!("warning: nftables end to end failed: {e:#}");
        f64::NAN
    })
}

/// The corpus's IPv4 TCP frame to the denied port 9, untagged.
pub fn denied_frame(b: &Bench) -> Vec<u8> {
    b.corpus
        .iter()
        .find(|f| f.len() > 40 && f[12..14] == [0x08, 0x00] && f[36..38] == [0, 9])
        .cloned()
        .unwrap_or_else(|| b.corpus[1].clone())
}

/// 3. End to end on veth: a denied frame, dropped by each receiver.
pub fn end_to_end(b: &mut Bench) -> Result<()> {
    let cfg = &b.cfg;
    eprintln!("end to end on veth ({} frames per run)", cfg.live_frames);
    let denied = denied_frame(b);
    let runs = cfg.runs;
    let live = |attach: &mut dyn FnMut(&str) -> Result<()>| -> Result<f64> {
        Ok(median(
            (0..runs)
                .map(|_| live_rate(attach, &denied, cfg.live_frames, Generator::Same))
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
    let (mut dp_live, _) = ispf_with(&b.headline)?;
    let pps_ispf = live(&mut |iface| {
        dp_live.program_mut().attach(iface, XdpMode::Driver)?;
        Ok(())
    })?;
    drop(dp_live);
    // The TC hook: an XDP program that passes keeps the veth's NAPI (and
    // its counters) as for the others; ispf drops at TC ingress.
    let (mut dp_tc, _) = ispf_with(&b.headline)?;
    let pass: &mut Xdp = baselines
        .program_mut("xdp_empty")
        .context("xdp_empty")?
        .try_into()?;
    pass.load()?;
    let pps_ispf_tc = live(&mut |iface| {
        pass.attach(iface, XdpMode::Driver)?;
        dp_tc
            .tc_program_mut()
            .attach(iface, aya::programs::tc::TcAttachType::Ingress)?;
        Ok(())
    })?;
    drop(dp_tc);
    // xdp-filter with the closest equivalent rule: deny the frame's port.
    let pps_xf = median(
        (0..runs)
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
                    Generator::Same,
                )
            })
            .collect::<Result<Vec<_>>>()
            .unwrap_or_else(|e| {
                eprintln!("warning: xdp-filter end to end failed: {e:#}");
                vec![]
            }),
    );
    let linear_n = if cfg.quick { 100 } else { 10_000 };
    eprintln!("end to end: nftables with a set, and {linear_n} linear rules");
    let pps_nft_sets = nft_rate(b, &nft_rules(linear_n, true), &denied, Generator::Same);
    let pps_nft_linear = nft_rate(b, &nft_rules(linear_n, false), &denied, Generator::Same);
    b.results.insert(
        "end_to_end_veth".into(),
        json!({
            "frames_per_run": b.cfg.live_frames,
            "generator": generator(),
            "frame": "IPv4 TCP SYN to a denied port, dropped by every receiver",
            "nft_linear_rules": linear_n,
            "pps": { "xdp_drop_ceiling": pps_ceiling, "ispf": pps_ispf, "ispf_tc": pps_ispf_tc, "xdp_filter": pps_xf, "nft_sets": pps_nft_sets, "nft_linear": pps_nft_linear },
        }),
    );
    b.put("mpps_ceiling", pps_ceiling / 1e6);
    b.put("mpps_ispf", pps_ispf / 1e6);
    b.put("mpps_ispf_tc", pps_ispf_tc / 1e6);
    b.put("mpps_xdp_filter", pps_xf / 1e6);
    b.put("mpps_nft_sets", pps_nft_sets / 1e6);
    b.put("mpps_nft_linear_10k", pps_nft_linear / 1e6);
    b.put("ratio_vs_nft_sets", pps_ispf / pps_nft_sets);
    b.put("ratio_vs_nft_linear_10k", pps_ispf / pps_nft_linear);
    Ok(())
}
