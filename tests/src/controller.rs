//! A controller under test: `ispf run` as a child on a care unit of
//! network namespaces, with its own pin and run directories, killed and
//! detached when dropped so no test leaves enforcement behind.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use ispf::control::{self, Request, Response};

use crate::{care_unit::*, ispf_bin, netns::*};

pub struct Paths {
    pub pin: PathBuf,
    pub run: PathBuf,
    /// The inventory database and decisions: each test its own, empty.
    pub state: PathBuf,
}

pub fn paths(tag: &str) -> Paths {
    let p = Paths {
        pin: PathBuf::from(format!("/sys/fs/bpf/ispf-test-{tag}")),
        run: PathBuf::from(format!("/tmp/ispf-test-run-{tag}")),
        state: PathBuf::from(format!("/tmp/ispf-test-state-{tag}")),
    };
    let _ = std::fs::remove_dir_all(&p.state);
    let _ = Command::new(ispf_bin())
        .args(["detach", "--pin-dir"])
        .arg(&p.pin)
        .arg("--run-dir")
        .arg(&p.run)
        .output();
    p
}

/// Appends `run` and its arguments for a controller on `paths`; returns
/// where it will serve metrics: `extra`'s `--metrics-addr`, else a port
/// free now, so another ispf on the machine serving the default port does
/// not stop the test's.
pub fn run_args(
    c: &mut Command,
    paths: &Paths,
    policy: &Path,
    ifaces: &[&str],
    extra: &[&str],
) -> String {
    c.arg("run")
        .arg("--policy")
        .arg(policy)
        .arg("--pin-dir")
        .arg(&paths.pin)
        .arg("--run-dir")
        .arg(&paths.run)
        .arg("--state-dir")
        .arg(&paths.state);
    for i in ifaces {
        c.args(["--iface", i]);
    }
    c.args(extra);
    let named =
        extra
            .iter()
            .enumerate()
            .find_map(|(i, a)| match a.strip_prefix("--metrics-addr") {
                Some("") => Some(
                    extra
                        .get(i + 1)
                        .expect("--metrics-addr needs a value")
                        .to_string(),
                ),
                Some(v) => v.strip_prefix('=').map(str::to_owned),
                None => None,
            });
    match named {
        Some(addr) => addr,
        None => {
            let free = free_metrics_port();
            c.arg("--metrics-addr").arg(&free);
            free
        }
    }
}

/// A loopback port free now, below the kernel's range for outgoing
/// connections (32768 up by default), so no connection made while the
/// controller loads its program takes it first; each call moves on, so
/// two controllers of one test do not draw the same.
fn free_metrics_port() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    for _ in 0..8_000 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let addr = format!("127.0.0.1:{}", 24_000 + (std::process::id() + n) % 8_000);
        if std::net::TcpListener::bind(&addr).is_ok() {
            return addr;
        }
    }
    panic!("no free loopback port in 24000-31999 for the controller's metrics")
}

/// `ispf run` as a child; killed (not detached) on drop, then detached so
/// no test leaves enforcement behind.
pub struct Ctl {
    pub child: Option<Child>,
    pub paths: Paths,
    /// The `ispf` that runs (another version's, in upgrade tests).
    pub bin: PathBuf,
    /// `bin` is another version of ispf than this workspace's.
    foreign: bool,
    /// Where it serves metrics (see [`run_args`]).
    pub metrics: String,
}

impl Ctl {
    pub fn start(paths: Paths, policy: &Path, ifaces: &[&str]) -> Ctl {
        Self::start_with(paths, policy, ifaces, &[])
    }

    /// As [`Self::start`], with more `ispf run` arguments.
    pub fn start_with(paths: Paths, policy: &Path, ifaces: &[&str], extra: &[&str]) -> Ctl {
        let bin = ispf_bin();
        Self::spawn(Command::new(&bin), bin, false, paths, policy, ifaces, extra)
    }

    /// As [`Self::start_with`], with only the capabilities the packaged
    /// service has (`CapabilityBoundingSet` of `ispf.service`).
    pub fn start_as_service(paths: Paths, policy: &Path, ifaces: &[&str], extra: &[&str]) -> Ctl {
        let bin = ispf_bin();
        let mut c = crate::programs::command("setpriv");
        c.args(["--bounding-set=-all,+bpf,+net_admin,+perfmon", "--"])
            .arg(&bin);
        Self::spawn(c, bin, false, paths, policy, ifaces, extra)
    }

    /// As [`Self::start_with`], running `bin`: another version of ispf.
    pub fn start_bin(
        bin: &Path,
        paths: Paths,
        policy: &Path,
        ifaces: &[&str],
        extra: &[&str],
    ) -> Ctl {
        let c = Command::new(bin);
        Self::spawn(c, bin.to_owned(), true, paths, policy, ifaces, extra)
    }

    /// Runs `c` (`bin`, or a command that runs it) with `run` and its
    /// arguments; `foreign`: `bin` is another version of ispf.
    fn spawn(
        mut c: Command,
        bin: PathBuf,
        foreign: bool,
        paths: Paths,
        policy: &Path,
        ifaces: &[&str],
        extra: &[&str],
    ) -> Ctl {
        let metrics = run_args(&mut c, &paths, policy, ifaces, extra);
        let child = c.stderr(Stdio::piped()).spawn().unwrap();
        let mut ctl = Ctl {
            child: Some(child),
            paths,
            bin,
            foreign,
            metrics,
        };
        ctl.wait_ready();
        ctl
    }

