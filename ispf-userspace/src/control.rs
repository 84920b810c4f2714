//! The control socket: a Unix socket under the run directory, mode 0600,
//! root only; one JSON request and one JSON response per line. Nothing
//! listens on a network port for control.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    decisions::{Decision, DecisionRequest},
    events::EventFilter,
    inventory::{
        query::{DeviceFilter, DeviceRow},
        store::TimelineEntry,
    },
    policy::diff::PolicyDiff,
};

pub const DEFAULT_RUN_DIR: &str = "/run/ispf";
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/ispf";
pub const SOCKET_NAME: &str = "ispf.sock";

pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SOCKET_NAME)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Reload {
        /// A new policy file; the running one when absent.
        policy: Option<PathBuf>,
        dry_run: bool,
    },
    Detach,
    /// Stream matching flow events as JSON lines until the client leaves.
    Events {
        filter: EventFilter,
    },
    /// Counters by segment pair, verdict and reason (for `ispf top`).
    Counters,
    /// The inventory: a [`Response::Listing`] line, then one
    /// [`DeviceRow`] per line.
    Devices {
        filter: DeviceFilter,
    },
    /// One device and its timeline.
    Device {
        mac: String,
    },
    /// Admit, quarantine or release a device. `by` names who asks (else
    /// the user behind the socket).
    Decide {
        op: DecisionRequest,
        #[serde(default)]
        by: Option<String>,
    },
    /// Admitted devices as policy `devices` entries.
    ExportDevices,
    /// Threat feeds: sizes, last refresh, errors, hits.
    Feeds,
    /// Alerts raised at or after `since` (unix seconds), newest first.
    Alerts {
        #[serde(default)]
        since: i64,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// A device's learned east-west baseline.
    Baseline {
        mac: String,
    },
    /// Identity: the role sessions open now.
    Sessions,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CounterRow {
    pub src_segment: String,
    pub dst_segment: String,
    pub verdict: String,
    pub reason: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InterfaceStatus {
    pub name: String,
    /// `native` or `generic`.
    pub mode: String,
    /// What the kernel says: the program is attached to the interface that
    /// carries this name now (false while the port is gone).
    #[serde(default)]
    pub attached: bool,
    /// The interface's index (0: no such interface now).
    #[serde(default)]
    pub ifindex: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapStatus {
    pub name: String,
    pub entries: usize,
    pub capacity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub policy_path: PathBuf,
    /// SHA-256 of the enforced policy file's bytes.
    pub policy_sha256: String,
    pub generation: u32,
    /// RFC 3339 time the enforced policy was applied.
    pub applied_at: String,
    pub adopted: bool,
    pub pin_dir: PathBuf,
    pub interfaces: Vec<InterfaceStatus>,
    pub maps: Vec<MapStatus>,
    pub packets_passed: u64,
    pub packets_dropped: u64,
    /// Packets per verdict reason.
    pub by_reason: Vec<(String, u64)>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// What the controller is applying right now, if anything.
    #[serde(default)]
    pub busy: Option<String>,
    /// SHA-256 of what is enforced: the file with the runtime decisions.
    #[serde(default)]
    pub enforced_sha256: String,
    /// Runtime decisions that hold now.
    #[serde(default)]
    pub decisions: usize,
    #[serde(default)]
    pub inventory: Option<InventoryStatus>,
    /// On a host that follows a fleet site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// A fleet host's view of its site.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetStatus {
    pub site: String,
    /// Following the site in etcd now.
    pub connected: bool,
    /// The site's revision enforced here, and the newest seen in etcd.
    pub revision: i64,
    pub latest: i64,
    /// Unix seconds of the last read or watch event (0: never).
    pub last_sync: i64,
    /// What is wrong now (a refused revision or decision key, one enforced
    /// here otherwise than written, etcd unreachable).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryStatus {
    pub database: PathBuf,
    /// Why it cannot be used now, if it cannot (enforcement is unaffected).
    pub error: Option<String>,
    pub devices: u64,
    pub sightings: u64,
    /// New devices not recorded: the cap on unknown devices was reached.
    pub overflow: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadReport {
    pub policy_path: PathBuf,
    pub diff: PolicyDiff,
    pub applied: bool,
    pub generation: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(Status),
    Reload(ReloadReport),
    Detached,
    Counters {
        rows: Vec<CounterRow>,
    },
    /// The first line of an events stream; event lines follow.
    Subscribed,
    /// The first line of a device listing; `count` lines follow.
    Listing {
        count: usize,
    },
    Device {
        device: Box<DeviceRow>,
        timeline: Vec<TimelineEntry>,
    },
    /// A decision applied (or a release).
    Decided {
        message: String,
        generation: u32,
        decision: Option<Decision>,
    },
    Exported {
        devices: Vec<serde_json::Value>,
    },
    Feeds {
        feeds: Vec<crate::feeds::FeedStatus>,
    },
    Alerts {
        alerts: Vec<crate::detect::store::Alert>,
    },
    Baseline {
        mac: String,
        /// (destination segment, protocol, port, learned at RFC 3339)
        services: Vec<(String, String, u16, String)>,
    },
    Sessions {
        sessions: Vec<crate::identity::Session>,
        /// Where accounting is received (`Ok`), why not (`Err`), or
        /// nothing (no `identity` section).
        listening: Option<Result<String, String>>,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("permission denied on {}: the control socket is root's only; run this command with sudo", path.display())]
    Permission { path: PathBuf },
    #[error("the controller did not answer within {}s on {}; it may be busy applying a large reload, which it will finish: `ispf status` shows what it is doing", timeout.as_secs(), path.display())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("no ispf controller is listening on {}: {source}; start one with `ispf run`", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the controller on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the controller sent an unreadable answer: {0}")]
    Protocol(String),
    /// The controller understood and said no (a segment that does not
    /// exist, an inventory it cannot read): its words, as they are.
    #[error("{0}")]
    Refused(String),
}

/// Connects, sends `req` as one line and reads the first answer line;
/// returns the answer and the stream, positioned after it.
fn exchange(
    run_dir: &Path,
    req: &Request,
    timeout: Option<Duration>,
) -> Result<(Response, BufReader<UnixStream>), ControlError> {
    let path = socket_path(run_dir);
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let mut s = UnixStream::connect(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            ControlError::Permission { path: path.clone() }
        } else {
            ControlError::Connect {
                path: path.clone(),
                source,
            }
        }
    })?;
    s.set_read_timeout(timeout).map_err(io)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let mut line = serde_json::to_string(req).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(io)?;
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer).map_err(|source| {
        if matches!(
            source.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            ControlError::Timeout {
                path: path.clone(),
                timeout: timeout.unwrap_or_default(),
            }
        } else {
            io(source)
        }
    })?;
    if answer.is_empty() {
        return Err(ControlError::Protocol(
            "the controller closed the connection without answering".into(),
        ));
    }
    let resp = serde_json::from_str(&answer)
        .map_err(|e| ControlError::Protocol(format!("{e}: {answer:?}")))?;
    Ok((resp, r))
}

/// Sends one request and waits for its answer.
pub fn request(run_dir: &Path, req: &Request, timeout: Duration) -> Result<Response, ControlError> {
    exchange(run_dir, req, Some(timeout)).map(|(resp, _)| resp)
}

/// Asks for the device listing; returns how many lines follow and the
/// reader positioned before them.
pub fn devices(
    run_dir: &Path,
    filter: DeviceFilter,
    timeout: Duration,
) -> Result<(usize, BufReader<UnixStream>), ControlError> {
    match exchange(run_dir, &Request::Devices { filter }, Some(timeout))? {
        (Response::Listing { count }, r) => Ok((count, r)),
        (Response::Error { message }, _) => Err(ControlError::Refused(message)),
        (other, _) => Err(ControlError::Protocol(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

/// Opens an events stream; returns the reader positioned after the
/// acknowledgement, yielding one JSON event per line (no timeout: events
/// may be rare).
pub fn subscribe(
    run_dir: &Path,
    filter: EventFilter,
) -> Result<BufReader<UnixStream>, ControlError> {
    match exchange(run_dir, &Request::Events { filter }, None)? {
        (Response::Subscribed, r) => Ok(r),
        (Response::Error { message }, _) => Err(ControlError::Refused(message)),
        (other, _) => Err(ControlError::Protocol(format!(
            "unexpected answer {other:?}"
        ))),
    }
}
