//! The ingest thread: takes the datapath's observations, keeps every device
//! in memory (bounded: at most `max_unknown` devices the policy does not
//! place by registration or decision), notices what is new — a device, a
//! move to another port or VLAN, a new address, a DHCP or LLDP
//! fingerprint — and writes the changes to the database in one transaction
//! at most [`COMMIT_EVERY`] behind, so a `kill -9` loses at most that.
//!
//! It never touches the datapath and never blocks the ring-buffer reader:
//! observations arrive through a bounded channel, and the reader drops
//! (and counts) what does not fit.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::PathBuf,
    sync::{
        atomic::Ordering,
        mpsc::{Receiver, RecvTimeoutError},
        Arc,
    },
    time::{Duration, Instant},
};

use rusqlite::Connection;

use super::{
    db,
    facts::{DeviceEvent, Facts, Notify},
    history,
    judge::{Judge, Judged},
    observe::{Observation, Seen},
    oui::Vendors,
    state_of,
    store::{self, Batch, Device, TimelineEntry},
    update, View,
};
use crate::decisions::{holding, mac_string};

/// The longest a sighting waits in memory before it is in the database.
pub const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// How often a database that could not be opened is tried again.
const RETRY_OPEN: Duration = Duration::from_secs(10);
/// Old addresses go once an hour (`store::prune`).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Timeline entries held while the database cannot be written.
const MAX_PENDING_TIMELINE: usize = 100_000;

pub struct Options {
    pub db: PathBuf,
    pub max_unknown: usize,
    pub vendors_dir: PathBuf,
}

struct Ingest {
    opts: Options,
    conn: Option<Connection>,
    last_open_try: Instant,
    facts: Arc<Facts>,
    view: Arc<dyn Fn() -> View + Send + Sync>,
    notify: Notify,
    vendors: Vendors,
    judge: Option<Judge>,
    devices: HashMap<[u8; 6], Device>,
    /// Devices the policy does not place by registration or decision.
    unregistered: usize,
    dirty: Vec<[u8; 6]>,
    addresses: Vec<([u8; 6], IpAddr, i64)>,
    life_critical: Vec<([u8; 6], String, i64)>,
    remembered: history::Remembered,
    timeline: Vec<TimelineEntry>,
    names: HashMap<u32, String>,
    last_overflow_note: Option<Instant>,
}

pub fn run(
    opts: Options,
    rx: Receiver<Observation>,
    facts: Arc<Facts>,
    view: Arc<dyn Fn() -> View + Send + Sync>,
    notify: Notify,
) {
    let vendors = Vendors::load(&opts.vendors_dir);
    let mut me = Ingest {
        opts,
        conn: None,
        last_open_try: Instant::now(),
        facts,
        view,
        notify,
        vendors,
        judge: None,
        devices: HashMap::new(),
        unregistered: 0,
        dirty: Vec::new(),
        addresses: Vec::new(),
        life_critical: Vec::new(),
        remembered: Default::default(),
        timeline: Vec::new(),
        names: HashMap::new(),
        last_overflow_note: None,
    };
    me.open();
    let mut last_commit = Instant::now();
    let mut last_count = Instant::now() - Duration::from_secs(60);
    let mut last_prune = Instant::now() - PRUNE_EVERY;
    loop {
        match rx.recv_timeout(COMMIT_EVERY) {
            Ok(o) => me.observe(o),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                me.commit();
                return;
            }
        }
        if last_commit.elapsed() >= COMMIT_EVERY {
            me.commit();
            last_commit = Instant::now();
        }
        if last_count.elapsed() >= Duration::from_secs(1) {
            me.count();
            last_count = Instant::now();
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            if let Some(Err(e)) = me
                .conn
                .as_mut()
                .map(|c| store::prune(c, crate::clock::unix_now()))
            {
                crate::clock::log(format!("inventory: old addresses not pruned: {e}"));
            }
        }
    }
}

