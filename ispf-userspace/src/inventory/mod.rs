//! The device inventory: every device the datapath has seen (MAC, vendor,
//! addresses, port, VLAN, DHCP and LLDP fingerprints, first and last seen),
//! where the enforced policy places it and why, and a timeline of what
//! happened to it, in a SQLite database (`db`, `store`).
//!
//! Owns: the database, the ingest thread (`ingest`), device queries
//! (`query`). May call: the policy (to place devices, `judge`) and the
//! runtime decisions' types. It never writes maps: decisions go to the
//! engine, which is the only writer. Enforcement never depends on it — a
//! missing, read-only, locked or damaged database leaves the datapath as it
//! was and is reported in `ispf status`, the log and metrics.

pub mod db;
mod facts;
pub mod fingerprint;
pub mod history;
pub mod ingest;
pub mod judge;
pub mod observe;
pub mod oui;
pub mod query;
pub mod store;
mod update;

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::Ordering,
        mpsc::{sync_channel, SyncSender, TrySendError},
        Arc,
    },
};

pub use facts::{DeviceEvent, Facts, Notify};
pub use judge::{Judge, Judged};
pub use observe::Observation;

use crate::{decisions::Decision, policy::Policy};

/// The database's file name under the state directory.
pub const DB_FILE: &str = "inventory.db";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ispf";
/// Default cap on devices the policy does not place by registration or
/// decision (learned and unknown ones).
pub const DEFAULT_MAX_UNKNOWN: usize = 100_000;
/// Observations waiting for the ingest thread; more are dropped (counted).
const QUEUE: usize = 65_536;

pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join(DB_FILE)
}

/// What is enforced now, as the inventory needs it.
#[derive(Clone)]
pub struct View {
    /// The policy file with the decisions applied.
    pub policy: Arc<Policy>,
    pub decisions: Arc<Vec<Decision>>,
}

/// A device's state, as `ispf devices` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// In the policy file.
    Registered,
    /// Given a segment by an admit decision.
    Admitted,
    /// Moved by a user's role session.
    Role,
    /// Placed by subnet or VLAN without a registration.
    Learned,
    /// None of these: in `defaults.unknown_source`.
    Unknown,
    /// A quarantine decision holds, whatever else is true.
    Quarantined,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Registered => "registered",
            State::Admitted => "admitted",
            State::Role => "role",
            State::Learned => "learned",
            State::Unknown => "unknown",
            State::Quarantined => "quarantined",
        }
    }
}

/// The state of a device given the decision that holds for it (if any) and
/// how the enforced policy places it.
pub fn state_of(held: Option<&Decision>, judged: Judged) -> State {
    use crate::decisions::Kind;
    match held.map(|d| d.kind) {
        Some(Kind::Quarantine) => State::Quarantined,
        Some(Kind::Role) => State::Role,
        Some(Kind::Admit) => State::Admitted,
        None => match judged {
            Judged::Registered | Judged::Router => State::Registered,
            Judged::Subnet | Judged::Vlan => State::Learned,
            // The decision that added it has just ended.
            Judged::Decision | Judged::Unknown => State::Unknown,
        },
    }
}

/// The controller's handle on the inventory.
pub struct Inventory {
    tx: SyncSender<Observation>,
    pub facts: Arc<Facts>,
    pub db: PathBuf,
}

impl Inventory {
    /// Starts the ingest thread. `view` reads what is enforced now;
    /// `notify` hands device events to `ispf events` followers.
    pub fn start(
        state_dir: &Path,
        max_unknown: usize,
        view: Arc<dyn Fn() -> View + Send + Sync>,
        notify: Notify,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        let facts = Arc::new(Facts::default());
        let db = db_path(state_dir);
        let opts = ingest::Options {
            db: db.clone(),
            max_unknown,
            vendors_dir: PathBuf::from(oui::IEEE_DATA),
        };
        let f = facts.clone();
        std::thread::Builder::new()
            .name("ispf-inventory".into())
            .spawn(move || ingest::run(opts, rx, f, view, notify))?;
        Ok(Self { tx, facts, db })
    }

    /// Hands an observation to the ingest thread without waiting.
    pub fn offer(&self, o: Observation) {
        match self.tx.try_send(o) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.facts.behind.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
