//! Host tests of replays: ended sessions, Event-Timestamps, refusals, NAS
//! restarts and controller restarts.

use super::{
    tests::{acct, roles},
    *,
};

/// A Start of session `id` on `mac` at `now`, which must bind it.
fn bind(s: &mut Sessions, id: &str, mac: &str, now: i64) -> Session {
    let c = s
        .account(
            &acct(Status::Start, id, mac, "biomed"),
            "nas",
            &roles(),
            now,
        )
        .unwrap();
    match &c[..] {
        [Change::Bind(b)] => b.clone(),
        other => panic!("{other:?}"),
    }
}

/// A captured Start or Interim-Update sent again after the session's Stop
/// (past the listener's 30 s duplicate window) binds nothing; a NAS's
/// next session, with a new id, does.
#[test]
fn a_replay_after_the_stop_binds_nothing() {
    let (mut s, r) = (Sessions::default(), roles());
    let m = "02:00:00:00:30:01";
    let start = acct(Status::Start, "S1", m, "biomed");
    assert!(s.account(&start, "nas", &r, 100).is_ok());
    let stop = acct(Status::Stop, "S1", m, "biomed");
    assert_eq!(s.account(&stop, "nas", &r, 200).unwrap().len(), 1);
    assert_eq!(s.account(&start, "nas", &r, 300), Err(Ignored::Ended));
    let interim = acct(Status::Interim, "S1", m, "biomed");
    assert_eq!(s.account(&interim, "nas", &r, 300), Err(Ignored::Ended));
    assert!(!s.is_bound(m) && s.list().is_empty());
    // Another NAS's session of the same id is another session.
    assert!(s.account(&start, "nas2", &r, 300).is_ok());
    // A Stop for a session the controller never bound still stops it.
    let stop9 = acct(Status::Stop, "S9", m, "biomed");
    assert_eq!(s.account(&stop9, "nas", &r, 300), Err(Ignored::NoSession));
    let start9 = acct(Status::Start, "S9", m, "biomed");
    assert_eq!(s.account(&start9, "nas", &r, 310), Err(Ignored::Ended));
}

/// With Event-Timestamps: an update older than the session's last is
/// stale, the same one again does not keep it alive; a session the
/// controller timed out comes back only with a newer one; one a day
/// older than its NAS's newest never binds.
#[test]
fn event_timestamps_order_updates() {
    let (mut s, r) = (Sessions::default(), roles());
    let m = "02:00:00:00:30:02";
    let at = |status, id: &str, t: u32, class: &str| {
        let mut a = acct(status, id, m, class);
        a.event_time = Some(t);
        a
    };
    let ok = |s: &mut Sessions, a: &Accounting, now| s.account(a, "nas", &r, now);
    assert!(ok(&mut s, &at(Status::Start, "S1", 1000, "biomed"), 1000).is_ok());
    assert!(ok(&mut s, &at(Status::Interim, "S1", 1010, "biomed"), 1010).is_ok());
    assert_eq!(
        ok(&mut s, &at(Status::Interim, "S1", 1005, "biomed"), 1011),
        Err(Ignored::Stale)
    );
    // The last update again, 15 s later: answered, but the session still
    // times out 30 s after the update itself.
    assert!(ok(&mut s, &at(Status::Interim, "S1", 1010, "biomed"), 1025).is_ok());
    assert_eq!(s.expire(1010 + 30).len(), 1, "three 10 s intervals");
    assert_eq!(
        ok(&mut s, &at(Status::Interim, "S1", 1010, "biomed"), 1100),
        Err(Ignored::Stale),
        "the last update taken, sent again"
    );
    assert!(!s.is_bound(m));
    // An update without the role (a reauthentication dropped it) binds
    // nothing, but a replay of the older one with the role is stale.
    assert_eq!(
        ok(&mut s, &at(Status::Interim, "S1", 1090, "clerk"), 1100),
        Err(Ignored::NoRole)
    );
    assert_eq!(
        ok(&mut s, &at(Status::Interim, "S1", 1050, "biomed"), 1100),
        Err(Ignored::Stale)
    );
    assert!(ok(&mut s, &at(Status::Interim, "S1", 1095, "biomed"), 1100).is_ok());
    assert!(s.is_bound(m));
    // A day on the NAS's clock: older than a day before its newest.
    let later = 1000 + REMEMBER_S as u32 + 100;
    assert!(ok(&mut s, &at(Status::Interim, "S1", later, "biomed"), 1200).is_ok());
    assert_eq!(
        ok(&mut s, &at(Status::Start, "S2", 1000, "biomed"), 1200),
        Err(Ignored::Stale)
    );
}

