//! What a listener takes over from before a restart: the sessions the
//! table recorded, and the role decisions no session holds any more (also
//! looked for every [`ORPHAN_SWEEP`] while it runs, on a single host and
//! in a fleet).
//!
//! In a fleet a role decision is the site's, while its session lives in
//! the table of the host whose listener made it (the decision's actor names
//! that host): a host ends only its own, and keeps its recorded sessions
//! whatever its local copy of the decisions says, since a decision reaches
//! etcd before the watch brings it back here.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use rusqlite::Connection;

use super::{
    session::{Session, Sessions},
    store, Apply,
};
use crate::{
    clock::log,
    decisions::{
        nameable_session, names_session, role_held_on, session_mark, Decision, DecisionRequest,
        Kind,
    },
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
    // Saved by an older ispf: no Stop or update could name such a session
    // again (its id is taken as none now), so its role would stay until it
    // timed out. Not restored, the start's sweep ends that role.
    let (saved, unnameable): (Vec<Session>, Vec<Session>) = store::sessions(c)
        .unwrap_or_default()
        .into_iter()
        .partition(|x| nameable_session(&x.id));
    if let Some(s) = unnameable.first() {
        log(format!(
            "identity: {} recorded session(s) not restored (session {} of {} on {}{}): a session id holding \"(NAS \" is taken as none, so no Stop could end it; its role ends now",
            unnameable.len(),
            s.id,
            s.user,
            s.mac,
            if unnameable.len() > 1 { " and others" } else { "" }
        ));
    }
    let (sessions, stale) = Sessions::restore(
        saved,
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
    (sessions, !stale.is_empty() || !unnameable.is_empty())
}

/// Requests that end the role decisions this controller's listener made
/// and no session in `sessions` holds, saying `why`; those `swept` asked
/// for lately are left out.
pub(super) fn orphans(
    decisions: &[Decision],
    sessions: &Sessions,
    fleet_host: Option<&str>,
    swept: &Swept,
    now: Instant,
    why: &str,
) -> Vec<DecisionRequest> {
    let mine = |d: &Decision| match fleet_host {
        Some(h) => role_held_on(d, h),
        None => d.kind == Kind::Role,
    };
    let mut macs: Vec<String> = decisions
        .iter()
        .filter(|d| mine(d) && !sessions.is_bound(&d.mac) && !swept.lately(d, now))
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

/// How often the listener looks for role decisions no session holds: an
/// unbind that could not be enforced then (a generation that failed, or
/// in a fleet etcd out of reach) is tried again, rather than leaving the
/// role with nothing to end it. A fleet host may do so too: a session's
/// end deletes the role's key only while etcd's value is one that end
/// ends, so a copy of the decisions that lags etcd's ends nothing newer.
pub(super) const ORPHAN_SWEEP: Duration = Duration::from_secs(30);

/// The longest wait between sweeps that fail in a fleet. Each asks the
/// engine, which waits for etcd up to its timeout: while etcd is out of
/// reach a sweep every 30 s would stall RADIUS and the engine that often.
/// (The listener goes back to [`ORPHAN_SWEEP`] once any request of its
/// own is taken again.)
pub(super) const ORPHAN_SWEEP_MAX: Duration = Duration::from_secs(300);

/// The wait before the next sweep: doubled after one that failed (and
/// should wait: in a fleet), up to [`ORPHAN_SWEEP_MAX`], and
/// [`ORPHAN_SWEEP`] again after one that did not.
pub(super) fn next_sweep(every: Duration, failed: bool) -> Duration {
    if failed {
        (every * 2).min(ORPHAN_SWEEP_MAX)
    } else {
        ORPHAN_SWEEP
    }
}

/// Whether the engine's refusal of a session's end leaves nothing to do:
/// the role is gone already, or (in a fleet) a session on another host
/// holds it since, which no end here ends.
pub(super) fn gone_or_elsewhere(e: &str) -> bool {
    e.ends_with("has no decision to release")
        || e.ends_with("a session ending here does not end it")
}

/// How long an end the engine took is not asked for again while its
/// decision stays. In a fleet the end may have been kept (etcd holds
/// another host's newer role, which this host refused and so still shows
/// its own) or have failed after the burst's other writes; asking every
/// sweep would say so in the log twice a minute.
pub(super) const SWEPT_AGAIN: Duration = Duration::from_secs(600);

/// The role decisions the sweep asked to end and the engine took, by
/// device, with when: the same decision still there is not asked again
/// for [`SWEPT_AGAIN`]; another (a newer session's) is.
#[derive(Default)]
pub(super) struct Swept(HashMap<String, (Decision, Instant)>);

impl Swept {
    fn lately(&self, d: &Decision, now: Instant) -> bool {
        self.0.get(&d.mac).is_some_and(|(asked, at)| {
            asked == d && now.saturating_duration_since(*at) < SWEPT_AGAIN
        })
    }
}

/// Ends the role decisions among `decisions` that this listener's
/// sessions made and none holds any more, saying `why`. Returns, and
/// logs, those that could not be ended: the next sweep finds them again.
pub(super) fn end_orphans(
    sessions: &Sessions,
    host: Option<&str>,
    apply: &Apply,
    decisions: &[Decision],
    swept: &mut Swept,
    why: &str,
) -> Vec<String> {
    let now = Instant::now();
    // Found once: after a lost session table, a start may end 200,000.
    let roles: HashMap<&str, &Decision> = decisions
        .iter()
        .filter(|d| d.kind == Kind::Role)
        .map(|d| (d.mac.as_str(), d))
        .collect();
    // Forgotten once their decision is gone (or, in a fleet, replaced).
    swept
        .0
        .retain(|mac, (asked, _)| roles.get(mac.as_str()).is_some_and(|d| *d == asked));
    let reqs = orphans(decisions, sessions, host, swept, now, why);
    if reqs.is_empty() {
        return Vec::new();
    }
    let macs: Vec<String> = reqs.iter().map(|r| r.mac().to_owned()).collect();
    let mut failed = Vec::new();
    for (mac, r) in macs.into_iter().zip(apply(reqs)) {
        match r {
            Ok(_) => {
                if let Some(d) = roles.get(mac.as_str()) {
                    swept.0.insert(mac, ((*d).clone(), now));
                }
            }
            Err(e) if gone_or_elsewhere(&e) => {}
            Err(e) => failed.push(format!("{mac}: {e}")),
        }
    }
    if let Some(first) = failed.first() {
        log(format!(
            "identity: warning: {} role(s) with no open session still enforced ({first}{}); the listener tries again",
            failed.len(),
            if failed.len() > 1 { " and others" } else { "" },
        ));
    }
    failed
}

#[cfg(test)]
#[path = "restart_tests.rs"]
mod tests;
