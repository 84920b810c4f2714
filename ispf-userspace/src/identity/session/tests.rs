//! Host tests of sessions: Start, Interim-Update and Stop; the newest
//! session binding a device; roles removed from the policy.

use super::*;

pub(super) fn roles() -> Vec<RoleDoc> {
    serde_json::from_str(
        r#"[{"name": "biomed-engineer", "class": "biomed", "segment": "biomed-ws"}]"#,
    )
    .unwrap()
}

pub(super) fn acct(status: Status, id: &str, mac: &str, class: &str) -> Accounting {
    Accounting {
        status: Some(status),
        session_id: Some(id.into()),
        user: Some("alice".into()),
        calling_station: Some(mac.into()),
        classes: vec![class.into()],
        interim_s: Some(10),
        ..Default::default()
    }
}

#[test]
fn start_interim_stop() {
    let (mut s, r) = (Sessions::default(), roles());
    let c = s
        .account(
            &acct(Status::Start, "S1", "02-00-00-00-30-01", "biomed"),
            "nas",
            &r,
            0,
        )
        .unwrap();
    assert!(
        matches!(&c[..], [Change::Bind(x)] if x.mac == "02:00:00:00:30:01" && x.segment == "biomed-ws")
    );
    // An interim of the same binding changes nothing but the clock.
    let c = s
        .account(
            &acct(Status::Interim, "S1", "0200.0000.3001", "biomed"),
            "nas",
            &r,
            5,
        )
        .unwrap();
    assert!(c.is_empty());
    assert!(s.expire(30).is_empty(), "3 intervals from the interim");
    // An interim for a session never started binds (a restart, a lost Start).
    let c = s
        .account(
            &acct(Status::Interim, "S2", "02:00:00:00:30:02", "biomed"),
            "nas",
            &r,
            6,
        )
        .unwrap();
    assert_eq!(c.len(), 1);
    let c = s
        .account(
            &acct(Status::Stop, "S1", "02-00-00-00-30-01", "biomed"),
            "nas",
            &r,
            7,
        )
        .unwrap();
    assert_eq!(
        c,
        vec![Change::Unbind {
            mac: "02:00:00:00:30:01".into(),
            why: "Stop for session S1".into(),
            session: Some("(NAS nas, session S1)".into()),
        }]
    );
    // A Stop of a session no one knows, an unknown role, no MAC.
    assert_eq!(
        s.account(
            &acct(Status::Stop, "S9", "02-00-00-00-30-01", "biomed"),
            "nas",
            &r,
            8
        ),
        Err(Ignored::NoSession)
    );
    assert_eq!(
        s.account(
            &acct(Status::Start, "S3", "02-00-00-00-30-03", "clerk"),
            "nas",
            &r,
            8
        ),
        Err(Ignored::NoRole)
    );
    assert_eq!(
        s.account(
            &acct(Status::Start, "S3", "not-a-mac", "biomed"),
            "nas",
            &r,
            8
        ),
        Err(Ignored::NoMac)
    );
    // Timeout: three intervals without an update.
    assert_eq!(s.expire(36).len(), 1);
    assert!(s.list().is_empty());
}

/// A NAS that announces its interval in the Start only: the session
/// keeps three of those intervals, not the hour of a session that never
/// announced one.
#[test]
fn an_update_without_an_interval_keeps_the_announced_one() {
    let (mut s, r) = (Sessions::default(), roles());
    let mut start = acct(Status::Start, "S1", "02:00:00:00:30:01", "biomed");
    start.interim_s = Some(7200);
    assert_eq!(s.account(&start, "nas", &r, 0).unwrap().len(), 1);
    let mut interim = acct(Status::Interim, "S1", "02:00:00:00:30:01", "biomed");
    interim.interim_s = None;
    assert!(s.account(&interim, "nas", &r, 100).unwrap().is_empty());
    assert!(s.expire(100 + 3_601).is_empty(), "not the default hour");
    assert_eq!(s.expire(100 + 3 * 7200).len(), 1);
    // Never announced: the default hour.
    let mut quiet = acct(Status::Start, "S2", "02:00:00:00:30:02", "biomed");
    quiet.interim_s = None;
    s.account(&quiet, "nas", &r, 30_000).unwrap();
    assert_eq!(s.expire(30_000 + 3_600).len(), 1);
}

