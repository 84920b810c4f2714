//! `cargo xtask demo` must keep working: it runs the care-unit demo and
//! checks that every outcome matched the policy and everything was removed.

#[test]
fn care_unit_demo_runs_clean() {
    ispf_tests::require_root();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_care-unit-demo"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("every outcome matched the policy"), "{text}");
    assert!(!text.contains("[FAIL]"), "{text}");
    for must in [
        "spoofed",
        "intra_denied",
        "denied_rule",
        "reply",
        "0% packet loss",
        "generation 3",
    ] {
        assert!(text.contains(must), "demo output lacks `{must}`:\n{text}");
    }
    let netns = ispf_tests::programs::command("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains("care-"),
        "demo namespaces left behind"
    );
    assert!(
        !std::path::Path::new("/sys/fs/bpf/ispf-demo").exists(),
        "demo pins left behind"
    );
}
