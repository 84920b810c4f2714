//! A host that joins a site with a startup file of its own enforces the
//! site's policy from its first generation: never its own file, not even
//! for the moment the watch takes.

use super::*;

#[test]
fn a_joining_host_never_enforces_its_own_file_over_the_sites() {
    require_root();
    let server = Etcd::start("fj", 1, 24100);
    let urls = server.urls();
    let site = policy("ja", "");
    let own = policy(
        "jb",
        r#", {"from": "workstations", "to": "pumps", "proto": "tcp", "ports": [443], "action": "allow"}"#,
    );
    let out = fleet(&urls, &["push", site.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _u = unit("fj");
    let h = start_host("fj", 51, &own, &urls, true);
    let s = h.ctl.status();
    assert_eq!(
        s.policy_sha256,
        sha(&site),
        "the site's policy, from the start"
    );
    assert_eq!(s.generation, 1, "no generation of its own file came first");
    // And it stays so: the watch finds nothing newer to apply.
    std::thread::sleep(Duration::from_secs(2));
    let s = h.ctl.status();
    assert_eq!((s.policy_sha256, s.generation), (sha(&site), 1));
}
