//! A scan end to end: every frame is the first packet of a new flow (the
//! generator varies the source port and the destination address per
//! frame), denied, into ispf, into nftables with a set, and into the
//! XDP_DROP ceiling; and while ispf takes the scan, an allowed TCP flow
//! through the same port, whose retransmissions are reported.

use std::{
    cell::RefCell,
    io::Read,
    process::{Child, Stdio},
};

use anyhow::{Context, Result};
use aya::programs::{Xdp, XdpMode};
use ispf_tests::{netns::*, XDP_BASELINES};
use serde_json::json;

use crate::{
    live::{denied_frame, live_rate, nft_rate, nft_rules, Generator, Stage},
    median,
    perpacket::ispf_with,
    Bench,
};

const ECHO_SERVER: &str = "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('0.0.0.0', 2575)); s.listen(1); print('ready', flush=True)\nc,_=s.accept()\nwhile True:\n    d=c.recv(4096)\n    if not d: break\n    c.sendall(d)\n";
const CLIENT: &str = "import socket,sys,time\ns=socket.create_connection(('10.200.0.2',2575),timeout=5); n=0; end=time.time()+float(sys.argv[1])\nwhile time.time()<end:\n    s.sendall(b'x'*64); d=b''\n    while len(d)<64: d+=s.recv(64-len(d))\n    n+=1\nprint(n)\n";

/// TCP retransmissions counted in this thread's network namespace.
fn retransmitted() -> u64 {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
    let mut lines = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RetransSegs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// The allowed flow beside the scan: an echo exchange from the generator's
/// namespace to a server behind the port under test.
#[derive(Default)]
struct AllowedFlow {
    server: Option<Child>,
    client: Option<Child>,
    retrans_before: u64,
    exchanges: Option<u64>,
    retransmitted: u64,
}

impl AllowedFlow {
    fn stage(&mut self, s: Stage) -> Result<()> {
        match s {
            Stage::Started => {
                must(&[
                    "ip",
                    "-n",
                    "ispfb-gen",
                    "addr",
                    "add",
                    "10.200.0.1/24",
                    "dev",
                    "gen0",
                ]);
                must(&[
                    "ip",
                    "-n",
                    "ispfb-dut",
                    "addr",
                    "add",
                    "10.200.0.2/24",
                    "dev",
                    "dut0",
                ]);
                let mut server = ispf_tests::programs::command("ip")
                    .args([
                        "netns",
                        "exec",
                        "ispfb-dut",
                        "python3",
                        "-u",
                        "-c",
                        ECHO_SERVER,
                    ])
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("echo server")?;
                let mut ready = [0u8; 6];
                server
                    .stdout
                    .as_mut()
                    .context("server output")?
                    .read_exact(&mut ready)?;
                self.server = Some(server);
            }
            Stage::Measuring => {
                self.retrans_before = retransmitted();
                self.client = Some(
                    ispf_tests::programs::command("python3")
                        .args(["-c", CLIENT, "2"])
                        .stdout(Stdio::piped())
                        .spawn()
                        .context("client")?,
                );
            }
            Stage::Done => {
                if let Some(c) = self.client.take() {
                    let out = c.wait_with_output()?;
                    self.exchanges = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
                }
                self.retransmitted = retransmitted().saturating_sub(self.retrans_before);
                if let Some(mut s) = self.server.take() {
                    let _ = s.kill();
                    let _ = s.wait();
                }
            }
        }
        Ok(())
    }
}

/// 3b. A scan of new flows, denied.
pub fn scan(b: &mut Bench) -> Result<()> {
    eprintln!("end to end on veth: a scan, every frame a new flow");
    let frame = denied_frame(b);
    let noop = |_: Stage| Ok(());
    let mut baselines = aya::Ebpf::load(XDP_BASELINES)?;
    let drop_prog: &mut Xdp = baselines
        .program_mut("xdp_drop")
        .context("xdp_drop")?
        .try_into()?;
    drop_prog.load()?;
    let runs = b.cfg.runs;
    let frames = b.cfg.live_frames;
    let ceiling = median(
        (0..runs)
            .map(|_| {
                live_rate(
                    &mut |iface| Ok(drop_prog.attach(iface, XdpMode::Driver).map(drop)?),
                    &frame,
                    frames,
                    Generator::Scan(&noop),
                )
            })
            .collect::<Result<Vec<_>>>()?,
    );
    let mut ispf_runs = Vec::new();
    let mut flows = Vec::new();
    for _ in 0..runs {
        // Fresh state every run: every frame must be a flow ispf never saw.
        let (mut dp, _) = ispf_with(&b.headline)?;
        let flow = RefCell::new(AllowedFlow::default());
        let hook = |s: Stage| flow.borrow_mut().stage(s);
        ispf_runs.push(live_rate(
            &mut |iface| Ok(dp.program_mut().attach(iface, XdpMode::Driver).map(drop)?),
            &frame,
            frames,
            Generator::Scan(&hook),
        )?);
        let f = flow.into_inner();
        flows.push(json!({ "exchanges": f.exchanges, "retransmitted_segments": f.retransmitted }));
    }
    let ispf = median(ispf_runs.clone());
    let linear_n = if b.cfg.quick { 100 } else { 10_000 };
    let nft = nft_rate(
        b,
        &nft_rules(linear_n, true),
        &frame,
        Generator::Scan(&noop),
    );
    let retrans: u64 = flows
        .iter()
        .filter_map(|f| f["retransmitted_segments"].as_u64())
        .sum();
    let exchanges: u64 = flows.iter().filter_map(|f| f["exchanges"].as_u64()).sum();
    b.results.insert(
        "scan_new_flows".into(),
        json!({
            "frames_per_run": frames,
            "generator": crate::live::generator(),
            "frame": "IPv4 TCP SYN to a denied port; source port and destination address new every frame",
            "pps": { "xdp_drop_ceiling": ceiling, "ispf": ispf_runs, "nft_sets": nft },
            "allowed_flow_under_scan": flows,
        }),
    );
    b.put("mpps_ceiling_new_flows", ceiling / 1e6);
    b.put("mpps_ispf_new_flows", ispf / 1e6);
    b.put("mpps_nft_sets_new_flows", nft / 1e6);
    b.put("ratio_vs_nft_sets_new_flows", ispf / nft);
    b.put("allowed_flow_exchanges_under_scan", exchanges as f64);
    b.put("allowed_flow_retransmits_under_scan", retrans as f64);
    Ok(())
}
