use super::*;

fn policy(extra_rule: &str, pump_segment: &str) -> Policy {
    let text = format!(
        r#"{{"version": 1,
        "segments": [{{"name": "pumps"}}, {{"name": "pis"}}, {{"name": "ws"}}],
        "devices": [{{"name": "p1", "mac": "02:00:00:00:00:01", "segment": "{pump_segment}"}},
                    {{"name": "srv", "ipv4": "10.0.0.1", "segment": "pis"}}],
        "rules": [{{"from": "pumps", "to": "pis", "proto": "tcp", "ports": [2575], "action": "allow"}}{extra_rule}]}}"#
    );
    Policy::from_str(&text, "t.json".as_ref()).unwrap()
}

#[test]
fn reports_moves_and_opened_and_closed_services() {
    let old = policy("", "pumps");
    let new = policy(
        r#", {"from": "ws", "to": "pis", "proto": "tcp", "ports": [443], "action": "allow"}"#,
        "ws",
    );
    let d = diff(&old, &new);
    assert_eq!(
        d.devices_moved,
        vec![("p1".into(), "pumps".into(), "ws".into())]
    );
    assert!(d.devices_added.is_empty() && d.devices_removed.is_empty());
    assert_eq!(
        d.opened,
        vec![("ws".into(), "pis".into(), vec!["tcp/443".into()])]
    );
    assert!(d.closed.is_empty());
    let back = diff(&new, &old);
    assert_eq!(
        back.closed,
        vec![("ws".into(), "pis".into(), vec!["tcp/443".into()])]
    );
    assert!(diff(&old, &old).is_empty());
    assert!(format!("{d}").contains("+ opens ws -> pis: tcp/443"));
}

/// Thousands of segments added with the default `allow`: every pair
/// with them changes. Counted, not compared one by one (a careless
/// file kept a controller busy for minutes).
#[test]
fn too_many_pairs_are_counted_not_compared() {
    let segs: Vec<serde_json::Value> = (0..400)
        .map(|i| serde_json::json!({ "name": format!("s{i}") }))
        .collect();
    let doc = |segments: &[serde_json::Value]| {
        let doc = serde_json::json!({ "version": 1, "segments": segments,
            "defaults": { "default_action": "allow" } });
        Policy::from_doc(serde_json::from_value(doc).unwrap()).unwrap()
    };
    let t = std::time::Instant::now();
    let d = diff(&doc(&segs[..2]), &doc(&segs));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    assert!(d.pairs_not_compared.is_some_and(|n| n > MAX_PAIRS));
    assert!(d.opened.is_empty());
    assert!(
        d.to_string().contains("more than 50000 segment pairs"),
        "{d}"
    );
    // A few added are compared as before.
    let d = diff(&doc(&segs[..2]), &doc(&segs[..4]));
    assert_eq!(d.pairs_not_compared, None);
    assert!(!d.opened.is_empty());
}
