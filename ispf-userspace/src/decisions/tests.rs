//! Host tests of the decisions' precedence, the desired state and plans.
use super::*;
use crate::policy::PolicyDoc;

fn doc() -> PolicyDoc {
    serde_json::from_str(
        r#"{"version":1,"segments":[{"name":"pumps","life_critical":true},{"name":"guest"},{"name":"ws"}],
        "devices":[{"name":"p1","mac":"02:00:00:00:10:01","ipv4":"10.0.0.1","segment":"pumps","risk":"high"}]}"#,
    )
    .unwrap()
}

pub(super) fn dec(mac: &str, kind: Kind, segment: Option<&str>, expires: Option<i64>) -> Decision {
    Decision {
        mac: mac.into(),
        kind,
        segment: segment.map(Into::into),
        name: None,
        risk: None,
        reason: "test".into(),
        forced: false,
        actor: "t".into(),
        at: 0,
        expires,
        addresses: vec![],
    }
}

#[test]
fn precedence_quarantine_role_admit_file() {
    let l = "02:00:00:00:99:01";
    let ds = vec![
        dec(l, Kind::Admit, Some("guest"), None),
        dec(l, Kind::Role, Some("ws"), None),
    ];
    let e = effective(&doc(), &ds, 10);
    let p = Policy::from_doc(e).unwrap();
    assert_eq!(segment_of(&p, l).as_deref(), Some("ws"), "role beats admit");
    let mut ds2 = ds.clone();
    ds2.push(dec(l, Kind::Quarantine, None, None));
    let p = Policy::from_doc(effective(&doc(), &ds2, 10)).unwrap();
    assert_eq!(segment_of(&p, l).as_deref(), Some("quarantine"));
    // An expired quarantine holds no more.
    ds2[2].expires = Some(5);
    let p = Policy::from_doc(effective(&doc(), &ds2, 10)).unwrap();
    assert_eq!(segment_of(&p, l).as_deref(), Some("ws"));
    // A registered device keeps its name and addresses when moved.
    let p1 = "02:00:00:00:10:01";
    let p = Policy::from_doc(effective(
        &doc(),
        &[dec(p1, Kind::Quarantine, None, None)],
        0,
    ))
    .unwrap();
    let d = p.devices.iter().find(|d| d.name == "p1").unwrap();
    assert_eq!(p.segment_name(d.segment), "quarantine");
    assert_eq!(d.ipv4.len(), 1);
    // A quarantined laptop takes its addresses along, so traffic to it
    // is judged as to the quarantine too; an admitted name that the
    // file already uses is made unique.
    let mut q = dec(l, Kind::Quarantine, None, None);
    q.addresses = vec!["10.0.0.77".parse().unwrap()];
    let mut a = dec("02:00:00:00:99:02", Kind::Admit, Some("guest"), None);
    a.name = Some("p1".into());
    let p = Policy::from_doc(effective(&doc(), &[q, a], 0)).unwrap();
    let d = p
        .devices
        .iter()
        .find(|d| d.ipv4 == vec!["10.0.0.77".parse::<std::net::Ipv4Addr>().unwrap()])
        .unwrap();
    assert_eq!(p.segment_name(d.segment), "quarantine");
    assert!(p.devices.iter().any(|d| d.name == "p1-020000009902"));
    assert_ne!(
        enforced_sha256(&[0; 32], &[dec(p1, Kind::Quarantine, None, None)], 0),
        [0; 32]
    );
    assert_eq!(enforced_sha256(&[7; 32], &[], 0), [7; 32]);
}

