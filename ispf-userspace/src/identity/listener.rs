//! The accounting listener's thread: one UDP socket, bound where the
//! enforced policy says (re-bound when a reload moves it). Each datagram is
//! checked in the spec's order — a known client, a well-formed
//! Accounting-Request, the Request Authenticator — and a burst of accepted
//! packets that change sessions is applied as one generation before their
//! Accounting-Responses go out, so a NAS's answer means "enforced".

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    bind::{rebind, Bound},
    dups::Dups,
    radius::{self, Accounting},
    restart,
    session::{Change, Session, Sessions},
    store, Apply, Ended, EndedRole, Facts,
};
use crate::{
    clock::{log, unix_now},
    decisions::{session_mark, DecisionRequest, Kind},
    inventory::{db, View},
};

/// A burst is applied after this long or this many changes.
const BURST: Duration = Duration::from_millis(5);
const BURST_MAX: usize = 1024;
/// Datagrams taken in a row before the once-a-second duties (expiry,
/// pruning, saving, a new listen address) get their turn under a flood.
const DRAIN_MAX: usize = 4096;
/// How long the listener waits for a datagram when nothing is gathered.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// How often the secret file is read again (a rotated secret).
const SECRET_CHECK: Duration = Duration::from_secs(5);
struct State {
    sessions: Sessions,
    dups: Dups,
    conn: Option<rusqlite::Connection>,
    dirty: bool,
    /// In a fleet, this host's name, which the role decisions its
    /// sessions make carry.
    host: Option<String>,
    /// The wait between sweeps of roles no session holds.
    sweep_every: Duration,
}

pub(super) fn run(
    db_path: PathBuf,
    view: Arc<dyn Fn() -> View + Send + Sync>,
    apply: Apply,
    ended: Ended,
    facts: Arc<Facts>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    fleet_host: Option<String>,
) {
    let mut st = State {
        sessions: Sessions::default(),
        dups: Dups::default(),
        conn: None,
        dirty: false,
        host: fleet_host.clone(),
        sweep_every: restart::ORPHAN_SWEEP,
    };
    let decisions = view().decisions;
    if let Ok(c) = db::open(&db_path) {
        let (sessions, stale) = restart::restore(&c, &decisions, fleet_host.as_deref());
        st.sessions = sessions;
        st.conn = Some(c);
        st.dirty = stale;
    }
    let mut swept = restart::Swept::default();
    restart::end_orphans(
        &st.sessions,
        st.host.as_deref(),
        &apply,
        &decisions,
        &mut swept,
        "no open session after the controller restarted",
    );
    let mut ended_seq = 0;
    publish(&st, &facts);

    let mut bound: Option<Bound> = None;
    let mut last_try = Instant::now() - Duration::from_secs(60);
    let mut last_tick = Instant::now();
    let mut last_orphans = Instant::now();
    let mut buf = vec![0u8; radius::MAX_PACKET + 1];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // Borrowed from the enforced policy, once a batch: a flood of
        // interim updates must not copy the identity section per datagram.
        let policy = view().policy;
        let cfg = policy.doc.identity.as_ref();
        let roles = cfg.map_or(&[][..], |c| c.roles.as_slice());
        if bound.as_ref().map(|b| &b.doc) != cfg.map(|c| &c.radius_accounting)
            && last_try.elapsed() >= Duration::from_secs(5)
        {
            last_try = Instant::now();
            bound = rebind(cfg, &facts, bound.take());
        } else if let Some(b) = bound
            .as_mut()
            .filter(|_| last_try.elapsed() >= SECRET_CHECK)
        {
            last_try = Instant::now();
            b.reread_secret(&facts);
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            let ended_now = ended(ended_seq);
            if !ended_now.is_empty() {
                let decisions = view().decisions;
                for e in ended_now {
                    ended_seq = e.seq;
                    forget(&mut st, &e, &decisions);
                }
            }
            let now = unix_now();
            let mut changes = st.sessions.expire(now);
            if let Some(c) = cfg {
                changes.extend(st.sessions.prune(&c.roles, now));
            }
            if cfg.is_none() {
                // Identity left the policy: every session ends.
                changes.extend(
                    st.sessions
                        .end_all("the policy has no identity section any more", now),
                );
            }
            if !changes.is_empty() {
                st.dirty = true;
                enforce(&mut st, &apply, &facts, changes);
            }
            persist(&mut st, &db_path, &facts);
            if last_orphans.elapsed() >= st.sweep_every {
                last_orphans = Instant::now();
                let failed = restart::end_orphans(
                    &st.sessions,
                    st.host.as_deref(),
                    &apply,
                    &view().decisions,
                    &mut swept,
                    "its session ended earlier, but the role could not be ended then",
                );
                st.sweep_every =
                    restart::next_sweep(st.sweep_every, st.host.is_some() && !failed.is_empty());
            }
        }
        let Some(b) = bound.as_ref() else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let mut replies: Vec<(SocketAddr, [u8; 20])> = Vec::new();
        let mut changes = Vec::new();
        let mut deadline: Option<Instant> = None;
        let batch = Instant::now();
        // Set once while nothing is gathered: a burst, once started, lasts
        // to the end of the batch and sets its own.
        let _ = b.sock.set_read_timeout(Some(IDLE_WAIT));
        for _ in 0..DRAIN_MAX {
            match deadline {
                // A trickle must not hold the loop either.
                None if batch.elapsed() >= IDLE_WAIT => break,
                None => {}
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(w) if !w.is_zero() => {
                        let _ = b.sock.set_read_timeout(Some(w));
                    }
                    _ => break,
                },
            }
            let Ok((n, from)) = b.sock.recv_from(&mut buf) else {
                break;
            };
            let Some((reply, ch)) = handle(&buf[..n], from, b, roles, &mut st, &facts) else {
                continue;
            };
            if ch.is_empty() && deadline.is_none() {
                // Nothing to enforce first: answered at once, and the
                // next datagram taken without a round of the outer loop.
                let _ = b.sock.send_to(&reply, from);
                continue;
            }
            replies.push((from, reply));
            if !ch.is_empty() {
                changes.extend(ch);
                deadline.get_or_insert_with(|| Instant::now() + BURST);
            }
            if changes.len() >= BURST_MAX {
                break;
            }
        }
        if !changes.is_empty() {
            st.dirty = true;
            enforce(&mut st, &apply, &facts, changes);
            persist(&mut st, &db_path, &facts);
        }
        for (to, r) in replies {
            let _ = b.sock.send_to(&r, to);
        }
    }
}

