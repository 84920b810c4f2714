//! `cargo xtask bench --quick` as part of the test run, so the benchmark
//! harness cannot rot. It asserts that every figure is produced, nothing
//! about speed.

#[test]
fn quick_benchmark_produces_every_figure() {
    ispf_tests::require_root();
    let out = std::env::temp_dir().join(format!("ispf-bench-quick-{}", std::process::id()));
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_ispf-bench"))
        .args(["--quick", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let s = &results["summary"];
    for key in [
        "ns_ispf",
        "ns_floor",
        "ns_xdp_filter",
        "ratio_vs_xdp_filter",
        "flatness_devices",
        "flatness_rules",
        "mpps_ceiling",
        "mpps_ispf",
        "mpps_xdp_filter",
        "mpps_nft_sets",
        "mpps_nft_linear_10k",
        "ratio_vs_nft_sets",
        "ratio_vs_nft_linear_10k",
        "mpps_ceiling_new_flows",
        "mpps_ispf_new_flows",
        "mpps_nft_sets_new_flows",
        "ratio_vs_nft_sets_new_flows",
        "allowed_flow_exchanges_under_scan",
        "ns_ispf_tc",
        "ns_floor_tc",
        "mpps_ispf_tc",
        "gbps_tcp_unfiltered",
        "gbps_tcp_ispf",
        "gbps_tcp_ispf_xdp",
        "gbps_tcp_nft",
        "ratio_tcp_bulk_vs_unfiltered",
        "sightings_per_s",
        "ms_session_apply",
        "ms_session_apply_max",
        "ns_dependent_load",
    ] {
        let v = s[key]
            .as_f64()
            .unwrap_or_else(|| panic!("summary.{key} missing or not a number: {s}"));
        assert!(v.is_finite() && v > 0.0, "summary.{key} = {v}");
    }
    for key in [
        "net_ns_100k_devices",
        "apply_ms_100k_devices",
        "apply_ms_1m_devices",
        "map_memory_mb_1m_devices",
        "allowed_flow_retransmits_under_scan",
        "ms_devices_list_100k",
        "ns_ispf_feeds_1m",
        "ns_ispf_first_packet_feeds_1m",
        "ms_feed_load_1m",
        "ratio_feeds_1m_vs_ns_ispf",
        "ms_session_apply_100k",
        "ms_fleet_converge_10_hosts",
        "ms_fleet_converge_3_hosts_100k",
        "first_packet_net_in_dependent_loads",
    ] {
        assert!(
            s.get(key).is_some(),
            "summary.{key} missing (null is fine in a quick run)"
        );
    }
    assert!(s["kernel"].as_str().is_some_and(|k| !k.is_empty()) && s["cpu"].as_str().is_some());
    let md = std::fs::read_to_string(out.join("RESULTS.md")).unwrap();
    assert!(
        md.contains("Per-packet cost")
            && md.contains("End to end")
            && md.contains("A scan")
            && md.contains("Bulk TCP"),
        "{md}"
    );
    let svg = std::fs::read_to_string(out.join("cost-vs-size.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    let _ = std::fs::remove_dir_all(&out);
    let netns = ispf_tests::programs::command("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains("ispfb-"),
        "benchmark namespaces left behind"
    );
}

/// A mistyped flag (or `--help`) must not start a full run, which would
/// overwrite the recorded results.
#[test]
fn a_flag_it_does_not_know_runs_nothing() {
    let out = std::env::temp_dir().join(format!("ispf-bench-flags-{}", std::process::id()));
    let bench = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ispf-bench"))
            .args(args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let bad = bench(&["--quik"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{err}");
    assert!(
        err.contains("unknown argument `--quik`") && err.contains("usage:"),
        "{err}"
    );
    let bad = bench(&["--only", "scans"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("no section `scans`"),
        "{err}"
    );
    let help = bench(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--only SECTION"));
    assert!(!out.exists(), "nothing may be written");
}
