//! Threat-intelligence feeds on a live care unit: a plain file feed that a
//! refresh makes list a server (an established flow stops at its next
//! packet, a life-critical pump's flow passes and is reported), monitor
//! mode, a STIX alert feed naming its indicator, a feed file that goes
//! missing (its last good contents stay), and an HTTP feed served with
//! ETags (304s), then 500s, then too slowly.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use ispf_tests::{
    care_unit::*, controller::*, http::wait, inventory::*, ispf_bin, programs::command,
    require_root,
};
use serde_json::Value;

const HTTP_PORT: u16 = 19480;

fn policy(feed_dir: &Path, laptops_mode: &str) -> std::path::PathBuf {
    let text = format!(
        r#"{{"version": 1,
        "segments": [
          {{"name": "pumps", "life_critical": true}},
          {{"name": "pis-servers", "subnets": ["10.50.0.0/24"]}},
          {{"name": "laptops", "mode": "{laptops_mode}"}}
        ],
        "devices": [
          {{"name": "pump", "mac": "{PUMP1}", "ipv4": "10.10.0.11", "segment": "pumps"}},
          {{"name": "lap", "mac": "{LAPTOP}", "ipv4": "10.99.0.7", "segment": "laptops"}}
        ],
        "rules": [
          {{"from": "pumps", "to": "pis-servers", "proto": "tcp", "ports": [2575], "action": "allow"}},
          {{"from": "laptops", "to": "pis-servers", "proto": "tcp", "ports": [2575, 443], "action": "allow"}}
        ],
        "feeds": [
          {{"name": "blocklist", "source": "{0}/block.txt", "format": "plain", "action": "deny", "refresh_s": 300}},
          {{"name": "vendor-stix", "source": "{0}/vendor.json", "format": "stix2", "action": "alert"}},
          {{"name": "isac", "source": "http://127.0.0.1:{HTTP_PORT}/feed", "refresh_s": 2, "action": "alert"}}
        ]}}"#,
        feed_dir.display()
    );
    write_policy(&format!("feeds-{laptops_mode}"), &text)
}

/// A feed server: `/feed` with an ETag (304 when it matches); the mode
/// file under `dir` switches it to 500s or to answering too slowly. Every
/// request is printed as `STATUS`.
const SERVER: &str = r#"
import http.server, os, sys, time
d = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        mode = open(os.path.join(d, "mode")).read().strip()
        if mode == "fail":
            self.send_response(500); self.end_headers(); print(500, flush=True); return
        if mode == "slow":
            time.sleep(8)
        body = open(os.path.join(d, "http.txt"), "rb").read()
        tag = '"%d"' % hash(body)
        if self.headers.get("If-None-Match") == tag:
            self.send_response(304); self.end_headers(); print(304, flush=True); return
        self.send_response(200); self.send_header("ETag", tag)
        self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body); print(200, flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), H).serve_forever()
"#;

struct Http(Child, std::sync::Arc<std::sync::Mutex<Vec<u16>>>);

