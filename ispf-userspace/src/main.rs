//! `ispf`: the controller's command line.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ispf::{
    datapath::{Datapath, MapSizes},
    policy::{compile::compile, Policy, PolicyDoc},
    replay::read_frames,
};
use ispf_common::reason_name;

#[derive(Parser)]
#[command(
    name = "ispf",
    version,
    about = "Internal segmentation firewall for hospital care-unit networks (XDP)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a policy file and summarise what it compiles to.
    Check { policy: PathBuf },
    /// Run every frame of a pcap/pcapng capture through the real XDP program
    /// (BPF_PROG_TEST_RUN) under POLICY and print each verdict. Needs root.
    Replay {
        #[arg(long)]
        policy: PathBuf,
        #[arg(long)]
        pcap: PathBuf,
        /// One JSON object per frame on stdout, nothing else.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the policy format.
    Schema,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        // A reader that stops early (`ispf replay | head`) is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ispf: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check { policy } => check(&policy),
        Command::Replay { policy, pcap, json } => replay(&policy, &pcap, json),
        Command::Schema => {
            let schema = schemars::schema_for!(PolicyDoc);
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(file: &Path) -> Result<ExitCode> {
    let p = match Policy::from_file(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let c = compile(&p);
    println!("{}: valid", file.display());
    println!(
        "  segments: {} ({} listed, plus world/{} where unlisted)",
        p.segments.len(),
        p.doc.segments.len(),
        p.doc.defaults.unknown_source
    );
    println!(
        "  devices:  {} ({} MACs, {} IPv4, {} IPv6)",
        p.devices.len(),
        c.dev_mac.len(),
        c.dev_v4.len(),
        c.dev_v6.len()
    );
    println!("  routers:  {}", p.routers.len());
    println!("  rules:    {}", p.rules.len());
    println!(
        "  compiled: {} map entries ({} rule-matrix entries, {} subnet prefixes, {} VLANs, {} port-class ports)",
        c.entry_count(),
        c.policy.len(),
        c.subnet_v4.len() + c.subnet_v6.len(),
        c.vlans.len(),
        c.port_classes.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// One `--json` line; field order as documented.
#[derive(serde::Serialize)]
struct ReplayLine<'a> {
    packet: usize,
    verdict: &'a str,
    reason: &'a str,
    src_segment: &'a str,
    dst_segment: &'a str,
}

fn replay(policy_file: &Path, pcap: &Path, json: bool) -> Result<ExitCode> {
    let p = match Policy::from_file(policy_file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let frames = read_frames(pcap)?;
    let mut dp = Datapath::load(MapSizes::default()).context("cannot replay")?;
    dp.apply(&compile(&p))
        .context("applying the policy to the loaded program")?;
    let mut out = std::io::stdout().lock();
    let mut totals = std::collections::BTreeMap::<&str, (u64, u64)>::new();
    if !json {
        writeln!(
            out,
            "{:>6}  {:<7} {:<18} {:<24} {:<24} rule",
            "frame", "verdict", "reason", "from", "to"
        )?;
    }
    for (i, frame) in frames.iter().enumerate() {
        let o = dp
            .run(frame)
            .with_context(|| format!("{}: frame {}", pcap.display(), i + 1))?;
        let reason = reason_name(o.reason).unwrap_or("unknown");
        let verdict = if o.pass { "pass" } else { "drop" };
        let (src, dst) = (p.segment_name(o.src), p.segment_name(o.dst));
        let t = totals.entry(reason).or_default();
        if o.pass {
            t.0 += 1
        } else {
            t.1 += 1
        }
        if json {
            let line = ReplayLine {
                packet: i + 1,
                verdict,
                reason,
                src_segment: src,
                dst_segment: dst,
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        } else {
            let rule = o
                .rule
                .map(
                    |r| match p.doc.rules.get(r as usize).and_then(|r| r.id.as_deref()) {
                        Some(id) => format!("rules[{r}] ({id})"),
                        None => format!("rules[{r}]"),
                    },
                )
                .unwrap_or_default();
            writeln!(
                out,
                "{:>6}  {:<7} {:<18} {:<24} {:<24} {}",
                i + 1,
                verdict,
                reason,
                src,
                dst,
                rule
            )?;
        }
    }
    if !json {
        writeln!(out, "\n{} frames", frames.len())?;
        for (reason, (pass, drop)) in totals {
            writeln!(out, "  {reason:<18} {pass:>6} passed {drop:>6} dropped")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