impl Ingest {
    /// Opens the database and merges what it holds into memory.
    fn open(&mut self) {
        self.last_open_try = Instant::now();
        let conn = match db::open(&self.opts.db) {
            Ok(c) => c,
            Err(e) => {
                crate::clock::log(format!(
                    "inventory unavailable, enforcement unaffected: {e}"
                ));
                self.facts.set_error(Some(e.to_string()));
                return;
            }
        };
        match store::devices(&conn) {
            Ok(list) => {
                for d in list {
                    self.devices.entry(d.mac).or_insert(d);
                }
                self.facts.set_error(None);
                self.conn = Some(conn);
                self.recount_unregistered();
            }
            Err(e) => self.facts.set_error(Some(e.to_string())),
        }
    }

    /// The judge of the policy enforced now (rebuilt when it changed).
    fn judge(&mut self) -> &Judge {
        let policy = (self.view)().policy;
        if self
            .judge
            .as_ref()
            .is_none_or(|j| !Arc::ptr_eq(j.policy(), &policy))
        {
            self.judge = Some(Judge::new(policy));
        }
        self.judge.as_ref().expect("just set")
    }

    fn ifname(&mut self, ifindex: u32) -> String {
        self.names
            .entry(ifindex)
            .or_insert_with(|| crate::events::ifname(ifindex))
            .clone()
    }

