//! Fleet operation through etcd: every ispf host of a site enforces the
//! same policy revision and the same runtime decisions. The policy and the
//! decisions live under the site's prefix (`keys`); each host watches it
//! (`sync`), applies a new revision exactly like `ispf reload` and the
//! decision set as one generation, and reports its status under a lease.
//! Decisions made on a host are written to etcd first (`writer`) and
//! applied when the watch delivers them, so all hosts converge.
//!
//! Owns: the etcd connection and the fleet's keys. May call: the engine
//! through the callbacks it is given. Never writes maps. An etcd outage
//! changes nothing that is enforced: the last good revision is on disk.

pub mod client;
pub mod keys;
mod sync;
pub mod writer;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicI64},
        Arc, Mutex,
    },
};

use crate::decisions::Decision;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("etcd unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Refused(String),
}

/// How to reach the site's etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub endpoints: Vec<String>,
    pub site: String,
    /// This host's name in the site's status keys (default: the system's).
    pub host: String,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

impl Options {
    pub fn check(&self) -> Result<(), FleetError> {
        if self.endpoints.is_empty() {
            return Err(FleetError::Config("--etcd needs at least one URL".into()));
        }
        if !keys::valid_site(&self.site) {
            return Err(FleetError::Config(format!(
                "site `{}`: use 1-64 letters, digits, `-`, `_` or `.`",
                self.site
            )));
        }
        if !keys::valid_site(&self.host) {
            return Err(FleetError::Config(format!(
                "host name `{}`: use 1-64 letters, digits, `-`, `_` or `.` (--fleet-host)",
                self.host
            )));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(FleetError::Config(
                "--etcd-cert and --etcd-key go together".into(),
            ));
        }
        Ok(())
    }
}

/// The last good revision, kept beside the inventory.
pub const POLICY_FILE: &str = "fleet-policy.json";
pub const REVISION_FILE: &str = "fleet-revision";
/// A revision on its way to the engine.
pub const CANDIDATE_FILE: &str = "fleet-candidate.json";

#[derive(Default)]
pub struct Facts {
    pub connected: AtomicBool,
    /// The revision this host enforces (0: none from etcd yet).
    pub revision: AtomicI64,
    /// The newest revision etcd holds, as last seen.
    pub latest: AtomicI64,
    /// Unix seconds of the last complete read or watch event.
    pub last_sync: AtomicI64,
    pub last_error: Mutex<Option<String>>,
}

impl Facts {
    /// What `ispf status` says of the fleet.
    pub fn status(&self, site: &str) -> crate::control::FleetStatus {
        use std::sync::atomic::Ordering::Relaxed;
        crate::control::FleetStatus {
            site: site.to_owned(),
            connected: self.connected.load(Relaxed),
            revision: self.revision.load(Relaxed),
            latest: self.latest.load(Relaxed),
            last_sync: self.last_sync.load(Relaxed),
            error: self.error(),
        }
    }

    pub fn error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|x| x.into_inner()) = e;
    }
}

/// Applies a policy file like `ispf reload` (waits for the outcome).
pub type ApplyPolicy = Box<dyn Fn(PathBuf) -> Result<(), String> + Send>;
/// Makes these decisions the ones enforced (one generation); answers why
/// any of them was refused, or is enforced here otherwise than written.
pub type ApplyDecisions = Box<dyn Fn(Vec<Decision>) -> Result<Vec<String>, String> + Send>;
/// What the host reports: generation, policy hash, interfaces, health.
pub type Report = Box<dyn Fn() -> (u32, String, Vec<String>, String) + Send>;
/// Whether the host changed its own copy of the site's decisions since
/// last asked (a quarantine narrowed between deliveries): the site's set
/// is then applied again, so that what the status says of it is current.
pub type Reapply = Box<dyn Fn() -> bool + Send>;

pub struct Fleet {
    pub facts: Arc<Facts>,
    /// The site followed.
    pub site: String,
    stop: Arc<AtomicBool>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

pub struct Hooks {
    pub policy: ApplyPolicy,
    pub decisions: ApplyDecisions,
    pub report: Report,
    pub reapply: Reapply,
}

impl Fleet {
    /// Starts following the site. `state_dir` keeps the last good
    /// revision; `seed` is pushed when the site has no policy yet.
    pub fn start(
        opts: Options,
        state_dir: PathBuf,
        seed: Option<Vec<u8>>,
        hooks: Hooks,
    ) -> std::io::Result<Self> {
        let facts = Arc::new(Facts::default());
        facts.revision.store(
            applied_revision(&state_dir),
            std::sync::atomic::Ordering::Relaxed,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (facts.clone(), stop.clone());
        let site = opts.site.clone();
        std::thread::Builder::new()
            .name("ispf-fleet".into())
            .spawn(move || sync::run(opts, state_dir, seed, hooks, f, s))?;
        Ok(Self { facts, site, stop })
    }
}

/// The revision the last good policy on disk came from (0: none).
pub fn applied_revision(state_dir: &std::path::Path) -> i64 {
    std::fs::read_to_string(state_dir.join(REVISION_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// A host name for the status key.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