/// One datagram: the reply to send (accepted packets only) and what it
/// changes.
fn handle(
    buf: &[u8],
    from: SocketAddr,
    b: &Bound,
    roles: &[crate::policy::RoleDoc],
    st: &mut State,
    facts: &Facts,
) -> Option<([u8; 20], Vec<Change>)> {
    if !b
        .clients
        .iter()
        .any(|n| n.contains(&from.ip().to_canonical()))
    {
        facts.count("unknown_client");
        return None;
    }
    if buf.len() > radius::MAX_PACKET {
        facts.count("malformed");
        return None;
    }
    let p = match radius::parse(buf) {
        Ok(p) if p.code == radius::ACCOUNTING_REQUEST => p,
        _ => {
            facts.count("malformed");
            return None;
        }
    };
    if !radius::verify(&p, &b.secret) {
        facts.count("bad_authenticator");
        return None;
    }
    let reply = radius::response(p.identifier, &p.authenticator, &b.secret);
    let now = unix_now();
    let key = (from, p.identifier, p.authenticator);
    if st.dups.repeated(key, now) {
        facts.count("duplicate");
        return Some((reply, Vec::new()));
    }
    facts.count("accepted");
    let a = Accounting::of(&p);
    let nas = super::nas::nas_of(&a, from.ip());
    match st.sessions.account(&a, &nas, roles, now) {
        Ok(ch) => {
            st.dirty = true;
            Some((reply, ch))
        }
        Err(why) => {
            facts.ignore(why.as_str());
            Some((reply, Vec::new()))
        }
    }
}

