//! What serves a control-socket connection: the controller's parts a
//! request may use ([`Control`]), the limits every client is held to, and
//! answers written to a client within a deadline. Shared by the request
//! loop ([`super::server`]) and the inventory requests
//! ([`super::devices`]).

use std::{
    sync::{atomic::AtomicUsize, mpsc::Sender, Arc},
    time::Duration,
};

use tokio::{
    io::AsyncWriteExt,
    net::UnixStream,
    sync::{Notify, Semaphore},
};

use super::{engine::Command, shared::Shared};
use crate::{control::Response, feeds::refresh::Refresher, inventory::Inventory};

/// Requests are small JSON objects; anything longer is refused.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// Connections served at once (idle ones included); more are told so.
pub const MAX_CONNECTIONS: usize = 512;
/// Event followers at once.
pub const MAX_FOLLOWERS: usize = 64;
/// Reloads waiting for the engine at once.
pub(super) const MAX_QUEUED_RELOADS: usize = 4;
/// Hand decisions waiting at once: an incident script quarantines a dozen
/// devices in parallel. The engine applies those queued together as one
/// generation, so they cost no more than a few reloads.
pub(super) const MAX_QUEUED_DECISIONS: usize = 64;
pub(super) const READ_DEADLINE: Duration = Duration::from_secs(5);
pub(super) const WRITE_DEADLINE: Duration = Duration::from_secs(10);

pub struct Control {
    pub shared: Arc<Shared>,
    pub inventory: Arc<Inventory>,
    pub feeds: Arc<Refresher>,
    pub identity: Arc<crate::identity::Identity>,
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    pub engine: Sender<Command>,
    pub shutdown: Arc<Notify>,
    pub(super) queued: AtomicUsize,
    pub(super) queued_decisions: AtomicUsize,
    pub(super) connections: Arc<Semaphore>,
    pub(super) followers: Arc<Semaphore>,
}

impl Control {
    pub fn new(
        shared: Arc<Shared>,
        inventory: Arc<Inventory>,
        feeds: Arc<Refresher>,
        identity: Arc<crate::identity::Identity>,
        fleet: Option<Arc<crate::fleet::Fleet>>,
        engine: Sender<Command>,
        shutdown: Arc<Notify>,
    ) -> Self {
        Self {
            shared,
            inventory,
            feeds,
            identity,
            fleet,
            engine,
            shutdown,
            queued: AtomicUsize::new(0),
            queued_decisions: AtomicUsize::new(0),
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            followers: Arc::new(Semaphore::new(MAX_FOLLOWERS)),
        }
    }
}

pub(super) fn answer(resp: &Response) -> Vec<u8> {
    let mut out = serde_json::to_vec(resp).unwrap_or_else(|e| {
        serde_json::to_vec(&Response::Error {
            message: format!("cannot encode the answer: {e}"),
        })
        .unwrap_or_default()
    });
    out.push(b'\n');
    out
}

pub(super) async fn send(stream: &mut UnixStream, resp: &Response) -> bool {
    matches!(
        tokio::time::timeout(WRITE_DEADLINE, stream.write_all(&answer(resp))).await,
        Ok(Ok(()))
    )
}
