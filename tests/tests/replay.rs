//! `ispf replay` as an engineer runs it: the bundled capture against the
//! example policy, JSON and table output, and the errors for bad input.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use ispf_tests::{care_unit::*, require_root};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The `ispf` binary, built on demand (integration tests of another package
/// have no CARGO_BIN_EXE for it).
fn ispf() -> PathBuf {
    ispf_tests::ispf_bin()
}

fn replay(pcap: &Path, json: bool) -> Output {
    let mut c = Command::new(ispf());
    c.args(["replay", "--policy"])
        .arg(policy_path())
        .arg("--pcap")
        .arg(pcap);
    if json {
        c.arg("--json");
    }
    c.output().unwrap()
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("ispf-replay-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn bundled_capture_replays_to_the_written_verdicts() {
    require_root();
    let o = replay(&workspace().join("examples/care-unit.pcap"), true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect();
    let cases = scenario();
    assert_eq!(lines.len(), cases.len());
    for (i, (l, c)) in lines.iter().zip(&cases).enumerate() {
        let expected = serde_json::json!({
            "packet": i + 1,
            "verdict": if c.pass { "pass" } else { "drop" },
            "reason": c.reason,
            "src_segment": c.src,
            "dst_segment": c.dst,
        });
        assert_eq!(l, &expected, "frame {} (`{}`)", i + 1, c.name);
    }
}

#[test]
fn table_output_has_totals() {
    require_root();
    let o = replay(&workspace().join("examples/care-unit.pcap"), false);
    assert!(o.status.success());
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.contains(&format!("{} frames", scenario().len())),
        "{out}"
    );
    let spoofed = scenario().iter().filter(|c| c.reason == "spoofed").count();
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("spoofed")
                && l.contains(&format!("{spoofed} dropped"))),
        "{out}"
    );
}

#[test]
fn bad_captures_are_clear_errors() {
    require_root();
    let not_pcap = tmp("text.pcap", b"hello, this is not a capture");
    let o = replay(&not_pcap, true);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is not a pcap or pcapng capture") && err.contains("text.pcap"),
        "{err}"
    );
    assert!(o.stdout.is_empty());

    let good = std::fs::read(workspace().join("examples/care-unit.pcap")).unwrap();
    let cut = tmp("cut.pcap", &good[..good.len() - 10]);
    let o = replay(&cut, true);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("frame {}", scenario().len())) && err.contains("truncated"),
        "{err}"
    );

    let mut raw_ip = good[..24].to_vec();
    raw_ip[20..24].copy_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    let raw = tmp("raw.pcap", &raw_ip);
    let o = replay(&raw, true);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("link type") && err.contains("Ethernet frames only"),
        "{err}"
    );
    for p in [not_pcap, cut, raw] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn replay_without_root_says_so() {
    require_root();
    let pcap = workspace().join("examples/care-unit.pcap");
    let (bin, copies) = ispf_tests::unprivileged_copies(&[&policy_path(), &pcap]);
    let o = ispf_tests::programs::command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["replay", "--policy"])
        .arg(&copies[0])
        .arg("--pcap")
        .arg(&copies[1])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("needs root"), "{err}");
}
