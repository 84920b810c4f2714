//! The accounting listener's thread: one UDP socket, bound where the
//! enforced policy says (re-bound when a reload moves it). Each datagram is
//! checked in the spec's order — a known client, a well-formed
//! Accounting-Request, the Request Authenticator — and a burst of accepted
//! packets that change sessions is applied as one generation before their
//! Accounting-Responses go out, so a NAS's answer means "enforced".

use std::{
    collections::{HashMap, VecDeque},
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::IpNet;

use super::{
    radius::{self, Accounting},
    session::{Change, Session, Sessions},
    store, Apply, Facts,
};
use crate::{
    clock::{log, unix_now},
    decisions::{DecisionRequest, Kind},
    inventory::{db, View},
    policy::{identity::read_secret, IdentityDoc, RadiusDoc},
};

/// A burst is applied after this long or this many changes.
const BURST: Duration = Duration::from_millis(5);
const BURST_MAX: usize = 1024;
/// A duplicate is the same client, identifier and authenticator within
/// this long (RFC 5080 §2.2.2 suggests a few seconds; NASes retry for ~30).
const DUP_WINDOW_S: i64 = 30;
const DUP_MAX: usize = 65_536;

struct Bound {
    sock: UdpSocket,
    doc: RadiusDoc,
    secret: Vec<u8>,
    clients: Vec<IpNet>,
}

type DupKey = (SocketAddr, u8, [u8; 16]);

struct State {
    sessions: Sessions,
    dups: HashMap<DupKey, i64>,
    dup_order: VecDeque<(i64, DupKey)>,
    conn: Option<rusqlite::Connection>,
    dirty: bool,
}

pub(super) fn run(
    db_path: PathBuf,
    view: Arc<dyn Fn() -> View + Send + Sync>,
    apply: Apply,
    facts: Arc<Facts>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut st = State {
        sessions: Sessions::default(),
        dups: HashMap::new(),
        dup_order: VecDeque::new(),
        conn: None,
        dirty: false,
    };
    // Sessions recorded before a restart; role decisions no session holds
    // any more are ended.
    if let Ok(c) = db::open(&db_path) {
        st.sessions = Sessions::restore(store::sessions(&c).unwrap_or_default());
        st.conn = Some(c);
    }
    let mut orphans: Vec<String> = view()
        .decisions
        .iter()
        .filter(|d| d.kind == Kind::Role && !st.sessions.is_bound(&d.mac))
        .map(|d| d.mac.clone())
        .collect();
    orphans.sort();
    orphans.dedup();
    let orphans: Vec<DecisionRequest> = orphans
        .into_iter()
        .map(|mac| DecisionRequest::EndSession {
            mac,
            why: "no open session after the controller restarted".into(),
        })
        .collect();
    if !orphans.is_empty() {
        apply(orphans);
    }
    publish(&st, &facts);

    let mut bound: Option<Bound> = None;
    let mut last_try = Instant::now() - Duration::from_secs(60);
    let mut last_tick = Instant::now();
    let mut buf = vec![0u8; radius::MAX_PACKET + 1];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let cfg = view().policy.doc.identity.clone();
        if bound.as_ref().map(|b| &b.doc) != cfg.as_ref().map(|c| &c.radius_accounting)
            && last_try.elapsed() >= Duration::from_secs(5)
        {
            last_try = Instant::now();
            bound = rebind(cfg.as_ref(), &facts);
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            let mut changes = st.sessions.expire(unix_now());
            if let Some(c) = &cfg {
                changes.extend(st.sessions.prune(&c.roles));
            }
            if cfg.is_none() {
                // Identity left the policy: every session ends.
                changes.extend(end_all(&mut st.sessions));
            }
            if !changes.is_empty() {
                st.dirty = true;
                enforce(&mut st, &apply, &facts, changes);
            }
            persist(&mut st, &db_path, &facts);
        }
        let Some(b) = bound.as_ref() else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let roles = cfg.as_ref().map(|c| c.roles.clone()).unwrap_or_default();
        let mut replies: Vec<(SocketAddr, [u8; 20])> = Vec::new();
        let mut changes = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            let wait = match deadline {
                None => Duration::from_millis(200),
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(w) if !w.is_zero() => w,
                    _ => break,
                },
            };
            let _ = b.sock.set_read_timeout(Some(wait));
            let Ok((n, from)) = b.sock.recv_from(&mut buf) else {
                break;
            };
            if let Some((reply, ch)) = handle(&buf[..n], from, b, &roles, &mut st, &facts) {
                replies.push((from, reply));
                if !ch.is_empty() {
                    changes.extend(ch);
                    deadline.get_or_insert_with(|| Instant::now() + BURST);
                }
            }
            if deadline.is_none() || changes.len() >= BURST_MAX {
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

fn rebind(cfg: Option<&IdentityDoc>, facts: &Facts) -> Option<Bound> {
    let set = |v: Option<Result<String, String>>| {
        *facts.listening.lock().unwrap_or_else(|e| e.into_inner()) = v;
    };
    let Some(cfg) = cfg else {
        set(None);
        return None;
    };
    let doc = cfg.radius_accounting.clone();
    let result = (|| {
        let secret = read_secret(Path::new(&doc.secret_file))
            .map_err(|e| super::IdentityError::Secret(e).to_string())?;
        let sock = UdpSocket::bind(&doc.listen).map_err(|source| {
            super::IdentityError::Bind {
                addr: doc.listen.clone(),
                source,
            }
            .to_string()
        })?;
        grow_buffer(&sock);
        Ok::<_, String>(Bound {
            sock,
            clients: doc.client_nets(),
            secret,
            doc: doc.clone(),
        })
    })();
    match result {
        Ok(b) => {
            log(format!("RADIUS accounting on udp {}", b.doc.listen));
            set(Some(Ok(b.doc.listen.clone())));
            Some(b)
        }
        Err(e) => {
            log(format!(
                "identity: {e}; retrying every 5 s (enforcement unaffected)"
            ));
            set(Some(Err(e)));
            None
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
    if st.dups.contains_key(&key) {
        facts.count("duplicate");
        return Some((reply, Vec::new()));
    }
    while st
        .dup_order
        .front()
        .is_some_and(|(t, _)| *t <= now - DUP_WINDOW_S || st.dup_order.len() >= DUP_MAX)
    {
        let (_, k) = st.dup_order.pop_front().expect("non-empty");
        st.dups.remove(&k);
    }
    st.dups.insert(key, now);
    st.dup_order.push_back((now, key));
    facts.count("accepted");
    let a = Accounting::of(&p);
    let nas = from.ip().to_canonical().to_string();
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

fn end_all(s: &mut Sessions) -> Vec<Change> {
    let mut out = Vec::new();
    let macs: Vec<String> = s.bound_macs().cloned().collect();
    *s = Sessions::default();
    for mac in macs {
        out.push(Change::Unbind {
            mac,
            why: "the policy has no identity section any more".into(),
        });
    }
    out
}

/// Applies changes through the engine; a refused binding leaves its
/// session unbound (its next update tries again).
fn enforce(st: &mut State, apply: &Apply, facts: &Facts, changes: Vec<Change>) {
    let reqs: Vec<DecisionRequest> = changes.iter().map(request).collect();
    let results = apply(reqs);
    let mut refused = Vec::new();
    for (c, r) in changes.iter().zip(results) {
        if let (Change::Bind(s), Err(e)) = (c, &r) {
            st.sessions.refused(s);
            facts.ignore(if e.contains("has not been seen") {
                "unseen_mac"
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
    publish(st, facts);
}

fn request(c: &Change) -> DecisionRequest {
    match c {
        Change::Bind(s) => DecisionRequest::Session {
            mac: s.mac.clone(),
            segment: s.segment.clone(),
            role: s.role.clone(),
            user: s.user.clone(),
            nas: s.nas.clone(),
            session: s.id.clone(),
        },
        Change::Unbind { mac, why } => DecisionRequest::EndSession {
            mac: mac.clone(),
            why: why.clone(),
        },
    }
}

fn publish(st: &State, facts: &Facts) {
    *facts.sessions.lock().unwrap_or_else(|e| e.into_inner()) = st.sessions.list();
}

/// Writes the session table when it changed (interim updates included, at
/// most once a second through the tick).
fn persist(st: &mut State, db_path: &Path, facts: &Facts) {
    if !st.dirty {
        return;
    }
    if st.conn.is_none() {
        st.conn = db::open(db_path).ok();
    }
    let all: Vec<Session> = st.sessions.list();
    if let Some(c) = st.conn.as_mut() {
        match store::save(c, &all) {
            Ok(()) => st.dirty = false,
            Err(e) => {
                log(format!(
                    "identity: sessions not saved (enforcement unaffected): {e}"
                ));
                st.conn = None;
            }
        }
    }
    publish(st, facts);
}

/// A NAS that replays its sessions after a restart sends thousands at
/// once: 8 MiB of socket buffer holds ~30,000 of them while a burst is
/// applied (root may exceed `net.core.rmem_max`; without it, the default).
fn grow_buffer(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    // SAFETY: a valid socket and an int-sized option value.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
