//! `ispf run`: load (or adopt) the datapath, enforce on the named
//! interfaces, and serve the control socket until stopped.
//!
//! Everything the kernel needs is pinned under the pin directory, so
//! enforcement does not depend on this process: killing it leaves the
//! program, links and maps in place, and the next `ispf run` adopts them
//! (same generation, connection state kept) instead of starting over.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context, Result};
use aya::programs::{links::FdLink, links::PinnedLink, XdpMode};
use ispf_common::{reason_name, VERDICT_PASS};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::{
    io::{unix::AsyncFd, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, UnixListener},
    signal::unix::{signal, SignalKind},
};

use crate::{
    control::{
        socket_path, CounterRow, InterfaceStatus, MapStatus, ReloadReport, Request, Response,
        Status,
    },
    datapath::{Datapath, MapSizes},
    events::{EventFilter, EventRecord},
    metrics::{self, ControllerFacts},
    policy::{compile::compile, diff::diff, Policy},
    system,
};

pub struct RunOptions {
    pub policy: PathBuf,
    pub interfaces: Vec<String>,
    pub pin_dir: PathBuf,
    pub run_dir: PathBuf,
    pub sizes: MapSizes,
    /// Where `/metrics` is served (plain HTTP).
    pub metrics_addr: std::net::SocketAddr,
    /// Serving metrics beyond loopback must be asked for explicitly.
    pub metrics_allow_remote: bool,
    /// Write every flow event as a JSON line here (`-` for stdout).
    pub events_out: Option<PathBuf>,
}

pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9469";

/// What survives a controller restart besides the pins: written to the run
/// directory (tmpfs) on every change.
#[derive(Serialize, Deserialize, Default)]
struct State {
    policy_path: PathBuf,
    policy_sha256: String,
    applied_at: String,
    interfaces: Vec<InterfaceStatus>,
    /// The enforced policy's segment ids: kept across reloads, so they are
    /// not the positions in the file (see `Policy::keep_ids`).
    #[serde(default)]
    segment_ids: std::collections::BTreeMap<String, u16>,
}

const APPLIED_POLICY: &str = "applied-policy.json";
const STATE: &str = "state.json";

struct Controller {
    dp: Datapath,
    policy: Policy,
    policy_path: PathBuf,
    policy_sha256: String,
    applied_at: String,
    adopted: bool,
    interfaces: Vec<InterfaceStatus>,
    pin_dir: PathBuf,
    run_dir: PathBuf,
    reloads_ok: u64,
    reloads_failed: u64,
    last_reload_unix: i64,
    last_reload_ok: bool,
    events_written: u64,
    events_slow_reader: u64,
    subscribers: Vec<(tokio::sync::mpsc::Sender<String>, EventFilter)>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("ispf: {msg}");
}

/// Attaches to one interface, natively where the driver can, generically
/// (with a warning that says so) where it cannot; pins the link.
fn attach(dp: &mut Datapath, iface: &str, pin_dir: &Path) -> Result<InterfaceStatus> {
    let prog = dp.program_mut();
    let (id, mode) = match prog.attach(iface, XdpMode::Driver) {
        Ok(id) => (id, "native"),
        Err(native) => {
            let id = prog.attach(iface, XdpMode::Skb).with_context(|| {
                format!("attaching to {iface} failed natively ({native}) and in generic mode")
            })?;
            log(format!(
                "warning: {iface}'s driver has no native XDP; attached in generic (skb) mode, which is slower"
            ));
            (id, "generic")
        }
    };
    let link = prog.take_link(id)?;
    let fd_link = FdLink::try_from(link).context("XDP link is not a bpf_link (kernel < 5.9?)")?;
    let path = pin_dir.join("links").join(iface);
    fd_link
        .pin(&path)
        .with_context(|| format!("pinning the link of {iface} at {}", path.display()))?;
    if system::strips_vlan_tags(iface) {
        log(format!(
            "warning: {iface} strips 802.1Q tags before XDP (rx-vlan-offload on), so VLAN-scoped identity cannot work there; turn it off with: ethtool -K {iface} rxvlan off"
        ));
    }
    Ok(InterfaceStatus {
        name: iface.to_owned(),
        mode: mode.to_owned(),
    })
}

