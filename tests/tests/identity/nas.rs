//! Which NAS a session is of, and the secret it is checked with: real
//! radclient requests as switches behind one RADIUS proxy would send.

use super::*;

/// Another switch behind the same proxy is another NAS; a secret rotated
/// in its file is taken without a restart.
#[test]
fn switches_behind_one_proxy_are_apart_and_a_rotated_secret_is_taken() {
    require_root();
    let (_topo, ports) = unit("idn");
    let ifaces = [ports[0].as_str(), ports[1].as_str(), ports[2].as_str()];
    let ctl = Ctl::start(paths("idn"), &policy(), &ifaces);
    assert!(radclient(&acct("Start", "S6", LAPTOP, "biomed"), SECRET));
    assert_eq!(state(&ctl, LAPTOP), "biomed-workstations");

    // Another switch behind the same proxy (sender) is another NAS: its
    // Stop of a session with the same id, and its Accounting-On (it
    // restarted), leave this switch's session and its role.
    let other = "10.20.0.2";
    assert!(radclient(
        &acct_of(other, "Stop", "S6", LAPTOP, "biomed"),
        SECRET
    ));
    assert!(radclient(
        &acct_of(other, "Accounting-On", "S6", LAPTOP, "biomed"),
        SECRET
    ));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state(&ctl, LAPTOP), "biomed-workstations");
    let open = String::from_utf8_lossy(&ctl.cli(&["sessions", "--json"]).stdout).into_owned();
    assert!(open.contains("\"S6\"") && !open.contains(other), "{open}");

    // A secret rotated in the same file is taken within seconds, without
    // a reload; the old one is then refused. (A `clerk` Start changes
    // nothing: no role has that class.)
    let file = std::env::temp_dir().join("ispf-test-radius.secret");
    let rotate = |to: &str| {
        std::fs::write(&file, format!("{to}\n")).unwrap();
        let t = Instant::now();
        while !radclient(&acct("Start", "S9", LAPTOP, "clerk"), to) {
            assert!(t.elapsed() < Duration::from_secs(12), "{to} not taken");
        }
        t.elapsed()
    };
    let took = rotate("rotated-secret");
    eprintln!("a rotated secret taken {took:?} after it was written");
    assert!(!radclient(&acct("Start", "S9", LAPTOP, "clerk"), SECRET));
    rotate(SECRET);
}
