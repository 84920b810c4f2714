//! Decision keys written into etcd by hand (or by a compromised host, as
//! every host may write `decisions/`): each host checks them as it would a
//! request made to it; a value that cannot be read changes nothing; one
//! refused key does not hold up the others; and the file the fleet writes
//! cannot be reloaded by hand.

use ispf::{
    decisions::{Decision, Kind},
    fleet::keys,
};

use super::*;

fn by_hand(mac: &str, kind: Kind, segment: Option<&str>) -> Vec<u8> {
    by_hand_until(mac, kind, segment, None)
}

fn by_hand_until(mac: &str, kind: Kind, segment: Option<&str>, expires: Option<i64>) -> Vec<u8> {
    serde_json::to_vec(&Decision {
        mac: mac.into(),
        kind,
        segment: segment.map(Into::into),
        name: None,
        risk: None,
        reason: "written into etcd by hand".into(),
        forced: false,
        actor: "mallory".into(),
        at: 1,
        expires,
        addresses: Vec::new(),
    })
    .unwrap()
}

#[test]
fn decisions_written_into_etcd_by_hand_are_checked_like_requests() {
    require_root();
    let etcd = Etcd::start("fh", 1, 24040);
    let urls = etcd.urls();
    let a = policy("ha", "");
    let _u = unit("fh");
    let _pis = Server::start("ispf-fh-pis", &[443, 2575]);
    let h = start_host("fh", 31, &a, &urls, true);
    wait_seeded(&urls);
    let hl7 = || tcp_ok("ispf-fh-pump", "10.50.0.10", 2575, 2.0, None);
    let web = |t: f32| tcp_ok(&h.ws(), "10.50.0.10", 443, t, None);
    assert!(hl7() && web(2.0));
    let generation = h.ctl.status().generation;

    // A quarantine of the life-critical pump without force: refused, and
    // the pump's HL7 goes on.
    let pump_q = keys::decision(SITE, PUMP1, Kind::Quarantine);
    put(&urls, &pump_q, by_hand(PUMP1, Kind::Quarantine, None));
    wait(
        "the pump's quarantine refused",
        Duration::from_secs(10),
        || {
            let e = last_error(&urls);
            e.contains(&pump_q.replace(&keys::decisions_prefix(SITE), "decisions/"))
                && e.contains("life-critical")
        },
    );
    assert!(hl7(), "a hand-written quarantine isolated the pump");
    // `ispf status` on the host says so too, not only `fleet status`.
    let f = h
        .ctl
        .status()
        .fleet
        .expect("a fleet host's status names its site");
    assert!(f.connected && f.site == SITE && f.revision == 1, "{f:?}");
    assert!(f.error.is_some_and(|e| e.contains("life-critical")));
    let text = String::from_utf8_lossy(&h.ctl.cli(&["status"]).stdout).into_owned();
    assert!(
        text.contains("fleet       site st-marys: revision 1"),
        "{text}"
    );
    assert_eq!(h.ctl.status().generation, generation, "nothing applied");

    // A quarantine that expired long before it was delivered (etcd would
    // have deleted a key the fleet wrote: a clock ahead of the writer's,
    // or a key written by hand): not enforced, and said, not dropped.
    let stale = keys::decision(SITE, LAPTOP, Kind::Quarantine);
    let hour_ago = ispf::clock::unix_now() - 3600;
    put(
        &urls,
        &stale,
        by_hand_until(LAPTOP, Kind::Quarantine, None, Some(hour_ago)),
    );
    wait("the stale key said", Duration::from_secs(10), || {
        last_error(&urls).contains("s ago by this host's clock")
    });
    assert!(web(2.0), "a quarantine that had expired was enforced");
    assert_eq!(h.ctl.status().generation, generation, "nothing applied");
    del(&urls, &stale);
    wait(
        "the stale key no longer said",
        Duration::from_secs(10),
        || !last_error(&urls).contains("by this host's clock"),
    );

    // A quarantine of a made-up MAC that takes the address the pump sent
    // its HL7 from (this host saw it; the planner may not have): enforced
    // without it, and the host's status and log say so. One that takes a subnet's
    // worth of addresses: refused.
    let made_up = "02:00:00:00:99:0c";
    let borrowed = keys::decision(SITE, made_up, Kind::Quarantine);
    let with_addresses = |addresses: &[&str]| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&by_hand(made_up, Kind::Quarantine, None)).unwrap();
        v["addresses"] = serde_json::json!(addresses);
        serde_json::to_vec(&v).unwrap()
    };
    put(&urls, &borrowed, with_addresses(&["10.10.0.11"]));
    wait(
        "the made-up MAC quarantined",
        Duration::from_secs(10),
        || {
            h.ctl
                .json_lines(&["devices", "--quarantined", "--json"])
                .iter()
                .any(|d| d["mac"] == made_up)
        },
    );
    wait("the stripped address said", Duration::from_secs(10), || {
        last_error(&urls).contains("is enforced here without 10.10.0.11")
    });
    put(
        &urls,
        &borrowed,
        with_addresses(&["10.40.0.1", "10.40.0.2", "10.40.0.3"]),
    );
    wait("the subnet refused", Duration::from_secs(10), || {
        last_error(&urls).contains("at most the one IPv4")
    });
    assert!(hl7(), "a hand-written quarantine took the pump's address");
    del(&urls, &borrowed);

    // An admit of a device the file registers: refused; and it does not
    // hold up a good decision made meanwhile.
    let admit = keys::decision(SITE, LAPTOP, Kind::Admit);
    put(&urls, &admit, by_hand(LAPTOP, Kind::Admit, Some("pumps")));
    wait("the admit refused", Duration::from_secs(10), || {
        last_error(&urls).contains("registered in the policy file")
    });
    let q = h.ctl.cli(&["quarantine", LAPTOP, "--reason", "EDR alert"]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    wait("the laptop quarantined", Duration::from_secs(5), || {
        !web(0.5)
    });

    // Garbage over the quarantine's key: the quarantine holds.
    let laptop_q = keys::decision(SITE, LAPTOP, Kind::Quarantine);
    put(&urls, &laptop_q, b"garbage{".to_vec());
    std::thread::sleep(Duration::from_secs(2));
    assert!(!web(1.0), "an unreadable value lifted the quarantine");

    // Deleting it ends the quarantine; the refused admit is still not
    // enforced (the laptop would be in `pumps`, with no web access).
    del(&urls, &laptop_q);
    wait("the laptop released", Duration::from_secs(5), || web(0.5));
    del(&urls, &admit);
    del(&urls, &pump_q);
    wait(
        "the errors gone once fixed",
        Duration::from_secs(10),
        || last_error(&urls).is_empty(),
    );

    // A role on a device the site admitted into the life-critical
    // segment, which this host has never seen: refused, as it is for a
    // device seen there.
    let cart = "02:00:00:00:77:01";
    let (cart_admit, cart_role) = (
        keys::decision(SITE, cart, Kind::Admit),
        keys::decision(SITE, cart, Kind::Role),
    );
    put(
        &urls,
        &cart_admit,
        by_hand(cart, Kind::Admit, Some("pumps")),
    );
    put(
        &urls,
        &cart_role,
        by_hand(cart, Kind::Role, Some("workstations")),
    );
    wait(
        "the admitted cart's role refused",
        Duration::from_secs(10),
        || {
            let e = last_error(&urls);
            e.contains(&cart_role.replace(&keys::decisions_prefix(SITE), "decisions/"))
                && e.contains("which no role session moves")
        },
    );
    del(&urls, &cart_role);
    del(&urls, &cart_admit);
    wait(
        "the errors gone once fixed",
        Duration::from_secs(10),
        || last_error(&urls).is_empty(),
    );
    // The other order: a role held, then the site admits the device into
    // the life-critical segment. The role would keep it out of it (a role
    // outranks an admit): it ends, and its key goes.
    put(
        &urls,
        &cart_role,
        by_hand(cart, Kind::Role, Some("workstations")),
    );
    wait("the cart's role enforced", Duration::from_secs(10), || {
        h.ctl.status().generation > generation && last_error(&urls).is_empty()
    });
    put(
        &urls,
        &cart_admit,
        by_hand(cart, Kind::Admit, Some("pumps")),
    );
    wait(
        "the cart's role ended by the admit",
        Duration::from_secs(10),
        || !etcd_has(&urls, &cart_role),
    );
    assert!(etcd_has(&urls, &cart_admit));
    del(&urls, &cart_admit);

    // The file the fleet wrote, reloaded by hand (or by SIGHUP's path):
    // refused like any other, the site stays whole.
    for args in [
        vec!["reload"],
        vec![
            "reload",
            h.ctl
                .paths
                .state
                .join("fleet-candidate.json")
                .to_str()
                .unwrap(),
        ],
    ] {
        let r = h.ctl.cli(&args);
        assert!(
            !r.status.success() && String::from_utf8_lossy(&r.stderr).contains("fleet push"),
            "{args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    }

    // The policy key deleted, then etcd restarted: the host does not seed
    // the site again with its startup file (months old, in a hospital);
    // it keeps what it enforces and says why.
    let ssh = |name: &str, port: u16| {
        policy(
            name,
            &format!(
                r#", {{"from": "workstations", "to": "pis-servers", "proto": "tcp", "ports": [{port}], "action": "allow"}}"#
            ),
        )
    };
    let (b, c) = (ssh("hb", 22), ssh("hc", 8443));
    let push = |p: &Path| {
        let out = fleet(&urls, &["push", p.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    push(&b);
    wait("b enforced", Duration::from_secs(10), || h.sha() == sha(&b));
    del(&urls, &keys::policy(SITE));
    let mut etcd = etcd;
    etcd.members[0].stop();
    etcd.members[0].start();
    etcd.wait_healthy(Duration::from_secs(20));
    wait(
        "the host back, saying the site has no policy",
        Duration::from_secs(40),
        || last_error(&urls).contains("has no policy"),
    );
    assert!(
        !etcd_has(&urls, &keys::policy(SITE)),
        "the site was seeded again from --policy"
    );
    assert_eq!(h.sha(), sha(&b));

    // Versions start again at 1 once the key is gone: a document with the
    // number of the one a host enforces is still another document.
    let mut h = h;
    let log = h.ctl.kill9();
    assert!(
        log.contains(&format!(
            "decisions/{made_up}/quarantine (by mallory) is enforced here without 10.10.0.11"
        )),
        "{log}"
    );
    push(&a);
    push(&c);
    let h = start_host("fh", 31, &a, &urls, false);
    wait(
        "the restarted host takes revision 2's new document",
        Duration::from_secs(20),
        || h.sha() == sha(&c),
    );
    assert!(last_error(&urls).is_empty(), "{}", last_error(&urls));
}

/// A burst of decision keys more than the maps hold (one transaction, so
/// one set): those that fit, with room for the next generation, are
/// enforced; the rest are refused by name; later keys still apply. Before,
/// the whole set failed at the capacity check and every later decision
/// with it.
#[test]
fn keys_beyond_the_maps_are_refused_and_the_rest_enforced() {
    require_root();
    let etcd_server = Etcd::start("fm", 1, 24200);
    let urls = etcd_server.urls();
    let a = policy("hm", "");
    let _u = unit("fm");
    // Two generations of at most 8 device entries: the file's 2 and 6
    // admits.
    let mut h = start_host_with("fm", 47, &a, &urls, true, &["--map-size", "devices=16"]);
    wait_seeded(&urls);
    let generation = h.ctl.status().generation;
    let macs: Vec<String> = (0..12).map(|i| format!("02:00:00:00:78:{i:02x}")).collect();
    let admits: Vec<(String, Vec<u8>)> = macs
        .iter()
        .map(|m| {
            (
                keys::decision(SITE, m, Kind::Admit),
                by_hand(m, Kind::Admit, Some("workstations")),
            )
        })
        .collect();
    let all = admits.clone();
    etcd(&urls, async move |c| {
        let ops: Vec<etcd_client::TxnOp> = all
            .into_iter()
            .map(|(k, v)| etcd_client::TxnOp::put(k, v, None))
            .collect();
        c.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
    });
    wait(
        "the keys beyond the maps refused",
        Duration::from_secs(15),
        || last_error(&urls).contains("larger maps"),
    );
    let said = last_error(&urls);
    assert_eq!(
        said.matches("refused, not enforced here").count(),
        6,
        "{said}"
    );
    assert!(h.ctl.status().generation > generation, "the rest enforced");
    // Fixed by deleting them all, then one more: enforced.
    let keys_only: Vec<String> = admits.iter().map(|(k, _)| k.clone()).collect();
    etcd(&urls, async move |c| {
        let ops: Vec<etcd_client::TxnOp> = keys_only
            .into_iter()
            .map(|k| etcd_client::TxnOp::delete(k, None))
            .collect();
        c.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
    });
    wait(
        "the errors gone once fixed",
        Duration::from_secs(10),
        || last_error(&urls).is_empty(),
    );
    let before = h.ctl.status().generation;
    put(&urls, &admits[0].0, admits[0].1.clone());
    wait("a later key enforced", Duration::from_secs(10), || {
        h.ctl.status().generation > before
    });
    assert!(last_error(&urls).is_empty(), "{}", last_error(&urls));
    // A role key written by hand in another form (pretty JSON), ended by
    // an admit into the life-critical segment: the same decision, so its
    // key is deleted all the same (compared as a decision, not as bytes).
    let cart = "02:00:00:00:77:02";
    let role = keys::decision(SITE, cart, Kind::Role);
    let pretty: serde_json::Value =
        serde_json::from_slice(&by_hand(cart, Kind::Role, Some("workstations"))).unwrap();
    put(&urls, &role, serde_json::to_vec_pretty(&pretty).unwrap());
    let g = h.ctl.status().generation;
    wait(
        "the hand-written role enforced",
        Duration::from_secs(10),
        || h.ctl.status().generation > g,
    );
    put(
        &urls,
        &keys::decision(SITE, cart, Kind::Admit),
        by_hand(cart, Kind::Admit, Some("pumps")),
    );
    let g = h.ctl.status().generation;
    wait("the admit enforced", Duration::from_secs(10), || {
        h.ctl.status().generation > g
    });
    std::thread::sleep(Duration::from_secs(2));
    let log = h.ctl.kill9();
    assert!(
        log.contains("fleet: 6 decisions enforced as generation"),
        "{log}"
    );
    assert!(
        !log.contains(&format!("decisions/{cart}/role not deleted from etcd")),
        "{log}"
    );
    assert!(!etcd_has(&urls, &role), "deleted as the decision it holds");
}