#[test]
fn an_unforced_quarantine_leaves_a_life_critical_entry_by_address_where_it_is() {
    let mut doc = doc();
    doc.devices.push(
        serde_json::from_value(serde_json::json!(
            {"name": "p2", "ipv6": "fd00::2", "segment": "pumps"}
        ))
        .unwrap(),
    );
    let l = "02:00:00:00:99:01";
    let mut q = dec(l, Kind::Quarantine, None, None);
    q.addresses = vec!["fd00::2".parse().unwrap(), "10.0.0.77".parse().unwrap()];
    let segment_of_p2 = |ds: &[Decision]| {
        let p = Policy::from_doc(effective(&doc, ds, 0)).unwrap();
        let d = p.devices.iter().find(|d| d.name == "p2").unwrap();
        p.segment_name(d.segment).to_owned()
    };
    // Planned before the file made p2 life-critical (or registered it),
    // the quarantine was not forced: the pump stays, the laptop goes.
    assert_eq!(segment_of_p2(std::slice::from_ref(&q)), "pumps");
    let p = Policy::from_doc(effective(&doc, std::slice::from_ref(&q), 0)).unwrap();
    assert_eq!(segment_of(&p, l).as_deref(), Some("quarantine"));
    // The reload that makes it so says what the quarantine leaves.
    let old = Policy::from_doc(self::doc()).unwrap();
    let new = Policy::from_doc(doc.clone()).unwrap();
    let notes = file_change_effects(&old, &new, std::slice::from_ref(&q), 0).unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("device p2 (fd00::2), registered by that address alone in the life-critical segment pumps, stays there")
            && notes[0].contains("ispf release 02:00:00:00:99:01")
            && notes[0].contains("--force"),
        "{notes:?}"
    );
    assert!(file_change_effects(&new, &new, std::slice::from_ref(&q), 0)
        .unwrap()
        .is_empty());
    // A start that adopts pins an older ispf made enforces again.
    assert!(leaves_entries_in_place(&new, std::slice::from_ref(&q), 0));
    assert!(!leaves_entries_in_place(&old, std::slice::from_ref(&q), 0));
    q.forced = true;
    assert!(!leaves_entries_in_place(&new, std::slice::from_ref(&q), 0));
    assert_eq!(segment_of_p2(std::slice::from_ref(&q)), "quarantine");
    assert!(file_change_effects(&old, &new, &[q], 0).unwrap().is_empty());
}

#[test]
fn plans_refuse_what_the_specification_forbids() {
    let p = Policy::from_doc(doc()).unwrap();
    let known = Known::default();
    let q = |mac: &str, force| DecisionRequest::Quarantine {
        mac: mac.into(),
        reason: "scan".into(),
        expires_in: Some(60),
        force,
    };
    let e = plan(&q("02:00:00:00:10:01", false), "a", 0, &p, &[], &known).unwrap_err();
    assert!(matches!(e, DecisionError::LifeCritical { .. }), "{e}");
    assert!(e.to_string().contains("--force"));
    let ok = plan(&q("02:00:00:00:10:01", true), "a", 100, &p, &[], &known).unwrap();
    let d = ok.put.clone().unwrap();
    assert!(d.forced && d.expires == Some(160) && ok.detail.contains("forced"));
    // Seen in a life-critical segment by subnet or VLAN counts too.
    let seen = Known {
        segments: vec!["pumps".into()],
        ..Default::default()
    };
    assert!(plan(&q("02:00:00:00:99:09", false), "a", 0, &p, &[], &seen).is_err());
    // Seen with an address a pump's entry registers alone: an
    // unregistered device's quarantine would move that entry; a
    // registered one's keeps its own entry and takes no address.
    let by_address = Known {
        segments: vec!["ws".into()],
        by_address: vec!["pumps".into()],
        ..Default::default()
    };
    assert!(plan(&q("02:00:00:00:99:09", false), "a", 0, &p, &[], &by_address).is_err());
    let registered_ws = Known {
        registered: Some(("w1".into(), "ws".into())),
        ..by_address.clone()
    };
    assert!(plan(
        &q("02:00:00:00:99:09", false),
        "a",
        0,
        &p,
        &[],
        &registered_ws
    )
    .is_ok());
    let admit = DecisionRequest::Admit {
        mac: "02:00:00:00:99:01".into(),
        segment: "nowhere".into(),
        name: None,
        risk: None,
        expires_in: None,
        reason: None,
    };
    let e = plan(&admit, "a", 0, &p, &[], &known)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nowhere") && e.contains("guest"), "{e}");
    // A device the file registers is not admitted anywhere: the file
    // says where it belongs.
    let pump = Known {
        registered: Some(("p1".into(), "pumps".into())),
        ..Default::default()
    };
    let to_guest = DecisionRequest::Admit {
        mac: "02:00:00:00:10:01".into(),
        segment: "guest".into(),
        name: None,
        risk: None,
        expires_in: None,
        reason: None,
    };
    let e = plan(&to_guest, "a", 0, &p, &[], &pump)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`p1`") && e.contains("change its entry"), "{e}");
    assert!(plan(&q("ff:ff:ff:ff:ff:ff", false), "a", 0, &p, &[], &known).is_err());
    let rel = DecisionRequest::Release {
        mac: "02:00:00:00:99:01".into(),
    };
    assert!(matches!(
        plan(&rel, "a", 0, &p, &[], &known),
        Err(DecisionError::NothingToRelease(_))
    ));
    // Release undoes the quarantine first, then the admit.
    let held = vec![
        dec("02:00:00:00:99:01", Kind::Admit, Some("guest"), None),
        dec("02:00:00:00:99:01", Kind::Quarantine, None, None),
    ];
    let r = plan(&rel, "a", 0, &p, &held, &known).unwrap();
    assert_eq!(r.remove, vec![Kind::Quarantine]);
    let after = with_plan(&held, &r);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].kind, Kind::Admit);
}

