//! What the inventory tells the rest of the controller: counts for
//! metrics and `ispf status`, and device events for `ispf events`.

use std::{
    collections::BTreeMap,
    sync::{atomic::AtomicU64, Mutex},
};

/// What the inventory reports to metrics and `ispf status`.
#[derive(Default)]
pub struct Facts {
    pub sightings: AtomicU64,
    pub moves: AtomicU64,
    pub ip_changes: AtomicU64,
    pub new_devices: AtomicU64,
    /// New devices not recorded: the cap on unknown devices was reached.
    pub overflow: AtomicU64,
    /// Observations the ring-buffer reader dropped: this thread was behind.
    pub behind: AtomicU64,
    /// Timeline entries dropped while the database could not be written.
    pub timeline_dropped: AtomicU64,
    /// Why the database cannot be used, when it cannot.
    pub error: Mutex<Option<String>>,
    /// Devices by (segment, state), as of the last count.
    pub counts: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Facts {
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn set_error(&self, e: Option<String>) {
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = e;
    }
}

/// A change worth telling followers of `ispf events` about.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceEvent {
    pub time: String,
    /// Always `device`.
    pub event: &'static str,
    /// `new`, `moved`, `ip_changed`, `admitted`, `quarantined`, `released`.
    pub action: String,
    pub mac: String,
    pub vendor: Option<String>,
    pub interface: String,
    pub vlan: u16,
    pub ip: Option<String>,
    pub segment: String,
    pub detail: String,
}

pub type Notify = Box<dyn Fn(&DeviceEvent) + Send>;
