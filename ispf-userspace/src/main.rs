//! `ispf`: the controller's command line.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::time::Duration;

use ispf::{
    control::{self, Request, Response, Status, DEFAULT_PIN_DIR, DEFAULT_RUN_DIR},
    controller::{self, RunOptions, DEFAULT_METRICS_ADDR},
    datapath::{Datapath, MapSizes},
    events::EventFilter,
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
    /// Enforce POLICY on the named bridge ports until stopped. Enforcement
    /// is pinned and survives this process; a restart adopts it.
    Run {
        #[arg(long)]
        policy: PathBuf,
        /// A bridge port to enforce on (repeat for several).
        #[arg(long = "iface", required = true)]
        interfaces: Vec<String>,
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
        /// Serve Prometheus metrics here (plain HTTP, /metrics).
        #[arg(long, default_value = DEFAULT_METRICS_ADDR)]
        metrics_addr: std::net::SocketAddr,
        /// Allow --metrics-addr to be a non-loopback address.
        #[arg(long)]
        metrics_allow_remote: bool,
        /// Write every flow event as a JSON line to FILE (`-`: stdout).
        #[arg(long = "events", value_name = "FILE")]
        events_out: Option<PathBuf>,
    },
    /// Follow flow events of the running controller, as JSON lines.
    Events {
        /// Only events from or to this segment.
        #[arg(long)]
        segment: Option<String>,
        /// Only events with this reason (denied_rule, spoofed, allowed, ...).
        #[arg(long)]
        reason: Option<String>,
        /// Only `pass` or `drop` events.
        #[arg(long)]
        verdict: Option<String>,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Live view of the busiest and the most-dropped segment pairs.
    Top {
        /// Print one refresh and exit.
        #[arg(long)]
        once: bool,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Validate and apply a policy atomically (the running one's file when
    /// POLICY is omitted); prints what changes. An invalid file changes nothing.
    Reload {
        policy: Option<PathBuf>,
        /// Show what would change without applying it.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Policy generation, interfaces, map occupancy and counters.
    Status {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Remove ispf from every interface and delete its pins and maps.
    Detach {
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
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
            eprintln!("ispf: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, leaving out a cause whose text an outer
/// message already quotes (our error types name their cause inline).
fn describe(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check { policy } => check(&policy),
        Command::Replay { policy, pcap, json } => replay(&policy, &pcap, json),
        Command::Run {
            policy,
            interfaces,
            pin_dir,
            run_dir,
            metrics_addr,
            metrics_allow_remote,
            events_out,
        } => {
            controller::run(RunOptions {
                policy,
                interfaces,
                pin_dir,
                run_dir,
                sizes: MapSizes::default(),
                metrics_addr,
                metrics_allow_remote,
                events_out,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Events {
            segment,
            reason,
            verdict,
            run_dir,
        } => {
            let mut r = control::subscribe(
                &run_dir,
                EventFilter {
                    segment,
                    reason,
                    verdict,
                },
            )?;
            let mut out = std::io::stdout().lock();
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut r, &mut line)? > 0 {
                out.write_all(line.as_bytes())?;
                out.flush()?;
                line.clear();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Top { once, run_dir } => {
            top(&run_dir, once)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload {
            policy,
            dry_run,
            run_dir,
        } => {
            // The controller resolves relative paths from its own directory.
            let policy = policy.map(|p| std::path::absolute(&p).unwrap_or(p));
            match control::request(
                &run_dir,
                &Request::Reload { policy, dry_run },
                Duration::from_secs(60),
            )? {
                Response::Reload(r) => {
                    print!("{}", r.diff);
                    if r.applied {
                        println!(
                            "applied {} as generation {}",
                            r.policy_path.display(),
                            r.generation
                        );
                    } else {
                        println!(
                            "dry run: nothing applied (generation {} stays)",
                            r.generation
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Response::Error { message } => {
                    eprintln!("ispf: reload refused: {message}");
                    Ok(ExitCode::FAILURE)
                }
                other => anyhow::bail!("unexpected answer {other:?}"),
            }
        }
        Command::Status { json, run_dir } => {
            match control::request(&run_dir, &Request::Status, Duration::from_secs(30))? {
                Response::Status(s) if json => {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                    Ok(ExitCode::SUCCESS)
                }
                Response::Status(s) => {
                    print_status(&s);
                    Ok(ExitCode::SUCCESS)
                }
                other => anyhow::bail!("unexpected answer {other:?}"),
            }
        }
        Command::Detach { pin_dir, run_dir } => {
            match control::request(&run_dir, &Request::Detach, Duration::from_secs(30)) {
                Ok(Response::Detached) => println!("detached; the controller has stopped"),
                Ok(Response::Error { message }) => anyhow::bail!("detach failed: {message}"),
                Ok(other) => anyhow::bail!("unexpected answer {other:?}"),
                // No controller: remove what it left pinned.
                Err(control::ControlError::Connect { .. }) => {
                    ispf::system::require_root()?;
                    let ifaces = controller::detach(&pin_dir, &run_dir)?;
                    println!(
                        "detached from {}",
                        if ifaces.is_empty() {
                            "no interface".to_owned()
                        } else {
                            ifaces.join(", ")
                        }
                    );
                }
                Err(e) => return Err(e.into()),
            }
            Ok(ExitCode::SUCCESS)
        }
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

fn print_status(s: &Status) {
    println!(
        "policy      {} (sha256 {})",
        s.policy_path.display(),
        &s.policy_sha256[..16.min(s.policy_sha256.len())]
    );
    println!(
        "generation  {} applied {}{}",
        s.generation,
        s.applied_at,
        if s.adopted {
            " (adopted from pins)"
        } else {
            ""
        }
    );
    println!("pins        {}", s.pin_dir.display());
    for i in &s.interfaces {
        println!("interface   {} ({} XDP)", i.name, i.mode);
    }
    for m in &s.maps {
        println!(
            "map         {:<16} {:>8} / {}",
            m.name, m.entries, m.capacity
        );
    }
    println!(
        "packets     {} passed, {} dropped",
        s.packets_passed, s.packets_dropped
    );
    for (reason, n) in &s.by_reason {
        println!("            {reason:<18} {n}");
    }
    println!(
        "reloads     {} applied, {} refused",
        s.reloads_ok, s.reloads_failed
    );
}

fn counters(run_dir: &Path) -> Result<Vec<control::CounterRow>> {
    match control::request(run_dir, &Request::Counters, Duration::from_secs(10))? {
        Response::Counters { rows } => Ok(rows),
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

/// Per-second rates by segment pair between two samples one second apart.
fn top(run_dir: &Path, once: bool) -> Result<()> {
    use std::collections::BTreeMap;
    let mut before = counters(run_dir)?;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let after = counters(run_dir)?;
        let key = |r: &control::CounterRow| {
            (
                r.src_segment.clone(),
                r.dst_segment.clone(),
                r.verdict.clone(),
                r.reason.clone(),
            )
        };
        let old: BTreeMap<_, _> = before
            .iter()
            .map(|r| (key(r), (r.packets, r.bytes)))
            .collect();
        let mut pairs = BTreeMap::<(String, String), (u64, u64)>::new();
        let mut drops = BTreeMap::<(String, String, String), u64>::new();
        for r in &after {
            let (p0, b0) = old.get(&key(r)).copied().unwrap_or((0, 0));
            let (dp, db) = (r.packets.saturating_sub(p0), r.bytes.saturating_sub(b0));
            let e = pairs
                .entry((r.src_segment.clone(), r.dst_segment.clone()))
                .or_default();
            e.0 += dp;
            e.1 += db;
            if r.verdict == "drop" || r.reason == "would_drop" {
                *drops
                    .entry((
                        r.src_segment.clone(),
                        r.dst_segment.clone(),
                        r.reason.clone(),
                    ))
                    .or_default() += dp;
            }
        }
        let mut busy: Vec<_> = pairs.into_iter().filter(|(_, (p, _))| *p > 0).collect();
        busy.sort_by_key(|(_, (p, _))| std::cmp::Reverse(*p));
        let mut dropped: Vec<_> = drops.into_iter().filter(|(_, p)| *p > 0).collect();
        dropped.sort_by_key(|(_, p)| std::cmp::Reverse(*p));
        let mut out = String::new();
        if !once {
            out.push_str("\x1b[2J\x1b[H");
        }
        out.push_str("ispf top  (per second; q: Ctrl-C)\n\nbusiest segment pairs\n");
        out.push_str(&format!(
            "  {:<24} {:<24} {:>10} {:>12}\n",
            "from", "to", "packets/s", "bytes/s"
        ));
        for ((s, d), (p, b)) in busy.iter().take(10) {
            out.push_str(&format!("  {s:<24} {d:<24} {p:>10} {b:>12}\n"));
        }
        out.push_str("\nmost dropped\n");
        out.push_str(&format!(
            "  {:<24} {:<24} {:<18} {:>10}\n",
            "from", "to", "reason", "packets/s"
        ));
        for ((s, d, r), p) in dropped.iter().take(10) {
            out.push_str(&format!("  {s:<24} {d:<24} {r:<18} {p:>10}\n"));
        }
        print!("{out}");
        std::io::stdout().flush()?;
        if once {
            return Ok(());
        }
        before = after;
    }
}
