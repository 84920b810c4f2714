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

/// Whether role decision reason `reason` names session `mark`.
pub fn names_session(reason: &str, mark: &str) -> bool {
    reason.ends_with(mark)
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
