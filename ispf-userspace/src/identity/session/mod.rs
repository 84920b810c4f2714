//! Sessions, pure: what an accepted Accounting-Request changes (the spec's
//! "Identity-based clearance"). A `Start` or `Interim-Update` whose `Class`
//! or `Filter-Id` names a role binds the `Calling-Station-Id`'s device to
//! the role's segment; the `Stop` with the same `Acct-Session-Id`, an
//! `Accounting-Off`/`On` from its NAS, or three interim intervals without
//! an update (one hour when the NAS sends no interval) end it. A device
//! has one binding: the newest session's. Replays of ended sessions and
//! out-of-date updates bind nothing (module `ended`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

mod ended;
mod ending;
mod memory;

use ended::Ended;
pub use ended::{Gone, How, Key, Unsaved, REMEMBER_S};

use super::{
    radius::{Accounting, Status},
    station::station_mac,
};
use crate::{
    decisions::{mac_string, session_mark},
    policy::RoleDoc,
};

/// One user's network session on one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The NAS (its address) and its `Acct-Session-Id`.
    pub nas: String,
    pub id: String,
    pub mac: String,
    pub user: String,
    pub role: String,
    pub segment: String,
    /// Unix seconds.
    pub since: i64,
    pub last_update: i64,
    /// Seconds without an update after which the session is over.
    pub timeout_s: i64,
    /// The newest `Event-Timestamp` its NAS sent for it (an older one is
    /// a replay or out of date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<u32>,
    /// The authenticators of the updates taken in `last_event`'s second
    /// (not saved): another packet of that second is news, one of these
    /// again is not.
    #[serde(skip)]
    pub seen_auth: Vec<[u8; 16]>,
    /// Whether the engine took a binding of this session (or it was
    /// restored holding one): a later binding refused then ends it.
    #[serde(skip)]
    pub enforced: bool,
}

impl Session {
    /// Its NAS and `Acct-Session-Id`: what names it in the table.
    pub fn key(&self) -> Key {
        (self.nas.clone(), self.id.clone())
    }
}

/// What the enforced state must do about a packet or the passing of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Put `session.mac` in `session.segment` (a role decision).
    Bind(Session),
    /// End the role decision of `mac`; `why` for the timeline; `session`:
    /// the ending session's mark (`decisions::session_mark`).
    Unbind {
        mac: String,
        why: String,
        session: Option<String>,
    },
}

/// Why an accepted packet changed nothing (counted by cause).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    NoRole,
    NoMac,
    NoSession,
    /// A `Start`/`Interim-Update` for a session its NAS stopped (a replay).
    Ended,
    /// An `Event-Timestamp` older than the session's last, or than a day.
    Stale,
    Other,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::NoRole => "no_role",
            Ignored::NoMac => "no_mac",
            Ignored::NoSession => "no_session",
            Ignored::Ended => "ended",
            Ignored::Stale => "stale",
            Ignored::Other => "other_status",
        }
    }
}

/// One hour when the NAS names no interval.
pub const DEFAULT_TIMEOUT_S: i64 = 3600;
/// At most this many sessions are kept (a NAS cannot grow the controller
/// without bound); the oldest updated go first.
pub const MAX_SESSIONS: usize = 200_000;

#[derive(Debug, Default)]
pub struct Sessions {
    by_key: HashMap<(String, String), Session>,
    /// The session each bound device is bound by.
    bound: HashMap<String, (String, String)>,
    /// The session a device was bound by before the newest took it, until
    /// the engine has accepted the newest: a refusal gives it back.
    displaced: HashMap<String, (String, String)>,
    ended: Ended,
}

impl Sessions {
    pub fn list(&self) -> Vec<Session> {
        let mut v: Vec<Session> = self.by_key.values().cloned().collect();
        v.sort_by(|a, b| b.since.cmp(&a.since).then(a.mac.cmp(&b.mac)));
        v
    }

    pub fn by_role(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for s in self.by_key.values() {
            *m.entry(s.role.clone()).or_default() += 1;
        }
        m
    }

    pub fn bound_macs(&self) -> impl Iterator<Item = &String> {
        self.bound.keys()
    }

