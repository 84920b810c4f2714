//! What a listener takes over from before a restart: the sessions the
//! table recorded, and the role decisions no session holds any more (also
//! looked for every [`ORPHAN_SWEEP`] while it runs).
//!
//! In a fleet a role decision is the site's, while its session lives in
//! the table of the host whose listener made it (the decision's actor names
//! that host): a host ends only its own, and keeps its recorded sessions
//! whatever its local copy of the decisions says, since a decision reaches
//! etcd before the watch brings it back here.

use std::{collections::HashMap, time::Duration};

use rusqlite::Connection;

use super::{
    session::{Session, Sessions},
    store, Apply,
};
use crate::{
    clock::log,
    decisions::{names_session, role_held_on, session_mark, Decision, DecisionRequest, Kind},
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
    // Each device's role decision, found once: the table may hold 200,000
    // sessions and the record as many decisions.
    let roles: HashMap<&str, &str> = recorded
        .iter()
        .filter(|d| d.kind == Kind::Role)
        .map(|d| (d.mac.as_str(), d.reason.as_str()))
        .collect();
    let held = |mac: &str| fleet_host.is_some() || roles.contains_key(mac);
    // A device's older session may be the one holding its role (a newer
    // one was refused, or displaced it and ended): that one's Stop must
    // end the role, not the newer's.
    let names = |x: &Session| {
        roles
            .get(x.mac.as_str())
            .is_some_and(|reason| names_session(reason, &session_mark(&x.nas, &x.id)))
    };
    let now = crate::clock::unix_now();
    let (sessions, stale) = Sessions::restore(
        store::sessions(c).unwrap_or_default(),
        store::ended(c, now).unwrap_or_default(),
        held,
        names,
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
/// and no session in `sessions` holds, saying `why`.
pub(super) fn orphans(
    decisions: &[Decision],
    sessions: &Sessions,
    fleet_host: Option<&str>,
    why: &str,
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
            why: why.into(),
            host: fleet_host.map(str::to_owned),
            session: None,
        })
        .collect()
}

/// How often the listener of a single host looks for role decisions no
/// session holds: an unbind the engine could not enforce then (a failing
/// generation) is tried again, rather than leaving the role with nothing
/// to end it. (A fleet host does so at start only: see the listener.)
pub(super) const ORPHAN_SWEEP: Duration = Duration::from_secs(30);

/// Ends the role decisions among `decisions` that this listener's
/// sessions made and none holds any more, saying `why`. Returns, and
/// logs, those that could not be ended: the next sweep finds them again.
pub(super) fn end_orphans(
    sessions: &Sessions,
    host: Option<&str>,
    apply: &Apply,
    decisions: &[Decision],
    why: &str,
) -> Vec<String> {
    let reqs = orphans(decisions, sessions, host, why);
    if reqs.is_empty() {
        return Vec::new();
    }
    let macs: Vec<String> = reqs.iter().map(|r| r.mac().to_owned()).collect();
    // A role already gone is what the request wanted.
    let failed: Vec<String> = macs
        .iter()
        .zip(apply(reqs))
        .filter_map(|(mac, r)| r.err().map(|e| (mac, e)))
        .filter(|(_, e)| !e.ends_with("has no decision to release"))
        .map(|(mac, e)| format!("{mac}: {e}"))
        .collect();
    if let Some(first) = failed.first() {
        let again = match host {
            None => format!("tried again within {}s", ORPHAN_SWEEP.as_secs()),
            Some(_) => "in a fleet, tried again at this controller's next start".to_owned(),
        };
        log(format!(
            "identity: warning: {} role(s) with no open session still enforced ({first}{}); {again}",
            failed.len(),
            if failed.len() > 1 { " and others" } else { "" },
        ));
    }
    failed
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
        assert_eq!(ended(&orphans(&alone, &none, None, "")), [a, b]);
        // In a fleet, only those this host's listener made.
        let site = [
            role(a, Some("ward-3")),
            role(b, Some("ward-4")),
            role(c, None),
            quarantine,
        ];
        assert_eq!(ended(&orphans(&site, &none, Some("ward-3"), "")), [a]);
        assert!(orphans(&site, &none, Some("ward-5"), "").is_empty());
    }

    #[test]
    fn roles_no_session_holds_are_ended_and_those_that_fail_are_said() {
        let (a, b, c) = (
            "02:00:00:00:00:0a",
            "02:00:00:00:00:0b",
            "02:00:00:00:00:0c",
        );
        let decisions = [role(a, None), role(b, None), role(c, None)];
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = asked.clone();
        let apply: Apply = Box::new(move |reqs: Vec<DecisionRequest>| {
            reqs.iter()
                .map(|r| {
                    seen.lock().unwrap().push(r.mac().to_owned());
                    match r.mac() {
                        m if m.ends_with('a') => Ok("ended".into()),
                        m if m.ends_with('b') => Err(format!("{m} has no decision to release")),
                        _ => Err("the maps are full".into()),
                    }
                })
                .collect()
        });
        let failed = end_orphans(&Sessions::default(), None, &apply, &decisions, "why");
        assert_eq!(*asked.lock().unwrap(), [a, b, c]);
        // Gone already is no failure; a refused end is, and said.
        assert_eq!(failed, [format!("{c}: the maps are full")]);
    }
}
