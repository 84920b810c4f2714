//! The demo's reload act: three reloads (one a typo, refused) while a pump
//! streams to the PIS without losing a packet.

use std::{
    cell::Cell,
    path::{Path, PathBuf},
    thread::sleep,
    time::Duration,
};

use anyhow::{bail, Result};
use ispf_tests::netns::in_ns;

use crate::{ispf, print_indented, Probe, RUN_DIR};

pub fn act(
    check: &dyn Fn(&str, &str, Probe, bool, &str),
    failures: &Cell<u32>,
    policy_file: &Path,
) -> Result<()> {
    println!("\n== Reloads while a pump streams to the PIS (ping every 10 ms)");
    let pinger = std::thread::spawn(|| {
        in_ns(
            "care-pump1",
            &[
                "ping",
                "-q",
                "-c",
                "300",
                "-i",
                "0.01",
                "-W",
                "1",
                "10.50.0.10",
            ],
        )
    });
    sleep(Duration::from_millis(300));
    let tighter = write_variant(
        policy_file,
        r#""ports": [443, 104, "11112-11115"]"#,
        r#""ports": [443]"#,
        "no-dicom",
    )?;
    println!("   $ ispf reload --dry-run {}", tighter.display());
    print_indented(&ispf(&[
        "reload",
        "--dry-run",
        tighter.to_str().unwrap(),
        "--run-dir",
        RUN_DIR,
    ])?);
    println!("   $ ispf reload {}", tighter.display());
    print_indented(&ispf(&[
        "reload",
        tighter.to_str().unwrap(),
        "--run-dir",
        RUN_DIR,
    ])?);
    check(
        "care-nurse",
        "care-pis",
        Probe::Tcp(11112),
        false,
        "DICOM closed by the new generation",
    );
    check(
        "care-nurse",
        "care-pis",
        Probe::Tcp(443),
        true,
        "HTTPS still open",
    );
    let broken = write_variant(
        policy_file,
        r#""segment": "patient-monitors", "kind": "patient-monitor", "risk": "critical" },"#,
        r#""segment": "patient-monitorz", "kind": "patient-monitor", "risk": "critical" },"#,
        "broken",
    )?;
    println!("   $ ispf reload {}   # a typo", broken.display());
    let out = ispf(&["reload", broken.to_str().unwrap(), "--run-dir", RUN_DIR])?;
    print_indented(&out);
    if out.status.success() {
        failures.set(failures.get() + 1);
        println!("   [FAIL] an invalid policy was applied");
    }
    println!("   $ ispf reload {}", policy_file.display());
    print_indented(&ispf(&[
        "reload",
        policy_file.to_str().unwrap(),
        "--run-dir",
        RUN_DIR,
    ])?);
    check(
        "care-nurse",
        "care-pis",
        Probe::Tcp(11112),
        true,
        "DICOM open again",
    );
    let ping_out = pinger.join().expect("pinger");
    let summary = String::from_utf8_lossy(&ping_out.stdout)
        .lines()
        .find(|l| l.contains("packet loss"))
        .unwrap_or("")
        .to_owned();
    let lossless = summary.contains(" 0% packet loss");
    println!(
        "   [{}] pump -> PIS stream across three reloads: {summary}",
        if lossless { "ok " } else { "FAIL" }
    );
    if !lossless {
        failures.set(failures.get() + 1);
    }

    Ok(())
}

fn write_variant(base: &Path, from: &str, to: &str, name: &str) -> Result<PathBuf> {
    let text = std::fs::read_to_string(base)?;
    if !text.contains(from) {
        bail!("demo variant {name}: the example policy changed; update the demo");
    }
    let path = std::env::temp_dir().join(format!("care-unit-{name}.json"));
    std::fs::write(&path, text.replace(from, to))?;
    Ok(path)
}
