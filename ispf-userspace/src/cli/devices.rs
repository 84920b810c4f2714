//! `ispf devices`, `device`, `admit`, `quarantine`, `release` and
//! `export-devices`: the inventory and runtime decisions, through the
//! control socket.

use std::{io::BufRead, io::Write, path::Path, process::ExitCode, time::Duration};

use anyhow::{bail, Result};
use ispf::{
    clock::{rfc3339, unix_now},
    control::{self, Request, Response},
    decisions::DecisionRequest,
    inventory::query::{DeviceFilter, DeviceRow},
};

use super::Command;

/// Decisions are applied as a generation: as long as a reload may take.
const DECIDE_TIMEOUT: Duration = Duration::from_secs(300);

pub fn run(c: Command) -> Result<ExitCode> {
    match c {
        Command::Devices {
            unknown,
            quarantined,
            segment,
            since,
            json,
            run_dir,
        } => {
            let filter = DeviceFilter {
                unknown,
                quarantined,
                segment,
                since: since.map(|d| unix_now() - d.as_secs() as i64),
            };
            list(&run_dir, filter, json)
        }
        Command::Device { mac, json, run_dir } => {
            match control::request(&run_dir, &Request::Device { mac }, Duration::from_secs(30))? {
                Response::Device { device, timeline } if json => {
                    let v = serde_json::json!({"device": device, "timeline": timeline});
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Response::Device { device, timeline } => {
                    print_device(&device);
                    println!("timeline (newest first):");
                    // A fleet peer's decision writes its own reason and
                    // actor: no control characters reach the terminal.
                    for e in timeline {
                        println!(
                            "  {}  {:<12} {}{}",
                            rfc3339(e.at),
                            ispf::printable(&e.event),
                            ispf::printable(&e.detail),
                            e.actor
                                .map(|a| format!("  [by {}]", ispf::printable(&a)))
                                .unwrap_or_default()
                        );
                    }
                }
                Response::Error { message } => bail!("{message}"),
                other => bail!("unexpected answer {other:?}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Admit {
            mac,
            segment,
            name,
            risk,
            expires,
            reason,
            by,
            run_dir,
        } => decide(
            &run_dir,
            DecisionRequest::Admit {
                mac,
                segment,
                name,
                risk,
                expires_in: expires.map(|d| d.as_secs()),
                reason,
            },
            by,
        ),
        Command::Quarantine {
            mac,
            reason,
            expires,
            force,
            by,
            run_dir,
        } => decide(
            &run_dir,
            DecisionRequest::Quarantine {
                mac,
                reason,
                expires_in: expires.map(|d| d.as_secs()),
                force,
            },
            by,
        ),
        Command::Release { mac, by, run_dir } => {
            decide(&run_dir, DecisionRequest::Release { mac }, by)
        }
        Command::ExportDevices { run_dir } => {
            match control::request(&run_dir, &Request::ExportDevices, Duration::from_secs(30))? {
                Response::Exported { devices } => {
                    let v = serde_json::json!({ "devices": devices });
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    Ok(ExitCode::SUCCESS)
                }
                Response::Error { message } => bail!("{message}"),
                other => bail!("unexpected answer {other:?}"),
            }
        }
        _ => unreachable!("dispatched here for inventory commands only"),
    }
}

/// Who asks: `--by`, else the user `sudo` ran this for.
fn who(by: Option<String>) -> Option<String> {
    by.or_else(|| std::env::var("SUDO_USER").ok())
}

fn decide(run_dir: &Path, op: DecisionRequest, by: Option<String>) -> Result<ExitCode> {
    let req = Request::Decide { op, by: who(by) };
    match control::request(run_dir, &req, DECIDE_TIMEOUT)? {
        Response::Decided { message, .. } => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer {other:?}"),
    }
}

fn list(run_dir: &Path, filter: DeviceFilter, json: bool) -> Result<ExitCode> {
    let (count, mut reader) = control::devices(run_dir, filter, Duration::from_secs(60))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let n = if json {
        // Already one object per line, as the controller wrote it: copied
        // through as it arrives (100k devices are tens of megabytes).
        copy_lines(&mut reader, &mut out, count)?
    } else {
        let mut rows = Vec::new();
        for line in reader.lines().take(count) {
            let r: DeviceRow = serde_json::from_str(&line?)?;
            rows.push([
                r.mac,
                r.state,
                r.segment,
                r.ips.first().cloned().unwrap_or_else(|| "-".into()),
                r.vlan.map_or("-".into(), |v| v.to_string()),
                r.interface.unwrap_or_else(|| "-".into()),
                r.hostname.unwrap_or_else(|| "-".into()),
                r.last_seen.unwrap_or_else(|| "never".into()),
                r.vendor.unwrap_or_else(|| "-".into()),
            ]);
        }
        table(&mut out, &rows)?;
        rows.len()
    };
    out.flush()?;
    if n < count {
        bail!("the controller sent {n} of {count} devices before the connection ended");
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies up to `count` whole lines from `r` to `w`; returns how many.
/// A last line the connection cut short is not written.
fn copy_lines(r: &mut impl BufRead, w: &mut impl Write, count: usize) -> Result<usize> {
    let (mut n, mut partial) = (0, Vec::new());
    while n < count {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let mut end = 0;
        for (i, _) in buf.iter().enumerate().filter(|(_, c)| **c == b'\n') {
            end = i + 1;
            n += 1;
            if n == count {
                break;
            }
        }
        if end > 0 {
            w.write_all(&partial)?;
            partial.clear();
            w.write_all(&buf[..end])?;
        } else {
            end = buf.len();
            partial.extend_from_slice(buf);
        }
        // Bytes after the last whole line wait for the rest of it.
        if end < buf.len() && n < count {
            partial.extend_from_slice(&buf[end..]);
            end = buf.len();
        }
        r.consume(end);
    }
    Ok(n)
}

/// Columns as wide as their widest cell.
fn table(out: &mut impl Write, rows: &[[String; 9]]) -> Result<()> {
    let head = [
        "MAC",
        "STATE",
        "SEGMENT",
        "ADDRESS",
        "VLAN",
        "PORT",
        "HOST NAME",
        "LAST SEEN",
        "VENDOR",
    ];
    let mut width = head.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        s
    };
    writeln!(out, "{}", line(head.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn print_device(d: &DeviceRow) {
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    println!("mac          {}", d.mac);
    println!("vendor       {}", opt(&d.vendor));
    println!("state        {} (placed by {})", d.state, d.judged);
    println!("segment      {}", d.segment);
    if let Some(n) = &d.name {
        println!(
            "device       {n} (kind {}, risk {}, location {})",
            opt(&d.kind),
            opt(&d.risk),
            opt(&d.location)
        );
    }
    println!(
        "addresses    {}",
        if d.ips.is_empty() {
            "-".into()
        } else {
            d.ips.join(", ")
        }
    );
    println!(
        "port         {} VLAN {}",
        opt(&d.interface),
        d.vlan.map_or("-".into(), |v| v.to_string())
    );
    println!("host name    {}", opt(&d.hostname));
    println!("vendor class {}", opt(&d.vendor_class));
    println!(
        "first seen   {}",
        d.first_seen.as_deref().unwrap_or("never")
    );
    println!("last seen    {}", d.last_seen.as_deref().unwrap_or("never"));
    if let Some(x) = &d.decision {
        println!(
            "decision     {}{} by {} at {}: {}{}{}",
            x.kind,
            x.segment
                .as_ref()
                .map(|s| format!(" to {s}"))
                .unwrap_or_default(),
            x.by,
            x.at,
            x.reason,
            x.expires
                .as_ref()
                .map(|e| format!(", until {e}"))
                .unwrap_or_default(),
            if x.forced { " (forced)" } else { "" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied(input: &[u8], capacity: usize, count: usize) -> (usize, Vec<u8>) {
        let mut r = std::io::BufReader::with_capacity(capacity, input);
        let mut out = Vec::new();
        let n = copy_lines(&mut r, &mut out, count).unwrap();
        (n, out)
    }

    #[test]
    fn whole_lines_are_copied_across_reads() {
        let input = b"{\"a\":1}\n{\"bb\":22}\n{\"ccc\":333}\n{\"cut";
        for capacity in [1, 3, 7, 64] {
            assert_eq!(
                copied(input, capacity, 3),
                (3, b"{\"a\":1}\n{\"bb\":22}\n{\"ccc\":333}\n".to_vec()),
                "capacity {capacity}"
            );
            // A line cut short by the connection is neither counted nor written.
            assert_eq!(copied(input, capacity, 4).0, 3, "capacity {capacity}");
            assert_eq!(copied(input, capacity, 4).1.last(), Some(&b'\n'));
            // Nothing past the announced count.
            assert_eq!(copied(input, capacity, 1), (1, b"{\"a\":1}\n".to_vec()));
        }
    }
}
