//! Identity: how long from a RADIUS accounting `Start` to the datapath
//! enforcing the role. The controller answers a Start only once the
//! generation holding the role is applied, so the round trip of a Start to
//! its Accounting-Response is that time, as a NAS sees it. Starts and
//! Stops alternate so that every one changes what is enforced; measured
//! over the README's example policy and over the headline policy.

use std::{
    net::UdpSocket,
    os::unix::fs::PermissionsExt,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ispf::identity::radius::{self, attr};
use ispf_tests::netns::{must, sh};
use serde_json::{json, Value};

use crate::{inventory::release_ispf, median, Bench};

const SECRET: &str = "bench-secret";

fn packet(status: u32, mac: &str, n: u32) -> Vec<u8> {
    radius::request(
        (n % 256) as u8,
        &[
            (attr::ACCT_STATUS_TYPE, status.to_be_bytes().to_vec()),
            (attr::ACCT_SESSION_ID, format!("bench-{n}").into_bytes()),
            (attr::USER_NAME, b"bench".to_vec()),
            (attr::CALLING_STATION_ID, mac.as_bytes().to_vec()),
            (attr::CLASS, b"bench-role".to_vec()),
        ],
        SECRET.as_bytes(),
    )
}

/// Starts and stops `rounds` sessions against a controller enforcing
/// `doc` (with a deny feed of `feed_lines` entries, if any); returns each
/// Start's time to enforcement, in ms.
fn session_apply(doc: &Value, rounds: u32, tag: &str, feed_lines: usize) -> Result<Vec<f64>> {
    let mut doc = doc.clone();
    let mac = doc["devices"]
        .as_array()
        .and_then(|d| d.iter().find_map(|x| x["mac"].as_str()))
        .context("a device with a MAC")?
        .to_owned();
    let own = doc["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|x| x["mac"] == mac.as_str()))
        .and_then(|x| x["segment"].as_str())
        .context("its segment")?
        .to_owned();
    let segment = doc["segments"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .filter_map(|x| x["name"].as_str())
                .find(|n| *n != own)
        })
        .context("another segment")?
        .to_owned();
    let dir = std::env::temp_dir().join(format!("ispf-bench-identity-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let secret = dir.join("radius.secret");
    std::fs::write(&secret, SECRET)?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    doc["identity"] = json!({
        "radius_accounting": {"listen": "127.0.0.1:18199", "clients": ["127.0.0.1"], "secret_file": secret},
        "roles": [{"name": "bench", "class": "bench-role", "segment": segment}]
    });
    let mut extra: Vec<String> = Vec::new();
    if feed_lines > 0 {
        let feed = dir.join("feed.txt");
        std::fs::write(&feed, crate::feeds::feed_text(feed_lines))?;
        doc["feeds"] =
            json!([{"name": "bench", "source": feed, "refresh_s": 86400, "action": "deny"}]);
        extra = vec!["--map-size".into(), format!("feeds={}", feed_lines * 3)];
    }
    let policy = dir.join("policy.json");
    std::fs::write(&policy, serde_json::to_vec(&doc)?)?;
    let ipv4 = doc["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|x| x["mac"] == mac.as_str()))
        .and_then(|x| x["ipv4"].as_str().or_else(|| x["ipv4"][0].as_str()))
        .and_then(|a| a.parse().ok());
    known_to_the_inventory(&dir, &mac, ipv4, &own)?;
    let ispf = release_ispf()?;
    let (port, peer) = ("ispfbid0", "ispfbid1");
    let _ = sh(&["ip", "link", "del", port]);
    must(&[
        "ip", "link", "add", port, "type", "veth", "peer", "name", peer,
    ]);
    must(&["ip", "link", "set", port, "up"]);
    must(&["ip", "link", "set", peer, "up"]);
    let (pins, run) = ("/sys/fs/bpf/ispf-bench-id", dir.join("run"));
    let mut ctl = Command::new(&ispf)
        .arg("run")
        .arg("--policy")
        .arg(&policy)
        .args([
            "--iface",
            port,
            "--pin-dir",
            pins,
            "--metrics-addr",
            "127.0.0.1:19489",
        ])
        .args(&extra)
        .arg("--run-dir")
        .arg(&run)
        .arg("--state-dir")
        .arg(&dir)
        .stderr(std::fs::File::create(dir.join("controller.log"))?)
        .spawn()?;
    let measured = (|| -> Result<Vec<f64>> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut buf = [0u8; 64];
        // Ready: the listener answers (a Stop of nothing changes nothing).
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            sock.send_to(&packet(2, &mac, 0), "127.0.0.1:18199")?;
            if sock.recv_from(&mut buf).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the controller's RADIUS listener did not answer: {}",
                    std::fs::read_to_string(dir.join("controller.log")).unwrap_or_default()
                );
            }
        }
        while feed_lines > 0 && feed_entries() == 0.0 {
            if Instant::now() > deadline {
                bail!("the feed was not enforced within 90 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut times = Vec::new();
        for n in 1..=rounds {
            let t = Instant::now();
            sock.send_to(&packet(1, &mac, n), "127.0.0.1:18199")?;
            sock.recv_from(&mut buf).context("no answer to a Start")?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            sock.send_to(&packet(2, &mac, n), "127.0.0.1:18199")?;
            sock.recv_from(&mut buf).context("no answer to a Stop")?;
        }
        Ok(times)
    })();
    let _ = ctl.kill();
    let _ = ctl.wait();
    let _ = Command::new(&ispf)
        .args(["detach", "--pin-dir", pins, "--run-dir"])
        .arg(&run)
        .output();
    let _ = sh(&["ip", "link", "del", port]);
    measured
}

/// Records `mac` in the inventory the controller will open, as a running
/// site's inventory holds every device that has sent, with its address: a
/// decision on a device the inventory knows also places it in the enforced
/// policy, by MAC and by address.
fn known_to_the_inventory(
    state_dir: &std::path::Path,
    mac: &str,
    ipv4: Option<std::net::Ipv4Addr>,
    segment: &str,
) -> Result<()> {
    use ispf::inventory::{db, store};
    let bytes = ispf::policy::parse_mac(mac).context("the session's MAC")?;
    let device = store::Device {
        mac: bytes,
        vendor: None,
        vlan: 0,
        interface: "ispfbid0".into(),
        ipv4,
        ipv6: None,
        hostname: None,
        vendor_class: None,
        dhcp_params: None,
        first_seen: 0,
        last_seen: 0,
        segment: segment.into(),
        judged: "registered".into(),
    };
    let mut conn = db::open(&ispf::inventory::db_path(state_dir))?;
    store::write(
        &mut conn,
        &store::Batch {
            devices: vec![&device],
            ..Default::default()
        },
    )?;
    Ok(())
}

/// `ispf_feed_entries` of the controller under test (0 until its feed is
/// enforced).
fn feed_entries() -> f64 {
    let Ok(mut s) = std::net::TcpStream::connect("127.0.0.1:19489") else {
        return 0.0;
    };
    use std::io::{Read, Write};
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.starts_with("ispf_feed_entries{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn identity(b: &mut Bench) -> Result<()> {
    let rounds = if b.cfg.runs < 5 { 20 } else { 100 };
    let example: Value = serde_json::from_str(&std::fs::read_to_string(
        ispf_tests::care_unit::policy_path(),
    )?)?;
    let small = session_apply(&example, rounds, "example", 0)?;
    let max = small.iter().cloned().fold(0.0, f64::max);
    let med = median(small.clone());
    eprintln!("identity: Start -> enforced, example policy: median {med:.1} ms, max {max:.1} ms");
    b.put("ms_session_apply", med);
    b.put("ms_session_apply_max", max);
    let headline = serde_json::to_value(&b.headline.doc)?;
    let big = session_apply(&headline, rounds.min(20), "headline", 0)?;
    let big_med = median(big.clone());
    eprintln!(
        "identity: Start -> enforced, {} devices: median {big_med:.1} ms",
        b.cfg.headline_devices
    );
    b.put(
        "ms_session_apply_100k",
        if b.cfg.headline_devices == 100_000 {
            big_med
        } else {
            f64::NAN
        },
    );
    // A site that subscribes to a large feed: a session must not cost a
    // feed refresh.
    let lines = if b.cfg.quick { 10_000 } else { 1_000_000 };
    let fed = session_apply(&example, rounds.min(20), "feed", lines)?;
    let fed_med = median(fed.clone());
    eprintln!("identity: Start -> enforced, example policy with {lines} feed entries: median {fed_med:.1} ms");
    b.put(
        "ms_session_apply_feeds_1m",
        if lines == 1_000_000 {
            fed_med
        } else {
            f64::NAN
        },
    );
    b.results.insert(
        "identity".into(),
        json!({"example_ms": small, "headline_ms": big, "headline_devices": b.cfg.headline_devices,
               "with_feed_ms": fed, "feed_entries": lines}),
    );
    Ok(())
}
