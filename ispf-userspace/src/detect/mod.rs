//! Detection and response (the spec's "Detection and response"): a thread
//! that takes the datapath's flow events, keeps each device's east-west
//! baseline, raises `scan` and `anomaly` alerts (`logic`), keeps them in
//! the inventory database (`store`), tells `ispf events` followers and an
//! optional webhook, and answers them per `detection.auto_quarantine`
//! through the same runtime decision as a manual quarantine — never for a
//! device in a life-critical segment.
//!
//! Owns: baselines, alerts. May call: the policy and decisions (read), the
//! inventory database, and the engine through the quarantine callback it
//! is given. Never writes maps.

mod held;
pub mod logic;
mod risk;
mod scan;
mod shape;
pub mod store;
mod webhook;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use rusqlite::Connection;

use crate::{
    clock::{log, now_rfc3339, unix_now},
    decisions::{holding, segments_of, Kind as DecisionKind},
    events::EventRecord,
    inventory::{db, View},
    policy::{DetectionDoc, Policy},
};
use logic::{Context, Detector, Draft, History, Kind};
use shape::flow_of;
use store::Alert;

/// Events waiting for the detection thread; more are dropped (counted).
const QUEUE: usize = 65_536;

#[derive(Default)]
pub struct Facts {
    /// Alerts by (kind, severity).
    pub alerts: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    pub suppressed: AtomicU64,
    pub behind: AtomicU64,
    pub quarantined: AtomicU64,
    pub webhook_failures: AtomicU64,
}

/// Quarantines a device: `(mac, reason, ttl seconds)`; answers what was done.
pub type Quarantine = Box<dyn Fn(&str, &str, u64) -> Result<String, String> + Send>;
/// Tells `ispf events` followers.
pub type Notify = Box<dyn Fn(&serde_json::Value) + Send>;

pub struct Options {
    pub db: PathBuf,
    pub webhook: Option<String>,
}

pub struct Detection {
    tx: SyncSender<EventRecord>,
    pub facts: Arc<Facts>,
}

impl Detection {
    pub fn start(
        opts: Options,
        view: Arc<dyn Fn() -> View + Send + Sync>,
        quarantine: Quarantine,
        notify: Notify,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        let facts = Arc::new(Facts::default());
        let f = facts.clone();
        std::thread::Builder::new()
            .name("ispf-detect".into())
            .spawn(move || run(opts, rx, f, view, quarantine, notify))?;
        Ok(Self { tx, facts })
    }

    /// Hands a flow event over without waiting.
    pub fn offer(&self, e: &EventRecord) {
        if e.event != "new_flow" && e.event != "denied" {
            return;
        }
        match self.tx.try_send(e.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.facts.behind.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// First sightings from the inventory, remembered.
struct Ctx<'a> {
    conn: Option<&'a Connection>,
    first: &'a mut HashMap<String, i64>,
    policy: &'a Policy,
}

impl Context for Ctx<'_> {
    fn first_seen(&mut self, mac: &str) -> Option<i64> {
        if let Some(t) = self.first.get(mac) {
            return Some(*t);
        }
        let m = crate::policy::parse_mac(mac)?;
        let t = crate::inventory::store::device(self.conn?, &m)
            .ok()??
            .first_seen;
        if self.first.len() > logic::MAX_TRACKED {
            self.first.clear();
        }
        self.first.insert(mac.to_owned(), t);
        Some(t)
    }

    fn life_critical(&self, segment: &str) -> bool {
        self.policy.life_critical_named(segment)
    }

    /// Nothing kept when no database is open (none configured, or it
    /// cannot be opened): detection runs on what it sees, as it learns.
    /// Only a read that fails is "cannot say now" (retried at the
    /// device's next flow): else anomaly detection would stop for good.
    fn history(&mut self, mac: &str) -> Option<History> {
        match self.conn {
            None => Some(History::default()),
            Some(c) => store::history(c, mac).ok(),
        }
    }
}

fn run(
    opts: Options,
    rx: Receiver<EventRecord>,
    facts: Arc<Facts>,
    view: Arc<dyn Fn() -> View + Send + Sync>,
    quarantine: Quarantine,
    notify: Notify,
) {
    let hook = opts
        .webhook
        .clone()
        .map(|url| webhook::Webhook::start(url, facts.clone()));
    let mut conn: Option<Connection> = None;
    let mut last_open = Instant::now() - Duration::from_secs(60);
    let mut det = Detector::default();
    let mut last_save = Instant::now() - Duration::from_secs(1);
    let mut first = HashMap::new();
    let mut quarantined: std::collections::BTreeSet<String> = Default::default();
    loop {
        if conn.is_none() && last_open.elapsed() >= Duration::from_secs(10) {
            last_open = Instant::now();
            match db::open(&opts.db) {
                Ok(c) => {
                    conn = Some(c);
                    det.unrestore();
                }
                Err(e) => log(format!("detection: alerts are not kept: {e}")),
            }
        }
        let e = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(e) => Some(e),
            // Alerts held back by the global bound wait for no flow.
            Err(RecvTimeoutError::Timeout) if det.holds() || !det.learned.is_empty() => None,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let v = view();
        // A device released by hand is watched afresh, checked before this
        // flow counts: flows of the scan it was quarantined for must not
        // quarantine it again the moment it is released.
        let now_q = quarantined_now(&v);
        for mac in quarantined.difference(&now_q) {
            det.rearm(mac);
        }
        quarantined = now_q;
        let cfg = v.policy.doc.detection.clone();
        let rules = cfg.clone().unwrap_or_else(default_detection);
        let now = unix_now();
        let mut drafts = det.release(now);
        if let Some(e) = &e {
            let mut ctx = Ctx {
                conn: conn.as_ref(),
                first: &mut first,
                policy: &v.policy,
            };
            let flow = flow_of(e, &v.policy);
            drafts.extend(det.observe(&flow, now, &rules, &mut ctx));
        }
        facts.suppressed.store(det.suppressed, Ordering::Relaxed);
        // Kept until a database takes them: a baseline learned while it
        // was down is what the device is judged by after a restart. Saved
        // a second at a time, so that a locked database (a second's busy
        // wait) does not hold up every event.
        let due = last_save.elapsed() >= Duration::from_secs(1);
        if let (false, true, Some(c)) = (det.learned.is_empty(), due, conn.as_mut()) {
            last_save = Instant::now();
            if store::remember(c, &det.learned, now.max(1)).is_ok() {
                det.learned.clear();
            }
        }
        // One flow may raise a scan and a critical anomaly (or a device's
        // held alert come with its new one): the first that quarantines
        // is the response, the second says so.
        let mut contained = std::collections::BTreeSet::new();
        for d in drafts {
            let how = Response {
                now,
                view: &v,
                cfg: cfg.as_ref(),
                contained: contained.contains(&d.mac),
            };
            let mac = d.mac.clone();
            if raise(
                d,
                &how,
                conn.as_mut(),
                &quarantine,
                &notify,
                &facts,
                hook.as_ref(),
            ) {
                contained.insert(mac);
            }
        }
    }
}

/// Whether anomaly `d` is a flow towards a life-critical segment: the
/// spec's critical anomaly, which quarantines. One from such a segment is
/// critical to read, but a pump is never quarantined, and a cart a role
/// put among the pumps is not for its first flow to a printer.
fn towards_life_critical(v: &View, d: &Draft) -> bool {
    d.service
        .as_ref()
        .is_some_and(|(segment, _, _)| v.policy.life_critical_named(segment))
}

fn quarantined_now(v: &View) -> std::collections::BTreeSet<String> {
    holding(&v.decisions, unix_now())
        .into_iter()
        .filter(|(_, d)| d.kind == DecisionKind::Quarantine)
        .map(|(m, _)| m.to_owned())
        .collect()
}

fn default_detection() -> DetectionDoc {
    serde_json::from_str("{}").expect("defaults")
}

/// What an alert's response is judged against.
struct Response<'a> {
    now: i64,
    view: &'a View,
    cfg: Option<&'a DetectionDoc>,
    /// An earlier alert of the same flow quarantined the device.
    contained: bool,
}

