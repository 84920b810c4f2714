//! The fleet: how long from `ispf fleet push` to every host enforcing the
//! new revision, with 1, 3 and 10 controllers on this machine (each on a
//! veth port of its own) following one site in a real etcd, and how it
//! grows with the policy (1k and 100k devices). Pushes alternate between
//! two policies that differ by one rule, so every push changes what is
//! enforced; a host counts as done when its control socket reports the
//! pushed file's hash.

use std::{
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ispf::{
    control::{self, Request, Response},
    policy::{hex, sha256},
};
use ispf_tests::{
    etcd::Etcd,
    netns::{must, sh},
};
use serde_json::{json, Value};

use crate::{corpus, inventory::release_ispf, median, Bench};

const SITE: &str = "bench";

struct Host {
    child: Child,
    run: PathBuf,
    pins: String,
    port: String,
}

fn hosts_up(
    ispf: &std::path::Path,
    n: usize,
    seed: &std::path::Path,
    urls: &str,
    dir: &std::path::Path,
) -> Result<Vec<Host>> {
    let mut out = Vec::new();
    for i in 0..n {
        let port = format!("ispfbf{i}");
        let _ = sh(&["ip", "link", "del", &port]);
        must(&[
            "ip",
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            &format!("ispfbg{i}"),
        ]);
        must(&["ip", "link", "set", &port, "up"]);
        let (run, state, pins) = (
            dir.join(format!("run{i}")),
            dir.join(format!("state{i}")),
            format!("/sys/fs/bpf/ispf-bench-fleet{i}"),
        );
        let _ = Command::new(ispf)
            .args(["detach", "--pin-dir", &pins, "--run-dir"])
            .arg(&run)
            .output();
        let _ = std::fs::remove_dir_all(&state);
        let child = Command::new(ispf)
            .arg("run")
            .arg("--policy")
            .arg(seed)
            .args([
                "--iface",
                &port,
                "--pin-dir",
                &pins,
                "--etcd",
                urls,
                "--site",
                SITE,
            ])
            .args([
                "--fleet-host",
                &format!("bench-{i}"),
                "--metrics-addr",
                &format!("127.0.0.1:{}", 19600 + i),
            ])
            .arg("--run-dir")
            .arg(&run)
            .arg("--state-dir")
            .arg(&state)
            .stderr(std::fs::File::create(dir.join(format!("host{i}.log")))?)
            .spawn()?;
        out.push(Host {
            child,
            run,
            pins,
            port,
        });
    }
    Ok(out)
}

fn down(ispf: &std::path::Path, hosts: Vec<Host>) {
    for mut h in hosts {
        let _ = h.child.kill();
        let _ = h.child.wait();
        let _ = Command::new(ispf)
            .args(["detach", "--pin-dir", &h.pins, "--run-dir"])
            .arg(&h.run)
            .output();
        let _ = sh(&["ip", "link", "del", &h.port]);
    }
}

fn sha_of(h: &Host) -> Option<String> {
    match control::request(&h.run, &Request::Status, Duration::from_secs(5)).ok()? {
        Response::Status(s) => Some(s.policy_sha256),
        _ => None,
    }
}

/// Times `pushes` pushes to `n` hosts of policies with `devices` devices.
fn converge(
    ispf: &std::path::Path,
    n: usize,
    devices: usize,
    pushes: usize,
    tag: &str,
) -> Result<Vec<f64>> {
    let dir = std::env::temp_dir().join(format!("ispf-bench-fleet-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let base = serde_json::to_value(&corpus::synthetic_policy(devices, 8, 20)?.doc)?;
    let variant = |k: usize| -> Result<(PathBuf, String)> {
        let mut doc = base.clone();
        let segs: Vec<String> = doc["segments"]
            .as_array()
            .context("segments")?
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        doc["rules"].as_array_mut().context("rules")?.push(json!({
            "from": segs[0], "to": segs[1], "proto": "tcp", "ports": [40000 + k as u16], "action": "allow"
        }));
        let path = dir.join(format!("policy{}.json", k % 2));
        let bytes = serde_json::to_vec(&doc)?;
        std::fs::write(&path, &bytes)?;
        Ok((path, hex(&sha256(&bytes))))
    };
    let etcd = Etcd::start(&format!("bf{tag}"), 1, 23990);
    let urls = etcd.urls();
    let (seed, _) = variant(0)?;
    let hosts = hosts_up(ispf, n, &seed, &urls, &dir)?;
    let measured = (|| -> Result<Vec<f64>> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !hosts.iter().all(|h| sha_of(h).is_some()) {
            if Instant::now() > deadline {
                bail!("the hosts did not start: see {}", dir.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut times = Vec::new();
        for k in 1..=pushes {
            let (file, want) = variant(k)?;
            let t = Instant::now();
            let out = Command::new(ispf)
                .args(["fleet", "push"])
                .arg(&file)
                .env("ISPF_ETCD", &urls)
                .env("ISPF_SITE", SITE)
                .output()?;
            if !out.status.success() {
                bail!("fleet push: {}", String::from_utf8_lossy(&out.stderr));
            }
            let limit = Instant::now() + Duration::from_secs(120);
            while !hosts
                .iter()
                .all(|h| sha_of(h).as_deref() == Some(want.as_str()))
            {
                if Instant::now() > limit {
                    bail!("push {k} did not converge on {n} hosts");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(times)
    })();
    down(ispf, hosts);
    drop(etcd);
    measured
}

pub fn fleet(b: &mut Bench) -> Result<()> {
    let ispf = release_ispf()?;
    let quick = b.cfg.runs < 5;
    let pushes = if quick { 3 } else { 20 };
    let mut growth = serde_json::Map::new();
    let mut ten = f64::NAN;
    for n in if quick { vec![1, 3] } else { vec![1, 3, 10] } {
        let t = converge(&ispf, n, 1000, pushes, &format!("h{n}"))?;
        let m = median(t.clone());
        eprintln!("fleet: push -> {n} hosts enforcing (1k devices): median {m:.0} ms");
        if n == 10 {
            ten = m;
        }
        growth.insert(format!("hosts_{n}_devices_1k_ms"), Value::from(t));
    }
    let big_devices = if quick { 1000 } else { 100_000 };
    let t = converge(&ispf, 3, big_devices, if quick { 2 } else { 5 }, "big")?;
    let big = median(t.clone());
    eprintln!("fleet: push -> 3 hosts enforcing ({big_devices} devices): median {big:.0} ms");
    growth.insert(format!("hosts_3_devices_{big_devices}_ms"), Value::from(t));
    b.put("ms_fleet_converge_10_hosts", ten);
    b.put(
        "ms_fleet_converge_3_hosts_100k",
        if quick { f64::NAN } else { big },
    );
    b.results.insert("fleet".into(), Value::Object(growth));
    Ok(())
}
