//! Host tests of what a listener takes over and sweeps.

use super::*;
use crate::decisions::role_actor;

fn role(mac: &str, host: Option<&str>) -> Decision {
    Decision {
        mac: mac.into(),
        kind: Kind::Role,
        segment: Some("ws".into()),
        name: None,
        risk: None,
        reason: "role biomed of alice (NAS 10.0.0.9, session S1)".into(),
        forced: false,
        actor: role_actor("10.0.0.9", host),
        at: 0,
        expires: None,
        addresses: Vec::new(),
    }
}

fn ended(r: &[DecisionRequest]) -> Vec<&str> {
    r.iter().map(|x| x.mac()).collect()
}

#[test]
fn a_restart_ends_the_roles_its_own_listener_made_and_no_session_holds() {
    let (a, b, c) = (
        "02:00:00:00:20:01",
        "02:00:00:00:20:02",
        "02:00:00:00:20:03",
    );
    let quarantine = Decision {
        kind: Kind::Quarantine,
        ..role(c, None)
    };
    let none = Sessions::default();
    // Alone, every role decision is this controller's.
    let alone = [role(a, None), role(b, None), quarantine.clone()];
    assert_eq!(
        ended(&orphans(
            &alone,
            &none,
            None,
            &Swept::default(),
            Instant::now(),
            ""
        )),
        [a, b]
    );
    // In a fleet, only those this host's listener made.
    let site = [
        role(a, Some("ward-3")),
        role(b, Some("ward-4")),
        role(c, None),
        quarantine,
    ];
    assert_eq!(
        ended(&orphans(
            &site,
            &none,
            Some("ward-3"),
            &Swept::default(),
            Instant::now(),
            ""
        )),
        [a]
    );
    assert!(orphans(
        &site,
        &none,
        Some("ward-5"),
        &Swept::default(),
        Instant::now(),
        ""
    )
    .is_empty());
}

#[test]
fn a_saved_session_no_stop_could_name_is_not_restored() {
    let dir = std::env::temp_dir().join(format!("ispf-restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = crate::inventory::db::open(&dir.join("inventory.db")).unwrap();
    let now = crate::clock::unix_now();
    let session = |id: &str, mac: &str| Session {
        nas: "10.0.0.9".into(),
        id: id.into(),
        mac: mac.into(),
        user: "alice".into(),
        role: "biomed".into(),
        segment: "ws".into(),
        since: now,
        last_update: now,
        timeout_s: 3600,
        last_event: None,
        seen_auth: Vec::new(),
        enforced: false,
    };
    let (a, b) = ("02:00:00:00:20:01", "02:00:00:00:20:02");
    // Saved by an older ispf, which took any id.
    let sly = "z (NAS 10.0.0.8, session S2";
    store::save(&mut c, &[session("S1", a), session(sly, b)]).unwrap();
    let decisions = [
        role(a, None),
        Decision {
            reason: format!("role biomed of alice {}", session_mark("10.0.0.9", sly)),
            ..role(b, None)
        },
    ];
    crate::inventory::store::record_decisions(&mut c, &decisions, &[], &[]).unwrap();
    let (sessions, rewrite) = restore(&c, &decisions, None);
    assert!(rewrite, "the table is written again without it");
    assert!(sessions.is_bound(a) && !sessions.is_bound(b));
    // So the start's sweep ends its role.
    let none = Swept::default();
    let ends = orphans(&decisions, &sessions, None, &none, Instant::now(), "");
    assert_eq!(ended(&ends), [b]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sweeps_that_fail_back_off() {
    let mut every = ORPHAN_SWEEP;
    for want in [60, 120, 240, 300, 300] {
        every = next_sweep(every, true);
        assert_eq!(every.as_secs(), want);
    }
    assert_eq!(next_sweep(every, false), ORPHAN_SWEEP);
}

#[test]
fn roles_no_session_holds_are_ended_and_those_that_fail_are_said() {
    let (a, b, c) = (
        "02:00:00:00:00:0a",
        "02:00:00:00:00:0b",
        "02:00:00:00:00:0c",
    );
    let decisions = [role(a, None), role(b, None), role(c, None)];
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    let apply: Apply = Box::new(move |reqs: Vec<DecisionRequest>| {
        reqs.iter()
            .map(|r| {
                seen.lock().unwrap().push(r.mac().to_owned());
                match r.mac() {
                    m if m.ends_with('a') => Ok("ended".into()),
                    m if m.ends_with('b') => Err(format!("{m} has no decision to release")),
                    _ => Err("the maps are full".into()),
                }
            })
            .collect()
    });
    let mut swept = Swept::default();
    let failed = end_orphans(
        &Sessions::default(),
        None,
        &apply,
        &decisions,
        &mut swept,
        "why",
    );
    assert_eq!(*asked.lock().unwrap(), [a, b, c]);
    // Gone already is no failure; a refused end is, and said.
    assert_eq!(failed, [format!("{c}: the maps are full")]);

    // An end the engine took is not asked again while its decision
    // stays (in a fleet, kept in etcd); a failed one is.
    asked.lock().unwrap().clear();
    let decisions = [role(a, None), role(c, None)];
    end_orphans(
        &Sessions::default(),
        None,
        &apply,
        &decisions,
        &mut swept,
        "why",
    );
    assert_eq!(*asked.lock().unwrap(), [c]);
    let later = Instant::now() + SWEPT_AGAIN;
    let none = Sessions::default();
    assert_eq!(
        ended(&orphans(&decisions, &none, None, &swept, later, "")),
        [a, c]
    );
    // Another session's role on the same device is another decision.
    asked.lock().unwrap().clear();
    let newer = Decision {
        reason: "role biomed of alice (NAS 10.0.0.9, session S2)".into(),
        ..role(a, None)
    };
    end_orphans(&none, None, &apply, &[newer], &mut swept, "why");
    assert_eq!(*asked.lock().unwrap(), [a]);
}