/// Interfaces with a pinned ispf link.
fn pinned_links(pin_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(pin_dir.join("links"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Removes every ispf pin under `pin_dir` and the run-directory state: the
/// links go (so the program is detached from every interface), then the
/// program and maps, which the kernel frees once nothing holds them.
pub fn detach(pin_dir: &Path, run_dir: &Path) -> Result<Vec<String>> {
    let ifaces = pinned_links(pin_dir);
    for iface in &ifaces {
        let path = pin_dir.join("links").join(iface);
        let link = PinnedLink::from_pin(&path)
            .with_context(|| format!("opening pinned link {}", path.display()))?;
        drop(
            link.unpin()
                .with_context(|| format!("removing {}", path.display()))?,
        );
    }
    if pin_dir.exists() {
        fs::remove_dir_all(pin_dir)
            .with_context(|| format!("removing pins under {}", pin_dir.display()))?;
    }
    for f in [APPLIED_POLICY, STATE, crate::control::SOCKET_NAME] {
        let _ = fs::remove_file(run_dir.join(f));
    }
    Ok(ifaces)
}

impl Controller {
    fn start(opts: &RunOptions) -> Result<Self> {
        system::require_root()?;
        system::require_btf()?;
        system::ensure_bpffs(&opts.pin_dir)?;
        let bytes = fs::read(&opts.policy)
            .with_context(|| format!("cannot read policy {}", opts.policy.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        let policy = Policy::from_str(&text, &opts.policy)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&opts.run_dir)?;
        fs::set_permissions(&opts.run_dir, fs::Permissions::from_mode(0o700))?;

        if opts.pin_dir.join("prog").exists() {
            return Self::adopt(opts, policy, sha256(&bytes));
        }
        for iface in &opts.interfaces {
            system::check_interface(iface)?;
        }
        let mut dp = Datapath::load_pinned(opts.sizes, &opts.pin_dir)?;
        let started = (|| -> Result<Vec<InterfaceStatus>> {
            dp.apply(&compile(&policy))?;
            fs::create_dir_all(opts.pin_dir.join("links"))?;
            let mut attached = Vec::new();
            for iface in &opts.interfaces {
                attached.push(attach(&mut dp, iface, &opts.pin_dir)?);
            }
            Ok(attached)
        })();
        let interfaces = match started {
            Ok(i) => i,
            Err(e) => {
                // Nothing half-attached: unpin what this start created.
                drop(dp);
                let _ = detach(&opts.pin_dir, &opts.run_dir);
                return Err(e.context("nothing was attached"));
            }
        };
        let c = Self::new(
            opts,
            dp,
            policy,
            opts.policy.clone(),
            sha256(&bytes),
            now_rfc3339(),
            false,
            interfaces,
        );
        fs::write(opts.run_dir.join(APPLIED_POLICY), &bytes)?;
        c.save_state()?;
        log(format!(
            "enforcing {} (generation {}) on {}",
            c.policy_path.display(),
            c.dp.epoch(),
            c.interfaces
                .iter()
                .map(|i| format!("{} ({})", i.name, i.mode))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(c)
    }

    fn adopt(opts: &RunOptions, given: Policy, given_sha: String) -> Result<Self> {
        let mut dp = Datapath::adopt(&opts.pin_dir).context("adopting the pinned datapath")?;
        let state: State = fs::read(opts.run_dir.join(STATE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let applied = fs::read_to_string(opts.run_dir.join(APPLIED_POLICY)).ok();
        let (policy, policy_path, sha) = match applied {
            Some(text) => {
                let mut p = Policy::from_str(&text, &opts.run_dir.join(APPLIED_POLICY))?;
                // The ids the pinned maps hold (state of an older ispf has
                // none: it numbered by position).
                if !state.segment_ids.is_empty() {
                    p.keep_ids(&state.segment_ids);
                }
                (p, state.policy_path.clone(), sha256(text.as_bytes()))
            }
            None => {
                log("warning: the enforced policy's copy is missing from the run directory; assuming it is the given file");
                (given.clone(), opts.policy.clone(), given_sha.clone())
            }
        };
        if sha != given_sha {
            log(format!(
                "warning: {} differs from the enforced policy (generation {}); it stays enforced until `ispf reload` applies the file",
                opts.policy.display(),
                dp.epoch()
            ));
        }
        let mut interfaces = Vec::new();
        for iface in pinned_links(&opts.pin_dir) {
            let mode = state
                .interfaces
                .iter()
                .find(|i| i.name == iface)
                .map_or("unknown".to_owned(), |i| i.mode.clone());
            interfaces.push(InterfaceStatus { name: iface, mode });
        }
        for iface in &opts.interfaces {
            if !interfaces.iter().any(|i| &i.name == iface) {
                system::check_interface(iface)?;
                interfaces.push(attach(&mut dp, iface, &opts.pin_dir)?);
            }
        }
        let applied_at = if state.applied_at.is_empty() {
            now_rfc3339()
        } else {
            state.applied_at
        };
        let c = Self::new(
            opts,
            dp,
            policy,
            policy_path,
            sha,
            applied_at,
            true,
            interfaces,
        );
        c.save_state()?;
        log(format!(
            "adopted the pinned datapath at {}: generation {}, {} connections tracked, on {}",
            c.pin_dir.display(),
            c.dp.epoch(),
            c.dp.conntrack_len(),
            c.interfaces
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(c)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one per field that differs between a fresh start and an adoption"
    )]
    fn new(
        opts: &RunOptions,
        dp: Datapath,
        policy: Policy,
        policy_path: PathBuf,
        policy_sha256: String,
        applied_at: String,
        adopted: bool,
        interfaces: Vec<InterfaceStatus>,
    ) -> Self {
        Self {
            dp,
            policy,
            policy_path,
            policy_sha256,
            applied_at,
            adopted,
            interfaces,
            pin_dir: opts.pin_dir.clone(),
            run_dir: opts.run_dir.clone(),
            reloads_ok: 0,
            reloads_failed: 0,
            last_reload_unix: unix_now(),
            last_reload_ok: true,
            events_written: 0,
            events_slow_reader: 0,
            subscribers: Vec::new(),
        }
    }

    fn save_state(&self) -> Result<()> {
        let s = State {
            policy_path: self.policy_path.clone(),
            policy_sha256: self.policy_sha256.clone(),
            applied_at: self.applied_at.clone(),
            interfaces: self.interfaces.clone(),
            segment_ids: self.policy.segment_ids(),
        };
        fs::write(self.run_dir.join(STATE), serde_json::to_vec_pretty(&s)?)?;
        Ok(())
    }

    fn reload(&mut self, path: Option<PathBuf>, dry_run: bool) -> Response {
        let path = path.unwrap_or_else(|| self.policy_path.clone());
        let result = self.try_reload(&path, dry_run);
        if !dry_run {
            self.last_reload_unix = unix_now();
            self.last_reload_ok = result.is_ok();
        }
        match result {
            Ok(r) => {
                if r.applied {
                    self.reloads_ok += 1;
                    log(format!(
                        "applied {} as generation {}",
                        path.display(),
                        r.generation
                    ));
                }
                Response::Reload(r)
            }
            Err(e) => {
                self.reloads_failed += 1;
                log(format!("reload refused, enforcement unchanged: {e:#}"));
                Response::Error {
                    message: format!(
                        "{e:#}\nthe running policy (generation {}) stays enforced",
                        self.dp.epoch()
                    ),
                }
            }
        }
    }

    fn try_reload(&mut self, path: &Path, dry_run: bool) -> Result<ReloadReport> {
        let bytes =
            fs::read(path).with_context(|| format!("cannot read policy {}", path.display()))?;
        let mut new = Policy::from_str(&String::from_utf8_lossy(&bytes), path)?;
        let d = diff(&self.policy, &new);
        if dry_run {
            return Ok(ReloadReport {
                policy_path: path.to_owned(),
                diff: d,
                applied: false,
                generation: self.dp.epoch(),
            });
        }
        let generation = self.dp.replace_policy(&self.policy, &mut new)?;
        self.policy = new;
        self.policy_path = path.to_owned();
        self.policy_sha256 = sha256(&bytes);
        self.applied_at = now_rfc3339();
        fs::write(self.run_dir.join(APPLIED_POLICY), &bytes)?;
        self.save_state()?;
        Ok(ReloadReport {
            policy_path: path.to_owned(),
            diff: d,
            applied: true,
            generation,
        })
    }

    fn metrics(&self) -> String {
        let facts = ControllerFacts {
            policy: &self.policy,
            interfaces: &self.interfaces,
            generation: self.dp.epoch(),
            last_reload_unix: self.last_reload_unix,
            last_reload_ok: self.last_reload_ok,
            reloads_ok: self.reloads_ok,
            reloads_failed: self.reloads_failed,
            events_written: self.events_written,
            events_slow_reader: self.events_slow_reader,
        };
        metrics::render(&self.dp, &facts)
            .unwrap_or_else(|e| format!("# metrics unavailable: {e}\n"))
    }

    fn counter_rows(&self) -> Vec<CounterRow> {
        let mut rows =
            std::collections::BTreeMap::<(String, String, String, String), (u64, u64)>::new();
        for (k, v) in self.dp.counters() {
            let key = (
                self.policy.segment_name(k.src).to_owned(),
                self.policy.segment_name(k.dst).to_owned(),
                if k.verdict == VERDICT_PASS {
                    "pass"
                } else {
                    "drop"
                }
                .to_owned(),
                reason_name(k.reason).unwrap_or("unknown").to_owned(),
            );
            let e = rows.entry(key).or_default();
            e.0 += v.packets;
            e.1 += v.bytes;
        }
        rows.into_iter()
            .map(
                |((src_segment, dst_segment, verdict, reason), (packets, bytes))| CounterRow {
                    src_segment,
                    dst_segment,
                    verdict,
                    reason,
                    packets,
                    bytes,
                },
            )
            .collect()
    }

    /// Hands one datapath event to the events file and every subscriber
    /// whose filter matches. A subscriber that cannot keep up loses events
    /// (counted); the datapath is never slowed by it.
    fn deliver(&mut self, e: &ispf_common::Event, out: &mut Option<Box<dyn std::io::Write>>) {
        let rec = EventRecord::decode(e, &self.policy);
        let Ok(mut line) = serde_json::to_string(&rec) else {
            return;
        };
        line.push('\n');
        if let Some(w) = out.as_mut() {
            if w.write_all(line.as_bytes())
                .and_then(|()| w.flush())
                .is_ok()
            {
                self.events_written += 1;
            }
        }
        let mut lost = 0;
        self.subscribers.retain(|(tx, filter)| {
            if !filter.matches(&rec) {
                return !tx.is_closed();
            }
            match tx.try_send(line.clone()) {
                Ok(()) => true,
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    lost += 1;
                    true
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.events_slow_reader += lost;
    }

    fn status(&self) -> Status {
        let counters = self.dp.counters();
        let mut by_reason = std::collections::BTreeMap::<String, u64>::new();
        let (mut passed, mut dropped) = (0, 0);
        for (k, v) in &counters {
            *by_reason
                .entry(reason_name(k.reason).unwrap_or("unknown").to_owned())
                .or_default() += v.packets;
            if k.verdict == VERDICT_PASS {
                passed += v.packets;
            } else {
                dropped += v.packets;
            }
        }
        Status {
            policy_path: self.policy_path.clone(),
            policy_sha256: self.policy_sha256.clone(),
            generation: self.dp.epoch(),
            applied_at: self.applied_at.clone(),
            adopted: self.adopted,
            pin_dir: self.pin_dir.clone(),
            interfaces: self.interfaces.clone(),
            maps: self
                .dp
                .occupancy()
                .into_iter()
                .map(|(name, entries, capacity)| MapStatus {
                    name: name.to_owned(),
                    entries,
                    capacity,
                })
                .collect(),
            packets_passed: passed,
            packets_dropped: dropped,
            by_reason: by_reason.into_iter().collect(),
            reloads_ok: self.reloads_ok,
            reloads_failed: self.reloads_failed,
        }
    }
}

/// One response line. Encoding cannot be allowed to stop the controller,
/// so a failure becomes an error answer.
fn answer(resp: &Response) -> String {
    let mut out = serde_json::to_string(resp).unwrap_or_else(|e| {
        serde_json::to_string(&Response::Error {
            message: format!("cannot encode the answer: {e}"),
        })
        .unwrap_or_default()
    });
    out.push('\n');
    out
}

/// Runs the controller until SIGTERM/SIGINT (enforcement stays) or a
/// `detach` request (enforcement removed).
pub fn run(opts: RunOptions) -> Result<()> {
    if !opts.metrics_addr.ip().is_loopback() && !opts.metrics_allow_remote {
        bail!(
            "--metrics-addr {} is not a loopback address: anyone who can reach it could read the unit's traffic matrix; pass --metrics-allow-remote to serve it anyway",
            opts.metrics_addr
        );
    }
    let sock = socket_path(&opts.run_dir);
    if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        bail!(
            "another ispf controller is already running (it answers on {}); stop it first",
            sock.display()
        );
    }
    let mut events_out: Option<Box<dyn std::io::Write>> = match &opts.events_out {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
        Some(p) => Some(Box::new(
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening events file {}", p.display()))?,
        )),
    };
    // Bound before anything is attached, so a busy port fails the start
    // cleanly instead of leaving enforcement behind without a controller.
    let metrics_std = std::net::TcpListener::bind(opts.metrics_addr).with_context(|| {
        format!(
            "serving metrics on {} (pick another with --metrics-addr)",
            opts.metrics_addr
        )
    })?;
    metrics_std.set_nonblocking(true)?;
    let mut c = Controller::start(&opts)?;
    let _ = fs::remove_file(&sock);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = UnixListener::bind(&sock).with_context(|| format!("binding {}", sock.display()))?;
        fs::set_permissions(&sock, fs::Permissions::from_mode(0o600))?;
        let metrics = TcpListener::from_std(metrics_std)?;
        log(format!("metrics on http://{}/metrics", metrics.local_addr().unwrap_or(opts.metrics_addr)));
        let mut ring = match c.dp.take_events() {
            // SAFETY: the ring buffer owns its map fd for as long as the
            // AsyncFd owns the ring buffer, and never swaps it.
            Some(rb) => Some(unsafe { AsyncFd::register(rb) }.map_err(|e| anyhow::anyhow!("polling the events ring buffer: {e}"))?),
            None => None,
        };
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut gc = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                conn = listener.accept() => {
                    let Ok((stream, _)) = conn else { continue };
                    let (read, mut write) = stream.into_split();
                    let mut line = String::new();
                    let read_ok = tokio::time::timeout(Duration::from_secs(5), BufReader::new(read).read_line(&mut line)).await;
                    if !matches!(read_ok, Ok(Ok(n)) if n > 0) {
                        continue;
                    }
                    let (resp, stop) = match serde_json::from_str::<Request>(&line) {
                        Err(e) => (Response::Error { message: format!("bad request: {e}") }, false),
                        Ok(Request::Status) => (Response::Status(c.status()), false),
                        Ok(Request::Counters) => (Response::Counters { rows: c.counter_rows() }, false),
                        Ok(Request::Reload { policy, dry_run }) => (c.reload(policy, dry_run), false),
                        Ok(Request::Events { filter }) => {
                            let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
                            let ack = answer(&Response::Subscribed);
                            if write.write_all(ack.as_bytes()).await.is_ok() {
                                tokio::spawn(async move {
                                    while let Some(line) = rx.recv().await {
                                        if write.write_all(line.as_bytes()).await.is_err() {
                                            break;
                                        }
                                    }
                                });
                                c.subscribers.push((tx, filter));
                            }
                            continue;
                        }
                        Ok(Request::Detach) => (Response::Detached, true),
                    };
                    if stop {
                        let (pin_dir, run_dir) = (c.pin_dir.clone(), c.run_dir.clone());
                        drop(ring.take());
                        drop(c);
                        let resp = match detach(&pin_dir, &run_dir) {
                            Ok(ifaces) => {
                                log(format!("detached from {}; enforcement removed", ifaces.join(", ")));
                                resp
                            }
                            Err(e) => Response::Error { message: format!("{e:#}") },
                        };
                        let _ = write.write_all(answer(&resp).as_bytes()).await;
                        return Ok(());
                    }
                    let _ = write.write_all(answer(&resp).as_bytes()).await;
                }
                scrape = metrics.accept() => {
                    let Ok((mut stream, _)) = scrape else { continue };
                    let mut buf = vec![0u8; 4096];
                    let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                        Ok(Ok(n)) => n,
                        _ => continue,
                    };
                    let req = String::from_utf8_lossy(&buf[..n]);
                    let path = req.split_whitespace().nth(1).unwrap_or("");
                    let (status, body) = if req.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
                        ("200 OK", c.metrics())
                    } else {
                        ("404 Not Found", "ispf serves /metrics only\n".to_owned())
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    // A scraper that goes away costs nothing but this write.
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                }
                ready = async { ring.as_mut().expect("guarded").readable_mut().await }, if ring.is_some() => {
                    let Ok(mut guard) = ready else { continue };
                    let mut batch = Vec::new();
                    {
                        let rb = guard.get_inner_mut();
                        while let Some(item) = rb.next() {
                            if item.len() >= std::mem::size_of::<ispf_common::Event>() {
                                // SAFETY: the datapath writes whole `Event`s; read unaligned.
                                batch.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<ispf_common::Event>()) });
                            }
                        }
                    }
                    guard.clear_ready();
                    for e in &batch {
                        c.deliver(e, &mut events_out);
                    }
                }
                _ = hup.recv() => {
                    log("SIGHUP: reloading the policy file");
                    let _ = c.reload(None, false);
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = gc.tick() => {
                    let timeout = c.policy.doc.defaults.timeouts.fragment;
                    c.dp.gc_fragments(timeout);
                }
            }
        }
        let _ = fs::remove_file(&sock);
        log(format!("stopped; enforcement continues from the pins under {} (`ispf detach` removes it)", c.pin_dir.display()));
        Ok::<(), anyhow::Error>(())
    })
}
