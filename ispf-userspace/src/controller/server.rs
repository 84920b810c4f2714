//! The control socket. Every connection has a task of its own, a bounded
//! request line, read and write deadlines and a place under a connection
//! cap, so no client — idle, slow, hostile — can delay another's answer.
//! Status and counters are answered from the published snapshot and a
//! separate handle on the statistics maps; only reloads and detach go to
//! the engine.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use ispf_common::{reason_name, VERDICT_PASS};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::oneshot,
};

use super::{
    connection::{
        send, Control, MAX_CONNECTIONS, MAX_FOLLOWERS, MAX_QUEUED_RELOADS, MAX_REQUEST_BYTES,
        READ_DEADLINE, WRITE_DEADLINE,
    },
    devices,
    engine::Command,
    shared::{Shared, Snapshot},
};
use crate::{
    control::{CounterRow, InventoryStatus, MapStatus, Request, Response, Status},
    feeds::{refresh::Refresher, FeedStatus, PROBLEMS_KEPT},
    inventory::Inventory,
    policy::FeedDoc,
};

pub async fn serve(listener: UnixListener, c: Arc<Control>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let c = c.clone();
        match c.connections.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    handle(stream, &c).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tokio::spawn(async move {
                    let busy = Response::Error {
                        message: format!("the controller is serving {MAX_CONNECTIONS} connections already; try again"),
                    };
                    send(&mut stream, &busy).await;
                });
            }
        }
    }
}

async fn read_request(stream: &mut UnixStream) -> Result<Request, String> {
    let mut line = Vec::new();
    let mut limited = BufReader::new(&mut *stream).take(MAX_REQUEST_BYTES + 1);
    match tokio::time::timeout(READ_DEADLINE, limited.read_until(b'\n', &mut line)).await {
        Err(_) => return Err("no request within 5 s".into()),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(0)) => return Err("no request".into()),
        Ok(Ok(_)) => {}
    }
    if line.len() as u64 > MAX_REQUEST_BYTES {
        return Err(format!(
            "request longer than {MAX_REQUEST_BYTES} bytes refused"
        ));
    }
    serde_json::from_slice(&line).map_err(|e| format!("bad request: {e}"))
}

async fn handle(mut stream: UnixStream, c: &Control) {
    let req = match read_request(&mut stream).await {
        Ok(r) => r,
        Err(message) => {
            send(&mut stream, &Response::Error { message }).await;
            return;
        }
    };
    let resp = match req {
        Request::Status => {
            let shared = c.shared.clone();
            let inventory = c.inventory.clone();
            let fleet = c.fleet.as_ref().map(|f| f.facts.status(&f.site));
            tokio::task::spawn_blocking(move || {
                let mut s = status(&shared, &inventory);
                s.fleet = fleet;
                Response::Status(s)
            })
            .await
            .unwrap_or_else(|e| Response::Error {
                message: e.to_string(),
            })
        }
        Request::Counters => {
            let shared = c.shared.clone();
            tokio::task::spawn_blocking(move || Response::Counters {
                rows: counter_rows(&shared),
            })
            .await
            .unwrap_or_else(|e| Response::Error {
                message: e.to_string(),
            })
        }
        Request::Reload { policy, dry_run } => reload(c, policy, dry_run).await,
        Request::Devices { filter } => {
            devices::list(&mut stream, c, filter).await;
            return;
        }
        Request::Device { mac } => devices::one(c, mac).await,
        Request::ExportDevices => devices::export(c),
        Request::Alerts { since, limit } => devices::alerts(c, since, limit).await,
        Request::Baseline { mac } => devices::baseline(c, mac).await,
        Request::Sessions => Response::Sessions {
            sessions: c.identity.facts.sessions(),
            listening: c
                .identity
                .facts
                .listening
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        },
        Request::Feeds => {
            let (shared, feeds) = (c.shared.clone(), c.feeds.clone());
            tokio::task::spawn_blocking(move || {
                let snap = shared.snapshot();
                Response::Feeds {
                    feeds: feed_statuses(&feeds, &lock_stats(&shared), &snap),
                }
            })
            .await
            .unwrap_or_else(|e| Response::Error {
                message: e.to_string(),
            })
        }
        Request::Decide { op, by } => match op {
            // The listener hands its sessions to the engine directly; a
            // socket client (a script, a hostile local user with the
            // socket's rights) would bypass what it checks: the shared
            // secret, the NAS list and the session table.
            crate::decisions::DecisionRequest::Session { .. }
            | crate::decisions::DecisionRequest::EndSession { .. } => Response::Error {
                message: "role sessions are made and ended only by RADIUS accounting (the policy's `identity.radius_accounting`), not over the control socket: a role ends with its session (Stop, or no interim update in time); to place a device by hand use `ispf admit`".into(),
            },
            op => {
                let actor = devices::actor(&stream, by);
                devices::decide(c, op, actor).await
            }
        },
        Request::Events { filter } => {
            if let Err(message) = filter.validate(&c.shared.snapshot().policy) {
                send(&mut stream, &Response::Error { message }).await;
                return;
            }
            let Ok(_follower) = c.followers.clone().try_acquire_owned() else {
                let message = format!("{MAX_FOLLOWERS} event followers already; try again");
                send(&mut stream, &Response::Error { message }).await;
                return;
            };
            let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
            if !send(&mut stream, &Response::Subscribed).await {
                return;
            }
            c.shared.subscribe(tx, filter);
            while let Some(line) = rx.recv().await {
                let w = tokio::time::timeout(WRITE_DEADLINE, stream.write_all(line.as_bytes()));
                if !matches!(w.await, Ok(Ok(()))) {
                    break;
                }
            }
            return;
        }
        Request::Detach => {
            let (reply, rx) = oneshot::channel();
            if c.engine.send(Command::Detach { reply }).is_err() {
                return;
            }
            let resp = rx.await.unwrap_or(Response::Error {
                message: "the controller stopped before it could detach".into(),
            });
            send(&mut stream, &resp).await;
            c.shutdown.notify_one();
            return;
        }
    };
    send(&mut stream, &resp).await;
}