/// A binding the engine refused is remembered: its older updates,
/// replayed, stay refused. A NAS's restart lets it hand out the same ids
/// again.
#[test]
fn refusals_and_nas_restarts() {
    let (mut s, r) = (Sessions::default(), roles());
    let m = "02:00:00:00:30:04";
    let at = |status, id: &str, t: u32| {
        let mut a = acct(status, id, m, "biomed");
        a.event_time = Some(t);
        a
    };
    let c = s
        .account(&at(Status::Start, "R", 100), "nas", &r, 100)
        .unwrap();
    let [Change::Bind(b)] = &c[..] else {
        panic!("{c:?}")
    };
    let b = b.clone();
    assert!(s.refused(&b, 100).is_none());
    // An older update replayed: refused. The NAS's next one, even within
    // the same second (it often follows the Start once the device has an
    // address): tried again.
    assert_eq!(
        s.account(&at(Status::Start, "R", 99), "nas", &r, 110),
        Err(Ignored::Stale)
    );
    let c = s
        .account(&at(Status::Interim, "R", 100), "nas", &r, 120)
        .unwrap();
    assert!(matches!(&c[..], [Change::Bind(_)]), "{c:?}");
    assert!(s
        .account(&at(Status::Interim, "R", 160), "nas", &r, 200)
        .is_ok());
    // A Stop from before the session's last update does not end it.
    assert_eq!(
        s.account(&at(Status::Stop, "R", 150), "nas", &r, 200),
        Err(Ignored::Stale)
    );
    assert!(s.is_bound(m));
    // Stopped, then the NAS restarts and counts from the same id.
    assert_eq!(
        s.account(&at(Status::Stop, "R", 170), "nas", &r, 200)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.account(&at(Status::Start, "R", 180), "nas", &r, 200),
        Err(Ignored::Ended)
    );
    let mut on = acct(Status::AccountingOn, "", m, "biomed");
    on.event_time = Some(300);
    assert!(s.account(&on, "nas", &r, 300).is_ok());
    assert_eq!(
        s.account(&at(Status::Start, "R", 160), "nas", &r, 310),
        Err(Ignored::Stale),
        "from before the restart"
    );
    assert!(s
        .account(&at(Status::Start, "R", 305), "nas", &r, 310)
        .is_ok());
    assert!(s.is_bound(m));
}

/// What the database remembered of ended sessions holds after a restart;
/// a recorded session no decision holds is remembered as lapsed.
#[test]
fn ended_sessions_survive_a_restart() {
    let r = roles();
    let m = "02:00:00:00:30:05";
    let gone = Gone {
        how: How::Stopped,
        at: 50,
        last_event: None,
    };
    let not_held = Session {
        nas: "nas".into(),
        id: "L".into(),
        mac: m.into(),
        user: "alice".into(),
        role: "biomed-engineer".into(),
        segment: "biomed-ws".into(),
        since: 10,
        last_update: 40,
        timeout_s: 30,
        last_event: Some(40),
        seen_auth: Vec::new(),
        enforced: false,
    };
    let (mut s, stale) = Sessions::restore(
        vec![not_held],
        vec![(("nas".into(), "S".into()), gone)],
        |_| false,
        |_| false,
        60,
    );
    assert_eq!(stale.len(), 1);
    let start = acct(Status::Start, "S", m, "biomed");
    assert_eq!(s.account(&start, "nas", &r, 70), Err(Ignored::Ended));
    let mut replay = acct(Status::Interim, "L", m, "biomed");
    replay.event_time = Some(40);
    assert_eq!(s.account(&replay, "nas", &r, 70), Err(Ignored::Stale));
    let rows = s.ended_unsaved().expect("the lapsed session to save").rows;
    assert!(rows.iter().any(|(k, g)| k.1 == "L" && g.is_some()));
}

/// A replay of a displaced session's last update (the same timestamp)
/// does not take the device back from the session that displaced it.
#[test]
fn the_same_update_again_changes_nothing() {
    let (mut s, r) = (Sessions::default(), roles());
    let m = "02:00:00:00:30:06";
    let at = |status, id: &str, t: u32| {
        let mut a = acct(status, id, m, "biomed");
        a.event_time = Some(t);
        a
    };
    assert!(s
        .account(&at(Status::Start, "K1", 100), "nas", &r, 100)
        .is_ok());
    assert!(s
        .account(&at(Status::Start, "K2", 110), "nas", &r, 110)
        .is_ok());
    let k2 = |s: &Sessions| s.list().iter().any(|x| x.id == "K2");
    assert!(k2(&s));
    assert_eq!(
        s.account(&at(Status::Start, "K1", 100), "nas", &r, 120),
        Ok(Vec::new())
    );
    // K2's Stop ends the binding: K1's replay did not take it back.
    let c = s
        .account(&at(Status::Stop, "K2", 130), "nas", &r, 130)
        .unwrap();
    assert!(matches!(&c[..], [Change::Unbind { .. }]), "{c:?}");
}