impl Http {
    fn start(dir: &Path) -> Http {
        let mut c = command("python3")
            .args([
                "-u",
                "-c",
                SERVER,
                dir.to_str().unwrap(),
                &HTTP_PORT.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(c.stdout.take().unwrap());
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if let Ok(s) = line.trim().parse() {
                    l.lock().unwrap().push(s);
                }
            }
        });
        Http(c, log)
    }

    fn statuses(&self) -> Vec<u16> {
        self.1.lock().unwrap().clone()
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn feeds(ctl: &Ctl) -> Vec<Value> {
    ctl.json_lines(&["feeds", "--json"])
}

fn feed(ctl: &Ctl, name: &str) -> Value {
    feeds(ctl).into_iter().find(|f| f["name"] == name).unwrap()
}

#[test]
fn feeds_refresh_atomically_stop_established_flows_and_never_isolate_a_pump() {
    require_root();
    let dir = std::env::temp_dir().join("ispf-test-feeds");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("block.txt"), "# nothing yet\n203.0.113.9\n").unwrap();
    std::fs::write(
        dir.join("vendor.json"),
        r#"{"type":"bundle","id":"bundle--0","objects":[]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("http.txt"), "198.51.100.1\n").unwrap();
    std::fs::write(dir.join("mode"), "ok").unwrap();
    let http = Http::start(&dir);

    let (_topo, ports) = unit("fd");
    let ifaces = [ports[0].as_str(), ports[1].as_str(), ports[2].as_str()];
    let ctl = Ctl::start(paths("fd"), &policy(&dir, "enforce"), &ifaces);
    let mut follower = std::process::Command::new(ispf_bin())
        .args(["events", "--run-dir"])
        .arg(&ctl.paths.run)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _echo = Echo::start("ispf-fd-pis", 2575);
    let pis = "10.50.0.10";
    let lap = Stream::start("ispf-fd-lap", pis, 2575);
    let pump = Stream::start("ispf-fd-pump", pis, 2575);
    lap.wait_state(true, 5, Duration::from_secs(5));
    pump.wait_state(true, 5, Duration::from_secs(5));
    wait("the plain feed loaded", Duration::from_secs(5), || {
        feed(&ctl, "blocklist")["entries"] == 1
    });

    // The PIS is listed: the laptop's established flow stops at its next
    // packet after the refresh; the pump's passes (life-critical) and is
    // reported.
    let listed = Instant::now();
    std::fs::write(
        dir.join("block.txt"),
        "203.0.113.9\n10.50.0.0/24 # the PIS subnet\n",
    )
    .unwrap();
    let took = lap.wait_state(false, 3, Duration::from_secs(5));
    eprintln!("an established flow stopped {took:?} after its server was listed");
    // Counted over at least ten round trips, however quickly the refresh
    // stopped the laptop's flow (a fast one left too few to judge by).
    let since = listed + Duration::from_secs(1);
    wait(
        "ten round trips of the pump's flow",
        Duration::from_secs(10),
        || pump.since(since).0 > 10,
    );
    let (ok, stalled) = pump.since(since);
    assert!(
        stalled == 0,
        "the pump's flow: {ok} answered, {stalled} stalled"
    );
    let f = feed(&ctl, "blocklist");
    assert_eq!(f["entries"], 2);
    assert!(f["hits_dropped"].as_u64().unwrap() >= 1, "{f}");
    assert!(f["hits_passed"].as_u64().unwrap() >= 1, "{f}");
    assert!(!ispf_tests::services::tcp_ok(
        "ispf-fd-lap",
        pis,
        443,
        1.0,
        None
    ));

    // Monitor mode: the listed flow passes as would_drop.
    let out = ctl.cli(&["reload", policy(&dir, "monitor").to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _https = ispf_tests::services::Server::start("ispf-fd-pis", &[443]);
    assert!(
        ispf_tests::services::tcp_ok("ispf-fd-lap", pis, 443, 2.0, None),
        "monitor mode passes"
    );
    let out = ctl.cli(&["reload", policy(&dir, "enforce").to_str().unwrap()]);
    assert!(out.status.success());

    // A network holding the PIS's subnet and the pump's and the laptop's
    // addresses is a share of the hospital, not an indicator: skipped,
    // listed first, not counted as enforced, and (written with host bits)
    // not said to be "enforced as" its network.
    std::fs::write(
        dir.join("block.txt"),
        "203.0.113.9\n10.50.0.0/24 # the PIS subnet\n10.1.2.3/9\n",
    )
    .unwrap();
    wait("the /9 skipped", Duration::from_secs(5), || {
        feed(&ctl, "blocklist")["skipped"] == 1
    });
    let f = feed(&ctl, "blocklist");
    assert_eq!(f["entries"], 2, "{f}");
    assert!(
        f["problems"][0].as_str().is_some_and(|p| p.starts_with(
            "line 3: `10.0.0.0/9` holds the addresses of several segments (10.50.0.0/24 of `pis-servers`, 10.10.0.11 of `pumps`)"
        )),
        "{f}"
    );
    assert!(!f["problems"].to_string().contains("enforced as"), "{f}");
    // A file under which it holds one segment only (the PIS owns a VLAN
    // instead, the laptop joins the pumps): a dry run says it would be
    // enforced again, and applies nothing.
    let text = std::fs::read_to_string(policy(&dir, "enforce"))
        .unwrap()
        .replace(r#""subnets": ["10.50.0.0/24"]"#, r#""vlans": [50]"#)
        .replace(r#""segment": "laptops"}"#, r#""segment": "pumps"}"#);
    let one = write_policy("feeds-one-segment", &text);
    let dry = ctl.cli(&["reload", "--dry-run", one.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(
        said.contains("! threat feed `blocklist`: `10.0.0.0/9` is enforced again"),
        "{said}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert_eq!(
        feed(&ctl, "blocklist")["skipped"],
        1,
        "a dry run applies nothing"
    );

    // The feed file goes missing: its last good contents stay enforced and
    // the failure is reported.
    std::fs::remove_file(dir.join("block.txt")).unwrap();
    wait("the missing file reported", Duration::from_secs(5), || {
        feed(&ctl, "blocklist")["error"]
            .as_str()
            .is_some_and(|e| e.contains("block.txt"))
    });
    assert_eq!(
        feed(&ctl, "blocklist")["entries"],
        2,
        "last good contents kept"
    );
    assert!(
        !ispf_tests::services::tcp_ok("ispf-fd-lap", pis, 443, 1.0, None),
        "still enforced"
    );

    // A STIX alert feed naming the laptop: flows pass, reported with the
    // indicator.
    std::fs::write(
        dir.join("vendor.json"),
        r#"{"type":"bundle","id":"bundle--1","objects":[
          {"type":"indicator","spec_version":"2.1","id":"indicator--c0ffee00-0000-4000-8000-000000000001","created":"2026-01-01T00:00:00Z","modified":"2026-01-01T00:00:00Z","pattern":"[ipv4-addr:value = '10.99.0.7']","pattern_type":"stix","valid_from":"2026-01-01T00:00:00Z"},
          {"type":"indicator","spec_version":"2.1","id":"indicator--c0ffee00-0000-4000-8000-000000000002","pattern":"[ipv4-addr:value = '10.99.0.8'] AND [ipv4-addr:value = '10.99.0.9']","pattern_type":"stix","valid_from":"2026-01-01T00:00:00Z"}]}"#,
    )
    .unwrap();
    wait("the STIX feed loaded", Duration::from_secs(5), || {
        let f = feed(&ctl, "vendor-stix");
        f["entries"] == 1 && f["skipped"] == 1
    });
    // Broken, then fixed: read again as soon as it changes, not at the
    // next refresh (300 s) after the failure's retry found it unchanged.
    let good = std::fs::read(dir.join("vendor.json")).unwrap();
    std::fs::write(dir.join("vendor.json"), "{\"type\":\"bundle\",").unwrap();
    wait("the broken bundle reported", Duration::from_secs(5), || {
        feed(&ctl, "vendor-stix")["error"].is_string()
    });
    std::thread::sleep(Duration::from_secs(6)); // past the first retry
    let failures = feed(&ctl, "vendor-stix")["failures"].clone();
    std::fs::write(dir.join("vendor.json"), &good).unwrap();
    wait(
        "the fixed bundle read at once",
        Duration::from_secs(5),
        || feed(&ctl, "vendor-stix")["error"].is_null(),
    );
    assert_eq!(feed(&ctl, "vendor-stix")["failures"], failures);

    // HTTP: fetched, then 304s for the same contents; 500s and a server too
    // slow to answer keep the last good contents.
    wait("the HTTP feed loaded", Duration::from_secs(10), || {
        feed(&ctl, "isac")["entries"] == 1
    });
    wait("a 304", Duration::from_secs(10), || {
        http.statuses().contains(&304)
    });
    std::fs::write(dir.join("mode"), "fail").unwrap();
    wait("the 500 reported", Duration::from_secs(10), || {
        feed(&ctl, "isac")["error"]
            .as_str()
            .is_some_and(|e| e.contains("500"))
    });
    std::fs::write(dir.join("mode"), "slow").unwrap();
    wait("the timeout reported", Duration::from_secs(30), || {
        feed(&ctl, "isac")["error"]
            .as_str()
            .is_some_and(|e| !e.contains("500"))
    });
    let f = feed(&ctl, "isac");
    assert_eq!(f["entries"], 1, "last good contents kept: {f}");
    assert!(f["failures"].as_u64().unwrap() >= 2, "{f}");
    // The server back, with the same contents (a 304): recovered, not
    // failing until the upstream list changes.
    std::fs::write(dir.join("mode"), "ok").unwrap();
    wait(
        "the feed recovered on a 304",
        Duration::from_secs(60),
        || feed(&ctl, "isac")["error"].is_null(),
    );

    // Threat events name the feed and the listed network; metrics by feed.
    std::thread::sleep(Duration::from_millis(500));
    let _ = follower.kill();
    let mut text = String::new();
    follower
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let _ = follower.wait();
    let threats: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "threat")
        .collect();
    assert!(
        threats.iter().any(|t| t["feed"] == "blocklist"
            && t["listed"] == "10.50.0.0/24"
            && t["indicator"] == "line 2"),
        "{threats:?}"
    );
    assert!(
        threats.iter().any(|t| t["feed"] == "blocklist"
            && t["verdict"] == "pass"
            && t["src_segment"] == "pumps"),
        "the pump's passing flow is reported: {threats:?}"
    );
    let m = ispf_tests::controller::scrape(&ctl.metrics);
    assert!(m.contains("ispf_feed_entries{feed=\"blocklist\"} 2"), "{m}");
    assert!(
        m.contains("ispf_feed_refresh_failures_total{feed=\"isac\"}"),
        "{m}"
    );
    assert!(m.contains("reason=\"threat_feed\""), "{m}");
}
