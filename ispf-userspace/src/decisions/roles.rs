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

/// Whether role decision reason `reason` names a session at all: every
/// role the listener makes does; one written into etcd by hand, or made
/// before sessions were named, may not.
fn names_a_session(reason: &str) -> bool {
    reason.contains("(NAS ")
}

/// A session's end: what its host and session (its [`session_mark`]) may
/// end. In a fleet the role key is deleted only while the decision it
/// holds is one such end would end as planned, checked against etcd's
/// value at the delete: this host's copy may lag etcd's both ways
/// (another host's newer session, and this host's own writes not yet
/// delivered back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    pub host: Option<String>,
    pub session: Option<String>,
}

impl SessionEnd {
    /// Whether this end ends role decision `d`. A session's end ends its
    /// own session's role, whichever host made it (a host renamed since,
    /// a NAS that failed over), and another session's only when, in a
    /// fleet, that role names no host (no host's sweep would end it): a
    /// burst that ends one session and binds another for the same device
    /// (a NAS's re-authentication) is written to etcd puts first, so the
    /// end meets the newer role, which must stay. A role no session holds
    /// is ended by the listener's sweep of orphans, which names none: such
    /// an end (and a session's end meeting a role that names no session)
    /// ends a role this host's listener made or one that names no host.
    pub fn ends(&self, d: &Decision) -> bool {
        if d.kind != Kind::Role {
            return false;
        }
        match self.session.as_deref() {
            Some(mark) if names_session(&d.reason, mark) => true,
            // In a fleet, a role that names no host (an older ispf's, or
            // written by hand) ends with any session's end, as it always
            // did: no host's sweep ends it.
            Some(_) if self.host.is_some() && holder(d).is_none() => true,
            Some(_) if names_a_session(&d.reason) => false,
            _ => self
                .host
                .as_deref()
                .is_none_or(|h| holder(d).is_none_or(|x| x == h)),
        }
    }

    /// Why the engine refuses this end of role decision `d` as its copy
    /// of the decisions shows it; `None` when it plans it. Alone, the copy
    /// is the record and [`Self::ends`] decides. In a fleet the copy may
    /// lag etcd (this host's own writes not yet delivered back: the copy
    /// shows S2's role while etcd holds S3's, whose Stop this is), so only
    /// another host's role is refused here and the delete judges etcd's
    /// value. The listener takes a refusal ending "a session ending here
    /// does not end it" as nothing left to do.
    pub fn refused(&self, d: &Decision) -> Option<String> {
        if self.ends(d) {
            return None;
        }
        let by = match (self.host.as_deref(), holder(d)) {
            (Some(h), Some(x)) if x != h => format!("a session on host {x}"),
            (Some(_), _) => return None,
            (None, _) => "another session".to_owned(),
        };
        Some(format!(
            "the role decision of {} is held by {by} ({}): a session ending here does not end it",
            d.mac, d.reason
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A role decision of device 02:00:00:00:30:01 made for `session` of
    /// NAS 10.0.0.9, on `host`'s listener if named.
    pub(crate) fn role(session: &str, host: Option<&str>) -> Decision {
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
    fn a_session_end_ends_only_its_own_sessions_role() {
        let end = |session: Option<&str>| SessionEnd {
            host: Some("a".into()),
            session: session.map(|s| session_mark("10.0.0.9", s)),
        };
        // Its own session's role, from this host or (a failover) another.
        assert!(end(Some("S2")).ends(&role("S2", Some("a"))));
        assert!(end(Some("S2")).ends(&role("S2", Some("b"))));
        // Another session's: kept, on another host and on this one (a
        // burst's end written after its bind of a newer session).
        assert!(!end(Some("S1")).ends(&role("S2", Some("b"))));
        assert!(!end(Some("S1")).ends(&role("S2", Some("a"))));
        // A role that names no host, in a fleet: any session's end ends
        // it (no sweep does).
        assert!(end(Some("S1")).ends(&role("S2", None)));
        // No session holds it any more: this host's ends, another's not.
        assert!(end(None).ends(&role("S2", Some("a"))));
        assert!(end(None).ends(&role("S2", None)));
        assert!(!end(None).ends(&role("S2", Some("b"))));
        // A role that names no session (by hand, or from before sessions
        // were named) ends with any session's end, as it always did.
        let unnamed = |host| Decision {
            reason: "written by hand".into(),
            ..role("S2", host)
        };
        assert!(end(Some("S1")).ends(&unnamed(None)));
        assert!(end(Some("S1")).ends(&unnamed(Some("a"))));
        assert!(!end(Some("S1")).ends(&unnamed(Some("b"))));
        assert!(!end(None).ends(&unnamed(Some("b"))));
        // Alone (no host names): the same rule by session.
        let alone = SessionEnd {
            host: None,
            session: Some(session_mark("10.0.0.9", "S1")),
        };
        assert!(!alone.ends(&role("S2", None)));
        assert!(alone.ends(&role("S1", None)));
        assert!(alone.ends(&unnamed(None)));
        // What the engine refuses on its copy, as the listener recognises
        // it: another host's role. This host's is left to the delete,
        // which judges etcd's value (the copy may lag it).
        let why = end(Some("S1")).refused(&role("S2", Some("b"))).unwrap();
        assert!(why.contains("held by a session on host b"), "{why}");
        assert!(why.ends_with("a session ending here does not end it"));
        assert_eq!(end(Some("S1")).refused(&role("S2", Some("a"))), None);
        assert_eq!(end(Some("S2")).refused(&role("S2", Some("a"))), None);
        // Alone, the copy is the record.
        let why = alone.refused(&role("S2", None)).unwrap();
        assert!(why.contains("held by another session"), "{why}");
        assert_eq!(alone.refused(&role("S1", None)), None);
    }
}