/// Raises alert `d` and responds to it; says whether it quarantined.
fn raise(
    d: Draft,
    how: &Response,
    mut conn: Option<&mut Connection>,
    quarantine: &Quarantine,
    notify: &Notify,
    facts: &Facts,
    hook: Option<&webhook::Webhook>,
) -> bool {
    let (now, v, cfg) = (how.now, how.view, how.cfg);
    let mut quarantined = false;
    let severity = if d.critical { "critical" } else { "warning" };
    *facts
        .alerts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((d.kind.as_str(), severity))
        .or_default() += 1;
    let mut alert = Alert {
        id: 0,
        time: now_rfc3339(),
        mac: d.mac.clone(),
        kind: d.kind.as_str().into(),
        severity: severity.into(),
        segment: d.segment.clone(),
        detail: d.detail.clone(),
        response: "alert only".into(),
    };
    if let Some(c) = conn.as_deref_mut() {
        alert.id = store::insert_alert(c, &alert, now).unwrap_or(0);
        if let Some(svc) = d.service.clone() {
            let _ = store::remember(c, &[(d.mac.clone(), svc)], 0);
        }
    }
    // The spec protects a device in a life-critical segment by the file
    // or by an admit: one a role put there (a cart among the monitors) is
    // contained like any other device.
    let by_role = segments_of(&v.decisions, &d.mac, DecisionKind::Role).any(|s| s == d.segment);
    let life_critical = !by_role && v.policy.life_critical_named(&d.segment);
    alert.response = match cfg {
        None => "alert only: the policy has no `detection` section".into(),
        Some(_) if !(d.kind == Kind::Scan || towards_life_critical(v, &d)) => "alert only".into(),
        Some(_) if life_critical => format!(
            "not quarantined: {} is life-critical; devices there only alert",
            d.segment
        ),
        Some(_) if how.contained || quarantined_now(v).contains(&d.mac) => {
            "already quarantined".into()
        }
        Some(c) => {
            let risk = risk::of(v, &d.mac, d.src_ip.as_deref());
            if !c.auto_quarantine.contains(&risk) {
                format!(
                    "not quarantined: risk {} is not in auto_quarantine",
                    risk.as_str()
                )
            } else {
                let reason = format!(
                    "alert #{} ({} {}): {}",
                    alert.id,
                    severity,
                    d.kind.as_str(),
                    d.detail
                );
                match quarantine(&d.mac, &reason, c.quarantine_ttl_s) {
                    Ok(_) => {
                        quarantined = true;
                        facts.quarantined.fetch_add(1, Ordering::Relaxed);
                        format!("quarantined for {} s", c.quarantine_ttl_s)
                    }
                    Err(e) => format!("quarantine refused: {e}"),
                }
            }
        }
    };
    if let Some(c) = conn.as_deref() {
        let _ = store::set_response(c, alert.id, &alert.response);
    }
    log(format!(
        "{} alert #{} for {} ({}): {} — {}",
        alert.severity, alert.id, alert.mac, alert.segment, alert.detail, alert.response
    ));
    let mut j = serde_json::to_value(&alert).unwrap_or_default();
    j["event"] = "alert".into();
    notify(&j);
    if let Some(h) = hook {
        h.send(j);
    }
    quarantined
}
