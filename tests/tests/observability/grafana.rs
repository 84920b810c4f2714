//! The Grafana dashboard shipped with the package asks only for metrics
//! the controller exports.

#[test]
fn grafana_dashboard_uses_only_exported_metrics() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/ispf-grafana.json");
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exported = [
        "ispf_packets_total",
        "ispf_bytes_total",
        "ispf_rule_hits_total",
        "ispf_would_drop_packets_total",
        "ispf_map_entries",
        "ispf_map_capacity_entries",
        "ispf_conntrack_entries",
        "ispf_policy_generation",
        "ispf_policy_last_reload_timestamp_seconds",
        "ispf_policy_last_reload_success",
        "ispf_policy_reloads_total",
        "ispf_interface_attached",
        "ispf_events_total",
        "ispf_events_lost_total",
    ];
    let src = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../ispf-userspace/src/metrics/mod.rs"),
    )
    .unwrap();
    for m in exported {
        assert!(
            src.contains(&format!("\"{m}\"")),
            "{m} is not exported by metrics/mod.rs"
        );
    }
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let used: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("ispf_"))
                .collect();
            assert!(!used.is_empty(), "{expr}");
            for u in used {
                assert!(
                    exported.contains(&u),
                    "panel {} queries unknown metric {u}",
                    p["title"]
                );
            }
        }
    }
}