/// A session refused after the one it displaced moved to another device:
/// the role decision left on the first device is ended.
#[test]
fn a_refusal_ends_a_role_nothing_holds_any_more() {
    let (mut s, r) = (Sessions::default(), roles());
    let (a, b) = ("02:00:00:00:30:07", "02:00:00:00:30:08");
    assert!(s
        .account(&acct(Status::Start, "K1", a, "biomed"), "nas", &r, 1)
        .is_ok());
    let c = s
        .account(&acct(Status::Start, "K2", a, "biomed"), "nas", &r, 2)
        .unwrap();
    let [Change::Bind(k2)] = &c[..] else {
        panic!("{c:?}")
    };
    let k2 = k2.clone();
    // K1 moves to b before the engine answers for K2.
    assert!(s
        .account(&acct(Status::Interim, "K1", b, "biomed"), "nas", &r, 3)
        .is_ok());
    let orphan = s.refused(&k2, 4);
    assert!(
        matches!(&orphan, Some(Change::Unbind { mac, .. }) if mac == a),
        "{orphan:?}"
    );
    assert!(!s.is_bound(a) && s.is_bound(b));
}

/// A NAS that repeats its timestamp (or sends two updates within a
/// second) keeps its session: only the very same packet again is no news.
/// A timestamp a day ahead of the controller's clock is taken as none.
#[test]
fn repeated_timestamps_and_glitches() {
    let (mut s, r) = (Sessions::default(), roles());
    let m = "02:00:00:00:30:09";
    let at = |status, t: u32, auth: u8| {
        let mut a = acct(status, "S", m, "biomed");
        a.event_time = Some(t);
        a.authenticator = [auth; 16];
        a
    };
    assert!(s
        .account(&at(Status::Start, 100, 1), "nas", &r, 100)
        .is_ok());
    // Another packet of the same second: the session lives on.
    assert!(s
        .account(&at(Status::Interim, 100, 2), "nas", &r, 125)
        .is_ok());
    assert!(s.expire(125 + 29).is_empty(), "refreshed at 125");
    // The same packet again: changes nothing, not even the session's life.
    assert!(s
        .account(&at(Status::Interim, 100, 2), "nas", &r, 150)
        .is_ok());
    assert_eq!(s.expire(125 + 30).len(), 1);
    // A glitch far in the future does not make every later update old.
    let now = 1_000_000;
    let future = (now + 10 * REMEMBER_S) as u32;
    let mut g = acct(Status::Start, "G", m, "biomed");
    g.event_time = Some(future);
    assert!(s.account(&g, "nas", &r, now).is_ok());
    let mut next = acct(Status::Interim, "G", m, "biomed");
    next.event_time = Some(now as u32);
    next.authenticator = [9; 16];
    assert!(s.account(&next, "nas", &r, now).is_ok());
    assert!(s.is_bound(m));
}

/// A Stop with no role in it, for a session remembered as refused, stops
/// it; and the role decision of a displaced session whose Stop came while
/// the refused one held the device is ended.
#[test]
fn stops_reach_refused_and_displaced_sessions() {
    let (mut s, r) = (Sessions::default(), roles());
    let m = "02:00:00:00:30:0a";
    let c = s
        .account(&acct(Status::Start, "R", m, "biomed"), "nas", &r, 1)
        .unwrap();
    let [Change::Bind(b)] = &c[..] else {
        panic!("{c:?}")
    };
    let b = b.clone();
    assert!(s.refused(&b, 1).is_none());
    let stop = acct(Status::Stop, "R", m, "clerk");
    assert_eq!(s.account(&stop, "nas", &r, 2), Err(Ignored::NoSession));
    assert_eq!(
        s.account(&acct(Status::Start, "R", m, "biomed"), "nas", &r, 3),
        Err(Ignored::Ended)
    );
    // A holds m; B displaces it; A's Stop; B refused: A's decision ends.
    assert!(s
        .account(&acct(Status::Start, "A", m, "biomed"), "nas", &r, 4)
        .is_ok());
    let c = s
        .account(&acct(Status::Start, "B", m, "biomed"), "nas", &r, 5)
        .unwrap();
    let [Change::Bind(b)] = &c[..] else {
        panic!("{c:?}")
    };
    let b = b.clone();
    let c = s
        .account(&acct(Status::Stop, "A", m, "biomed"), "nas", &r, 6)
        .unwrap();
    assert!(c.is_empty(), "B holds the binding: {c:?}");
    let orphan = s.refused(&b, 7);
    assert!(
        matches!(&orphan, Some(Change::Unbind { mac, session: Some(_), .. }) if mac == m),
        "{orphan:?}"
    );
    assert!(!s.is_bound(m));
}