#[test]
fn role_sessions_bind_seen_or_registered_devices_and_end_alone() {
    let mut d = doc();
    let w1 = r#"{"name":"w1","mac":"02:00:00:00:20:01","segment":"guest"}"#;
    d.devices.push(serde_json::from_str(w1).unwrap());
    let p = Policy::from_doc(d).unwrap();
    let session = |mac: &str| DecisionRequest::Session {
        mac: mac.into(),
        segment: "ws".into(),
        role: "biomed".into(),
        user: "alice".into(),
        nas: "10.0.0.9".into(),
        session: "S1".into(),
        host: None,
    };
    let unseen = Known::default();
    // Neither seen nor registered: refused, nothing to record.
    assert!(matches!(
        plan(&session("02:00:00:00:99:01"), "r", 0, &p, &[], &unseen),
        Err(DecisionError::Unseen(_))
    ));
    // A pump (life-critical) is never moved by a session, whoever
    // the NAS says logged in on it.
    assert!(matches!(
        plan(&session("02:00:00:00:10:01"), "r", 0, &p, &[], &unseen),
        Err(DecisionError::Invalid(m)) if m.contains("life-critical")
    ));
    // Registered in the file: bound even before it is seen.
    let ok = plan(&session("02:00:00:00:20:01"), "r", 0, &p, &[], &unseen).unwrap();
    let d = ok.put.clone().unwrap();
    assert_eq!((d.kind, d.segment.as_deref()), (Kind::Role, Some("ws")));
    assert!(d.reason.contains("alice") && d.actor.contains("10.0.0.9"));
    // Ending it removes the role and nothing else.
    let held = vec![d, dec("02:00:00:00:20:01", Kind::Quarantine, None, None)];
    let end = DecisionRequest::EndSession {
        mac: "02:00:00:00:20:01".into(),
        why: "Stop".into(),
        host: None,
        session: None,
    };
    let r = plan(&end, "r", 0, &p, &held, &unseen).unwrap();
    let after = with_plan(&held, &r);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].kind, Kind::Quarantine);
    assert!(
        plan(&end, "r", 0, &p, &after, &unseen).is_err(),
        "no role left to end"
    );
    // An unknown role segment is refused with the known ones.
    let mut bad = session("02:00:00:00:20:01");
    if let DecisionRequest::Session { segment, .. } = &mut bad {
        *segment = "nowhere".into();
    }
    assert!(plan(&bad, "r", 0, &p, &[], &unseen).is_err());
}

#[test]
fn macs_in_any_spelling() {
    assert_eq!(
        canonical_mac("AA-BB-CC-DD-EE-FF").unwrap(),
        "aa:bb:cc:dd:ee:ff"
    );
    assert!(canonical_mac("nope").is_err());
    for bad in [
        "aa:bb:cc:dd:ee",
        "aa:bb:cc:dd:ee:ff:",
        "aa:bb:cc:dd:ee:ff:00",
        "aa:bb:cc:dd:ee:f",
        "aa:bb:cc:dd:ee:fff",
        "aa:bb:cc:dd:ee:gg",
        "aabb.ccdd.eeff",
        "",
    ] {
        assert!(canonical_mac(bad).is_err(), "{bad}");
    }
}

