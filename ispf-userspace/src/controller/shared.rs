//! What the engine publishes for everything that answers clients: a
//! snapshot of the enforced state (replaced whole after each change, so a
//! reader never waits for a reload), a second handle on the statistics
//! maps, and the fan-out of events to the events file and followers.

use std::{
    io::Write,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
};

use tokio::sync::mpsc::{error::TrySendError, Sender};

use crate::{
    control::InterfaceStatus,
    datapath::Stats,
    decisions::Decision,
    events::{EventFilter, EventRecord},
    identity::EndedRole,
    policy::Policy,
};

/// The enforced state, as of the engine's last change.
#[derive(Clone)]
pub struct Snapshot {
    /// The file with the runtime decisions applied: what is enforced.
    pub policy: Arc<Policy>,
    /// SHA-256 of the policy file's bytes.
    pub file_sha256: String,
    pub decisions: Arc<Vec<Decision>>,
    /// The threat feeds' contents enforced.
    pub feeds: Arc<crate::feeds::FeedSet>,
    /// Their entries not enforced because they cover the policy's own
    /// subnets.
    pub feed_skips: Arc<Vec<crate::feeds::own::Skip>>,
    pub policy_path: PathBuf,
    pub generation: u32,
    pub applied_at: String,
    pub adopted: bool,
    pub pin_dir: PathBuf,
    pub interfaces: Vec<InterfaceStatus>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub last_reload_unix: i64,
    pub last_reload_ok: bool,
}

pub struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    /// Reads of counters and occupancy (its own map descriptors).
    pub stats: Mutex<Stats>,
    /// What the engine is doing now (a reload of a large policy).
    busy: Mutex<Option<String>>,
    pub events_written: AtomicU64,
    pub events_slow_reader: AtomicU64,
    subscribers: Mutex<Vec<(Sender<String>, EventFilter)>>,
    events_out: Mutex<Option<Box<dyn Write + Send>>>,
    /// Role decisions the engine ended by itself, newest last (the last
    /// [`ENDED_KEPT`]), for the RADIUS listener.
    roles_ended: Mutex<std::collections::VecDeque<EndedRole>>,
    /// Set when a fleet host changed its own copy of the site's decisions
    /// by itself (a quarantine narrowed by the ten-second check): the
    /// fleet applies the site's set again, and its status then says how
    /// each key is enforced here.
    pub fleet_reapply: std::sync::atomic::AtomicBool,
}

const ENDED_KEPT: usize = 4096;

impl Shared {
    pub fn new(s: Snapshot, stats: Stats, events_out: Option<Box<dyn Write + Send>>) -> Self {
        Self {
            snapshot: RwLock::new(Arc::new(s)),
            stats: Mutex::new(stats),
            busy: Mutex::new(None),
            events_written: AtomicU64::new(0),
            events_slow_reader: AtomicU64::new(0),
            subscribers: Mutex::new(Vec::new()),
            events_out: Mutex::new(events_out),
            roles_ended: Mutex::new(Default::default()),
            fleet_reapply: Default::default(),
        }
    }

    /// Says that the engine ended the role decision on `mac` whose reason
    /// is `reason`.
    pub fn role_ended(&self, mac: &str, reason: &str) {
        let mut q = self.roles_ended.lock().unwrap_or_else(|e| e.into_inner());
        let seq = q.back().map_or(1, |e| e.seq + 1);
        q.push_back(EndedRole {
            seq,
            mac: mac.to_owned(),
            reason: reason.to_owned(),
        });
        while q.len() > ENDED_KEPT {
            q.pop_front();
        }
    }

    /// The role decisions ended after `seq`.
    pub fn roles_ended_after(&self, seq: u64) -> Vec<EndedRole> {
        let q = self.roles_ended.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().filter(|e| e.seq > seq).cloned().collect()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn publish(&self, s: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(s);
    }

    pub fn busy(&self) -> Option<String> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_busy(&self, what: Option<String>) {
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) = what;
    }

    pub fn subscribe(&self, tx: Sender<String>, filter: EventFilter) {
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((tx, filter));
    }

    /// Hands one flow event to the events file and every follower whose
    /// filter matches. A follower that cannot keep up loses events
    /// (counted); nothing waits for it.
    pub fn deliver(&self, rec: &EventRecord) {
        let Ok(mut line) = serde_json::to_string(rec) else {
            return;
        };
        line.push('\n');
        self.fan_out(&line, |f| f.matches(rec));
    }

    /// A controller event (a port gone or back, a device seen or decided
    /// on): to the events file and to followers that filter on nothing.
    pub fn deliver_note(&self, v: &serde_json::Value) {
        let mut line = v.to_string();
        line.push('\n');
        self.fan_out(&line, |f| {
            f.segment.is_none() && f.reason.is_none() && f.verdict.is_none()
        });
    }

    fn fan_out(&self, line: &str, wants: impl Fn(&EventFilter) -> bool) {
        if let Some(w) = self
            .events_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            if w.write_all(line.as_bytes())
                .and_then(|()| w.flush())
                .is_ok()
            {
                self.events_written.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut lost = 0;
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(tx, filter)| {
                if !wants(filter) {
                    return !tx.is_closed();
                }
                match tx.try_send(line.to_owned()) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => {
                        lost += 1;
                        true
                    }
                    Err(TrySendError::Closed(_)) => false,
                }
            });
        self.events_slow_reader.fetch_add(lost, Ordering::Relaxed);
    }
}
