//! The controller's services beside the engine — the inventory's ingest
//! thread, the feed refresher and detection — and how each reaches the
//! engine: by commands, never by touching the datapath.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::{boot, engine::Command, shared::Shared, RunOptions};
use crate::{
    decisions::DecisionRequest,
    detect::{self, Detection},
    feeds::{self, refresh::Refresher},
    identity::Identity,
    inventory::{DeviceEvent, Inventory, View},
};

/// What the control server, metrics and the events reader share.
pub(super) struct Services {
    pub shared: Arc<Shared>,
    pub inventory: Arc<Inventory>,
    pub feeds: Arc<Refresher>,
    pub detection: Arc<Detection>,
    pub identity: Arc<Identity>,
    /// Kept alive for as long as the controller serves: dropping it stops
    /// following the site.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
}

fn view_of(shared: &Arc<Shared>) -> Arc<dyn Fn() -> View + Send + Sync> {
    let s = shared.clone();
    Arc::new(move || {
        let snap = s.snapshot();
        View {
            policy: snap.policy.clone(),
            decisions: snap.decisions.clone(),
        }
    })
}

/// Detection: alerts to followers of `ispf events`, quarantines through
/// the engine like `ispf quarantine` (never forced).
pub(super) fn start_detection(
    opts: &RunOptions,
    shared: &Arc<Shared>,
    cmd: std::sync::mpsc::Sender<Command>,
) -> Result<Detection> {
    let cmd = std::sync::Mutex::new(cmd);
    let quarantine: detect::Quarantine = Box::new(move |mac, reason, ttl| {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let op = DecisionRequest::Quarantine {
            mac: mac.to_owned(),
            reason: reason.to_owned(),
            expires_in: Some(ttl),
            force: false,
        };
        cmd.lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Command::Decide {
                op,
                actor: "ispf detection".into(),
                reply,
            })
            .map_err(|_| "the controller is stopping".to_owned())?;
        match rx.blocking_recv() {
            Ok(crate::control::Response::Decided { message, .. }) => Ok(message),
            Ok(crate::control::Response::Error { message }) => Err(message),
            _ => Err("no answer from the engine".into()),
        }
    });
    let s = shared.clone();
    let notify: detect::Notify = Box::new(move |v| s.deliver_note(v));
    Detection::start(
        detect::Options {
            db: crate::inventory::db_path(&opts.state_dir),
            webhook: opts.alert_webhook.clone(),
        },
        view_of(shared),
        quarantine,
        notify,
    )
    .context("starting detection")
}

/// The feed refresher, reading the feeds the enforced policy lists and
/// handing new contents to the engine.
pub(super) fn start_feeds(
    opts: &RunOptions,
    shared: &Arc<Shared>,
    cmd: std::sync::mpsc::Sender<Command>,
) -> Result<Refresher> {
    let s = shared.clone();
    let docs: feeds::refresh::Docs = Arc::new(move || s.snapshot().policy.doc.feeds.clone());
    let initial = (*shared.snapshot().feeds).clone();
    let cmd = std::sync::Mutex::new(cmd);
    let apply: feeds::refresh::Apply = Box::new(move |set| {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let sent = cmd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Command::Feeds { set, reply });
        match sent.ok().and_then(|_| rx.blocking_recv().ok()) {
            Some(r) => r,
            None => Err("the controller is stopping".into()),
        }
    });
    Refresher::start(docs, boot::feeds_dir(&opts.state_dir), initial, apply)
        .context("starting the feed refresher")
}

/// The inventory's ingest thread, reading what is enforced from the
/// published snapshot and telling followers of device events.
pub(super) fn start_inventory(opts: &RunOptions, shared: &Arc<Shared>) -> Result<Inventory> {
    let view = view_of(shared);
    let notify_shared = shared.clone();
    let notify: crate::inventory::Notify = Box::new(move |e: &DeviceEvent| {
        if let Ok(v) = serde_json::to_value(e) {
            notify_shared.deliver_note(&v);
        }
    });
    Inventory::start(&opts.state_dir, opts.max_unknown_devices, view, notify)
        .context("starting the inventory thread")
}