async fn reload(c: &Control, policy: Option<std::path::PathBuf>, dry_run: bool) -> Response {
    if c.queued.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUED_RELOADS {
        c.queued.fetch_sub(1, Ordering::SeqCst);
        return Response::Error {
            message: format!(
                "the controller is busy ({}) with {MAX_QUEUED_RELOADS} reloads waiting; try again when they are done",
                c.shared.busy().unwrap_or_else(|| "applying reloads".into())
            ),
        };
    }
    let (reply, rx) = oneshot::channel();
    let sent = c.engine.send(Command::Reload {
        path: policy,
        dry_run,
        from_fleet: false,
        reply,
    });
    let resp = match sent {
        Ok(()) => rx.await.unwrap_or(Response::Error {
            message: "the controller stopped before it applied the reload".into(),
        }),
        Err(_) => Response::Error {
            message: "the controller is stopping".into(),
        },
    };
    c.queued.fetch_sub(1, Ordering::SeqCst);
    resp
}

/// Every feed of the enforced policy: the refresher's view of it, the
/// entries the policy's own subnets kept out, and the datapath's hit
/// counts, in the policy's order.
pub fn feed_statuses(
    feeds: &Refresher,
    stats: &crate::datapath::Stats,
    snap: &Snapshot,
) -> Vec<FeedStatus> {
    let docs: &[FeedDoc] = &snap.policy.doc.feeds;
    let known = feeds.statuses();
    let hits = stats.feed_hits(docs.len());
    docs.iter()
        .enumerate()
        .map(|(i, d)| {
            let mut s = known
                .iter()
                .find(|s| s.name == d.name)
                .cloned()
                .unwrap_or_else(|| FeedStatus::new(d));
            (s.hits_passed, s.hits_dropped) = hits.get(i).copied().unwrap_or_default();
            let own: Vec<&crate::feeds::own::Skip> =
                snap.feed_skips.iter().filter(|k| k.feed == i).collect();
            if !own.is_empty() {
                // `entries` counts distinct networks; a line repeated is
                // one entry, and one fewer when skipped.
                let nets: std::collections::HashSet<_> = own.iter().map(|k| k.net).collect();
                s.skipped += own.len() as u64;
                s.entries = s.entries.saturating_sub(nets.len());
                // Listed first: an entry that would have cut segments off
                // matters more than an unreadable line.
                let own = own.into_iter().map(|k| k.why.clone());
                // A skipped network is not "enforced as" anything.
                let enforced = s.problems.into_iter().filter(|p| {
                    crate::feeds::Contents::host_bits_cleared(p).is_none_or(|n| !nets.contains(&n))
                });
                s.problems = own.chain(enforced).take(PROBLEMS_KEPT).collect();
            }
            s
        })
        .collect()
}

fn lock_stats(shared: &Shared) -> std::sync::MutexGuard<'_, crate::datapath::Stats> {
    shared.stats.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counters of the segments the enforced policy has.
pub fn current_counters(
    shared: &Shared,
) -> BTreeMap<ispf_common::CounterKey, ispf_common::CounterVal> {
    let snap = shared.snapshot();
    let policy = snap.policy.clone();
    lock_stats(shared).counters_of(|id| policy.segment(id).is_some())
}

pub fn status(shared: &Shared, inventory: &Inventory) -> Status {
    let snap = shared.snapshot();
    let counters = current_counters(shared);
    let mut by_reason = BTreeMap::<String, u64>::new();
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
    let maps = lock_stats(shared)
        .occupancy()
        .into_iter()
        .map(|(name, entries, capacity)| MapStatus {
            name: name.to_owned(),
            entries,
            capacity,
        })
        .collect();
    let facts = &inventory.facts;
    let inventory = InventoryStatus {
        database: inventory.db.clone(),
        error: facts.error(),
        devices: facts
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum(),
        sightings: facts.sightings.load(Ordering::Relaxed),
        overflow: facts.overflow.load(Ordering::Relaxed),
    };
    Status {
        policy_path: snap.policy_path.clone(),
        policy_sha256: snap.file_sha256.clone(),
        enforced_sha256: snap.policy.sha256_hex(),
        decisions: crate::decisions::holding(&snap.decisions, crate::clock::unix_now()).len(),
        inventory: Some(inventory),
        fleet: None,
        generation: snap.generation,
        applied_at: snap.applied_at.clone(),
        adopted: snap.adopted,
        pin_dir: snap.pin_dir.clone(),
        interfaces: snap.interfaces.clone(),
        maps,
        packets_passed: passed,
        packets_dropped: dropped,
        by_reason: by_reason.into_iter().collect(),
        reloads_ok: snap.reloads_ok,
        reloads_failed: snap.reloads_failed,
        busy: shared.busy(),
    }
}

pub fn counter_rows(shared: &Shared) -> Vec<CounterRow> {
    let policy = shared.snapshot().policy.clone();
    let mut rows = BTreeMap::<(String, String, String, String), (u64, u64)>::new();
    for (k, v) in current_counters(shared) {
        let key = (
            policy.segment_name(k.src).to_owned(),
            policy.segment_name(k.dst).to_owned(),
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

/// Whether a controller answers on the socket under `run_dir`.
pub fn answering(run_dir: &Path) -> bool {
    crate::control::request(run_dir, &Request::Status, Duration::from_secs(5)).is_ok()
}
