//! A fleet on one machine: a real etcd (Debian's `etcd-server`) on
//! loopback and three ispf controllers, each enforcing on its own care
//! unit, following one site. A push converges on all three; an invalid
//! revision is refused by `fleet push` and, written straight into etcd, by
//! every host without changing enforcement; a quarantine made on host A
//! drops the device's traffic through host C; two concurrent pushes: one
//! wins; etcd gone: enforcement unchanged, a restarted host enforces the
//! last good revision, and all reconnect when etcd returns. A three-member
//! cluster that loses its leader during a push still converges.

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use ispf_tests::{
    care_unit::*,
    controller::*,
    etcd::Etcd,
    http::{sample, wait},
    ispf_bin, require_root,
    services::{tcp_ok, Server},
};
use serde_json::Value;

#[path = "fleet/by_hand.rs"]
mod by_hand;
#[path = "fleet/cluster.rs"]
mod cluster;
#[path = "fleet/join.rs"]
mod join;
#[path = "fleet/narrowed.rs"]
mod narrowed;
#[path = "fleet/roles.rs"]
mod roles;
#[path = "fleet/sessions.rs"]
mod sessions;
#[path = "fleet/site.rs"]
mod site;

use site::*;

#[test]
fn a_site_converges_refuses_bad_revisions_and_survives_etcd() {
    require_root();
    let etcd = Etcd::start("fl", 1, 23790);
    let urls = etcd.urls();
    let (a, b, bad) = (
        policy("a", ""),
        policy(
            "b",
            r#", {"from": "workstations", "to": "pis-servers", "proto": "tcp", "ports": [22], "action": "allow"}"#,
        ),
        policy(
            "bad",
            r#", {"from": "workstations", "to": "nowhere", "action": "allow"}"#,
        ),
    );
    let units: Vec<_> = ["fa", "fb", "fc"].iter().map(|t| unit(t)).collect();
    let _servers: Vec<Server> = ["fa", "fb", "fc"]
        .iter()
        .map(|t| Server::start(&format!("ispf-{t}-pis"), &[443, 22, 2575]))
        .collect();
    // Host A seeds the empty site with its --policy; B and C follow.
    let ha = start_host("fa", 1, &a, &urls, true);
    wait("the site seeded", Duration::from_secs(10), || {
        hosts(&urls).len() == 1
    });
    let hb = start_host("fb", 2, &a, &urls, true);
    let hc = start_host("fc", 3, &a, &urls, true);
    let all = [&ha, &hb, &hc];
    wait("three hosts on revision 1", Duration::from_secs(15), || {
        let h = hosts(&urls);
        h.len() == 3 && h.iter().all(|x| x["revision"] == 1)
    });
    for h in all {
        assert!(tcp_ok(&h.ws(), "10.50.0.10", 443, 2.0, None));
        assert!(!tcp_ok(&h.ws(), "10.50.0.10", 22, 1.0, None), "not yet");
    }

    // A push converges on every host.
    let t = Instant::now();
    let out = fleet(&urls, &["push", b.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = sha(&b);
    wait(
        "every host enforces the push",
        Duration::from_secs(10),
        || all.iter().all(|h| h.sha() == want),
    );
    eprintln!("a push converged on 3 hosts in {:?}", t.elapsed());
    for h in all {
        assert!(
            tcp_ok(&h.ws(), "10.50.0.10", 22, 2.0, None),
            "host {} opened ssh",
            h.tag
        );
    }
    let hist = String::from_utf8_lossy(&fleet(&urls, &["history"]).stdout).into_owned();
    assert!(
        hist.contains("revision 2") && hist.contains("revision 1"),
        "{hist}"
    );
    assert!(
        hist.contains("+ opens workstations -> pis-servers: tcp/22"),
        "{hist}"
    );

    // An invalid file is refused by `fleet push`; written straight into
    // etcd, every host refuses it and keeps revision 2.
    let out = fleet(&urls, &["push", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
    let gens: Vec<u32> = all.iter().map(|h| h.ctl.status().generation).collect();
    let raw = std::fs::read(&bad).unwrap();
    site::etcd(&urls, async |c| {
        c.put(ispf::fleet::keys::policy(SITE), raw, None)
            .await
            .unwrap()
    });
    wait(
        "every host refuses the raw write",
        Duration::from_secs(10),
        || {
            let h = hosts(&urls);
            h.len() == 3
                && h.iter().all(|x| {
                    x["revision"] == 2
                        && x["last_error"]
                            .as_str()
                            .is_some_and(|e| e.contains("refused"))
                })
        },
    );
    for (h, g) in all.iter().zip(&gens) {
        assert_eq!(
            h.ctl.status().generation,
            *g,
            "host {}: enforcement unchanged",
            h.tag
        );
        assert_eq!(h.sha(), want);
        assert!(tcp_ok(&h.ws(), "10.50.0.10", 22, 2.0, None));
    }
    // The site goes on from there: a good push after the bad revision.
    let out = fleet(&urls, &["push", a.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = sha(&a);
    wait("every host back on A", Duration::from_secs(10), || {
        all.iter().all(|h| h.sha() == want)
    });

    // A quarantine on host A drops the workstation's traffic through host C.
    let q = ha
        .ctl
        .cli(&["quarantine", LAPTOP, "--reason", "EDR alert on ws"]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    assert!(String::from_utf8_lossy(&q.stdout).contains("fleet"));
    let took = wait(
        "host C drops the workstation",
        Duration::from_secs(5),
        || !tcp_ok(&hc.ws(), "10.50.0.10", 443, 0.5, None),
    );
    eprintln!("a quarantine on host A held on host C after {took:?}");
    assert!(
        hb.ctl.cli(&["release", LAPTOP]).status.success(),
        "released from host B"
    );
    wait("host C passes it again", Duration::from_secs(5), || {
        tcp_ok(&hc.ws(), "10.50.0.10", 443, 0.5, None)
    });
    // A timed quarantine ends on every host by itself, and etcd deletes
    // its key (a lease ending a little after it), so the site's keys do
    // not grow with every timed decision ever made.
    let key = ispf::fleet::keys::decision(SITE, LAPTOP, ispf::decisions::Kind::Quarantine);
    let q = ha.ctl.cli(&[
        "quarantine",
        LAPTOP,
        "--reason",
        "EDR alert, for 3 s",
        "--expires",
        "3s",
    ]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    assert!(etcd_has(&urls, &key), "the timed quarantine is in etcd");
    wait(
        "host C drops the workstation for a while",
        Duration::from_secs(3),
        || !tcp_ok(&hc.ws(), "10.50.0.10", 443, 0.5, None),
    );
    wait(
        "host C passes it after the expiry",
        Duration::from_secs(8),
        || tcp_ok(&hc.ws(), "10.50.0.10", 443, 0.5, None),
    );
    let gone = wait(
        "etcd deletes the expired decision",
        Duration::from_secs(3 + ispf::fleet::writer::EXPIRY_GRACE_S as u64 + 5),
        || !etcd_has(&urls, &key),
    );
    eprintln!("the expired quarantine's key was gone from etcd after another {gone:?}");
    // A reload by hand would split the site: refused.
    let r = hb.ctl.cli(&["reload", b.to_str().unwrap()]);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("fleet push"));

    // Two pushes from the same revision: exactly one wins.
    let rev = hosts(&urls)[0]["revision"].as_i64().unwrap();
    let rv = rev.to_string();
    let (u1, u2, b1) = (urls.clone(), urls.clone(), b.clone());
    let p1 = std::thread::spawn(move || {
        fleet(
            &u1,
            &[
                "push",
                b1.to_str().unwrap(),
                "--if-revision",
                &rev.to_string(),
            ],
        )
    });
    let p2 = fleet(&u2, &["push", policy("b2", r#", {"from": "workstations", "to": "pis-servers", "proto": "tcp", "ports": [8443], "action": "allow"}"#).to_str().unwrap(), "--if-revision", &rv]);
    let p1 = p1.join().unwrap();
    let wins = [&p1, &p2].iter().filter(|o| o.status.success()).count();
    assert_eq!(
        wins,
        1,
        "{}\n{}",
        String::from_utf8_lossy(&p1.stderr),
        String::from_utf8_lossy(&p2.stderr)
    );
    let loser = if p1.status.success() { &p2 } else { &p1 };
    assert!(
        String::from_utf8_lossy(&loser.stderr).contains("conflict"),
        "{}",
        String::from_utf8_lossy(&loser.stderr)
    );
    let good = if p1.status.success() {
        sha(&b)
    } else {
        sha(&policy(
            "b2",
            r#", {"from": "workstations", "to": "pis-servers", "proto": "tcp", "ports": [8443], "action": "allow"}"#,
        ))
    };
    wait("the winner everywhere", Duration::from_secs(10), || {
        all.iter().all(|h| h.sha() == good)
    });

    // etcd gone: nothing enforced changes; a host restarted meanwhile
    // enforces the last good revision; all reconnect when it returns.
    let mut etcd = etcd;
    etcd.members[0].stop();
    wait("host C sees etcd gone", Duration::from_secs(20), || {
        metric(&hc.metrics, "ispf_fleet_connected") == Some(0.0)
    });
    assert!(
        tcp_ok(&hc.ws(), "10.50.0.10", 443, 2.0, None),
        "enforcement unchanged without etcd"
    );
    let mut hc = hc;
    hc.ctl.kill9();
    let hc = start_host("fc", 3, &a, &urls, false);
    assert_eq!(
        hc.sha(),
        good,
        "the restarted host enforces the last good revision, not its --policy"
    );
    assert!(tcp_ok(&hc.ws(), "10.50.0.10", 443, 2.0, None));
    etcd.members[0].start();
    etcd.wait_healthy(Duration::from_secs(20));
    for h in [&ha, &hb, &hc] {
        wait("reconnected", Duration::from_secs(40), || {
            metric(&h.metrics, "ispf_fleet_connected") == Some(1.0)
        });
    }
    let h = hosts(&urls);
    assert_eq!(h.len(), 3, "{h:?}");
    drop(units);
    let _ = &hb.ports;
}