    /// What an accepted packet from NAS `nas` changes.
    pub fn account(
        &mut self,
        a: &Accounting,
        nas: &str,
        roles: &[RoleDoc],
        now: i64,
    ) -> Result<Vec<Change>, Ignored> {
        let status = a.status.ok_or(Ignored::Other)?;
        // A timestamp more than a day ahead of this clock is a NAS's
        // glitch: taken as none, since it would make every later one old.
        let event = a.event_time.filter(|e| i64::from(*e) <= now + REMEMBER_S);
        match status {
            Status::AccountingOn | Status::AccountingOff => {
                // The NAS restarted: every session it reported is over.
                let keys: Vec<_> = self.by_key.keys().filter(|k| k.0 == nas).cloned().collect();
                let why = "the NAS reported Accounting-On/Off (it restarted)";
                let out = keys
                    .iter()
                    .filter_map(|k| self.end(k, why, How::Lapsed, now))
                    .collect();
                // A NAS may count its session ids from 1 again.
                self.ended.nas_restarted(nas, event, now);
                Ok(out)
            }
            Status::Stop => {
                let key = (
                    nas.to_owned(),
                    a.session_id.clone().ok_or(Ignored::NoSession)?,
                );
                // A Stop for a session never started (or refused, or ended
                // by the controller) is answered and counted, not silently
                // taken; the session is over for the NAS all the same, and
                // remembered when it names a role (a replay of its Start
                // could bind nothing otherwise).
                if !self.by_key.contains_key(&key) {
                    if role_of(a, roles).is_some() || self.ended.knows(&key) {
                        self.ended.record(key, How::Stopped, now, event);
                    }
                    return Err(Ignored::NoSession);
                }
                if let Some(s) = self.by_key.get_mut(&key) {
                    // A Stop from before the session's last update (a
                    // replay, or one queued across the NAS's restart that
                    // reused the id) does not end it.
                    if let (Some(last), Some(e)) = (s.last_event, event) {
                        if e < last {
                            return Err(Ignored::Stale);
                        }
                    }
                    s.last_event = s.last_event.max(event);
                }
                let why = format!("Stop for session {}", key.1);
                Ok(self
                    .end(&key, &why, How::Stopped, now)
                    .into_iter()
                    .collect())
            }
            Status::Start | Status::Interim => {
                let id = a.session_id.clone().ok_or(Ignored::NoSession)?;
                let key = (nas.to_owned(), id.clone());
                // Before the MAC and role: an update without them still
                // raises the session's last timestamp.
                // The same timestamp again is the same update (a NAS past
                // the duplicate window, or a replay): it changes nothing,
                // not even the session's life.
                if !self.fresh(&key, event, &a.authenticator, now)? {
                    return Ok(Vec::new());
                }
                let mac = a
                    .calling_station
                    .as_deref()
                    .and_then(station_mac)
                    .map(|m| mac_string(&m))
                    .ok_or(Ignored::NoMac)?;
                let role = role_of(a, roles).ok_or(Ignored::NoRole)?;
                // An update that omits the interval keeps the one its
                // session announced: else a session announced at two hours
                // would time out an hour after each such update, between
                // them.
                let timeout_s = a
                    .interim_s
                    .filter(|s| *s > 0)
                    .map(|s| 3 * s as i64)
                    .or_else(|| self.by_key.get(&key).map(|s| s.timeout_s))
                    .unwrap_or(DEFAULT_TIMEOUT_S);
                let same = self.by_key.get(&key).is_some_and(|s| {
                    s.mac == mac && s.role == role.name && s.segment == role.segment
                });
                let bound_here = self.bound.get(&mac) == Some(&key);
                if same && bound_here {
                    let s = self.by_key.get_mut(&key).expect("present");
                    s.last_update = now;
                    s.timeout_s = timeout_s;
                    return Ok(Vec::new());
                }
                let since = self.by_key.get(&key).map_or(now, |s| s.since);
                let last_event = self
                    .by_key
                    .get(&key)
                    .map_or(event, |s| s.last_event.max(event));
                let s = Session {
                    nas: nas.to_owned(),
                    id,
                    mac: mac.clone(),
                    user: a.user.clone().unwrap_or_default(),
                    role: role.name.clone(),
                    segment: role.segment.clone(),
                    since,
                    last_update: now,
                    timeout_s,
                    last_event,
                    seen_auth: self
                        .by_key
                        .get(&key)
                        .map_or_else(|| vec![a.authenticator], |s| s.seen_auth.clone()),
                    enforced: self
                        .by_key
                        .get(&key)
                        .is_some_and(|s| s.enforced && s.mac == mac),
                };
                let mut out = Vec::new();
                // The session moved to another device: the old one is
                // unbound unless another session holds it.
                if let Some(old) = self.by_key.get(&key).filter(|o| o.mac != mac).cloned() {
                    if self.bound.get(&old.mac) == Some(&key) {
                        self.bound.remove(&old.mac);
                        out.push(Change::Unbind {
                            mac: old.mac,
                            why: format!("session {} moved to {mac}", key.1),
                            session: Some(session_mark(&key.0, &key.1)),
                        });
                    }
                }
                // The first session displaced is kept, not the last: it
                // holds the enforced role until the engine accepts one.
                if let Some(prev) = self.bound.insert(mac.clone(), key.clone()) {
                    if prev != key {
                        self.displaced.entry(mac).or_insert(prev);
                    }
                }
                self.ended.forget(&key);
                self.by_key.insert(key, s.clone());
                out.extend(self.bound_cap(now));
                out.push(Change::Bind(s));
                Ok(out)
            }
            Status::Other(_) => Err(Ignored::Other),
        }
    }