#[test]
fn file_devices_match_decisions_whatever_their_spelling() {
    let doc: PolicyDoc = serde_json::from_str(
        r#"{"version":1,"segments":[{"name":"pumps"},{"name":"ws"}],
        "devices":[{"name":"p1","mac":"02-00-00-00-10-AB","ipv4":"10.0.0.1","segment":"pumps"}]}"#,
    )
    .unwrap();
    let d = dec("02:00:00:00:10:ab", Kind::Role, Some("ws"), None);
    let p = Policy::from_doc(effective(&doc, &[d], 0)).unwrap();
    assert_eq!(p.devices.len(), 1, "the file's entry is moved, not doubled");
    assert_eq!(p.segment_name(p.devices[0].segment), "ws");
    // A decision recorded with a MAC not in canonical form matches no
    // file entry: it is added as a device of its own (and then refused
    // as a duplicate MAC by validation).
    let d = dec("02:00:00:00:10:AB", Kind::Role, Some("ws"), None);
    let e = effective(&doc, &[d], 0);
    assert_eq!(e.devices.len(), 2);
    let err = Policy::from_doc(e).unwrap_err();
    assert!(
        err.iter()
            .any(|p| p.to_string().contains("devices[1].mac: duplicate MAC")
                && p.to_string().contains("already used at devices[0].mac")),
        "{err:?}"
    );
}

/// In a fleet a role decision names the host whose listener holds its
/// session; only that host may end it for want of a session.
#[test]
fn a_role_decision_names_the_host_that_holds_its_session() {
    let role = |actor: String| Decision {
        actor,
        ..dec("02:00:00:00:20:01", Kind::Role, Some("ws"), None)
    };
    let here = role(role_actor("10.0.0.9", Some("ward-3")));
    assert_eq!(here.actor, "radius 10.0.0.9 via ward-3");
    assert!(role_held_on(&here, "ward-3"));
    assert!(!role_held_on(&here, "ward-4"));
    assert!(!role_held_on(&here, "3"));
    // Made by a host before this field, or by a controller not in a fleet.
    let alone = role(role_actor("10.0.0.9", None));
    assert_eq!(alone.actor, "radius 10.0.0.9");
    assert!(!role_held_on(&alone, "ward-3"));
    // Only role decisions are held by a session.
    let admit = Decision {
        kind: Kind::Admit,
        ..here.clone()
    };
    assert!(!role_held_on(&admit, "ward-3"));

    // A session ending on one host does not end the role decision another
    // host's newer session made (a user who roamed); this host's own is
    // planned, since its copy may lag etcd, and the delete judges etcd's
    // value (`SessionEnd::ends`); one made before hosts were named ends as
    // it always did. Alone, another session's role is refused.
    let p = Policy::from_doc(doc()).unwrap();
    let end = |host: &str, session: &str| DecisionRequest::EndSession {
        mac: "02:00:00:00:20:01".into(),
        why: "Stop".into(),
        host: Some(host.into()),
        session: Some(session_mark("10.0.0.9", session)),
    };
    let ends = |held: &Decision, host: &str, session: &str| {
        let held = Decision {
            reason: format!("role biomed of alice {}", session_mark("10.0.0.9", "S1")),
            ..held.clone()
        };
        plan(&end(host, session), "r", 0, &p, &[held], &Known::default())
    };
    // Planned, named by the ending session: etcd holds which role it
    // ends (S1's is not one).
    let lagging = ends(&here, "ward-3", "S0").unwrap();
    assert!(
        lagging.detail.contains("session S0)") && !lagging.detail.contains("S1"),
        "{}",
        lagging.detail
    );
    let e = ends(&here, "ward-4", "S0").unwrap_err().to_string();
    assert!(e.contains("held by a session on host ward-3"), "{e}");
    assert!(ends(&alone, "ward-4", "S0").is_ok());
    let held = Decision {
        reason: format!("role biomed of alice {}", session_mark("10.0.0.9", "S1")),
        ..alone.clone()
    };
    let by_alone = |session: &str| DecisionRequest::EndSession {
        mac: "02:00:00:00:20:01".into(),
        why: "Stop".into(),
        host: None,
        session: Some(session_mark("10.0.0.9", session)),
    };
    let e = plan(
        &by_alone("S0"),
        "r",
        0,
        &p,
        std::slice::from_ref(&held),
        &Known::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("held by another session"), "{e}");
    assert!(plan(&by_alone("S1"), "r", 0, &p, &[held], &Known::default()).is_ok());
    // The session that made it ends it, from whatever host name: one
    // renamed since, or a NAS that failed over.
    assert!(ends(&here, "ward-4", "S1").is_ok());
}
