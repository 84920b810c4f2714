//! Helpers for the inventory and decision tests: reading `ispf devices
//! --json` until a condition holds (and saying how long it took), and a TCP
//! stream that reports, packet by packet, whether its flow still passes.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::controller::Ctl;

/// `ispf devices --json`, one value per device.
pub fn devices(ctl: &Ctl) -> Vec<Value> {
    ctl.json_lines(&["devices", "--json"])
}

pub fn device<'a>(list: &'a [Value], mac: &str) -> Option<&'a Value> {
    list.iter().find(|d| d["mac"] == mac)
}

/// Polls `ispf devices --json` until `ok` holds; returns how long it took.
/// Panics with the last listing after `within`.
pub fn wait_devices(
    ctl: &Ctl,
    within: Duration,
    what: &str,
    ok: impl Fn(&[Value]) -> bool,
) -> Duration {
    let t = Instant::now();
    loop {
        let list = devices(ctl);
        if ok(&list) {
            return t.elapsed();
        }
        if t.elapsed() > within {
            panic!(
                "{what}: not within {within:?}; `ispf devices --json` says:\n{}",
                list.iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        sleep(Duration::from_millis(50));
    }
}

/// `ispf device MAC --json`: the device and its timeline.
pub fn timeline(ctl: &Ctl, mac: &str) -> Vec<Value> {
    let out = ctl.cli(&["device", mac, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["timeline"].as_array().cloned().unwrap_or_default()
}

const ECHO_SERVER: &str = r#"
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
print("ready", flush=True)
def serve(c):
    while True:
        d = c.recv(100)
        if not d: return
        c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Sends one byte every 50 ms and prints `ok` for each echo, `stall` while
/// none comes back within 300 ms (the connection stays; TCP retransmits).
const STREAM_CLIENT: &str = r#"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
c.settimeout(0.3)
print("connected", flush=True)
while True:
    try:
        c.sendall(b"x")
        c.recv(100)
        print("ok", flush=True)
    except socket.timeout:
        print("stall", flush=True)
    except OSError as e:
        print("dead", e, flush=True); break
    time.sleep(0.05)
"#;

/// A TCP echo server in `ns`, killed when dropped.
pub struct Echo(Child);

impl Echo {
    pub fn start(ns: &str, port: u16) -> Echo {
        let mut child = crate::programs::command("ip")
            .args([
                "netns",
                "exec",
                ns,
                "python3",
                "-u",
                "-c",
                ECHO_SERVER,
                &port.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Echo(child)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One established TCP flow, its every round trip recorded.
pub struct Stream {
    child: Child,
    log: Arc<Mutex<Vec<(Instant, bool)>>>,
}

impl Stream {
    pub fn start(ns: &str, ip: &str, port: u16) -> Stream {
        let mut child = crate::programs::command("ip")
            .args([
                "netns",
                "exec",
                ns,
                "python3",
                "-u",
                "-c",
                STREAM_CLIENT,
                ip,
                &port.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "connected", "stream {ns} -> {ip}:{port}");
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { return };
                l.lock().unwrap().push((Instant::now(), line == "ok"));
            }
        });
        Stream { child, log }
    }

    /// Round trips since `t`: (answered, stalled).
    pub fn since(&self, t: Instant) -> (usize, usize) {
        let log = self.log.lock().unwrap();
        let ok = log.iter().filter(|(at, ok)| *at >= t && *ok).count();
        let stalled = log.iter().filter(|(at, ok)| *at >= t && !*ok).count();
        (ok, stalled)
    }

    /// Waits until the last `n` round trips all passed (`true`) or all
    /// stalled (`false`); returns how long that took.
    pub fn wait_state(&self, passing: bool, n: usize, within: Duration) -> Duration {
        let t = Instant::now();
        loop {
            {
                let log = self.log.lock().unwrap();
                let recent: Vec<bool> =
                    log.iter().filter(|(at, _)| *at >= t).map(|x| x.1).collect();
                if recent.len() >= n && recent[recent.len() - n..].iter().all(|ok| *ok == passing) {
                    return t.elapsed();
                }
            }
            assert!(
                t.elapsed() < within,
                "the flow did not become {} within {within:?}",
                if passing { "passing" } else { "blocked" }
            );
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