#[test]
fn the_newest_session_binds_and_an_older_stop_does_not_unbind() {
    let (mut s, r) = (Sessions::default(), roles());
    let m = "02-00-00-00-30-01";
    s.account(&acct(Status::Start, "A", m, "biomed"), "nas", &r, 0)
        .unwrap();
    s.account(&acct(Status::Start, "B", m, "biomed"), "nas", &r, 1)
        .unwrap();
    assert!(s
        .account(&acct(Status::Stop, "A", m, "biomed"), "nas", &r, 2)
        .unwrap()
        .is_empty());
    assert_eq!(
        s.account(&acct(Status::Stop, "B", m, "biomed"), "nas", &r, 3)
            .unwrap()
            .len(),
        1
    );
    // Accounting-On from a NAS ends its sessions, not another NAS's.
    s.account(&acct(Status::Start, "C", m, "biomed"), "nas", &r, 4)
        .unwrap();
    s.account(
        &acct(Status::Start, "D", "02-00-00-00-30-02", "biomed"),
        "other",
        &r,
        4,
    )
    .unwrap();
    let on = Accounting {
        status: Some(Status::AccountingOn),
        ..Default::default()
    };
    assert_eq!(s.account(&on, "nas", &r, 5).unwrap().len(), 1);
    assert_eq!(s.list().len(), 1);
    // Without an interval, an hour.
    let mut a = acct(Status::Start, "E", "02-00-00-00-30-05", "biomed");
    a.interim_s = None;
    s.account(&a, "nas", &r, 100).unwrap();
    assert!(s
        .expire(100 + 3599)
        .iter()
        .all(|c| !matches!(c, Change::Unbind { mac, .. } if mac == "02:00:00:00:30:05")));
    assert!(s
        .expire(100 + 3600)
        .iter()
        .any(|c| matches!(c, Change::Unbind { mac, .. } if mac == "02:00:00:00:30:05")));
}

#[test]
fn a_role_removed_from_the_policy_ends_its_sessions() {
    let (mut s, r) = (Sessions::default(), roles());
    s.account(
        &acct(Status::Start, "A", "02-00-00-00-30-01", "biomed"),
        "nas",
        &r,
        0,
    )
    .unwrap();
    assert!(s.prune(&r, 0).is_empty(), "the role is still there");
    let moved: Vec<RoleDoc> = serde_json::from_str(
        r#"[{"name": "biomed-engineer", "class": "biomed", "segment": "elsewhere"}]"#,
    )
    .unwrap();
    assert_eq!(
        s.prune(&moved, 0).len(),
        1,
        "its segment changed: the binding ends"
    );
    s.account(
        &acct(Status::Start, "B", "02-00-00-00-30-01", "biomed"),
        "nas",
        &r,
        1,
    )
    .unwrap();
    assert_eq!(s.prune(&[], 0).len(), 1);
    assert!(s.list().is_empty());
}

/// A binding the engine refuses (a device nobody has seen, a pump) is not
/// kept as an open session: a NAS replaying made-up MACs must not fill the
/// table, nor be listed as holding segments it does not.
#[test]
fn a_refused_binding_is_forgotten_and_its_next_update_tries_again() {
    let (mut s, r) = (Sessions::default(), roles());
    let start = acct(Status::Start, "S1", "02:00:00:00:30:09", "biomed");
    let c = s.account(&start, "nas", &r, 0).unwrap();
    let [Change::Bind(b)] = &c[..] else {
        panic!("{c:?}")
    };
    s.refused(b, 0);
    assert!(s.list().is_empty() && !s.is_bound("02:00:00:00:30:09"));
    // The next interim carries all a binding needs.
    let interim = acct(Status::Interim, "S1", "02:00:00:00:30:09", "biomed");
    let c = s.account(&interim, "nas", &r, 10).unwrap();
    assert!(matches!(&c[..], [Change::Bind(_)]));
    assert_eq!(s.list().len(), 1);
}

/// A new session on a bound device that the engine refuses gives the
/// binding back to the session that holds the enforced role: its Stop
/// still ends it, no role decision is left without a session.
#[test]
fn a_refused_rebind_leaves_the_binding_with_the_session_that_holds_it() {
    let (mut s, r) = (Sessions::default(), roles());
    let mac = "02:00:00:00:30:07";
    let c = s
        .account(&acct(Status::Start, "S1", mac, "biomed"), "nas", &r, 0)
        .unwrap();
    let [Change::Bind(first)] = &c[..] else {
        panic!("{c:?}")
    };
    s.accepted(first);
    let c = s
        .account(&acct(Status::Start, "S2", mac, "biomed"), "nas", &r, 5)
        .unwrap();
    let [Change::Bind(second)] = &c[..] else {
        panic!("{c:?}")
    };
    s.refused(second, 0);
    let stop = s
        .account(&acct(Status::Stop, "S1", mac, "biomed"), "nas", &r, 9)
        .unwrap();
    assert!(
        matches!(&stop[..], [Change::Unbind { mac: m, .. }] if m == mac),
        "{stop:?}"
    );
}