    /// A binding the engine refused (a MAC not seen yet, a life-critical
    /// device): the session is forgotten, and its next update, which
    /// carries all a binding needs, tries again. Kept, a NAS's sessions for
    /// devices nobody knows (or a flood of made-up MACs) would be listed
    /// as open and fill the table. It is remembered (`Refused`): a replay
    /// of its older updates stays refused. Returns the end of the role
    /// decision the device still holds when the session it displaced has
    /// since moved to another device: nothing would end it otherwise.
    pub fn refused(&mut self, s: &Session, now: i64) -> Option<Change> {
        let key = s.key();
        // An earlier binding of this very session (accepted before, or
        // restored) is what the engine enforces on the device.
        let own = self
            .by_key
            .get(&key)
            .is_some_and(|x| x.enforced && x.mac == s.mac);
        let mut orphan = None;
        if self.bound.get(&s.mac) == Some(&key) {
            let end = |mac: &str, k: &Key, why: String| Change::Unbind {
                mac: mac.to_owned(),
                why,
                session: Some(session_mark(&k.0, &k.1)),
            };
            match self.displaced.remove(&s.mac) {
                // Its own earlier role holds the device, and the session
                // is forgotten below: that role ends with it (fails safe).
                Some(prev) if prev == key => {
                    self.bound.remove(&s.mac);
                    let why = format!("session {}: its new binding was refused", key.1);
                    orphan = Some(end(&s.mac, &key, why));
                }
                // The session it displaced still holds the role decision
                // the engine enforces: it is the binding again, so its Stop
                // ends it.
                Some(prev) if self.by_key.get(&prev).is_some_and(|p| p.mac == s.mac) => {
                    self.bound.insert(s.mac.clone(), prev);
                }
                // It moved to another device, or its Stop came while the
                // refused one held the binding: the role decision it made
                // here is still enforced, and nothing else would end it.
                Some(prev) => {
                    self.bound.remove(&s.mac);
                    let why = if self.by_key.contains_key(&prev) {
                        format!("session {} moved to another device", prev.1)
                    } else {
                        format!("session {} ended", prev.1)
                    };
                    orphan = Some(end(&s.mac, &prev, why));
                }
                None if own => {
                    self.bound.remove(&s.mac);
                    let why = format!("session {}: its new binding was refused", key.1);
                    orphan = Some(end(&s.mac, &key, why));
                }
                None => {
                    self.bound.remove(&s.mac);
                }
            }
        }
        if self.by_key.get(&key).is_some_and(|x| x.mac == s.mac) {
            if let Some(gone) = self.by_key.remove(&key) {
                self.ended.record(key, How::Refused, now, gone.last_event);
            }
        }
        orphan
    }

    /// A binding the engine enforced: the session it displaced is over
    /// for good. If a later one has taken the device meanwhile (its answer
    /// still to come), this one is what the device falls back to.
    pub fn accepted(&mut self, s: &Session) {
        let key = s.key();
        if let Some(x) = self.by_key.get_mut(&key).filter(|x| x.mac == s.mac) {
            x.enforced = true;
        }
        match self.bound.get(&s.mac) {
            Some(b) if *b != key => {
                self.displaced.insert(s.mac.clone(), key);
            }
            _ => {
                self.displaced.remove(&s.mac);
            }
        }
    }

    /// The sessions on device `mac`.
    pub fn on_device<'a>(&'a self, mac: &'a str) -> impl Iterator<Item = &'a Session> + 'a {
        self.by_key.values().filter(move |s| s.mac == mac)
    }

    /// Whether `mac` is bound by a session this table knows.
    pub fn is_bound(&self, mac: &str) -> bool {
        self.bound.contains_key(mac)
    }
}

/// The first role a packet's `Class` or `Filter-Id` names.
fn role_of<'a>(a: &Accounting, roles: &'a [RoleDoc]) -> Option<&'a RoleDoc> {
    roles
        .iter()
        .find(|r| a.classes.iter().chain(&a.filter_ids).any(|c| *c == r.class))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "replay_tests.rs"]
mod replay_tests;
