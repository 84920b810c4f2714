//! The life-critical guard of decisions: where a device is "in a
//! life-critical segment" for the spec (by the file or by an admit), and
//! the checks that keep automatic actions off such devices.

use super::{segment_of, Decision, DecisionError, Kind};
use crate::policy::Policy;

/// The first of `segments` that is life-critical in `policy`.
pub fn life_critical<'a>(policy: &Policy, segments: &'a [String]) -> Option<&'a str> {
    segments
        .iter()
        .find(|s| policy.life_critical_named(s))
        .map(String::as_str)
}

/// The segments the `kind` decisions among `decisions` give `mac`.
pub fn segments_of<'a>(
    decisions: &'a [Decision],
    mac: &'a str,
    kind: Kind,
) -> impl Iterator<Item = String> + 'a {
    decisions
        .iter()
        .filter(move |d| d.mac == mac && d.kind == kind)
        .filter_map(|d| d.segment.clone())
}

/// Where the enforced `policy` puts `mac` by the file or an admit: where
/// it is "in a life-critical segment" for the spec. A held role's segment
/// is not, since a role may put a cart in the monitors' segment, and a
/// cart is no monitor: it is quarantined by detection, or by hand without
/// `--force`, and moved by its user's next session. (A registered
/// device's own entry is the caller's `Known::registered`.)
pub(super) fn file_or_admit(policy: &Policy, current: &[Decision], mac: &str) -> Vec<String> {
    let roles: Vec<String> = segments_of(current, mac, Kind::Role).collect();
    let mut out: Vec<String> = segment_of(policy, mac)
        .into_iter()
        .filter(|s| !roles.contains(s))
        .collect();
    out.extend(segments_of(current, mac, Kind::Admit));
    out
}

/// Refuses a role session that would move `mac` out of a life-critical
/// segment it is in (`segments`: where it is known to be); moving it into
/// its `target`, even a life-critical one, is no move out.
pub(super) fn session_moves_no_life_critical(
    policy: &Policy,
    mac: &str,
    mut segments: Vec<String>,
    target: &str,
) -> Result<(), DecisionError> {
    segments.retain(|s| s != target);
    match life_critical(policy, &segments) {
        Some(seg) => Err(DecisionError::Invalid(format!(
            "{mac} is in the life-critical segment `{seg}`, which no role session moves"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{applied, plan, tests::dec, DecisionRequest, Known};
    use super::*;

    fn file() -> Arc<Policy> {
        let doc = serde_json::from_str(
            r#"{"version":1,"segments":[{"name":"pumps","life_critical":true},{"name":"ws"}]}"#,
        )
        .unwrap();
        Arc::new(Policy::from_doc(doc).unwrap())
    }

    /// The spec protects a device in a life-critical segment "by the file or
    /// by an admit". A cart a role put in the pumps' segment is quarantined
    /// without `--force` (and so by detection), and its user's next session
    /// moves it; admitted there, it is protected.
    #[test]
    fn a_role_in_a_life_critical_segment_does_not_protect_its_device() {
        let file = file();
        let cart = "02:00:00:00:99:05";
        let role = dec(cart, Kind::Role, Some("pumps"), None);
        let held = vec![role.clone()];
        let p = applied(&file, None, &held, 0).unwrap();
        assert_eq!(
            segment_of(&p, cart).as_deref(),
            Some("pumps"),
            "enforced there"
        );
        let seen = Known {
            seen: true,
            ..Default::default()
        };
        let q = DecisionRequest::Quarantine {
            mac: cart.into(),
            reason: "scan".into(),
            expires_in: None,
            force: false,
        };
        let ok = plan(&q, "a", 0, &p, &held, &seen).unwrap();
        assert!(!ok.put.unwrap().forced);
        let session = DecisionRequest::Session {
            mac: cart.into(),
            segment: "ws".into(),
            role: "biomed".into(),
            user: "bob".into(),
            nas: "10.0.0.9".into(),
            session: "S2".into(),
            host: None,
        };
        assert!(plan(&session, "r", 0, &p, &held, &seen).is_ok());
        // Admitted to the pumps' segment, a role on top does not lift it.
        let held = vec![dec(cart, Kind::Admit, Some("pumps"), None), role];
        let p = applied(&file, None, &held, 0).unwrap();
        let e = plan(&q, "a", 0, &p, &held, &seen).unwrap_err();
        assert!(matches!(e, DecisionError::LifeCritical { .. }), "{e}");
    }
}
