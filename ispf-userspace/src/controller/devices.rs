//! The control socket's inventory requests: listing devices, one device
//! with its timeline, exporting admitted devices, and decisions (which go
//! to the engine like reloads). Listings are read from the database by a
//! reader connection of their own, so they never wait for the ingest
//! thread or the engine.

use std::{sync::atomic::Ordering, time::Duration};

use tokio::{io::AsyncWriteExt, net::UnixStream, sync::oneshot};

use super::{
    connection::{answer, send, Control, MAX_QUEUED_DECISIONS},
    engine::Command,
};
use crate::{
    clock::unix_now,
    control::Response,
    decisions::{canonical_mac, DecisionRequest},
    inventory::{db, query, query::DeviceFilter, View},
};

/// A listing of many devices may take a while to write to a slow client.
const LISTING_DEADLINE: Duration = Duration::from_secs(120);

fn view(c: &Control) -> View {
    let snap = c.shared.snapshot();
    View {
        policy: snap.policy.clone(),
        decisions: snap.decisions.clone(),
    }
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    Response::Error {
        message: format!(
            "the inventory cannot be read ({e}); enforcement is unaffected: `ispf status` shows the inventory's state"
        ),
    }
}

/// Streams `ispf devices`: a [`Response::Listing`] line, then one JSON
/// object per line.
pub async fn list(stream: &mut UnixStream, c: &Control, filter: DeviceFilter) {
    let v = view(c);
    if let Some(s) = &filter.segment {
        if v.policy.segment_id(s).is_none() {
            let names: Vec<&str> = v.policy.segments.iter().map(|s| s.name.as_str()).collect();
            let message = format!(
                "no segment `{s}` in the enforced policy; it has: {}",
                names.join(", ")
            );
            send(stream, &Response::Error { message }).await;
            return;
        }
    }
    let path = c.inventory.db.clone();
    let built = tokio::task::spawn_blocking(move || -> Result<(usize, Vec<u8>), String> {
        query::list(&path, &v, &filter, unix_now()).map_err(|e| e.to_string())
    })
    .await;
    let (count, body) = match built {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            send(stream, &unavailable(e)).await;
            return;
        }
        Err(e) => {
            send(stream, &unavailable(e)).await;
            return;
        }
    };
    let head = answer(&Response::Listing { count });
    let _ = tokio::time::timeout(LISTING_DEADLINE, async {
        stream.write_all(&head).await?;
        stream.write_all(&body).await
    })
    .await;
}

pub async fn one(c: &Control, mac: String) -> Response {
    let m = match canonical_mac(&mac) {
        Ok(m) => m,
        Err(e) => {
            return Response::Error {
                message: e.to_string(),
            }
        }
    };
    let bytes = crate::policy::parse_mac(&m).expect("canonical");
    let v = view(c);
    let path = c.inventory.db.clone();
    let r = tokio::task::spawn_blocking(move || {
        let conn = db::open_reader(&path).map_err(|e| e.to_string())?;
        query::one(&conn, &v, &bytes, unix_now()).map_err(|e| e.to_string())
    })
    .await;
    match r {
        Ok(Ok(Some((device, timeline)))) => Response::Device {
            device: Box::new(device),
            timeline,
        },
        Ok(Ok(None)) => Response::Error {
            message: format!(
                "{m} has not been seen, no decision names it and the policy file does not register it (`ispf devices` lists what has been seen)"
            ),
        },
        Ok(Err(e)) => unavailable(e),
        Err(e) => unavailable(e),
    }
}

pub fn export(c: &Control) -> Response {
    Response::Exported {
        devices: query::export_admitted(&view(c), unix_now()),
    }
}

/// The user behind the socket, by name.
fn peer_user(stream: &UnixStream) -> String {
    let Ok(cred) = stream.peer_cred() else {
        return "unknown".into();
    };
    crate::system::user_name(cred.uid())
}

/// Who makes a decision: the name the client gives (`--by`, else the user
/// `sudo` ran it for), with the socket's user when that differs.
pub fn actor(stream: &UnixStream, by: Option<String>) -> String {
    let user = peer_user(stream);
    match by.map(|b| {
        b.chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect::<String>()
    }) {
        Some(b) if !b.trim().is_empty() && b != user => format!("{b} (as {user})"),
        _ => user,
    }
}

pub async fn decide(c: &Control, op: DecisionRequest, actor: String) -> Response {
    let queued = &c.queued_decisions;
    if queued.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUED_DECISIONS {
        queued.fetch_sub(1, Ordering::SeqCst);
        return Response::Error {
            message: format!(
                "the controller is busy ({}) with {MAX_QUEUED_DECISIONS} decisions waiting; try again when they are done",
                c.shared.busy().unwrap_or_else(|| "applying changes".into())
            ),
        };
    }
    let (reply, rx) = oneshot::channel();
    let resp = match c.engine.send(Command::Decide { op, actor, reply }) {
        Ok(()) => rx.await.unwrap_or(Response::Error {
            message: "the controller stopped before it applied the decision".into(),
        }),
        Err(_) => Response::Error {
            message: "the controller is stopping".into(),
        },
    };
    queued.fetch_sub(1, Ordering::SeqCst);
    resp
}

/// Most alerts one listing returns.
const MAX_ALERTS: usize = 100_000;

pub async fn alerts(c: &Control, since: i64, limit: Option<usize>) -> Response {
    let path = c.inventory.db.clone();
    let limit = limit.unwrap_or(MAX_ALERTS).min(MAX_ALERTS);
    let r = tokio::task::spawn_blocking(move || {
        let conn = db::open_reader(&path).map_err(|e| e.to_string())?;
        crate::detect::store::alerts(&conn, since, limit).map_err(|e| e.to_string())
    })
    .await;
    match r {
        Ok(Ok(alerts)) => Response::Alerts { alerts },
        Ok(Err(e)) => unavailable(e),
        Err(e) => unavailable(e),
    }
}

pub async fn baseline(c: &Control, mac: String) -> Response {
    let mac = match canonical_mac(&mac) {
        Ok(m) => m,
        Err(e) => {
            return Response::Error {
                message: e.to_string(),
            }
        }
    };
    let path = c.inventory.db.clone();
    let m = mac.clone();
    let r = tokio::task::spawn_blocking(move || {
        let conn = db::open_reader(&path).map_err(|e| e.to_string())?;
        crate::detect::store::baseline_of(&conn, &m).map_err(|e| e.to_string())
    })
    .await;
    match r {
        Ok(Ok(rows)) => Response::Baseline {
            mac,
            services: rows
                .into_iter()
                .map(|((seg, proto, port), at)| (seg, proto, port, crate::clock::rfc3339(at)))
                .collect(),
        },
        Ok(Err(e)) => unavailable(e),
        Err(e) => unavailable(e),
    }
}
