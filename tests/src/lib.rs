//! Shared pieces of the ispf test tiers: a frame builder, the reference
//! model of the policy specification, a random policy/frame generator, and
//! network-namespace fixtures.

pub mod care_unit;
pub mod controller;
pub mod etcd;
pub mod exclusive;
pub mod feeds;
pub mod frames;
pub mod gen;
pub mod hl7;
pub mod http;
pub mod inventory;
pub mod layouts;
pub mod model;
pub mod netns;
pub mod pins;
pub mod programs;
pub mod raw;
pub mod services;

/// Kernel tiers need root. Without it they fail, never pass by skipping:
/// `cargo xtask test` runs them as root.
pub fn require_root() {
    // SAFETY: no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads BPF programs and creates network namespaces: it needs root; run it with `cargo xtask test` as root"
    );
}

/// The `ispf` binary, built on demand (integration tests of another package
/// have no `CARGO_BIN_EXE_ispf`).
pub fn ispf_bin() -> std::path::PathBuf {
    let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned();
    let st = crate::programs::command("cargo")
        .args(["build", "-q", "-p", "ispf-userspace"])
        .current_dir(&ws)
        .status()
        .expect("cargo build");
    assert!(st.success(), "building ispf failed");
    ws.join("target/debug/ispf")
}

/// The VLAN access-port fixture (tests/fixtures), built by build.rs.
pub const VLAN_TAGGER: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vlan-tagger"));

/// Copies the `ispf` binary and `files` into a fresh world-readable
/// directory, so a test can run them as an unprivileged user even when the
/// checkout lives in a private directory (CI clones into one). Returns the
/// binary's path and the copies' paths.
pub fn unprivileged_copies(
    files: &[&std::path::Path],
) -> (std::path::PathBuf, Vec<std::path::PathBuf>) {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("ispf-unpriv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = |src: &std::path::Path, mode: u32| {
        let dst = dir.join(src.file_name().unwrap());
        std::fs::copy(src, &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).unwrap();
        dst
    };
    let bin = copy(&ispf_bin(), 0o755);
    (bin, files.iter().map(|f| copy(f, 0o644)).collect())
}

/// Benchmark baselines (tests/fixtures): `xdp_empty`, `xdp_tx`, `xdp_drop`.
pub const XDP_BASELINES: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-baselines"));

/// Packets counted from segment `src` to `dst` with `reason`, summed over
/// verdicts and rules.
pub fn packets(
    counters: &std::collections::BTreeMap<ispf_common::CounterKey, ispf_common::CounterVal>,
    policy: &ispf::policy::Policy,
    src: &str,
    dst: &str,
    reason: &str,
) -> u64 {
    counters
        .iter()
        .filter(|(k, _)| {
            policy.segment_name(k.src) == src
                && policy.segment_name(k.dst) == dst
                && ispf_common::reason_name(k.reason) == Some(reason)
        })
        .map(|(_, v)| v.packets)
        .sum()
}
