//! `ispf check` and `ispf schema` as a user runs them (no root needed).

use std::{path::PathBuf, process::Command};

fn ispf(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_ispf"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/care-unit.json")
}

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ispf-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn valid_policy_is_summarised() {
    let (ok, out, _) = ispf(&["check", example().to_str().unwrap()]);
    assert!(ok);
    assert!(out.contains("valid"), "{out}");
    assert!(out.contains("segments: 7"), "{out}");
    assert!(out.contains("devices:  6"), "{out}");
    assert!(out.contains("rules:    8"), "{out}");
}

#[test]
fn invalid_policy_names_every_path() {
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace(
            r#""mac": "02:00:00:00:10:02""#,
            r#""mac": "02:00:00:00:10:01""#,
        )
        .replace(
            r#""to": "pis-servers", "proto": "icmp""#,
            r#""to": "pis-server", "proto": "icmp""#,
        )
        .replace(r#""vlans": [140]"#, r#""vlans": [130]"#)
        .replace(r#""10.50.0.0/24""#, r#""10.50.0.1/24""#)
        .replace(
            r#""ports": [443], "action""#,
            r#""ports": ["9-1"], "action""#,
        );
    let f = write("bad.json", &text);
    let (ok, out, err) = ispf(&["check", f.to_str().unwrap()]);
    assert!(!ok, "{out}");
    for needle in [
        "devices[1].mac: duplicate MAC 02:00:00:00:10:01: already used at devices[0].mac",
        "rules[4].to: unknown segment `pis-server`",
        "segments[3].vlans[0]: VLAN 130 is already assigned at segments[2].vlans[0]",
        "segments[4].subnets[0]: `10.50.0.1/24` has host bits set; did you mean 10.50.0.0/24?",
        "rules[3].ports[0]: range `9-1` is empty",
        "bad.json",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in:\n{err}");
    }
}

#[test]
fn conflicting_rules_are_reported_with_both_paths() {
    let text = std::fs::read_to_string(example()).unwrap().replace(
        r#"{ "id": "guest-in", "from": "guest", "to": "*", "action": "deny" }"#,
        r#"{ "id": "guest-in", "from": "guest", "to": "*", "action": "deny" },
        { "from": "guest", "to": "*", "action": "allow" },
        { "from": "*", "to": "pis-servers", "proto": "tcp", "ports": ["440-450"], "action": "deny" },
        { "from": "*", "to": "pis-servers", "proto": "tcp", "ports": [443], "action": "allow" },
        { "from": "*", "to": "pis-servers", "proto": "udp", "ports": [443], "action": "allow" }"#,
    );
    let f = write("conflict.json", &text);
    let (ok, _, err) = ispf(&["check", f.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("rules[8]: conflicts with rules[7]"), "{err}");
    assert!(err.contains("rules[10]: conflicts with rules[9]"), "{err}");
    assert!(
        !err.contains("rules[11]"),
        "a different protocol does not overlap: {err}"
    );
    assert!(err.contains("2 problems"), "{err}");
}

#[test]
fn shape_errors_name_the_json_path() {
    let f = write(
        "shape.json",
        r#"{"version": 1, "segments": [{"name": "a"}], "rules": [{"from": "a", "to": "a", "action": "permit"}]}"#,
    );
    let (ok, _, err) = ispf(&["check", f.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("rules[0].action"), "{err}");
    let f = write("syntax.json", "{\"version\": 1,");
    let (ok, _, err) = ispf(&["check", f.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("syntax.json") && err.contains("not valid JSON"),
        "{err}"
    );
    let (ok, _, err) = ispf(&["check", "/nonexistent/policy.json"]);
    assert!(
        !ok && err.contains("cannot read policy /nonexistent/policy.json"),
        "{err}"
    );
    let f = write(
        "ports.json",
        r#"{"version": 1, "segments": [{"name": "a"}], "rules": [{"from": "a", "to": "*", "proto": "icmp", "ports": [1], "action": "allow"}]}"#,
    );
    let (ok, _, err) = ispf(&["check", f.to_str().unwrap()]);
    assert!(
        !ok && err.contains("rules[0].ports: ports need `proto` tcp, udp or sctp"),
        "{err}"
    );
}

#[test]
fn shipped_schema_is_current() {
    let (ok, out, _) = ispf(&["schema"]);
    assert!(ok);
    let shipped = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schema/policy.schema.json"),
    )
    .unwrap();
    assert_eq!(
        out.trim(),
        shipped.trim(),
        "regenerate with: ispf schema > schema/policy.schema.json"
    );
    let schema: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(schema["properties"]["rules"].is_object());
}
