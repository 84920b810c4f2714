//! The inventory: how many sightings a second the ingest thread takes in
//! (decoded from ring-buffer records, placed, written to SQLite), and how
//! long `ispf devices --json` takes over the headline number of devices,
//! against a running controller, as an operator would run it.

use std::{
    process::{Command, Stdio},
    sync::{mpsc::sync_channel, Arc},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ispf::{
    inventory::{db_path, ingest, observe, Facts, View},
    policy::parse_mac,
};
use ispf_common::{Event, EVENT_SIGHTING, FAMILY_V4};
use ispf_tests::netns::{must, sh};
use serde_json::json;

use crate::{
    corpus::{mac_of, v4_of},
    median, Bench,
};

/// A sighting record as the datapath writes it into the ring buffer.
fn record(i: usize, ifindex: u32) -> Vec<u8> {
    let mut e = Event {
        kind: EVENT_SIGHTING,
        family: FAMILY_V4,
        ifindex,
        src: 1,
        src_mac: parse_mac(&mac_of(i)).expect("a MAC"),
        ..Default::default()
    };
    e.src_ip[..4].copy_from_slice(&v4_of(i).octets());
    // SAFETY: reads the event's own bytes.
    unsafe { std::slice::from_raw_parts((&e as *const Event).cast::<u8>(), size_of::<Event>()) }
        .to_vec()
}

/// The release `ispf`, as installed: timing a debug build would measure
/// the build, not the listing.
pub fn release_ispf() -> Result<std::path::PathBuf> {
    let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace")?
        .to_owned();
    let st = ispf_tests::programs::command("cargo")
        .args(["build", "--release", "-q", "-p", "ispf-userspace"])
        .current_dir(&ws)
        .status()?;
    if !st.success() {
        bail!("building ispf (release) failed");
    }
    Ok(ws.join("target/release/ispf"))
}

pub fn inventory(b: &mut Bench) -> Result<()> {
    let n = b.cfg.headline_devices;
    let dir = std::env::temp_dir().join("ispf-bench-inventory");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let policy = Arc::new(b.headline.clone());
    let view_policy = policy.clone();
    let view: Arc<dyn Fn() -> View + Send + Sync> = Arc::new(move || View {
        policy: view_policy.clone(),
        decisions: Arc::new(Vec::new()),
    });
    // Every device appears, then is seen again (refreshes): the two kinds
    // of sighting a ward produces.
    eprintln!("inventory: ingesting {} sightings of {n} devices", 2 * n);
    let records: Vec<Vec<u8>> = (0..2 * n).map(|k| record(k % n, 1)).collect();
    let (tx, rx) = sync_channel(65_536);
    let facts = Arc::new(Facts::default());
    let opts = ingest::Options {
        db: db_path(&dir),
        max_unknown: 2 * n,
        vendors_dir: ispf::inventory::oui::IEEE_DATA.into(),
    };
    let f = facts.clone();
    let t = Instant::now();
    let worker = std::thread::spawn(move || ingest::run(opts, rx, f, view, Box::new(|_| {})));
    for r in &records {
        let o = observe::decode(r).context("decoding a sighting")?;
        tx.send(o)?;
    }
    drop(tx);
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("the ingest thread panicked"))?;
    let secs = t.elapsed().as_secs_f64();
    if let Some(e) = facts.error() {
        bail!("the inventory could not be written: {e}");
    }
    let per_s = records.len() as f64 / secs;
    eprintln!("inventory: {per_s:.0} sightings/s");

    // `ispf devices --json` against a controller over that database.
    let ispf = release_ispf()?;
    let policy_file = dir.join("policy.json");
    std::fs::write(&policy_file, serde_json::to_vec(&policy.doc)?)?;
    let (port, peer) = ("ispfbinv0", "ispfbinv1");
    let _ = sh(&["ip", "link", "del", port]);
    must(&[
        "ip", "link", "add", port, "type", "veth", "peer", "name", peer,
    ]);
    must(&["ip", "link", "set", port, "up"]);
    must(&["ip", "link", "set", peer, "up"]);
    let (pins, run) = ("/sys/fs/bpf/ispf-bench-inv", dir.join("run"));
    let _ = Command::new(&ispf)
        .args(["detach", "--pin-dir", pins, "--run-dir"])
        .arg(&run)
        .output();
    let mut ctl = Command::new(&ispf)
        .arg("run")
        .arg("--policy")
        .arg(&policy_file)
        .args([
            "--iface",
            port,
            "--pin-dir",
            pins,
            "--metrics-addr",
            "127.0.0.1:19479",
        ])
        .arg("--run-dir")
        .arg(&run)
        .arg("--state-dir")
        .arg(&dir)
        .stderr(std::fs::File::create(dir.join("controller.log"))?)
        .spawn()?;
    let listed = (|| -> Result<Vec<f64>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = Command::new(&ispf)
                .args(["status", "--run-dir"])
                .arg(&run)
                .output()?;
            if st.status.success() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the controller did not start: {}",
                    std::fs::read_to_string(dir.join("controller.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut times = Vec::new();
        for _ in 0..b.cfg.runs.max(3) {
            let t = Instant::now();
            let out = Command::new(&ispf)
                .args(["devices", "--json", "--run-dir"])
                .arg(&run)
                .stdout(Stdio::piped())
                .output()?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if !out.status.success() {
                bail!("ispf devices: {}", String::from_utf8_lossy(&out.stderr));
            }
            let lines = out.stdout.iter().filter(|c| **c == b'\n').count();
            // The test port's own peer may have been seen too.
            if lines < n {
                bail!("ispf devices listed {lines} devices, not {n}");
            }
            times.push(ms);
        }
        Ok(times)
    })();
    let _ = ctl.kill();
    let _ = ctl.wait();
    let _ = Command::new(&ispf)
        .args(["detach", "--pin-dir", pins, "--run-dir"])
        .arg(&run)
        .output();
    let _ = sh(&["ip", "link", "del", port]);
    let times = listed?;
    let ms = median(times.clone());
    eprintln!("inventory: ispf devices --json over {n} devices: {ms:.0} ms");
    b.put("sightings_per_s", per_s);
    // A quick run lists fewer devices: the figure is in `inventory` only.
    b.put(
        "ms_devices_list_100k",
        if n == 100_000 { ms } else { f64::NAN },
    );
    b.results.insert(
        "inventory".into(),
        json!({
            "devices": n,
            "sightings": records.len(),
            "ingest_seconds": secs,
            "sightings_per_s": per_s,
            "devices_list_ms": times,
        }),
    );
    Ok(())
}
