//! Identity-based clearance (the spec's "Identity-based clearance"): a
//! RADIUS accounting listener (`radius`) whose accepted packets open and
//! close role sessions (`session`), kept in the inventory database
//! (`store`) and enforced as role decisions through the engine, a burst at
//! a time in one generation.
//!
//! Owns: sessions. May call: the policy (read), the inventory database,
//! and the engine through the `Apply` callback it is given. Never writes
//! maps.

mod bind;
mod dups;
mod listener;
mod nas;
pub mod radius;
mod restart;
pub mod session;
mod session_id;
pub mod station;
pub mod store;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use crate::{decisions::DecisionRequest, inventory::View};
pub use session::Session;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("malformed RADIUS packet: {0}")]
    Malformed(String),
    #[error("cannot receive RADIUS accounting on {addr}: {source}; free the port or change identity.radius_accounting.listen")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("identity.radius_accounting.secret_file: {0}")]
    Secret(String),
}

/// Packet results, as counted by `ispf_radius_packets_total{result}`.
pub const RESULTS: [&str; 5] = [
    "accepted",
    "bad_authenticator",
    "unknown_client",
    "malformed",
    "duplicate",
];

#[derive(Default)]
pub struct Facts {
    pub packets: Mutex<BTreeMap<&'static str, u64>>,
    /// Accepted packets that changed nothing, by cause.
    pub ignored: Mutex<BTreeMap<&'static str, u64>>,
    /// The sessions open now (for `ispf sessions` and the metrics).
    pub sessions: Mutex<Vec<Session>>,
    /// Where accounting is received, or why not.
    pub listening: Mutex<Option<Result<String, String>>>,
}

impl Facts {
    pub fn count(&self, result: &'static str) {
        *self
            .packets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(result)
            .or_default() += 1;
    }

    pub fn ignore(&self, cause: &'static str) {
        *self
            .ignored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(cause)
            .or_default() += 1;
    }

    pub fn set_listening(&self, v: Option<Result<String, String>>) {
        *self.listening.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }

    pub fn sessions(&self) -> Vec<Session> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A role decision the controller ended by itself (a file that makes its
/// device life-critical), numbered: the listener forgets the session that
/// held it, and asks for those after the last it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedRole {
    pub seq: u64,
    pub mac: String,
    /// The decision's reason, which names its session.
    pub reason: String,
}

/// The role decisions ended after a sequence number.
pub type Ended = Arc<dyn Fn(u64) -> Vec<EndedRole> + Send + Sync>;

/// Applies role decisions in one generation; one outcome per request.
pub type Apply = Box<dyn Fn(Vec<DecisionRequest>) -> Vec<Result<String, String>> + Send>;

pub struct Identity {
    pub facts: Arc<Facts>,
    /// Set when the controller stops: the thread lets go of its handle on
    /// the engine, which can then finish.
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Identity {
    pub fn start(
        db: PathBuf,
        view: Arc<dyn Fn() -> View + Send + Sync>,
        apply: Apply,
        ended: Ended,
        fleet_host: Option<String>,
    ) -> std::io::Result<Self> {
        let facts = Arc::new(Facts::default());
        let f = facts.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        std::thread::Builder::new()
            .name("ispf-radius".into())
            .spawn(move || listener::run(db, view, apply, ended, f, s, fleet_host))?;
        Ok(Self { facts, stop })
    }
}
