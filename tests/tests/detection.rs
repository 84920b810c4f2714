//! Detection and response on a live care unit: a baseline learned over a
//! shortened window flags the first new east-west flow afterwards and
//! nothing else; real nmap SYN and UDP scans from a workstation raise a
//! `scan` alert and quarantine it within two seconds; the same scan from a
//! pump raises a critical alert and quarantines nothing; alerts reach a
//! webhook; a scan's storm of flows is one alert; a server's packets from
//! the port its clients open are replies, not a scan.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ispf_tests::{
    care_unit::*,
    controller::*,
    inventory::*,
    programs::command,
    require_root,
    services::{tcp_ok, Server},
};
use serde_json::Value;

const HOOK_PORT: u16 = 19481;

fn policy() -> std::path::PathBuf {
    let text = format!(
        r#"{{"version": 1,
        "segments": [
          {{"name": "pumps", "life_critical": true}},
          {{"name": "pis-servers", "subnets": ["10.50.0.0/24"]}},
          {{"name": "workstations"}}
        ],
        "devices": [
          {{"name": "pump", "mac": "{PUMP1}", "ipv4": "10.10.0.11", "segment": "pumps", "risk": "high"}},
          {{"name": "ws", "mac": "{LAPTOP}", "ipv4": "10.99.0.7", "segment": "workstations", "risk": "medium"}}
        ],
        "rules": [
          {{"from": "pumps", "to": "pis-servers", "proto": "tcp", "ports": [2575], "action": "allow"}},
          {{"from": "workstations", "to": "pis-servers", "proto": "tcp", "ports": [443], "action": "allow"}}
        ],
        "detection": {{
          "learning_s": 4,
          "scan": {{"distinct_targets": 20, "window_s": 10}},
          "auto_quarantine": ["medium", "high"],
          "quarantine_ttl_s": 600
        }}}}"#
    );
    write_policy("detection", &text)
}

