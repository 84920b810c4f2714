//! The one reader of the ring buffer and what it feeds: the events file
//! and followers, the inventory, detection and threat reports.

use std::sync::Arc;

use ispf_common::{EVENT_OPENED, EVENT_THREAT};
use tokio::io::unix::AsyncFd;

use super::shared::{self, Shared};
use crate::{
    detect::Detection,
    events::EventRecord,
    feeds,
    inventory::{observe, Inventory},
};

/// The one reader of the ring buffer: flow events to the events file and
/// followers, observations to the inventory (which never makes it wait).
pub(super) async fn read_events(
    mut fd: AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>,
    shared: Arc<Shared>,
    inventory: Arc<Inventory>,
    detection: Arc<Detection>,
) {
    let mut threats = Threats::default();
    loop {
        let Ok(mut guard) = fd.readable_mut().await else {
            return;
        };
        let mut batch = Vec::new();
        {
            let rb = guard.get_inner_mut();
            while let Some(item) = rb.next() {
                if observe::is_observation(&item) {
                    if let Some(o) = observe::decode(&item) {
                        inventory.offer(o);
                    }
                } else if item.len() >= std::mem::size_of::<ispf_common::Event>() {
                    // SAFETY: the datapath writes whole `Event`s; read unaligned.
                    batch.push(unsafe {
                        std::ptr::read_unaligned(item.as_ptr().cast::<ispf_common::Event>())
                    });
                }
            }
        }
        guard.clear_ready();
        if batch.is_empty() {
            continue;
        }
        let snap = shared.snapshot();
        threats.refresh(&snap);
        for e in &batch {
            let rec = EventRecord::decode(e, &snap.policy);
            // A listed flow is reported at every packet that passes; only
            // the packet that opened it is a new flow. A server's replies
            // taken for flows it opens once had detection quarantine a
            // patient-information server for "anomalous" flows to pumps.
            let continues = e.kind == EVENT_THREAT && e.flags & EVENT_OPENED == 0;
            if !continues {
                detection.offer(&rec);
                shared.deliver(&rec);
            }
            if let Some(t) = threats.index.as_ref().and_then(|i| rec.threat(i)) {
                shared.deliver(&t);
            }
        }
    }
}

/// The feeds' index for naming threats, rebuilt when the feeds, their
/// declarations or what the datapath skipped of them change (not at every
/// decision). Holds what it was built of, so that a comparison by
/// pointer cannot be fooled by memory reused.
#[derive(Default)]
struct Threats {
    index: Option<feeds::compile::FeedIndex>,
    of: Option<ThreatsOf>,
}

type ThreatsOf = (
    Arc<feeds::FeedSet>,
    Vec<crate::policy::FeedDoc>,
    Arc<Vec<feeds::own::Skip>>,
);

impl Threats {
    fn refresh(&mut self, snap: &shared::Snapshot) {
        let docs = &snap.policy.doc.feeds;
        if let Some((f, d, k)) = &self.of {
            if Arc::ptr_eq(f, &snap.feeds) && d == docs && Arc::ptr_eq(k, &snap.feed_skips) {
                return;
            }
        }
        self.of = Some((snap.feeds.clone(), docs.clone(), snap.feed_skips.clone()));
        self.index = (!snap.feeds.feeds.is_empty())
            .then(|| feeds::compile::FeedIndex::new(&snap.feeds, docs, &snap.feed_skips));
    }
}
