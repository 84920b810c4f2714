//! What the CLI prints for people: status, `top`, replay tables.

use std::{io::Write, path::Path, time::Duration};

use anyhow::Result;
use ispf::control::{self, Request, Response, Status};

pub fn print_status(s: &Status) {
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
    if let Some(b) = &s.busy {
        println!("busy        {b}");
    }
    for i in &s.interfaces {
        if i.attached && i.mode == "tc" {
            println!("interface   {} (TC ingress)", i.name);
        } else if i.attached {
            println!("interface   {} ({} XDP)", i.name, i.mode);
        } else if i.ifindex == 0 {
            println!(
                "interface   {} NOT ENFORCED: the port is gone; re-attached when it returns",
                i.name
            );
        } else {
            println!(
                "interface   {} NOT ENFORCED: the port exists but ispf is not attached (see the log)",
                i.name
            );
        }
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
    if s.decisions > 0 {
        println!(
            "decisions   {} holding (enforced sha256 {}); `ispf devices` lists them",
            s.decisions,
            &s.enforced_sha256[..16.min(s.enforced_sha256.len())]
        );
    }
    if let Some(f) = &s.fleet {
        let behind = if f.revision < f.latest { " BEHIND" } else { "" };
        println!(
            "fleet       site {}: revision {} enforced, {} the newest{behind}; {}",
            f.site,
            f.revision,
            f.latest,
            if f.connected {
                "following etcd"
            } else {
                "etcd NOT REACHED (enforcement unchanged)"
            }
        );
        if let Some(e) = &f.error {
            println!("            {e}");
        }
    }
    if let Some(i) = &s.inventory {
        match &i.error {
            None => println!(
                "inventory   {} devices, {} sightings, in {}",
                i.devices,
                i.sightings,
                i.database.display()
            ),
            Some(e) => println!("inventory   UNAVAILABLE (enforcement unaffected): {e}"),
        }
        if i.overflow > 0 {
            println!(
                "            {} new devices not recorded: over --max-unknown-devices",
                i.overflow
            );
        }
    }
}

fn counters(run_dir: &Path) -> Result<Vec<control::CounterRow>> {
    match control::request(run_dir, &Request::Counters, Duration::from_secs(10))? {
        Response::Counters { rows } => Ok(rows),
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

/// Per-second rates by segment pair between two samples one second apart.
pub fn top(run_dir: &Path, once: bool) -> Result<()> {
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
