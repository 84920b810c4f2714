//! Metrics and events as a hospital security team consumes them: a real
//! Prometheus server scrapes the controller and must see exact counts of
//! known traffic; `promtool` accepts the exposition; a denied flow yields
//! exactly one event; a flood is rate-limited and the loss is counted; the
//! Grafana dashboard only asks for metrics that exist.

use std::{
    io::{BufRead, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use ispf::datapath::{Datapath, DatapathError};
use ispf_tests::{
    care_unit::*,
    http::{http_get, sample, wait},
    ispf_bin,
    netns::*,
    require_root,
};

#[path = "observability/grafana.rs"]
mod grafana;

const METRICS: &str = "127.0.0.1:19471";
const PROM: &str = "127.0.0.1:19091";

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, ok: impl FnMut() -> bool) {
    wait(what, Duration::from_secs(30), ok);
}

fn prom_query(q: &str) -> Option<f64> {
    let enc: String = q
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let body = http_get(PROM, &format!("/api/v1/query?query={enc}"));
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_sees_exact_counts_and_events_are_exact() {
    require_root();
    let mut topo = Topology::default();
    topo.bridge("ispfobr0");
    topo.host(
        "ispf-o-pump",
        "ispf-opump",
        "ispfobr0",
        PUMP1,
        &["10.10.0.11/8"],
    );
    topo.host(
        "ispf-o-pis",
        "ispf-opis",
        "ispfobr0",
        PIS,
        &["10.50.0.10/8"],
    );
    // Pre-resolve neighbours so ARP does not mix into the counts below.
    for (ns, peer_ip, peer_mac) in [
        ("ispf-o-pump", "10.50.0.10", PIS),
        ("ispf-o-pis", "10.10.0.11", PUMP1),
    ] {
        must(&[
            "ip",
            "netns",
            "exec",
            ns,
            "ip",
            "neigh",
            "replace",
            peer_ip,
            "lladdr",
            peer_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
    }
    let pin = PathBuf::from("/sys/fs/bpf/ispf-test-obs");
    let run = PathBuf::from("/tmp/ispf-test-run-obs");
    let events_file = std::env::temp_dir().join("ispf-test-events.jsonl");
    let _ = std::fs::remove_file(&events_file);
    let _ = Command::new(ispf_bin())
        .args(["detach", "--pin-dir"])
        .arg(&pin)
        .arg("--run-dir")
        .arg(&run)
        .output();
    let ctl = Kill(
        Command::new(ispf_bin())
            .arg("run")
            .arg("--policy")
            .arg(policy_path())
            .args([
                "--iface",
                "ispf-opump",
                "--iface",
                "ispf-opis",
                "--metrics-addr",
                METRICS,
                "--pin-dir",
            ])
            .arg(&pin)
            .arg("--run-dir")
            .arg(&run)
            .arg("--state-dir")
            .arg(std::env::temp_dir().join("ispf-test-state-obs"))
            .arg("--events")
            .arg(&events_file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The metrics port is bound before the policy is enforced, the control
    // socket after: wait for the latter.
    wait_until("the controller", || {
        Command::new(ispf_bin())
            .args(["status", "--run-dir"])
            .arg(&run)
            .output()
            .is_ok_and(|o| o.status.success())
    });

    // A live `ispf events` follower, filtered to drops towards the pumps.
    let mut follower = Kill(
        Command::new(ispf_bin())
            .args([
                "events",
                "--segment",
                "infusion-pumps",
                "--verdict",
                "drop",
                "--run-dir",
            ])
            .arg(&run)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    sleep(Duration::from_millis(300));

    // A real Prometheus scraping the controller every second.
    let dir = std::env::temp_dir().join(format!("ispf-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ispf\n    static_configs:\n      - targets: ['{METRICS}']\n"),
    )
    .unwrap();
    let _prom = Kill(
        ispf_tests::programs::command("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={PROM}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's prometheus (installed by cargo xtask)"),
    );
    wait_until("prometheus to be ready", || {
        TcpStream::connect(PROM).is_ok() && http_get(PROM, "/-/ready").contains("Ready")
    });

    // Known traffic: 10 allowed pings with 10 replies; 5 denied pings.
    let ok = in_ns(
        "ispf-o-pump",
        &["ping", "-c", "10", "-i", "0.05", "-W", "1", "10.50.0.10"],
    );
    assert!(ok.status.success());
    let denied = in_ns(
        "ispf-o-pis",
        &["ping", "-c", "5", "-i", "0.05", "-W", "1", "10.10.0.11"],
    );
    assert!(!denied.status.success());

    let q_allowed = r#"sum(ispf_packets_total{src_segment="infusion-pumps",dst_segment="pis-servers",reason="allowed"})"#;
    let q_reply = r#"sum(ispf_packets_total{src_segment="pis-servers",dst_segment="infusion-pumps",reason="reply"})"#;
    let q_denied = r#"sum(ispf_packets_total{src_segment="pis-servers",dst_segment="infusion-pumps",reason="denied_default",verdict="drop"})"#;
    let q_rule = r#"sum(ispf_rule_hits_total{rule="ping-pis",src_segment="infusion-pumps",dst_segment="pis-servers"})"#;
    wait_until("Prometheus to scrape the traffic", || {
        prom_query(q_denied) == Some(5.0)
    });
    assert_eq!(prom_query(q_allowed), Some(10.0));
    assert_eq!(prom_query(q_reply), Some(10.0));
    assert_eq!(prom_query(q_rule), Some(10.0), "rule hits by id");
    assert_eq!(prom_query("ispf_policy_generation"), Some(1.0));
    assert_eq!(
        prom_query(r#"ispf_interface_attached{interface="ispf-opump",mode="tc"}"#),
        Some(1.0)
    );

    // promtool accepts the exposition.
    let text = http_get(METRICS, "/metrics");
    let mut promtool = ispf_tests::programs::command("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("10.10.0.11") && !text.contains("02:00:00"),
        "no device or address labels"
    );

    // Exactly one event for the denied flow (five packets, one 5-tuple).
    sleep(Duration::from_millis(300));
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&events_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let denied_pings: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "denied" && e["protocol"] == "icmp")
        .collect();
    assert_eq!(denied_pings.len(), 1, "{events:#?}");
    let e = denied_pings[0];
    assert_eq!(
        (
            e["src_segment"].as_str(),
            e["dst_segment"].as_str(),
            e["reason"].as_str()
        ),
        (
            Some("pis-servers"),
            Some("infusion-pumps"),
            Some("denied_default")
        )
    );
    assert_eq!(
        (
            e["src_ip"].as_str(),
            e["dst_ip"].as_str(),
            e["interface"].as_str()
        ),
        (Some("10.50.0.10"), Some("10.10.0.11"), Some("ispf-opis"))
    );
    let new_flows: Vec<_> = events.iter().filter(|e| e["event"] == "new_flow").collect();
    assert_eq!(
        new_flows.len(),
        1,
        "one new east-west flow (the pump's ping): {events:#?}"
    );
    assert_eq!(new_flows[0]["rule"].as_str(), Some("ping-pis"));
    // The follower saw it too, and only what its filter asks for.
    let mut line = String::new();
    std::io::BufReader::new(follower.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let seen: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (seen["reason"].as_str(), seen["dst_segment"].as_str()),
        (Some("denied_default"), Some("infusion-pumps"))
    );

    // A flood of distinct denied flows: the datapath rate-limits events and
    // counts what it did not send.
    let mut dp = Datapath::adopt(&pin).unwrap();
    let before = dp.event_totals();
    let start = Instant::now();
    for i in 0..5000u16 {
        let f = pis_ssh_to_pump(1000 + i);
        match dp.run(&f) {
            Ok(o) => assert!(!o.pass),
            Err(DatapathError::Busy) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let after = dp.event_totals();
    // Flow events only: sightings of the flood's source have a budget of
    // their own (and are the inventory's to count).
    let emitted = (after.emitted - after.sightings) - (before.emitted - before.sightings);
    let limited = after.rate_limited - before.rate_limited;
    let cpus = aya::util::nr_cpus().unwrap() as f64;
    assert!(
        limited > 0,
        "5000 denied flows in {secs:.2}s were not rate-limited"
    );
    assert!(
        emitted as f64
            <= cpus
                * (ispf_common::EVENT_BURST as f64 + ispf_common::EVENT_RATE_PER_SEC as f64 * secs)
                + 1.0,
        "{emitted} events in {secs:.2}s exceed the per-CPU budget"
    );
    assert_eq!(
        emitted + limited + (after.ringbuf_full - before.ringbuf_full),
        5000,
        "every flood event is either sent or counted as lost"
    );
    drop(dp);
    wait_until("the loss to show in /metrics", || {
        sample(
            &http_get(METRICS, "/metrics"),
            "ispf_events_lost_total",
            &[("cause", "rate_limited")],
        )
        .unwrap_or(0.0)
            >= limited as f64
    });

    // `ispf top` shows the busiest pairs.
    let top = Command::new(ispf_bin())
        .args(["top", "--once", "--run-dir"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(top.status.success());
    assert!(String::from_utf8_lossy(&top.stdout).contains("busiest segment pairs"));

    let out = Command::new(ispf_bin())
        .args(["detach", "--pin-dir"])
        .arg(&pin)
        .arg("--run-dir")
        .arg(&run)
        .output()
        .unwrap();
    assert!(out.status.success());
    drop(ctl);
    let _ = std::fs::remove_dir_all(&dir);
}
