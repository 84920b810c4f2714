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

#[test]
fn filters_and_sizes_are_validated_before_anything_runs() {
    let (ok, _, err) = ispf(&["events", "--verdict", "bogus"]);
    assert!(!ok && err.contains("invalid value 'bogus'"), "{err}");
    let (ok, _, err) = ispf(&["events", "--reason", "bogus"]);
    assert!(!ok && err.contains("no reason `bogus`"), "{err}");
    let (ok, _, err) = ispf(&[
        "check",
        "--map-size",
        "devices=lots",
        example().to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("ENTRIES must be a number"), "{err}");
    let (ok, _, err) = ispf(&[
        "check",
        "--map-size",
        "routers=9",
        example().to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("map sizes are devices"), "{err}");
}

#[test]
fn check_refuses_what_reload_would() {
    // 70,000 devices fit a 131,072-entry map once, not twice: reload could
    // never replace the policy, so check says so, with the fix.
    let devices: Vec<String> = (0..70_000u32)
        .map(|i| {
            format!(
                r#"{{"name":"d{i}","ipv4":"10.{}.{}.{}","segment":"a"}}"#,
                i >> 16,
                (i >> 8) & 0xff,
                i & 0xff
            )
        })
        .collect();
    let f = write(
        "big.json",
        &format!(
            r#"{{"version":1,"segments":[{{"name":"a"}}],"devices":[{}]}}"#,
            devices.join(",")
        ),
    );
    let (ok, _, err) = ispf(&["check", "--map-size", "devices=131072", f.to_str().unwrap()]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("ISPF_DEV_V4 needs 140000 entries")
            && err.contains("--map-size devices=196608"),
        "{err}"
    );
    let (ok, out, _) = ispf(&["check", f.to_str().unwrap()]);
    assert!(
        ok && out.contains("devices 196608 (above the default)"),
        "{out}"
    );
    // Not UTF-8: refused with where.
    let f = write(
        "latin1.json",
        "{\"version\": 1,\n \"segments\": [{\"name\": \"caf\u{e9}\"}]}",
    );
    let mut bytes = std::fs::read(&f).unwrap();
    let at = bytes.iter().position(|b| *b == 0xc3).unwrap();
    bytes.splice(at..at + 2, [0xe9]);
    std::fs::write(&f, bytes).unwrap();
    let (ok, _, err) = ispf(&["check", f.to_str().unwrap()]);
    assert!(
        !ok && err.contains("line 2") && err.contains("not valid UTF-8"),
        "{err}"
    );
}
