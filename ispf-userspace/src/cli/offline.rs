//! The subcommands that judge a policy file with no controller: `check`
//! (what it compiles to, whether it fits) and `replay` (a capture through
//! the real XDP program).

use std::{io::Write, path::Path, process::ExitCode};

use anyhow::{Context, Result};
use ispf::{
    datapath::{check_fits, Counts, Datapath, Entry, MapSizeRequest, MapSizes},
    policy::{compile::compile, load::read_policy},
    replay::read_frames,
};
use ispf_common::reason_name;

pub(super) fn check(file: &Path, request: MapSizeRequest, explicit: bool) -> Result<ExitCode> {
    let p = match read_policy(file) {
        Ok((p, _)) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let c = compile(&p);
    let counts = Counts::of(&c);
    let sizes = request.resolve(&counts);
    // The rule every reload applies: this policy must fit beside one as
    // large (the generation still enforced while it is written).
    if let Err(e) = check_fits(&sizes, &counts, &counts) {
        eprintln!("{}: does not fit: {e}", file.display());
        return Ok(ExitCode::FAILURE);
    }
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
        "  compiled: {} ({}, {} beyond a row, {}, {}, {})",
        counted(c.entry_count(), "map entry", "map entries"),
        counted(c.rows.len(), "rule-matrix row", "rule-matrix rows"),
        counted(c.policy.len(), "entry", "entries"),
        counted(
            c.subnet_v4.len() + c.subnet_v6.len(),
            "subnet prefix",
            "subnet prefixes"
        ),
        counted(c.vlans.len(), "VLAN", "VLANs"),
        counted(c.port_classes.len(), "port-class port", "port-class ports")
    );
    let how = if explicit {
        "as given"
    } else {
        "as `ispf run` sizes them for this policy"
    };
    let d = MapSizes::default();
    println!(
        "  map sizes ({how}): devices {}{}, policy {}{}; two generations fit, so it can be reloaded",
        sizes.devices,
        if sizes.devices > d.devices { " (above the default)" } else { "" },
        sizes.policy,
        if sizes.policy > d.policy { " (above the default)" } else { "" },
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

pub(super) fn replay(
    policy_file: &Path,
    pcap: &Path,
    json: bool,
    entry: Entry,
) -> Result<ExitCode> {
    let p = match read_policy(policy_file) {
        Ok((p, _)) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let frames = read_frames(pcap)?;
    let c = compile(&p);
    let sizes = MapSizeRequest::default().resolve(&Counts::of(&c));
    let mut dp = Datapath::load(sizes).context("cannot replay")?;
    dp.apply(&c)
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
            .run_on(entry, frame)
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

/// `n` with the noun it counts, singular for one.
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
