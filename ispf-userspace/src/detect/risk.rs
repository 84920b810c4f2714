//! Which risk a device has for `detection.auto_quarantine`.

use crate::{clock::unix_now, decisions::Kind as DecisionKind, inventory::View, policy::Risk};

/// A device's risk: the admit's, else the file's entry for its MAC, else
/// (a MAC no entry names) the file's entry for its source address; unknown
/// devices and registered ones without a risk count as medium (the spec's
/// default). The admit is read whatever decision holds the device: a role
/// session on an admitted device does not make a high-risk device medium.
pub(super) fn of(view: &View, mac: &str, src_ip: Option<&str>) -> Risk {
    let now = unix_now();
    let admit = view.decisions.iter().rev().find(|d| {
        d.kind == DecisionKind::Admit && d.mac == mac && d.expires.is_none_or(|e| e > now)
    });
    if let Some(r) = admit
        .and_then(|d| d.risk.as_deref())
        .and_then(|r| serde_json::from_value(r.into()).ok())
    {
        return r;
    }
    let m = crate::policy::parse_mac(mac);
    // The file's entries only: a decision that holds adds an entry for its
    // MAC (a role's without a risk), which must not hide the risk of the
    // file's entry for the device's address.
    let entries = || {
        view.policy
            .doc
            .devices
            .iter()
            .zip(&view.policy.devices)
            .take(view.policy.file_devices)
    };
    if let Some((doc, _)) = entries().find(|(_, d)| d.mac.is_some() && d.mac == m) {
        return doc.risk.unwrap_or(Risk::Medium);
    }
    let ip: Option<std::net::IpAddr> = src_ip.and_then(|s| s.parse().ok());
    ip.and_then(|ip| {
        entries().find(|(_, d)| {
            d.mac.is_none()
                && match ip {
                    std::net::IpAddr::V4(a) => d.ipv4.contains(&a),
                    std::net::IpAddr::V6(a) => d.ipv6.contains(&a),
                }
        })
    })
    .and_then(|(doc, _)| doc.risk)
    .unwrap_or(Risk::Medium)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{decisions::Decision, policy::Policy};

    fn decision(kind: &str, segment: &str, risk: Option<&str>) -> Decision {
        serde_json::from_value(serde_json::json!({
            "mac": "02:00:00:00:00:09", "kind": kind, "segment": segment, "risk": risk,
            "reason": "test", "forced": false, "actor": "test", "at": 0, "expires": null
        }))
        .unwrap()
    }

    #[test]
    fn the_admit_and_address_only_entries_give_their_risk() {
        let text = r#"{ "version": 1,
            "segments": [{ "name": "ws" }, { "name": "imaging" }, { "name": "guest" }],
            "devices": [
              { "name": "ct", "ipv4": "10.0.0.5", "segment": "imaging", "risk": "high" },
              { "name": "pc", "mac": "02:00:00:00:00:01", "segment": "ws", "risk": "low" }],
            "rules": [] }"#;
        let policy = Arc::new(Policy::from_str(text, std::path::Path::new("t.json")).unwrap());
        let view = |decisions: Vec<Decision>| View {
            policy: policy.clone(),
            decisions: Arc::new(decisions),
        };
        let v = view(vec![]);
        assert_eq!(
            of(&v, "02:00:00:00:00:01", Some("10.0.0.5")),
            Risk::Low,
            "its MAC's entry first"
        );
        assert_eq!(
            of(&v, "02:00:00:00:00:07", Some("10.0.0.5")),
            Risk::High,
            "by address alone"
        );
        assert_eq!(of(&v, "02:00:00:00:00:07", Some("10.0.0.6")), Risk::Medium);
        // A role session on a device the file registers by address alone
        // leaves it the address entry's risk.
        let mut role = decision("role", "ws", None);
        role.mac = "02:00:00:00:00:07".into();
        let p = crate::decisions::applied(&policy, None, std::slice::from_ref(&role), 0);
        let v = View {
            policy: p.unwrap(),
            decisions: Arc::new(vec![role]),
        };
        assert_eq!(of(&v, "02:00:00:00:00:07", Some("10.0.0.5")), Risk::High);
        // A role session on an admitted high-risk device keeps it high.
        let v = view(vec![
            decision("admit", "guest", Some("high")),
            decision("role", "ws", None),
        ]);
        assert_eq!(of(&v, "02:00:00:00:00:09", None), Risk::High);
    }
}
