//! A site whose etcd cluster loses its leader during a push, and a host
//! joining a site whose policy is larger than gRPC's default message.

use super::*;

#[test]
fn a_cluster_that_loses_its_leader_during_a_push_still_converges() {
    require_root();
    let mut etcd = Etcd::start("fk", 3, 23890);
    let urls = etcd.urls();
    let (a, b) = (
        policy("ka", ""),
        policy(
            "kb",
            r#", {"from": "workstations", "to": "pis-servers", "proto": "tcp", "ports": [22], "action": "allow"}"#,
        ),
    );
    let _u: Vec<_> = ["ka", "kb"].iter().map(|t| unit(t)).collect();
    let h1 = start_host("ka", 11, &a, &urls, true);
    wait("seeded", Duration::from_secs(10), || {
        hosts(&urls).len() == 1
    });
    let h2 = start_host("kb", 12, &a, &urls, true);
    wait("both on revision 1", Duration::from_secs(15), || {
        hosts(&urls).len() == 2
    });
    let leader = etcd.leader().expect("a leader");
    let (u, bp) = (urls.clone(), b.clone());
    let push = std::thread::spawn(move || fleet(&u, &["push", bp.to_str().unwrap()]));
    etcd.members[leader].stop();
    let out = push.join().unwrap();
    if !out.status.success() {
        // The push met the election: pushing again is what an operator does.
        etcd.wait_healthy(Duration::from_secs(20));
        let again = fleet(&urls, &["push", b.to_str().unwrap()]);
        assert!(
            again.status.success(),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
    }
    let want = sha(&b);
    let t = Instant::now();
    wait(
        "both hosts converge without the old leader",
        Duration::from_secs(30),
        || h1.sha() == want && h2.sha() == want,
    );
    eprintln!(
        "converged {:?} after the leader (member {leader}) was stopped",
        t.elapsed()
    );
}

/// A site whose policy is larger than gRPC's 4 MiB default message: a host
/// that joins it reads it whole (the first read, not only the watch).
#[test]
fn a_host_joins_a_site_whose_policy_is_larger_than_grpc_default_messages() {
    require_root();
    let etcd = Etcd::start("fj", 1, 23940);
    let urls = etcd.urls();
    let mut devices = String::new();
    for i in 0..50_000u32 {
        devices.push_str(&format!(
            r#", {{"name": "bulk-{i}", "mac": "0a:00:{:02x}:{:02x}:{:02x}:01", "ipv4": "10.{}.{}.{}", "segment": "workstations"}}"#,
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff,
            100 + (i >> 16),
            (i >> 8) & 0xff,
            i & 0xff
        ));
    }
    let big = policy("big", "");
    let text = std::fs::read_to_string(&big).unwrap().replace(
        r#""segment": "workstations", "risk": "medium"}"#,
        &format!(r#""segment": "workstations", "risk": "medium"}}{devices}"#),
    );
    std::fs::write(&big, &text).unwrap();
    assert!(text.len() > 4 << 20, "{} bytes", text.len());
    let _u: Vec<_> = ["ja", "jb"].iter().map(|t| unit(t)).collect();
    let ha = start_host("ja", 21, &big, &urls, true);
    wait("seeded", Duration::from_secs(30), || {
        hosts(&urls).len() == 1
    });
    // Host B starts from a small file and must take the site's large one.
    let hb = start_host("jb", 22, &policy("small", ""), &urls, true);
    let want = sha(&big);
    wait(
        "host B enforces the large revision",
        Duration::from_secs(60),
        || hb.sha() == want,
    );
    assert_eq!(ha.sha(), want);
}