/// Two packets of one second, replayed in turn, are no news after the
/// first time each: they do not keep a session alive.
#[test]
fn packets_of_one_second_replayed_in_turn_change_nothing() {
    let (mut s, r) = (Sessions::default(), roles());
    let m = "02:00:00:00:30:0b";
    let at = |status, auth: u8| {
        let mut a = acct(status, "S", m, "biomed");
        a.event_time = Some(100);
        a.authenticator = [auth; 16];
        a
    };
    assert!(s.account(&at(Status::Start, 1), "nas", &r, 100).is_ok());
    assert!(s.account(&at(Status::Interim, 2), "nas", &r, 100).is_ok());
    for now in [120, 125] {
        assert_eq!(
            s.account(&at(Status::Start, 1), "nas", &r, now),
            Ok(Vec::new())
        );
        assert_eq!(
            s.account(&at(Status::Interim, 2), "nas", &r, now),
            Ok(Vec::new())
        );
    }
    assert_eq!(s.expire(130).len(), 1, "not kept alive by the replays");
}

/// Two sessions take a device in one burst: the engine takes the first
/// and refuses the second; the first then holds the device, so its Stop
/// ends the role.
#[test]
fn a_burst_of_two_sessions_leaves_the_accepted_one_bound() {
    let (mut s, r) = (Sessions::default(), roles());
    let m = "02:00:00:00:30:0c";
    let p = bind(&mut s, "P", m, 1);
    s.accepted(&p);
    let n = bind(&mut s, "N", m, 2);
    let n2 = bind(&mut s, "N2", m, 2);
    s.accepted(&n);
    assert!(s.refused(&n2, 3).is_none());
    let c = s
        .account(&acct(Status::Stop, "N", m, "biomed"), "nas", &r, 4)
        .unwrap();
    assert!(matches!(&c[..], [Change::Unbind { .. }]), "{c:?}");
    assert!(!s.is_bound(m));
}

/// A session's role holds the device; another session takes it and the
/// first binds again in the same burst; the engine refuses both. The
/// first session's old role is still enforced and the session is
/// forgotten: that role ends, rather than stay with nothing to end it.
#[test]
fn a_refused_rebind_of_the_enforced_session_ends_its_role() {
    let (mut s, r) = (Sessions::default(), roles());
    let m = "02:00:00:00:30:0d";
    let p = bind(&mut s, "P", m, 1);
    s.accepted(&p);
    let n = bind(&mut s, "N", m, 2);
    // P binds again (its device moved back to it, or its role changed).
    let mut again = acct(Status::Interim, "P", m, "biomed");
    again.user = Some("bob".into());
    let c = s.account(&again, "nas", &r, 3).unwrap();
    let [Change::Bind(p2)] = &c[..] else {
        panic!("{c:?}")
    };
    let p2 = p2.clone();
    assert!(s.refused(&n, 4).is_none(), "N does not hold the device");
    let orphan = s.refused(&p2, 4);
    assert!(
        matches!(&orphan, Some(Change::Unbind { mac, session: Some(mark), .. })
            if mac == m && mark.contains("P")),
        "{orphan:?}"
    );
    assert!(!s.is_bound(m));
}

/// A session that once held the device, long since replaced by another
/// the engine took, binds again and is refused: the device goes back to
/// the session that holds it, whose role stays.
#[test]
fn a_refused_rebind_of_an_old_session_leaves_the_live_role() {
    let (mut s, r) = (Sessions::default(), roles());
    let m = "02:00:00:00:30:0e";
    let p = bind(&mut s, "P", m, 1);
    s.accepted(&p);
    let n = bind(&mut s, "N", m, 2);
    s.accepted(&n);
    let c = s
        .account(&acct(Status::Interim, "P", m, "biomed"), "nas", &r, 3)
        .unwrap();
    let [Change::Bind(p2)] = &c[..] else {
        panic!("{c:?}")
    };
    let p2 = p2.clone();
    assert!(s.refused(&p2, 4).is_none(), "N's role stays");
    let c = s
        .account(&acct(Status::Stop, "N", m, "biomed"), "nas", &r, 5)
        .unwrap();
    assert!(
        matches!(&c[..], [Change::Unbind { .. }]),
        "N still holds it: {c:?}"
    );
}
