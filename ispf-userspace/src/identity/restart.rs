//! What a listener takes over from before a restart: the sessions the
//! table recorded, and the role decisions no session holds any more.
//!
//! In a fleet a role decision is the site's, while its session lives in
//! the table of the host whose listener made it (the decision's actor names
//! that host): a host ends only its own, and keeps its recorded sessions
//! whatever its local copy of the decisions says, since a decision reaches
//! etcd before the watch brings it back here.

use rusqlite::Connection;

use super::{session::Sessions, store};
use crate::{
    clock::log,
    decisions::{role_held_on, Decision, DecisionRequest, Kind},
};

/// The recorded sessions whose device a recorded role decision holds
/// (`decisions`, the enforced ones, when the record cannot be read), and
/// whether some were left out (the table must then be written again).
pub(super) fn restore(
    c: &Connection,
    decisions: &[Decision],
    fleet_host: Option<&str>,
) -> (Sessions, bool) {
    // The recorded decisions, not only those enforced: a role decision
    // under a quarantine holds again once it is released.
    let recorded = crate::inventory::store::decisions(c).unwrap_or_else(|_| decisions.to_vec());
    let held = |mac: &str| {
        fleet_host.is_some()
            || recorded
                .iter()
                .any(|d| d.kind == Kind::Role && d.mac == mac)
    };
    let now = crate::clock::unix_now();
    let (sessions, stale) = Sessions::restore(
        store::sessions(c).unwrap_or_default(),
        store::ended(c, now).unwrap_or_default(),
        held,
        now,
    );
    if let Some(s) = stale.first() {
        log(format!(
            "identity: {} recorded session(s) not restored (session {} of {} on {}{}): no role decision is recorded for their device (the controller ended it just before it last stopped)",
            stale.len(),
            s.id,
            s.user,
            s.mac,
            if stale.len() > 1 { " and others" } else { "" }
        ));
    }
    (sessions, !stale.is_empty())
}

/// Requests that end the role decisions this controller's listener made
/// and no restored session holds.
pub(super) fn orphans(
    decisions: &[Decision],
    sessions: &Sessions,
    fleet_host: Option<&str>,
) -> Vec<DecisionRequest> {
    let mine = |d: &Decision| match fleet_host {
        Some(h) => role_held_on(d, h),
        None => d.kind == Kind::Role,
    };
    let mut macs: Vec<String> = decisions
        .iter()
        .filter(|d| mine(d) && !sessions.is_bound(&d.mac))
        .map(|d| d.mac.clone())
        .collect();
    macs.sort();
    macs.dedup();
    macs.into_iter()
        .map(|mac| DecisionRequest::EndSession {
            mac,
            why: "no open session after the controller restarted".into(),
            host: fleet_host.map(str::to_owned),
            session: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::role_actor;

    fn role(mac: &str, host: Option<&str>) -> Decision {
        Decision {
            mac: mac.into(),
            kind: Kind::Role,
            segment: Some("ws".into()),
            name: None,
            risk: None,
            reason: "role biomed of alice (NAS 10.0.0.9, session S1)".into(),
            forced: false,
            actor: role_actor("10.0.0.9", host),
            at: 0,
            expires: None,
            addresses: Vec::new(),
        }
    }

    fn ended(r: &[DecisionRequest]) -> Vec<&str> {
        r.iter().map(|x| x.mac()).collect()
    }

    #[test]
    fn a_restart_ends_the_roles_its_own_listener_made_and_no_session_holds() {
        let (a, b, c) = (
            "02:00:00:00:20:01",
            "02:00:00:00:20:02",
            "02:00:00:00:20:03",
        );
        let quarantine = Decision {
            kind: Kind::Quarantine,
            ..role(c, None)
        };
        let none = Sessions::default();
        // Alone, every role decision is this controller's.
        let alone = [role(a, None), role(b, None), quarantine.clone()];
        assert_eq!(ended(&orphans(&alone, &none, None)), [a, b]);
        // In a fleet, only those this host's listener made.
        let site = [
            role(a, Some("ward-3")),
            role(b, Some("ward-4")),
            role(c, None),
            quarantine,
        ];
        assert_eq!(ended(&orphans(&site, &none, Some("ward-3"))), [a]);
        assert!(orphans(&site, &none, Some("ward-5")).is_empty());
    }
}
