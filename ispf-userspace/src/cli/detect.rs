//! `ispf feeds`, `ispf alerts` and `ispf baseline`: threat feeds and
//! detection, through the control socket.

use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::{bail, Result};
use ispf::{
    clock::{rfc3339, unix_now},
    control::{self, Request, Response},
};

use super::Command;

fn ask(run_dir: &Path, req: &Request) -> Result<Response> {
    match control::request(run_dir, req, Duration::from_secs(60))? {
        Response::Error { message } => bail!("{message}"),
        r => Ok(r),
    }
}

pub fn run(c: Command) -> Result<ExitCode> {
    match c {
        Command::Feeds { json, run_dir } => {
            let Response::Feeds { feeds } = ask(&run_dir, &Request::Feeds)? else {
                bail!("unexpected answer");
            };
            if json {
                for f in &feeds {
                    println!("{}", serde_json::to_string(f)?);
                }
                return Ok(ExitCode::SUCCESS);
            }
            if feeds.is_empty() {
                println!("the enforced policy lists no feeds");
            }
            for f in feeds {
                println!(
                    "{} ({} {}, {}): {} entries, refreshed {}; flows hit: {} dropped, {} passed",
                    f.name,
                    f.format,
                    f.action,
                    f.source,
                    f.entries,
                    f.last_refresh.map_or("never".into(), rfc3339),
                    f.hits_dropped,
                    f.hits_passed
                );
                if let Some(e) = &f.error {
                    let kept = if f.last_refresh.is_some() || f.entries > 0 {
                        "the last good contents stay enforced"
                    } else {
                        "it never loaded, so nothing of it is enforced; fix the source"
                    };
                    println!("  FAILING ({} failures; {kept}): {e}", f.failures);
                }
                if f.skipped > 0 {
                    println!("  {} lines or indicators skipped, e.g.:", f.skipped);
                    for p in f.problems.iter().take(5) {
                        println!("    {p}");
                    }
                }
            }
        }
        Command::Alerts {
            since,
            json,
            run_dir,
        } => {
            let since = since.map_or(0, |d| unix_now() - d.as_secs() as i64);
            let Response::Alerts { alerts } =
                ask(&run_dir, &Request::Alerts { since, limit: None })?
            else {
                bail!("unexpected answer");
            };
            for a in alerts {
                if json {
                    println!("{}", serde_json::to_string(&a)?);
                } else {
                    println!(
                        "#{:<5} {}  {:<8} {:<7} {}  {}: {}\n       -> {}",
                        a.id, a.time, a.severity, a.kind, a.mac, a.segment, a.detail, a.response
                    );
                }
            }
        }
        Command::Baseline { mac, json, run_dir } => {
            let Response::Baseline { mac, services } = ask(&run_dir, &Request::Baseline { mac })?
            else {
                bail!("unexpected answer");
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"mac": mac, "services": services})
                    )?
                );
            } else {
                println!("{mac}: {} east-west services learned", services.len());
                for (seg, proto, port, at) in services {
                    println!("  {seg:<24} {proto}/{port:<6} learned {at}");
                }
            }
        }
        _ => unreachable!("dispatched here for feeds and detection only"),
    }
    Ok(ExitCode::SUCCESS)
}
