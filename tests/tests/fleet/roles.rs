//! Role sessions in a fleet, with FreeRADIUS's `radclient` as the NAS: the
//! role decision names the host whose listener holds the session; a
//! session ending there leaves alone a newer role another host's session
//! made; and a role the site no longer holds is forgotten by the listener,
//! whose next update of the session binds it again. A re-authentication
//! (the old session's Stop and the new one's Start in one burst) keeps the
//! new session's role. A session that ends while etcd is out of reach has
//! its role ended once etcd is back.

use std::os::unix::fs::PermissionsExt;

use ispf::{
    decisions::{Decision, Kind},
    fleet::keys,
};

use super::*;

const PORT: u16 = 18131;
const SECRET: &str = "fleet-unit-secret";

fn with_identity(name: &str) -> PathBuf {
    let secret = std::env::temp_dir().join("ispf-test-fleet-radius.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(policy(name, "")).unwrap();
    let text = text.replace(
        r#"{"name": "workstations"}"#,
        r#"{"name": "workstations"}, {"name": "biomed-workstations"}"#,
    );
    let body = text.trim_end().strip_suffix('}').expect("a JSON object");
    let text = format!(
        r#"{body}, "identity": {{
          "radius_accounting": {{"listen": "127.0.0.1:{PORT}", "clients": ["127.0.0.1"], "secret_file": "{}"}},
          "roles": [{{"name": "biomed-engineer", "class": "biomed", "segment": "biomed-workstations"}}]
        }}}}"#,
        secret.display()
    );
    write_policy(&format!("fleet-{name}-identity"), &text)
}

fn attrs(status: &str, session: &str) -> String {
    format!(
        "Acct-Status-Type = {status}, Acct-Session-Id = \"{session}\", User-Name = \"alice\", \
         Calling-Station-Id = \"{LAPTOP}\", Class = \"biomed\", Acct-Interim-Interval = 60, \
         NAS-IP-Address = 127.0.0.1\n"
    )
}

fn radclient(status: &str, session: &str) -> bool {
    ispf_tests::services::radclient(PORT, &attrs(status, session), SECRET)
}

#[test]
fn role_sessions_in_a_fleet_end_only_what_their_host_made() {
    require_root();
    let server = Etcd::start("fo", 1, 24180);
    let urls = server.urls();
    let seed = with_identity("oa");
    let _u = unit("fo");
    let key = keys::decision(SITE, LAPTOP, Kind::Role);
    let held = || -> Option<Decision> {
        etcd(&urls, async |c| {
            let r = c.get(key.as_str(), None).await.unwrap();
            r.kvs()
                .first()
                .map(|kv| serde_json::from_slice(kv.value()).unwrap())
        })
    };
    let h = start_host("fo", 46, &seed, &urls, true);
    wait_seeded(&urls);
    let listed = || {
        let out = h.ctl.cli(&["sessions", "--json"]);
        String::from_utf8_lossy(&out.stdout).contains("\"S1\"")
    };

    // A session: the site's role decision names this host.
    wait("the listener bound", Duration::from_secs(10), || {
        radclient("Start", "S1")
    });
    wait("the role in etcd", Duration::from_secs(10), || {
        held().is_some()
    });
    assert_eq!(held().unwrap().actor, "radius 127.0.0.1 via host-fo");

    // An operator deletes the key: the listener forgets the session, and
    // its next interim binds it again.
    etcd(&urls, async |c| c.delete(key.as_str(), None).await.unwrap());
    wait("the session forgotten", Duration::from_secs(10), || {
        !listed()
    });
    assert!(radclient("Interim-Update", "S1"));
    wait("bound again", Duration::from_secs(10), || held().is_some());
    assert!(listed());

    // The user roams: another host's listener makes a newer role decision.
    // This host's session ending leaves it alone.
    let mut theirs = held().unwrap();
    theirs.actor = ispf::decisions::role_actor("10.0.0.2", Some("host-elsewhere"));
    theirs.reason = "role biomed-engineer of alice (NAS 10.0.0.2, session T1)".into();
    etcd(&urls, async |c| {
        c.put(key.as_str(), serde_json::to_vec(&theirs).unwrap(), None)
            .await
            .unwrap()
    });
    wait("their role enforced here", Duration::from_secs(10), || {
        let out = h.ctl.cli(&["device", LAPTOP, "--json"]);
        String::from_utf8_lossy(&out.stdout).contains("session T1")
    });
    assert!(listed(), "the session is still this host's");
    assert!(radclient("Stop", "S1"));
    wait("the Stop taken", Duration::from_secs(10), || !listed());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        held().map(|d| d.actor),
        Some(theirs.actor.clone()),
        "a session ending here ended another host's role"
    );

    // A newer session here takes the device back; its Stop deletes the
    // key, which holds what this host's copy shows.
    assert!(radclient("Start", "S2"));
    wait("this host's role again", Duration::from_secs(10), || {
        held().is_some_and(|d| d.reason.ends_with("session S2)"))
    });
    wait("the copy caught up", Duration::from_secs(10), || {
        let out = h.ctl.cli(&["device", LAPTOP, "--json"]);
        String::from_utf8_lossy(&out.stdout).contains("session S2")
    });
    // A re-authentication: the Stop of S2 and the Start of S3 in one
    // burst, which a fleet writes puts first. S2's end must not delete
    // S3's role.
    // `radclient` waits for each answer before it sends the next, so the
    // NAS is played here by a socket sending both datagrams back to back.
    let packet = |id: u8, status: u32, session: &str| {
        use ispf::identity::radius::{self, attr};
        radius::request(
            id,
            &[
                (attr::ACCT_STATUS_TYPE, status.to_be_bytes().to_vec()),
                (attr::ACCT_SESSION_ID, session.as_bytes().to_vec()),
                (attr::USER_NAME, b"alice".to_vec()),
                (attr::CALLING_STATION_ID, LAPTOP.as_bytes().to_vec()),
                (attr::CLASS, b"biomed".to_vec()),
                (attr::ACCT_INTERIM_INTERVAL, 60u32.to_be_bytes().to_vec()),
            ],
            SECRET.as_bytes(),
        )
    };
    let nas = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    nas.send_to(&packet(200, 2, "S2"), ("127.0.0.1", PORT))
        .unwrap();
    nas.send_to(&packet(201, 1, "S3"), ("127.0.0.1", PORT))
        .unwrap();
    nas.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..2 {
        nas.recv_from(&mut buf).expect("both answered");
    }
    wait("S3's role in etcd", Duration::from_secs(10), || {
        held().is_some_and(|d| d.reason.ends_with("session S3)"))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        held().is_some_and(|d| d.reason.ends_with("session S3)")),
        "the end of the older session deleted the newer one's role"
    );
    assert!(radclient("Stop", "S3"));
    wait("the key deleted", Duration::from_secs(10), || {
        held().is_none()
    });
}

