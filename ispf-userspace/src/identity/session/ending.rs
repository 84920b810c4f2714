//! How sessions end: by the NAS (`Stop`, `Accounting-On`/`Off`) through
//! `account`, or by the controller: no update in time, a role gone from the
//! policy, identity gone, the table full, the device made life-critical.
//! Every ending is remembered (module `ended`) against replays.

use super::{ended::How, Change, Session, Sessions, MAX_SESSIONS};
use crate::{
    decisions::{session_mark, DecisionRequest},
    policy::RoleDoc,
};

impl Change {
    /// What the engine is asked to do; `host`, in a fleet, is this host's
    /// name, which a role decision carries and a session's end checks.
    pub fn request(&self, host: Option<&str>) -> DecisionRequest {
        match self {
            Change::Bind(s) => DecisionRequest::Session {
                mac: s.mac.clone(),
                segment: s.segment.clone(),
                role: s.role.clone(),
                user: s.user.clone(),
                nas: s.nas.clone(),
                session: s.id.clone(),
                host: host.map(str::to_owned),
            },
            Change::Unbind { mac, why, session } => DecisionRequest::EndSession {
                mac: mac.clone(),
                why: why.clone(),
                host: host.map(str::to_owned),
                session: session.clone(),
            },
        }
    }
}

impl Sessions {
    /// Forgets every session on `mac`, whose role decision the
    /// controller ended by itself (the file makes the device
    /// life-critical): any of them, bound or displaced, would be refused
    /// now, and `ispf sessions` must not list a role nothing enforces.
    /// Their next update tries again and meets the engine's checks.
    pub fn forget_device(&mut self, mac: &str, now: i64) -> Vec<Session> {
        self.bound.remove(mac);
        self.displaced.remove(mac);
        let keys: Vec<_> = self
            .by_key
            .iter()
            .filter(|(_, s)| s.mac == mac)
            .map(|(k, _)| k.clone())
            .collect();
        let gone: Vec<Session> = keys.iter().filter_map(|k| self.by_key.remove(k)).collect();
        for s in &gone {
            self.ended.record(s.key(), How::Lapsed, now, s.last_event);
        }
        gone
    }

    /// Sessions whose role the policy no longer has (or maps to another
    /// segment now): they end, and their devices are unbound.
    pub fn prune(&mut self, roles: &[RoleDoc], now: i64) -> Vec<Change> {
        let gone: Vec<_> = self
            .by_key
            .iter()
            .filter(|(_, s)| {
                !roles
                    .iter()
                    .any(|r| r.name == s.role && r.segment == s.segment)
            })
            .map(|(k, s)| (k.clone(), s.role.clone()))
            .collect();
        gone.into_iter()
            .filter_map(|(k, role)| {
                self.end(
                    &k,
                    &format!("role {role} is no longer in the policy"),
                    How::Lapsed,
                    now,
                )
            })
            .collect()
    }

    /// Sessions past their timeout at `now` (and ended ones remembered
    /// for a day forgotten).
    pub fn expire(&mut self, now: i64) -> Vec<Change> {
        self.ended.age(now);
        let stale: Vec<_> = self
            .by_key
            .iter()
            .filter(|(_, s)| now - s.last_update >= s.timeout_s)
            .map(|(k, s)| (k.clone(), s.timeout_s))
            .collect();
        stale
            .into_iter()
            .filter_map(|(k, t)| {
                self.end(
                    &k,
                    &format!("no accounting update for {t} s"),
                    How::Lapsed,
                    now,
                )
            })
            .collect()
    }

    /// Ends every session (identity left the policy), remembering them:
    /// a replay must not bind once identity is back.
    pub fn end_all(&mut self, why: &str, now: i64) -> Vec<Change> {
        let keys: Vec<_> = self.by_key.keys().cloned().collect();
        self.displaced.clear();
        let mut out: Vec<Change> = keys
            .iter()
            .filter_map(|k| self.end(k, why, How::Lapsed, now))
            .collect();
        // A binding whose session this table no longer holds as it (a
        // refusal gave it back to a session that has since moved): ended
        // by MAC, as before sessions were remembered.
        for mac in std::mem::take(&mut self.bound).into_keys() {
            out.push(Change::Unbind {
                mac,
                why: why.to_owned(),
                session: None,
            });
        }
        out
    }

    /// Ends a session; unbinds its device if this session bound it.
    pub(super) fn end(
        &mut self,
        key: &(String, String),
        why: &str,
        how: How,
        now: i64,
    ) -> Option<Change> {
        let s = self.by_key.remove(key)?;
        self.ended.record(key.clone(), how, now, s.last_event);
        if self.bound.get(&s.mac) == Some(key) {
            self.bound.remove(&s.mac);
            return Some(Change::Unbind {
                mac: s.mac,
                why: why.to_owned(),
                session: Some(session_mark(&s.nas, &s.id)),
            });
        }
        None
    }

    /// Ends the oldest-updated sessions beyond [`MAX_SESSIONS`], with
    /// their bindings: a role decision must not outlive the session that
    /// holds it, unseen in `ispf sessions`.
    pub(super) fn bound_cap(&mut self, now: i64) -> Vec<Change> {
        let mut out = Vec::new();
        while self.by_key.len() > MAX_SESSIONS {
            let Some(k) = self
                .by_key
                .iter()
                .min_by_key(|(_, s)| s.last_update)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            let why = format!("{MAX_SESSIONS} sessions are open; the least recently updated ends");
            out.extend(self.end(&k, &why, How::Lapsed, now));
        }
        out
    }
}