/// Every session on a device whose decision the engine ended by itself is
/// forgotten, the displaced one too; the binding's next interim asks
/// again.
#[test]
fn sessions_on_a_device_the_engine_ended_are_forgotten_and_ask_again() {
    let (mut s, r) = (Sessions::default(), roles());
    let mac = "02:00:00:00:30:01";
    let other = "02:00:00:00:30:02";
    for (id, m) in [("S0", mac), ("S1", mac), ("S2", other)] {
        s.account(&acct(Status::Start, id, m, "biomed"), "nas", &r, 0)
            .unwrap();
    }
    let mut gone: Vec<String> = s.forget_device(mac, 0).into_iter().map(|x| x.id).collect();
    gone.sort();
    assert_eq!(gone, ["S0", "S1"]);
    assert!(!s.is_bound(mac));
    assert!(s.is_bound(other));
    assert_eq!(s.list().len(), 1);
    assert!(s.forget_device(mac, 0).is_empty());
    let c = s
        .account(&acct(Status::Interim, "S1", mac, "biomed"), "nas", &r, 5)
        .unwrap();
    assert!(matches!(&c[..], [Change::Bind(x)] if x.mac == mac));
}

/// A restart restores only sessions whose device a role decision still
/// holds: a session whose decision the controller ended just before it
/// was killed (the table is saved once a second) is not listed as open.
#[test]
fn a_restart_restores_only_sessions_a_decision_holds() {
    let session = |id: &str, mac: &str, since: i64| Session {
        nas: "nas".into(),
        id: id.into(),
        mac: mac.into(),
        user: "alice".into(),
        role: "biomed-engineer".into(),
        segment: "biomed-ws".into(),
        since,
        last_update: since,
        timeout_s: 30,
        last_event: None,
        seen_auth: Vec::new(),
        enforced: false,
    };
    let held_mac = "02:00:00:00:30:01";
    let list = vec![
        session("OLD", held_mac, 1),
        session("NEW", held_mac, 2),
        session("GONE", "02:00:00:00:30:02", 3),
    ];
    let (mut s, stale) = Sessions::restore(
        list.clone(),
        Vec::new(),
        |mac| mac == held_mac,
        |_| false,
        10,
    );
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].id, "GONE");
    let ids: Vec<String> = s.list().into_iter().map(|x| x.id).collect();
    assert_eq!(ids, ["NEW", "OLD"]);
    assert!(s.is_bound(held_mac));
    assert!(!s.is_bound("02:00:00:00:30:02"));
    // The newest recorded session is the binding: its Stop unbinds.
    let c = s
        .account(
            &acct(Status::Stop, "NEW", held_mac, "biomed"),
            "nas",
            &roles(),
            4,
        )
        .unwrap();
    assert!(matches!(&c[..], [Change::Unbind { mac, .. }] if mac == held_mac));
    // A Stop for the session not restored is one never started.
    assert_eq!(
        s.account(
            &acct(Status::Stop, "GONE", "02:00:00:00:30:02", "biomed"),
            "nas",
            &roles(),
            4
        ),
        Err(Ignored::NoSession)
    );
    // When the role decision names the older session, that one holds the
    // role: its Stop ends it, and the newer's does not.
    let (mut s, _) = Sessions::restore(
        list,
        Vec::new(),
        |mac| mac == held_mac,
        |x| x.id == "OLD",
        10,
    );
    let stop = |s: &mut Sessions, id: &str| {
        s.account(
            &acct(Status::Stop, id, held_mac, "biomed"),
            "nas",
            &roles(),
            4,
        )
    };
    assert!(matches!(&stop(&mut s, "NEW").unwrap()[..], []));
    assert!(s.is_bound(held_mac));
    let c = stop(&mut s, "OLD").unwrap();
    assert!(matches!(&c[..], [Change::Unbind { mac, .. }] if mac == held_mac));
}