#[test]
fn a_role_whose_end_etcd_missed_is_ended_once_etcd_is_back() {
    require_root();
    let mut server = Etcd::start("fq", 1, 24220);
    let urls = server.urls();
    let seed = with_identity("oq");
    let _u = unit("fq");
    let key = keys::decision(SITE, LAPTOP, Kind::Role);
    let mut h = start_host("fq", 47, &seed, &urls, true);
    wait_seeded(&urls);
    let listed = || {
        let out = h.ctl.cli(&["sessions", "--json"]);
        String::from_utf8_lossy(&out.stdout).contains("\"S1\"")
    };
    wait("the listener bound", Duration::from_secs(10), || {
        radclient("Start", "S1")
    });
    wait("the role in etcd", Duration::from_secs(10), || {
        etcd_has(&urls, &key)
    });
    let segment = || {
        h.ctl
            .json_lines(&["devices", "--json"])
            .into_iter()
            .find(|d| d["mac"] == LAPTOP)
            .and_then(|d| d["segment"].as_str().map(str::to_owned))
    };
    wait("the role enforced here", Duration::from_secs(10), || {
        segment().as_deref() == Some("biomed-workstations")
    });

    // The session ends while etcd is out of reach: its end cannot be
    // written, and the session is gone all the same.
    server.members[0].stop();
    let _ = radclient("Stop", "S1");
    wait("the Stop taken", Duration::from_secs(20), || !listed());
    server.members[0].start();
    server.wait_healthy(Duration::from_secs(20));

    // The listener's sweep finds the role no session holds and ends it
    // (within a minute and a half: a sweep that failed while etcd was down
    // waits twice as long for the next).
    wait(
        "the role ended by the sweep",
        Duration::from_secs(100),
        || !etcd_has(&urls, &key),
    );
    wait(
        "and no longer enforced here",
        Duration::from_secs(10),
        || segment().as_deref() != Some("biomed-workstations"),
    );
    // The Stop's end did fail, and said so: the sweep, not the Stop,
    // ended the role.
    let log = h.ctl.terminate(Duration::from_secs(20));
    assert!(
        log.contains("the end of 1 role(s) could not be enforced"),
        "{log}"
    );
}
