//! The demo's identity act: a biomedical engineer logs in on the nurse
//! workstation (an 802.1X switch reports it by RADIUS accounting, played by
//! FreeRADIUS's `radclient`); the workstation gains the pumps' service port
//! for as long as the session lasts and loses it at `Stop`.

use std::{io::Write, os::unix::fs::PermissionsExt, path::Path, process::Stdio, time::Instant};

use anyhow::{bail, Context, Result};
use ispf_tests::programs::command;
use serde_json::{json, Value};

use crate::{ispf, print_indented, Probe, RUN_DIR, STATE_DIR};

const LISTEN: &str = "127.0.0.1:18120";
const SECRET: &str = "care-unit-demo-secret";

fn radclient(status: &str) -> Result<()> {
    let attrs = format!(
        "Acct-Status-Type = {status}, Acct-Session-Id = \"3W-0042\", User-Name = \"b.engineer\", \
         Calling-Station-Id = \"02-00-00-00-30-01\", Class = \"biomed\", Acct-Interim-Interval = 300, \
         NAS-IP-Address = 127.0.0.1\n"
    );
    println!("   $ echo 'Acct-Status-Type = {status}, Calling-Station-Id = 02-00-00-00-30-01, Class = biomed, ...' | radclient {LISTEN} acct SECRET");
    let mut c = command("radclient")
        .args(["-r", "2", "-t", "2", LISTEN, "acct", SECRET])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    c.stdin
        .take()
        .context("radclient stdin")?
        .write_all(attrs.as_bytes())?;
    let t = Instant::now();
    if !c.wait()?.success() {
        bail!("radclient got no Accounting-Response");
    }
    println!(
        "     Accounting-Response after {:.0} ms (sent once the role is enforced)",
        t.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

fn show(args: &[&str]) -> Result<()> {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--run-dir", RUN_DIR]);
    println!("   $ ispf {}", args.join(" "));
    print_indented(&ispf(&full)?);
    Ok(())
}

pub fn act(check: &dyn Fn(&str, &str, Probe, bool, &str), policy_file: &Path) -> Result<()> {
    println!(
        "\n== Identity: a biomedical engineer logs in on the nurse workstation (RADIUS accounting)"
    );
    let secret = Path::new(STATE_DIR).join("radius.secret");
    std::fs::write(&secret, format!("{SECRET}\n"))?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(policy_file)?)?;
    doc["segments"]
        .as_array_mut()
        .context("segments")?
        .push(json!({"name": "biomed-workstations"}));
    let rules = doc["rules"].as_array_mut().context("rules")?;
    rules.insert(0, json!({"id": "biomed-service", "from": "biomed-workstations", "to": "infusion-pumps", "proto": "tcp", "ports": [443], "action": "allow"}));
    rules.insert(0, json!({"id": "biomed-pis", "from": "biomed-workstations", "to": "pis-servers", "proto": "tcp", "ports": [443], "action": "allow"}));
    doc["identity"] = json!({
        "radius_accounting": {"listen": LISTEN, "clients": ["127.0.0.1"], "secret_file": secret},
        "roles": [{"name": "biomed-engineer", "class": "biomed", "segment": "biomed-workstations"}]
    });
    let variant = std::env::temp_dir().join("care-unit-identity.json");
    std::fs::write(&variant, serde_json::to_string_pretty(&doc)?)?;
    show(&["reload", variant.to_str().unwrap()])?;
    check(
        "care-nurse",
        "care-pump2",
        Probe::Tcp(443),
        false,
        "a nurse has no business on the pumps' service port",
    );
    radclient("Start")?;
    check(
        "care-nurse",
        "care-pump2",
        Probe::Tcp(443),
        true,
        "biomed-service: while the biomed session lasts",
    );
    check(
        "care-nurse",
        "care-pis",
        Probe::Tcp(443),
        true,
        "biomed-pis: the PIS still answers",
    );
    show(&["sessions"])?;
    radclient("Stop")?;
    check(
        "care-nurse",
        "care-pump2",
        Probe::Tcp(443),
        false,
        "Stop: the role is gone",
    );
    show(&["device", "02:00:00:00:30:01"])?;
    println!("   $ ispf reload {}", policy_file.display());
    print_indented(&ispf(&[
        "reload",
        policy_file.to_str().unwrap(),
        "--run-dir",
        RUN_DIR,
    ])?);
    Ok(())
}
