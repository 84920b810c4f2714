//! A role decision in the site, ended by every host when a revision makes
//! its device life-critical: the key is deleted from etcd (once, by
//! whichever host gets there first, and only while it holds that
//! decision), and no host keeps refusing it.

use ispf::{
    decisions::{Decision, Kind},
    fleet::keys,
};

use super::*;

/// The laptop's role session, as a listener on `host` (none: a
/// controller before hosts were named) would write it into the site.
fn laptop_role(host: Option<&str>) -> Decision {
    Decision {
        mac: LAPTOP.into(),
        kind: Kind::Role,
        segment: Some("pis-servers".into()),
        name: None,
        risk: None,
        reason: "role biomed of alice (NAS 10.0.0.1, session X1)".into(),
        forced: false,
        actor: ispf::decisions::role_actor("10.0.0.1", host),
        at: 1,
        expires: None,
        addresses: Vec::new(),
    }
}

#[test]
fn a_revision_that_makes_a_device_life_critical_ends_its_role_everywhere() {
    require_root();
    let server = Etcd::start("fs", 1, 24080);
    let urls = server.urls();
    let a = policy("sa", "");
    let text = std::fs::read_to_string(&a).unwrap();
    let moved = r#""segment": "pumps", "risk""#;
    let critical = text.replace(r#""segment": "workstations", "risk""#, moved);
    assert!(critical.contains(moved));
    let b = write_policy("fleet-sb", &critical);
    let _u = unit("fs");
    let _pis = Server::start("ispf-fs-pis", &[443, 2575]);
    let h = start_host("fs", 41, &a, &urls, true);
    wait_seeded(&urls);
    // The laptop's session, as another host's listener would write it.
    let role = laptop_role(None);
    let key = keys::decision(SITE, LAPTOP, Kind::Role);
    etcd(&urls, async |c| {
        c.put(key.as_str(), serde_json::to_vec(&role).unwrap(), None)
            .await
            .unwrap()
    });
    let judged = |h: &Host| {
        let out = h.ctl.cli(&["device", LAPTOP, "--json"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait("the role enforced", Duration::from_secs(10), || {
        judged(&h).contains("pis-servers")
    });

    let out = fleet(&urls, &["push", b.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait("revision 2 enforced", Duration::from_secs(10), || {
        h.sha() == sha(&b)
    });
    wait("the role key deleted", Duration::from_secs(10), || {
        !etcd_has(&urls, &key)
    });
    let t = judged(&h);
    assert!(
        t.contains("session_ended") && t.contains("life-critical segment `pumps`"),
        "{t}"
    );
    wait("no refusal left behind", Duration::from_secs(10), || {
        hosts(&urls)
            .first()
            .is_some_and(|x| x["last_error"].as_str().unwrap_or("").is_empty())
    });
}

/// A role decision is the site's, but its session lives in the table of
/// the host whose listener made it. A restarting host ends the role
/// decisions its own listener made and no longer holds a session for,
/// never another host's: ending every role it held no session for, a
/// restart of any host ended every session of the site.
#[test]
fn a_restarting_host_ends_only_the_roles_its_own_listener_made() {
    require_root();
    let server = Etcd::start("fr", 1, 24160);
    let urls = server.urls();
    let a = policy("ra", "");
    let _u = unit("fr");
    let key = keys::decision(SITE, LAPTOP, Kind::Role);
    let role_by = |host: &str| laptop_role(Some(host));
    let put = |d: &Decision| {
        etcd(&urls, async |c| {
            c.put(key.as_str(), serde_json::to_vec(d).unwrap(), None)
                .await
                .unwrap()
        })
    };
    let judged = |h: &Host| {
        let out = h.ctl.cli(&["device", LAPTOP, "--json"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut h = start_host("fr", 45, &a, &urls, true);
    wait_seeded(&urls);

    // Another host's session: it survives this host's restart.
    put(&role_by("host-elsewhere"));
    wait("the role enforced", Duration::from_secs(10), || {
        judged(&h).contains("pis-servers")
    });
    h.ctl.kill9();
    let mut h = start_host("fr", 45, &a, &urls, false);
    wait(
        "the restarted host enforces the role",
        Duration::from_secs(10),
        || judged(&h).contains("pis-servers"),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(etcd_has(&urls, &key), "another host's role was ended");
    assert!(judged(&h).contains("pis-servers"));

    // This host's own role decision, whose session its table does not
    // hold (killed before the table was saved): ended at the restart.
    put(&role_by("host-fr"));
    wait("the role enforced", Duration::from_secs(10), || {
        judged(&h).contains("host-fr")
    });
    h.ctl.kill9();
    let h = start_host("fr", 45, &a, &urls, false);
    wait(
        "its own orphaned role ended",
        Duration::from_secs(10),
        || !etcd_has(&urls, &key),
    );
    wait("the end enforced", Duration::from_secs(10), || {
        !judged(&h).contains("pis-servers")
    });
    let t = judged(&h);
    assert!(t.contains("session_ended"), "{t}");
}