/// Receives the alert webhook's POSTs and keeps their bodies.
const HOOK: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204); self.end_headers()
        print(body.decode(), flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

struct Hook(Child, Arc<Mutex<Vec<Value>>>);

impl Hook {
    fn start() -> Hook {
        let mut c = command("python3")
            .args(["-u", "-c", HOOK, &HOOK_PORT.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(c.stdout.take().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&l) {
                    g.lock().unwrap().push(v);
                }
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        Hook(c, got)
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn alerts(ctl: &Ctl) -> Vec<Value> {
    ctl.json_lines(&["alerts", "--json"])
}

fn nmap(ns: &str, args: &[&str]) -> Child {
    let mut full = vec![
        "netns",
        "exec",
        ns,
        "nmap",
        "-n",
        "-Pn",
        "--max-retries",
        "0",
    ];
    full.extend_from_slice(args);
    command("ip")
        .args(&full)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for a scan alert from `mac` newer than `after` ids; returns it and
/// how long it took.
fn scan_alert(ctl: &Ctl, mac: &str, after: i64, within: Duration) -> (Value, Duration) {
    let t = Instant::now();
    loop {
        if let Some(a) = alerts(ctl)
            .into_iter()
            .find(|a| a["mac"] == mac && a["kind"] == "scan" && a["id"].as_i64().unwrap() > after)
        {
            return (a, t.elapsed());
        }
        assert!(
            t.elapsed() < within,
            "no scan alert for {mac} within {within:?}: {:?}",
            alerts(ctl)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn last_id(ctl: &Ctl) -> i64 {
    alerts(ctl).first().map_or(0, |a| a["id"].as_i64().unwrap())
}

#[test]
fn scans_are_contained_within_seconds_and_pumps_only_alert() {
    require_root();
    let (_topo, ports) = unit("dt");
    let hook = Hook::start();
    let url = format!("http://127.0.0.1:{HOOK_PORT}/alerts");
    let ctl = Ctl::start_with(
        paths("dt"),
        &policy(),
        &[&ports[0], &ports[1], &ports[2]],
        &["--alert-webhook", &url],
    );
    let (ws, pump, pis) = ("ispf-dt-lap", "ispf-dt-pump", "10.50.0.10");
    let _srv = Server::start("ispf-dt-pis", &[443, 2575, 22]);

    // Baseline: learned while the workstation is young (4 s here).
    assert!(tcp_ok(ws, pis, 443, 2.0, None));
    wait_devices(&ctl, Duration::from_secs(2), "the workstation seen", |l| {
        device(l, LAPTOP).is_some()
    });
    std::thread::sleep(Duration::from_secs(5));
    let base = ctl.cli(&["baseline", LAPTOP, "--json"]);
    let base: Value = serde_json::from_slice(&base.stdout).unwrap();
    assert_eq!(base["services"][0][0], "pis-servers", "{base}");
    assert_eq!(base["services"][0][2], 443);
    // After the window: the learned service is quiet, a new one alerts
    // once, and again nothing.
    assert!(tcp_ok(ws, pis, 443, 2.0, None));
    assert!(!tcp_ok(ws, pis, 22, 1.0, None));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!tcp_ok(ws, pis, 22, 1.0, None));
    std::thread::sleep(Duration::from_millis(500));
    let a = alerts(&ctl);
    let anomalies: Vec<&Value> = a.iter().filter(|x| x["kind"] == "anomaly").collect();
    assert_eq!(anomalies.len(), 1, "{a:?}");
    assert!(anomalies[0]["detail"].as_str().unwrap().contains("tcp/22"));
    assert_eq!(anomalies[0]["severity"], "warning");
    assert_eq!(anomalies[0]["response"], "alert only");

    // A real SYN scan from the workstation: alert and quarantine.
    let before = last_id(&ctl);
    let t = Instant::now();
    let mut scan = nmap(ws, &["-sS", "-p", "1-300", "10.50.0.10", "10.10.0.11"]);
    let (alert, _) = scan_alert(&ctl, LAPTOP, before, Duration::from_secs(5));
    let quarantined = wait_devices(
        &ctl,
        Duration::from_secs(5),
        "the workstation quarantined",
        |l| device(l, LAPTOP).is_some_and(|d| d["state"] == "quarantined"),
    );
    let took = t.elapsed();
    let _ = scan.wait();
    eprintln!("SYN scan: alert #{} and quarantine {took:?} after nmap started ({quarantined:?} of polling)", alert["id"]);
    assert!(
        took < Duration::from_secs(2) + Duration::from_millis(500),
        "{took:?}"
    );
    // The scan quarantines, unless a critical anomaly of the same scan (a
    // flow towards the pump) did a moment before.
    let r = alert["response"].as_str().unwrap();
    assert!(
        r.starts_with("quarantined") || r == "already quarantined",
        "{alert}"
    );
    assert!(
        alerts(&ctl).iter().any(|a| a["mac"] == LAPTOP
            && a["response"]
                .as_str()
                .unwrap()
                .starts_with("quarantined for")),
        "one alert quarantined it"
    );
    assert!(!tcp_ok(ws, pis, 443, 1.0, None), "quarantined");
    let tl = timeline(&ctl, LAPTOP);
    assert!(
        tl.iter().any(|e| e["event"] == "quarantined"
            && e["actor"] == "ispf detection"
            && e["detail"].as_str().unwrap().contains("alert #")),
        "the timeline names the alert: {tl:?}"
    );
    // One scan, however many flows: no storm (a scan alert, and at most a
    // few anomalies before it: 3 warnings and 3 critical ones a minute,
    // counted apart so that warnings cannot use up a critical alert).
    let all = alerts(&ctl);
    let scans = all
        .iter()
        .filter(|a| a["mac"] == LAPTOP && a["kind"] == "scan")
        .count();
    let anomalies = all
        .iter()
        .filter(|a| a["mac"] == LAPTOP && a["kind"] == "anomaly")
        .count();
    eprintln!(
        "the SYN scan of 600 targets raised {scans} scan and {} anomaly alerts",
        anomalies - 1
    );
    assert_eq!(scans, 1);
    assert!(anomalies <= 1 + 3 + 3, "{all:?}");

    // Released within the scan's window, the flows of the scan it was
    // quarantined for do not quarantine it again; a UDP scan does.
    assert!(ctl.cli(&["release", LAPTOP]).status.success());
    assert!(tcp_ok(ws, pis, 443, 2.0, None), "released: HTTPS again");
    std::thread::sleep(Duration::from_millis(500));
    assert_ne!(
        device(&devices(&ctl), LAPTOP).unwrap()["state"],
        "quarantined",
        "{:?}",
        alerts(&ctl)
    );
    let before = last_id(&ctl);
    let t = Instant::now();
    let mut scan = nmap(ws, &["-sU", "-p", "1-200", "10.50.0.10"]);
    scan_alert(&ctl, LAPTOP, before, Duration::from_secs(5));
    wait_devices(&ctl, Duration::from_secs(5), "quarantined again", |l| {
        device(l, LAPTOP).is_some_and(|d| d["state"] == "quarantined")
    });
    eprintln!("UDP scan: quarantined {:?} after nmap started", t.elapsed());
    let _ = scan.kill();
    let _ = scan.wait();

    // The same scan from a pump: critical, never quarantined.
    let before = last_id(&ctl);
    let mut scan = nmap(pump, &["-sS", "-p", "1-300", "10.50.0.10"]);
    let (alert, took) = scan_alert(&ctl, PUMP1, before, Duration::from_secs(5));
    let _ = scan.wait();
    eprintln!("pump scan: alert after {took:?}: {}", alert["response"]);
    assert_eq!(alert["severity"], "critical");
    assert!(
        alert["response"]
            .as_str()
            .unwrap()
            .contains("life-critical"),
        "{alert}"
    );
    let d = devices(&ctl);
    assert_eq!(device(&d, PUMP1).unwrap()["state"], "registered");
    assert!(tcp_ok(pump, pis, 2575, 2.0, None), "the pump keeps its HL7");

    // Every alert reached the webhook; metrics count them by kind.
    std::thread::sleep(Duration::from_secs(1));
    let posted = hook.1.lock().unwrap().clone();
    assert!(
        posted
            .iter()
            .any(|a| a["kind"] == "scan" && a["mac"] == PUMP1),
        "{posted:?}"
    );
    assert!(posted.len() >= 3, "{posted:?}");
    let m = scrape(&ctl.metrics);
    assert!(
        m.contains("ispf_alerts_total{kind=\"scan\",severity=\"critical\"} 1"),
        "{m}"
    );
    assert!(m.contains("ispf_auto_quarantines_total 2"), "{m}");

    // The server's packets on connections the pumps opened to its HL7
    // port, forgotten by conntrack (here: a real ACK scan from 2575), are
    // replies: no scan, and the server every pump reports to stays. The
    // same ACK scan from another port is a scan, and contained.
    let before = last_id(&ctl);
    let pis_ns = "ispf-dt-pis";
    let probes = ["-sA", "-p", "40000-40039", "10.10.0.11"];
    let mut scan = nmap(pis_ns, &[&["-g", "2575"][..], &probes[..]].concat());
    let _ = scan.wait();
    std::thread::sleep(Duration::from_secs(2));
    let a = alerts(&ctl);
    assert!(
        !a.iter()
            .any(|x| x["mac"] == PIS && x["id"].as_i64().unwrap() > before),
        "replies raised an alert: {a:?}"
    );
    assert_ne!(device(&devices(&ctl), PIS).unwrap()["state"], "quarantined");
    let mut scan = nmap(pis_ns, &[&["-g", "2576"][..], &probes[..]].concat());
    scan_alert(&ctl, PIS, before, Duration::from_secs(5));
    let _ = scan.wait();
    // The alert is stored before its response is known: read until the
    // response says it quarantined.
    let t = Instant::now();
    let contained = |a: &Value| {
        a["mac"] == PIS
            && a["kind"] == "scan"
            && a["response"].as_str().unwrap().starts_with("quarantined")
    };
    while !alerts(&ctl).iter().any(contained) {
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", alerts(&ctl));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(device(&devices(&ctl), PIS).unwrap()["state"], "quarantined");
}
