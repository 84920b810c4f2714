//! Bulk TCP through an enforced bridge: one iperf3 stream between two
//! namespaces across a Linux bridge, unfiltered, with ispf at TC (the hook
//! `auto` picks on veth), with ispf at native XDP (GRO turned on, as
//! `ispf run --hook xdp` does), and with nftables' equivalent stateful
//! rules on the bridge — in the same run.

use std::{thread::sleep, time::Duration};

use anyhow::{Context, Result};
use aya::programs::{tc::TcAttachType, XdpMode};
use ispf::policy::Policy;
use ispf_tests::netns::*;
use serde_json::json;

use crate::{median, perpacket::ispf_with, Bench};

const POLICY: &str = r#"{"version": 1,
  "segments": [{"name": "clients"}, {"name": "servers"}],
  "devices": [
    {"name": "a", "mac": "02:00:00:00:70:01", "ipv4": "10.70.0.1", "segment": "clients"},
    {"name": "b", "mac": "02:00:00:00:70:02", "ipv4": "10.70.0.2", "segment": "servers"}],
  "rules": [{"from": "clients", "to": "servers", "proto": "tcp", "ports": [5201], "action": "allow"}]}"#;

/// This kernel has no connection tracking in the bridge family
/// (CONFIG_NF_CONNTRACK_BRIDGE), so bridged IPv4 goes through the ip
/// family's forward hook (br_netfilter), where it does.
const NFT: &str = "table ip ispfbulk {\n  chain forward { type filter hook forward priority 0; policy drop;\n    ct state established,related accept\n    tcp dport 5201 ct state new accept\n  }\n}\n";

const BRIDGE_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Bridged frames through the host's IPv4 netfilter hooks, for the nft
/// table: a host-wide switch (and a forward chain that drops), so the
/// switch is put back as it was and the table removed however the run
/// ends, an early `?` included.
struct NftBridged {
    was: String,
}

impl NftBridged {
    fn enable() -> Result<Self> {
        let was = std::fs::read_to_string(BRIDGE_NF)
            .with_context(|| format!("{BRIDGE_NF}: is br_netfilter available?"))?;
        std::fs::write(BRIDGE_NF, "1").with_context(|| format!("writing {BRIDGE_NF}"))?;
        Ok(NftBridged {
            was: was.trim().to_owned(),
        })
    }
}

impl Drop for NftBridged {
    fn drop(&mut self) {
        let _ = sh(&["nft", "delete", "table", "ip", "ispfbulk"]);
        let _ = std::fs::write(BRIDGE_NF, &self.was);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Filter {
    None,
    IspfTc,
    IspfXdp,
    Nft,
}

/// Gbit/s of one iperf3 stream for `secs` seconds, through `filter`.
fn stream(filter: Filter, secs: u32) -> Result<f64> {
    let mut t = Topology::default();
    t.bridge("ispfbbr");
    t.host(
        "ispfb-a",
        "ispfbpa",
        "ispfbbr",
        "02:00:00:00:70:01",
        &["10.70.0.1/24"],
    );
    t.host(
        "ispfb-b",
        "ispfbpb",
        "ispfbbr",
        "02:00:00:00:70:02",
        &["10.70.0.2/24"],
    );
    let policy = Policy::from_str(POLICY, "bulk.json".as_ref())?;
    let mut dp = None;
    let mut nft = None;
    match filter {
        Filter::None => {}
        Filter::IspfTc | Filter::IspfXdp => {
            let (mut d, _) = ispf_with(&policy)?;
            for port in ["ispfbpa", "ispfbpb"] {
                if filter == Filter::IspfTc {
                    d.tc_program_mut().attach(port, TcAttachType::Ingress)?;
                } else {
                    d.program_mut().attach(port, XdpMode::Driver)?;
                    ispf::system::set_gro(port, true)?;
                }
            }
            dp = Some(d);
        }
        Filter::Nft => {
            nft = Some(NftBridged::enable()?);
            let file = std::env::temp_dir().join("ispf-bench-bulk.nft");
            std::fs::write(&file, NFT)?;
            let o = ispf_tests::programs::command("nft")
                .arg("-f")
                .arg(&file)
                .output()
                .context("nft")?;
            anyhow::ensure!(
                o.status.success(),
                "nft: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    let mut server = ispf_tests::programs::command("ip")
        .args(["netns", "exec", "ispfb-b", "iperf3", "-s", "-1"])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    sleep(Duration::from_millis(300));
    let out = in_ns(
        "ispfb-a",
        &["iperf3", "-c", "10.70.0.2", "-t", &secs.to_string(), "-J"],
    );
    let _ = server.kill();
    let _ = server.wait();
    drop(nft);
    drop(dp);
    drop(t);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    if let Some(e) = v.get("error") {
        anyhow::bail!("iperf3: {e}");
    }
    Ok(v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(f64::NAN)
        / 1e9)
}

pub fn bulk_tcp(b: &mut Bench) -> Result<()> {
    let secs = if b.cfg.quick { 1 } else { 5 };
    eprintln!("bulk TCP through a bridge with iperf3 ({secs} s per stream)");
    let runs = b.cfg.runs.min(3);
    let measure = |f: Filter| -> f64 {
        let r: Result<Vec<f64>> = (0..runs).map(|_| stream(f, secs)).collect();
        r.map(median).unwrap_or_else(|e| {
            eprintln!("warning: bulk TCP measurement failed: {e:#}");
            f64::NAN
        })
    };
    let none = measure(Filter::None);
    let tc = measure(Filter::IspfTc);
    let xdp = measure(Filter::IspfXdp);
    let nft = measure(Filter::Nft);
    b.results.insert(
        "bulk_tcp".into(),
        json!({ "seconds": secs, "gbps": { "unfiltered": none, "ispf_tc": tc, "ispf_xdp": xdp, "nft_stateful": nft } }),
    );
    b.put("gbps_tcp_unfiltered", none);
    b.put("gbps_tcp_ispf", tc);
    b.put("gbps_tcp_ispf_xdp", xdp);
    b.put("gbps_tcp_nft", nft);
    b.put("ratio_tcp_bulk_vs_unfiltered", tc / none);
    Ok(())
}