/// Forgets the sessions on a device whose role decision the controller
/// ended by itself, unless a role decision holds there again (the file
/// changed back and a session bound since).
fn forget(st: &mut State, e: &EndedRole, decisions: &[crate::decisions::Decision]) {
    if decisions
        .iter()
        .any(|d| d.kind == Kind::Role && d.mac == e.mac)
    {
        return;
    }
    // Only when the ended decision was a session's this table holds: the
    // echo of this host's own Stop (in a fleet, the key's deletion comes
    // back through the watch) must not drop a session bound since.
    let named = st
        .sessions
        .on_device(&e.mac)
        .any(|s| crate::decisions::names_session(&e.reason, &session_mark(&s.nas, &s.id)));
    if !named {
        return;
    }
    let gone = st.sessions.forget_device(&e.mac, unix_now());
    if let Some(s) = gone.first() {
        st.dirty = true;
        log(format!(
            "identity: {} session(s) on {} no longer listed (session {} of {} and any other): the controller ended the role decision ({})",
            gone.len(),
            s.mac,
            s.id,
            s.user,
            e.reason
        ));
    }
}

/// Applies changes through the engine; a refused binding leaves its
/// session unbound (its next update tries again).
fn enforce(st: &mut State, apply: &Apply, facts: &Facts, changes: Vec<Change>) {
    let reqs: Vec<DecisionRequest> = changes
        .iter()
        .map(|c| c.request(st.host.as_deref()))
        .collect();
    let results = apply(reqs);
    let mut refused = Vec::new();
    let mut orphans = Vec::new();
    let mut unended = Vec::new();
    for (c, r) in changes.iter().zip(results) {
        if let (Change::Unbind { mac, .. }, Err(e)) = (c, &r) {
            if !restart::gone_or_elsewhere(e) {
                unended.push(format!("{mac}: {e}"));
            }
        }
        if r.is_ok() {
            // The engine (in a fleet, etcd) answers again.
            st.sweep_every = restart::ORPHAN_SWEEP;
        }
        if let (Change::Bind(s), Ok(_)) = (c, &r) {
            st.sessions.accepted(s);
        }
        if let (Change::Bind(s), Err(e)) = (c, &r) {
            orphans.extend(st.sessions.refused(s, unix_now()));
            facts.ignore(if e.contains("has not been seen") {
                "unseen_mac"
            } else if e.contains("life-critical") {
                "life_critical"
            } else {
                "refused"
            });
            refused.push(format!("session {} of {} on {}: {e}", s.id, s.user, s.mac));
        }
    }
    // One line a burst: a NAS replaying thousands of sessions must not
    // flood the log.
    if let Some(first) = refused.first() {
        let more = match refused.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        log(format!("identity: not bound: {first}{more}"));
    }
    // The session is over all the same; its role is the sweep's now.
    if let Some(first) = unended.first() {
        log(format!(
            "identity: warning: the end of {} role(s) could not be enforced ({first}{}); the listener's sweep of roles no session holds tries again",
            unended.len(),
            if unended.len() > 1 { " and others" } else { "" },
        ));
    }
    // Unbinds only: they refuse nothing, so this goes one level deep.
    if !orphans.is_empty() {
        enforce(st, apply, facts, orphans);
    }
    // Published by `persist`, which every caller runs next: listing the
    // sessions is the cost of a packet otherwise.
}

fn publish(st: &State, facts: &Facts) {
    *facts.sessions.lock().unwrap_or_else(|e| e.into_inner()) = st.sessions.list();
}

/// Writes the session table when it changed (interim updates included, at
/// most once a second through the tick).
fn persist(st: &mut State, db_path: &Path, facts: &Facts) {
    let ended = st.sessions.ended_unsaved();
    if !st.dirty && ended.is_none() {
        return;
    }
    if st.conn.is_none() {
        st.conn = db::open(db_path).ok();
    }
    let all: Vec<Session> = st.sessions.list();
    let mut saved = false;
    if let Some(c) = st.conn.as_mut() {
        let r = store::save(c, &all).and_then(|()| match &ended {
            Some(u) => store::save_ended(c, u.rewrite, &u.rows, unix_now()),
            None => Ok(()),
        });
        match r {
            Ok(()) => {
                st.dirty = false;
                saved = true;
            }
            Err(e) => {
                log(format!(
                    "identity: sessions not saved (enforcement unaffected): {e}"
                ));
                st.conn = None;
            }
        }
    }
    if ended.is_some() {
        st.sessions.ended_saved(saved);
    }
    publish(st, facts);
}