    /// Waits until the controller answers; a controller that exits or
    /// never answers fails the test with what it printed.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.answers() {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("controller exited ({status}):\n{}", self.stderr_text());
                }
            }
            sleep(Duration::from_millis(50));
        }
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        panic!(
            "controller did not come up within 20 s:\n{}",
            self.stderr_text()
        );
    }

    /// Whether the controller answers a status request (through its own
    /// client when it is another version, whose answer this one may not
    /// parse).
    fn answers(&self) -> bool {
        if !self.foreign {
            return control::request(&self.paths.run, &Request::Status, Duration::from_secs(5))
                .is_ok();
        }
        Command::new(&self.bin)
            .args(["status", "--run-dir"])
            .arg(&self.paths.run)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// What an exited controller wrote to stderr.
    fn stderr_text(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(e) = self.child.as_mut().and_then(|c| c.stderr.as_mut()) {
            let _ = e.read_to_string(&mut text);
        }
        text
    }

    pub fn status(&self) -> control::Status {
        match control::request(&self.paths.run, &Request::Status, Duration::from_secs(10)).unwrap()
        {
            Response::Status(s) => s,
            other => panic!("{other:?}"),
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .arg("--run-dir")
            .arg(&self.paths.run)
            .output()
            .unwrap()
    }

    /// A listing command's `--json` output, one value per line; the
    /// command must succeed.
    pub fn json_lines(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "ispf {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    pub fn kill9(&mut self) -> String {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// SIGTERM, as systemd stops a service: the controller must exit
    /// (leaving enforcement pinned) within `within`; returns its stderr.
    pub fn terminate(&mut self, within: Duration) -> String {
        let mut child = self.child.take().unwrap();
        // SAFETY: signals our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the controller did not exit within {within:?} of SIGTERM");
            }
            sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Forgets an exited controller without detaching (as its drop
    /// would): its pins stay, for the next one to adopt.
    pub fn leave_enforcing(mut self) -> Paths {
        let paths = Paths {
            pin: self.paths.pin.clone(),
            run: self.paths.run.clone(),
            state: self.paths.state.clone(),
        };
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::mem::forget(self);
        paths
    }

    pub fn stderr_after_exit(&mut self) -> String {
        let child = self.child.take().unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(ispf_bin())
            .args(["detach", "--pin-dir"])
            .arg(&self.paths.pin)
            .arg("--run-dir")
            .arg(&self.paths.run)
            .output();
    }
}

/// A care unit on bridge `br`: pump, PIS and laptop namespaces.
pub fn unit(tag: &str) -> (Topology, [String; 3]) {
    let mut t = Topology::default();
    let br = format!("ispfb{tag}");
    t.bridge(&br);
    let ports = [
        format!("ip{tag}pump"),
        format!("ip{tag}pis"),
        format!("ip{tag}lap"),
    ];
    t.host(
        &format!("ispf-{tag}-pump"),
        &ports[0],
        &br,
        PUMP1,
        &["10.10.0.11/8"],
    );
    t.host(
        &format!("ispf-{tag}-pis"),
        &ports[1],
        &br,
        PIS,
        &["10.50.0.10/8"],
    );
    t.host(
        &format!("ispf-{tag}-lap"),
        &ports[2],
        &br,
        LAPTOP,
        &["10.99.0.7/8"],
    );
    (t, ports)
}

pub fn write_policy(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("ispf-ctl-{name}.json"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Policy A: the example plus NTP for quarantined laptops. Policy B: the
/// example as shipped. Pump -> PIS HL7 and ping are allowed by both.
pub fn policies() -> (PathBuf, PathBuf) {
    let base = std::fs::read_to_string(policy_path()).unwrap();
    let a = base.replace(
        r#"{ "id": "guest-out""#,
        r#"{ "id": "lab-ntp", "from": "quarantine", "to": "pis-servers", "proto": "udp", "ports": [123], "action": "allow" },
    { "id": "guest-out""#,
    );
    assert_ne!(a, base);
    (write_policy("a", &a), write_policy("b", &base))
}

pub fn ping(ns: &str, ip: &str, count: u32, interval: &str) -> Output {
    in_ns(
        ns,
        &[
            "ping",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            interval,
            "-W",
            "1",
            ip,
        ],
    )
}

pub fn loss(out: &Output) -> String {
    let s = String::from_utf8_lossy(&out.stdout);
    s.lines()
        .find(|l| l.contains("packet loss"))
        .unwrap_or("no ping summary")
        .to_owned()
}

/// Whether `iface` has a program at XDP or at TC ingress (TCX).
pub fn enforced(iface: &str) -> bool {
    use aya::programs::{tc::TcAttachType, SchedClassifier};
    let tcx = SchedClassifier::query_tcx(iface, TcAttachType::Ingress)
        .map(|(_, progs)| !progs.is_empty())
        .unwrap_or(false);
    tcx || ispf::system::attached_xdp(iface).is_some()
}

pub use crate::http::scrape;