    fn note(&mut self, d: &Device, action: &str, at: i64, detail: String, ip: Option<IpAddr>) {
        let mac = mac_string(&d.mac);
        (self.notify)(&DeviceEvent {
            time: crate::clock::rfc3339(at),
            event: "device",
            action: action.into(),
            mac: mac.clone(),
            vendor: d.vendor.clone(),
            interface: d.interface.clone(),
            vlan: d.vlan,
            ip: ip.map(|a| a.to_string()),
            segment: d.segment.clone(),
            detail: detail.clone(),
        });
        if self.timeline.len() >= MAX_PENDING_TIMELINE {
            self.facts.timeline_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.timeline.push(TimelineEntry {
            mac,
            at,
            event: action.into(),
            detail,
            actor: None,
        });
    }

    fn observe(&mut self, o: Observation) {
        self.facts.sightings.fetch_add(1, Ordering::Relaxed);
        let interface = self.ifname(o.ifindex);
        let ip = match &o.what {
            Seen::Source(ip) => *ip,
            _ => None,
        };
        let (v4, v6) = match ip {
            Some(IpAddr::V4(a)) => (Some(a), None),
            Some(IpAddr::V6(a)) => (None, Some(a)),
            None => (None, None),
        };
        let placement = self.judge().place(&o.mac, o.vlan, v4, v6);
        let policy = self.judge().policy().clone();
        let segment = policy.segment_name(o.segment).to_owned();
        let router = placement.judged == Judged::Router;
        if !self.devices.contains_key(&o.mac) {
            let registered = placement.judged.names_device();
            if !registered && self.unregistered >= self.opts.max_unknown {
                self.overflow();
                return;
            }
            if !registered {
                self.unregistered += 1;
            }
            let d = Device {
                mac: o.mac,
                vendor: self.vendors.vendor(&o.mac).map(str::to_owned),
                vlan: o.vlan,
                interface: interface.clone(),
                ipv4: None,
                ipv6: None,
                hostname: None,
                vendor_class: None,
                dhcp_params: None,
                first_seen: o.at,
                last_seen: o.at,
                segment: segment.clone(),
                judged: placement.judged.as_str().into(),
            };
            self.facts.new_devices.fetch_add(1, Ordering::Relaxed);
            let detail = format!(
                "on {interface}, VLAN {}, segment {segment} ({}){}",
                o.vlan,
                placement.judged.as_str(),
                d.vendor
                    .as_ref()
                    .map(|v| format!(", {v}"))
                    .unwrap_or_default()
            );
            self.note(&d, "new", o.at, detail, ip);
            self.devices.insert(o.mac, d);
        }
        let mut d = self.devices.remove(&o.mac).expect("present");
        if d.interface != interface || d.vlan != o.vlan {
            self.facts.moves.fetch_add(1, Ordering::Relaxed);
            let detail = format!(
                "from {} VLAN {} to {interface} VLAN {}",
                d.interface, d.vlan, o.vlan
            );
            d.interface = interface;
            d.vlan = o.vlan;
            d.segment = segment.clone();
            self.note(&d, "moved", o.at, detail, ip);
        }
        d.last_seen = d.last_seen.max(o.at);
        if !policy.routers.contains(&o.mac)
            && history::placed_by_file(&policy, &placement, o.segment)
            && self.remembered.due(d.mac, o.segment, o.at)
        {
            self.life_critical.push((d.mac, segment.clone(), o.at));
        }
        d.segment = segment;
        d.judged = placement.judged.as_str().into();
        // A router forwards for many addresses: none of them is its own.
        if let (Some(a), false) = (ip, router) {
            self.addresses.push((d.mac, a, o.at));
            if let Some(old) = update::address(&mut d, a) {
                self.facts.ip_changes.fetch_add(1, Ordering::Relaxed);
                self.note(&d, "ip_changed", o.at, format!("{old} -> {a}"), ip);
            }
        }
        if let Some(detail) = update::fingerprint(&mut d, o.what) {
            self.note(&d, "fingerprint", o.at, detail, None);
        }
        self.dirty.push(d.mac);
        self.devices.insert(o.mac, d);
    }

    fn overflow(&mut self) {
        self.facts.overflow.fetch_add(1, Ordering::Relaxed);
        let due = self
            .last_overflow_note
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if due {
            self.last_overflow_note = Some(Instant::now());
            crate::clock::log(format!(
                "inventory: {} unregistered devices already known (--max-unknown-devices); new ones are counted in ispf_inventory_overflow_total but not recorded. Enforcement is unaffected: they are judged as unknown sources.",
                self.opts.max_unknown
            ));
        }
    }

    fn commit(&mut self) {
        if self.conn.is_none() {
            if self.last_open_try.elapsed() < RETRY_OPEN {
                return;
            }
            self.open();
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        self.dirty.sort_unstable();
        self.dirty.dedup();
        let batch = Batch {
            devices: self
                .dirty
                .iter()
                .filter_map(|m| self.devices.get(m))
                .collect(),
            addresses: std::mem::take(&mut self.addresses),
            life_critical: std::mem::take(&mut self.life_critical),
            timeline: std::mem::take(&mut self.timeline),
        };
        if batch.is_empty() {
            return;
        }
        match store::write(conn, &batch) {
            Ok(()) => {
                self.dirty.clear();
                if self.facts.error().is_some() {
                    crate::clock::log("inventory: writing again");
                    self.facts.set_error(None);
                }
            }
            Err(e) => {
                let e = match e {
                    db::DbError::Sql(e) => db::explain(&self.opts.db, &e),
                    e => e,
                };
                // Kept for the next try (the timeline is bounded).
                let Batch {
                    addresses,
                    life_critical,
                    timeline,
                    ..
                } = batch;
                self.addresses = addresses;
                self.life_critical = life_critical;
                self.timeline = timeline;
                let msg = format!("cannot be written: {e}");
                if self.facts.error().as_deref() != Some(msg.as_str()) {
                    crate::clock::log(format!(
                        "inventory: {msg}; sightings are kept in memory and written when it can be. Enforcement is unaffected."
                    ));
                }
                self.facts.set_error(Some(msg));
            }
        }
    }

    fn recount_unregistered(&mut self) {
        self.judge();
        let judge = self.judge.as_ref().expect("set above");
        self.unregistered = self
            .devices
            .values()
            .filter(|d| {
                let p = judge.place(&d.mac, d.vlan, d.ipv4, d.ipv6);
                !p.judged.names_device()
            })
            .count();
    }

    /// Devices by segment and state, for `ispf_devices`.
    fn count(&mut self) {
        let view = (self.view)();
        self.judge();
        let judge = self.judge.as_ref().expect("set above");
        let hold = holding(&view.decisions, crate::clock::unix_now());
        let mut counts = BTreeMap::new();
        let mut unregistered = 0;
        for d in self.devices.values() {
            let p = judge.place(&d.mac, d.vlan, d.ipv4, d.ipv6);
            let held = hold.get(mac_string(&d.mac).as_str()).copied();
            let state = state_of(held, p.judged);
            if !p.judged.names_device() {
                unregistered += 1;
            }
            let seg = judge.policy().segment_name(p.segment).to_owned();
            *counts.entry((seg, state.as_str())).or_insert(0u64) += 1;
        }
        self.unregistered = unregistered;
        *self.facts.counts.lock().unwrap_or_else(|e| e.into_inner()) = counts;
    }
}
