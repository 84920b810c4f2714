//! Role decisions and the sessions that hold them. A role decision is the
//! site's in a fleet, but its session lives in the table of one host's
//! listener, which the decision names; that host alone ends it for want of
//! a session, and a session ending on another host leaves it alone.

use super::{Decision, Kind};

/// A role decision's reason, as `ispf decisions` and the timeline show it:
/// it ends with the session's [`session_mark`].
pub(super) fn session_reason(role: &str, user: &str, nas: &str, session: &str) -> String {
    format!("role {role} of {user} {}", session_mark(nas, session))
}

/// How a role decision's reason names the session that holds it: the NAS
/// and its `Acct-Session-Id`.
pub fn session_mark(nas: &str, session: &str) -> String {
    format!("(NAS {nas}, session {session})")
}

/// Whether role decision reason `reason` names session `mark`. A suffix
/// is exact because the NAS in a mark is an address and no session id
/// ispf takes holds `(NAS ` ([`nameable_session`]): another session's
/// mark could only end this one's by starting inside its id.
pub fn names_session(reason: &str, mark: &str) -> bool {
    reason.ends_with(mark)
}

/// Whether an `Acct-Session-Id` can be named in a role decision's reason
/// without ambiguity. One that holds `(NAS ` could make a reason end with
/// another session's mark, so that session's Stop would end this role.
pub fn nameable_session(id: &str) -> bool {
    !id.contains("(NAS ")
}

/// Who makes a role decision: the NAS that reported the session and, in
/// a fleet, the host whose listener holds it.
pub fn role_actor(nas: &str, host: Option<&str>) -> String {
    match host {
        Some(h) => format!("radius {nas} via {h}"),
        None => format!("radius {nas}"),
    }
}

/// The host whose listener made role decision `d`, if it names one.
fn holder(d: &Decision) -> Option<&str> {
    if d.kind != Kind::Role || !d.actor.starts_with("radius ") {
        return None;
    }
    d.actor.rsplit_once(" via ").map(|(_, h)| h)
}

/// Whether role decision `d` was made by host `host`'s listener.
pub fn role_held_on(d: &Decision, host: &str) -> bool {
    holder(d) == Some(host)
}

/// The other host whose listener made role decision `d` for another
/// session than `session` (its [`session_mark`], if known); `None` when it
/// is `host`'s, names no host (made alone, or before hosts were named), or
/// was made for that same session (a host renamed since, a NAS that failed
/// over).
pub(super) fn held_elsewhere<'a>(
    d: &'a Decision,
    host: &str,
    session: Option<&str>,
) -> Option<&'a str> {
    let same = session.is_some_and(|m| names_session(&d.reason, m));
    holder(d).filter(|h| *h != host && !same)
}

/// A session's end in a fleet: what its host and session (its
/// [`session_mark`]) may end. The role key is deleted only while the
/// decision it holds is one such end would end as planned, checked against
/// etcd's value at the delete: this host's copy may lag etcd's both ways
/// (another host's newer session, and this host's own writes not yet
/// delivered back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    pub host: Option<String>,
    pub session: Option<String>,
}

impl SessionEnd {
    /// Whether this end ends role decision `d`, by the rule the plan
    /// applies to this host's copy: one this host's listener made, one
    /// that names no host, or one this same session made. Another host's
    /// newer session's role is kept. Another local session's is not: in a
    /// burst that ends one session and binds another here, the end may
    /// meet the newer role, and ending it fails closed (its session binds
    /// it again at its next update), where keeping a role whose session
    /// the listener no longer binds could leave it with none to end it.
    pub fn ends(&self, d: &Decision) -> bool {
        d.kind == Kind::Role
            && self
                .host
                .as_deref()
                .is_none_or(|h| held_elsewhere(d, h, self.session.as_deref()).is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(session: &str, host: Option<&str>) -> Decision {
        Decision {
            mac: "02:00:00:00:30:01".into(),
            kind: Kind::Role,
            segment: Some("ws".into()),
            name: None,
            risk: None,
            reason: format!("role biomed of alice {}", session_mark("10.0.0.9", session)),
            forced: false,
            actor: role_actor("10.0.0.9", host),
            at: 0,
            expires: None,
            addresses: Vec::new(),
        }
    }

    #[test]
    fn a_reason_names_only_its_own_session() {
        let mark = |id: &str| session_mark("10.0.0.9", id);
        let reason = session_reason(
            "biomed",
            "alice (NAS 10.0.0.9, session S9)",
            "10.0.0.9",
            "S1",
        );
        assert!(names_session(&reason, &mark("S1")));
        // A user name is the supplicant's to choose; the mark comes last.
        assert!(!names_session(&reason, &mark("S9")));
        assert!(!names_session(&reason, &mark("1")));
        // An id holding another session's mark would name it: such ids
        // are not taken.
        let sly = "z (NAS 10.0.0.8, session S2";
        assert!(names_session(
            &session_reason("biomed", "alice", "10.0.0.9", sly),
            &session_mark("10.0.0.8", "S2")
        ));
        assert!(!nameable_session(sly));
        assert!(nameable_session("5F3C2A1B-00000042"));
    }

    /// What etcd holds when a session's end is written decides: this
    /// host's copy may be behind it either way.
    #[test]
    fn a_session_end_keeps_only_another_hosts_newer_role() {
        let end = |session: Option<&str>| SessionEnd {
            host: Some("a".into()),
            session: session.map(|s| session_mark("10.0.0.9", s)),
        };
        // Its own session's role, from this host or (a failover) another.
        assert!(end(Some("S2")).ends(&role("S2", Some("a"))));
        assert!(end(Some("S2")).ends(&role("S2", Some("b"))));
        // A newer session's on another host: kept. On this host: ended
        // (fails closed; that session binds it again).
        assert!(!end(Some("S1")).ends(&role("S2", Some("b"))));
        assert!(end(Some("S1")).ends(&role("S2", Some("a"))));
        // Made before hosts were named: ends with any session, as planned.
        assert!(end(Some("S1")).ends(&role("S2", None)));
        // No session holds it any more: this host's ends, another's not.
        assert!(end(None).ends(&role("S2", Some("a"))));
        assert!(!end(None).ends(&role("S2", Some("b"))));
    }
}
