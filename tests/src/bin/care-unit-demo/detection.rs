//! The demo's detection act: the policy gains a threat feed and a
//! `detection` section; a real nmap scan from the nurse workstation is
//! alerted and the workstation quarantined at once, the same scan from a
//! pump only alerts (a life-critical device is never isolated), and when the
//! feed lists the PIS's upstream server, the PIS's established connection
//! to it stops at its next packet.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ispf_tests::{
    inventory::{Echo, Stream},
    programs::command,
};
use serde_json::{json, Value};

use crate::{ispf, print_indented, Probe, RUN_DIR, STATE_DIR};

const NURSE_MAC: &str = "02:00:00:00:30:01";
const PUMP_MAC: &str = "02:00:00:00:10:01";
/// The care unit's gateway plays the PIS vendor's update server beyond it.
pub const GATEWAY_IP: &str = "10.60.0.1";

fn show(args: &[&str]) -> Result<()> {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--run-dir", RUN_DIR]);
    println!("   $ ispf {}", args.join(" "));
    print_indented(&ispf(&full)?);
    Ok(())
}

/// The example policy plus an upstream rule for the PIS, a file feed and
/// automatic quarantine for low- and medium-risk devices.
fn variant(base: &Path, feed: &Path) -> Result<PathBuf> {
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(base)?)?;
    let rules = doc["rules"]
        .as_array_mut()
        .context("the example policy has no rules array; update the demo")?;
    rules.insert(
        0,
        json!({"id": "pis-updates", "from": "pis-servers", "to": "world",
               "proto": "tcp", "ports": [443], "action": "allow"}),
    );
    doc["feeds"] = json!([{"name": "demo-blocklist", "source": feed, "refresh_s": 2}]);
    doc["detection"] = json!({
        "scan": {"distinct_targets": 20, "window_s": 10},
        "auto_quarantine": ["low", "medium"],
        "quarantine_ttl_s": 600
    });
    let path = std::env::temp_dir().join("care-unit-detection.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    Ok(path)
}

/// Starts a scan; the act watches the alert arrive while it runs.
fn nmap(from: &str, targets: &[&str]) -> Result<std::process::Child> {
    let mut args = vec![
        "netns",
        "exec",
        from,
        "nmap",
        "-n",
        "-Pn",
        "-sS",
        "--max-retries",
        "0",
        "-p",
        "1-200",
    ];
    args.extend_from_slice(targets);
    println!(
        "   $ ip netns exec {from} nmap -sS -p 1-200 {}",
        targets.join(" ")
    );
    Ok(command("ip")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// The newest alert about `mac` with an id above `after`.
fn alert_for(mac: &str, after: i64, within: Duration) -> Result<Value> {
    let t = Instant::now();
    loop {
        let out = ispf(&["alerts", "--json", "--run-dir", RUN_DIR])?;
        let found = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|a| a["mac"] == mac && a["kind"] == "scan" && a["id"].as_i64() > Some(after));
        if let Some(a) = found {
            return Ok(a);
        }
        if t.elapsed() > within {
            bail!("no scan alert for {mac} within {within:?}");
        }
        sleep(Duration::from_millis(100));
    }
}

fn last_alert_id() -> Result<i64> {
    let out = ispf(&["alerts", "--json", "--run-dir", RUN_DIR])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|a| a["id"].as_i64())
        .max()
        .unwrap_or(0))
}

pub fn act(check: &dyn Fn(&str, &str, Probe, bool, &str), policy_file: &Path) -> Result<()> {
    println!("\n== Detection and response: a threat feed and automatic quarantine");
    let feed = Path::new(STATE_DIR).join("demo-blocklist.txt");
    std::fs::write(
        &feed,
        "# the hospital's blocklist, one address or CIDR a line\n",
    )?;
    let policy = variant(policy_file, &feed)?;
    show(&["reload", policy.to_str().unwrap()])?;
    let _upstream = Echo::start("care-gw", 443);
    let stream = Stream::start("care-pis", GATEWAY_IP, 443);
    stream.wait_state(true, 5, Duration::from_secs(3));
    println!("   the PIS holds a connection to its vendor's server {GATEWAY_IP}:443 (pis-updates)");

    println!("\n== A compromised workstation scans the care unit");
    let before = last_alert_id()?;
    let t = Instant::now();
    let mut scan = nmap("care-nurse", &["10.50.0.10", "10.20.0.21"])?;
    let alert = alert_for(NURSE_MAC, before, Duration::from_secs(5))?;
    let took = t.elapsed();
    scan.wait()?;
    println!(
        "   scan alert #{} {:.1} s after nmap started: {} -> {}",
        alert["id"],
        took.as_secs_f32(),
        alert["detail"].as_str().unwrap_or(""),
        alert["response"].as_str().unwrap_or("")
    );
    check(
        "care-nurse",
        "care-pis",
        Probe::Tcp(443),
        false,
        "quarantined by ispf detection",
    );

    println!("\n== The same scan from an infusion pump: alert only, never isolated");
    let before = last_alert_id()?;
    let mut scan = nmap("care-pump1", &["10.50.0.10"])?;
    let alert = alert_for(PUMP_MAC, before, Duration::from_secs(5))?;
    scan.wait()?;
    println!(
        "   scan alert #{} ({}): {}",
        alert["id"],
        alert["severity"].as_str().unwrap_or(""),
        alert["response"].as_str().unwrap_or("")
    );
    check(
        "care-pump1",
        "care-pis",
        Probe::Tcp(2575),
        true,
        "pump-hl7 still flows",
    );
    show(&["alerts"])?;

    println!("\n== The blocklist gains the PIS's upstream server");
    std::fs::write(
        &feed,
        format!("# the hospital's blocklist\n{GATEWAY_IP}  # reported by the regional ISAC\n"),
    )?;
    let took = stream.wait_state(false, 3, Duration::from_secs(10));
    println!(
        "   the established connection stopped {:.1} s after the file changed (threat_feed)",
        took.as_secs_f32()
    );
    show(&["feeds"])?;

    println!("\n== The SOC releases the workstation");
    show(&["release", NURSE_MAC, "--by", "soc"])?;
    check(
        "care-nurse",
        "care-pis",
        Probe::Tcp(443),
        true,
        "released: ws-pis again",
    );
    drop(stream);
    println!("   $ ispf reload {}", policy_file.display());
    print_indented(&ispf(&[
        "reload",
        policy_file.to_str().unwrap(),
        "--run-dir",
        RUN_DIR,
    ])?);
    Ok(())
}