/// The RADIUS accounting listener: role sessions applied through the
/// engine, a burst at a time in one generation.
pub(super) fn start_identity(
    opts: &RunOptions,
    shared: &Arc<Shared>,
    cmd: std::sync::mpsc::Sender<Command>,
) -> Result<Identity> {
    let cmd = std::sync::Mutex::new(cmd);
    let apply: crate::identity::Apply = Box::new(move |ops| {
        let n = ops.len();
        let (reply, rx) = tokio::sync::oneshot::channel();
        let sent = cmd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Command::DecideMany {
                ops,
                actor: "ispf identity (RADIUS accounting)".into(),
                reply,
            });
        match sent.ok().and_then(|_| rx.blocking_recv().ok()) {
            Some(r) => r.into_iter().map(|o| o.map(|(m, _, _)| m)).collect(),
            None => vec![Err("the controller is stopping".into()); n],
        }
    });
    let s = shared.clone();
    Identity::start(
        crate::inventory::db_path(&opts.state_dir),
        view_of(shared),
        apply,
        Arc::new(move |seq| s.roles_ended_after(seq)),
        opts.fleet.as_ref().map(|(f, _)| f.host.clone()),
    )
    .context("starting the RADIUS accounting listener")
}

/// Following the site: new revisions applied like `ispf reload`, the
/// site's decisions as one generation, status from the published snapshot.
pub(super) fn start_fleet(
    f: crate::fleet::Options,
    seed: Option<Vec<u8>>,
    opts: &RunOptions,
    shared: &Arc<Shared>,
    cmd: std::sync::mpsc::Sender<Command>,
) -> Result<crate::fleet::Fleet> {
    use crate::control::Response;
    let cmd = Arc::new(std::sync::Mutex::new(cmd));
    let c1 = cmd.clone();
    let policy: crate::fleet::ApplyPolicy = Box::new(move |path| {
        let (reply, rx) = tokio::sync::oneshot::channel();
        c1.lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Command::Reload {
                path: Some(path),
                dry_run: false,
                from_fleet: true,
                reply,
            })
            .map_err(|_| "the controller is stopping".to_owned())?;
        match wait_reply(rx) {
            Some(Response::Reload(_)) => Ok(()),
            Some(Response::Error { message }) => Err(message),
            _ => Err("no answer from the engine".into()),
        }
    });
    let c2 = cmd.clone();
    let decisions: crate::fleet::ApplyDecisions = Box::new(move |set| {
        let (reply, rx) = tokio::sync::oneshot::channel();
        c2.lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Command::FleetDecisions { set, reply })
            .map_err(|_| "the controller is stopping".to_owned())?;
        wait_reply(rx).unwrap_or_else(|| Err("no answer from the engine".into()))
    });
    let s = shared.clone();
    let report: crate::fleet::Report = Box::new(move || {
        let snap = s.snapshot();
        let down: Vec<&str> = snap
            .interfaces
            .iter()
            .filter(|i| !i.attached)
            .map(|i| i.name.as_str())
            .collect();
        let health = if down.is_empty() {
            "ok".to_owned()
        } else {
            format!("not enforcing on {}", down.join(", "))
        };
        (
            snap.generation,
            snap.file_sha256.clone(),
            snap.interfaces.iter().map(|i| i.name.clone()).collect(),
            health,
        )
    });
    let s = shared.clone();
    let reapply: crate::fleet::Reapply = Box::new(move || {
        s.fleet_reapply
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    });
    crate::fleet::Fleet::start(
        f,
        opts.state_dir.clone(),
        seed,
        crate::fleet::Hooks {
            policy,
            decisions,
            report,
            reapply,
        },
    )
    .context("starting to follow the site")
}

/// Waits for the engine's answer from inside the fleet's own runtime,
/// where `blocking_recv` is not allowed; that runtime has nothing else to
/// drive meanwhile (the watch buffers).
fn wait_reply<T>(mut rx: tokio::sync::oneshot::Receiver<T>) -> Option<T> {
    use tokio::sync::oneshot::error::TryRecvError;
    loop {
        match rx.try_recv() {
            Ok(v) => return Some(v),
            Err(TryRecvError::Empty) => std::thread::sleep(std::time::Duration::from_millis(1)),
            Err(TryRecvError::Closed) => return None,
        }
    }
}
