//! A quarantine key whose address a life-critical device uses later: the
//! host that sees it enforces the key without that address at its next
//! ten-second check, and says so in `fleet status` then, not only at the
//! site's next change.

use ispf::decisions::Kind;
use ispf_tests::programs::sqlite;

use super::*;

#[test]
fn a_quarantine_narrowed_between_deliveries_shows_in_fleet_status() {
    require_root();
    let server = Etcd::start("fn", 1, 24240);
    let urls = server.urls();
    let seed = policy("on", "");
    let _u = unit("fn");
    let h = start_host("fn", 48, &seed, &urls, true);
    wait_seeded(&urls);
    let db = ispf::inventory::db_path(&h.ctl.paths.state);
    let other = "02:00:00:00:99:07";
    sqlite(
        &db,
        &format!(
            "INSERT INTO devices (mac, vlan, interface, ipv4, first_seen, last_seen, segment, judged) VALUES \
             ('{other}', 0, 'p', '10.60.0.5', strftime('%s','now'), strftime('%s','now'), 'workstations', 'unknown'); \
             INSERT INTO device_ips (mac, ip, first_seen, last_seen) VALUES \
             ('{other}', '10.60.0.5', strftime('%s','now'), strftime('%s','now'));"
        ),
    );
    let out = h.ctl.cli(&["quarantine", other, "--reason", "scan"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = keys_decision(other);
    let site_key = || -> String {
        etcd(&urls, async |c| {
            let r = c.get(key.as_str(), None).await.unwrap();
            r.kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                .unwrap_or_default()
        })
    };
    wait("the quarantine in etcd", Duration::from_secs(10), || {
        site_key().contains("10.60.0.5")
    });
    let said = || last_error(&urls);
    // Give the site's set time to settle: nothing is said of the key yet.
    std::thread::sleep(Duration::from_secs(6));
    assert!(!said().contains(other), "{}", said());

    // The pump (registered in a life-critical segment) sends from the
    // address: this host narrows its copy within its ten-second check and
    // the status says so without any change to the site's keys.
    sqlite(
        &db,
        &format!(
            "INSERT INTO device_ips (mac, ip, first_seen, last_seen) VALUES \
             ('{PUMP1}', '10.60.0.5', strftime('%s','now'), strftime('%s','now'));"
        ),
    );
    wait(
        "the narrowing in fleet status",
        Duration::from_secs(30),
        || {
            let s = said();
            s.contains(&format!("decisions/{other}/quarantine")) && s.contains("without 10.60.0.5")
        },
    );
    assert!(
        site_key().contains("10.60.0.5"),
        "the site's key is the site's: a host narrows its own copy"
    );
    // Said once, not re-applied over and over: the generation stays.
    let generation = || hosts(&urls).first().map(|x| x["generation"].clone());
    let at = generation();
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(generation(), at, "the re-application looped");
    assert!(said().contains("without 10.60.0.5"));
}

fn keys_decision(mac: &str) -> String {
    ispf::fleet::keys::decision(SITE, mac, Kind::Quarantine)
}
