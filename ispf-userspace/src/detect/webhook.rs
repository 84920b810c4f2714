//! `--alert-webhook URL`: every alert as a JSON POST to the hospital's
//! SIEM or paging gateway, from a thread of its own (a slow receiver never
//! delays detection), retried three times with backoff; alerts that cannot
//! be delivered are counted and logged.

use std::{
    sync::{
        atomic::Ordering,
        mpsc::{sync_channel, SyncSender, TrySendError},
        Arc,
    },
    time::Duration,
};

use super::Facts;
use crate::clock::log;

const QUEUE: usize = 1_000;
const ATTEMPTS: u32 = 3;

pub struct Webhook {
    tx: SyncSender<serde_json::Value>,
    facts: Arc<Facts>,
}

impl Webhook {
    pub fn start(url: String, facts: Arc<Facts>) -> Self {
        let (tx, rx) = sync_channel::<serde_json::Value>(QUEUE);
        let f = facts.clone();
        let _ = std::thread::Builder::new()
            .name("ispf-webhook".into())
            .spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(10)))
                    .http_status_as_error(false)
                    .build()
                    .into();
                while let Ok(alert) = rx.recv() {
                    let mut last = String::new();
                    let delivered = (0..ATTEMPTS).any(|i| {
                        if i > 0 {
                            std::thread::sleep(Duration::from_secs(1 << (i - 1)));
                        }
                        let body = alert.to_string();
                        match agent
                            .post(&url)
                            .header("Content-Type", "application/json")
                            .send(body.as_bytes())
                        {
                            Ok(r) if r.status().is_success() => true,
                            Ok(r) => {
                                last = format!("the receiver answered {}", r.status());
                                false
                            }
                            Err(e) => {
                                last = e.to_string();
                                false
                            }
                        }
                    });
                    if !delivered {
                        f.webhook_failures.fetch_add(1, Ordering::Relaxed);
                        log(format!(
                            "alert webhook {url}: not delivered after {ATTEMPTS} attempts: {last}"
                        ));
                    }
                }
            });
        Self { tx, facts }
    }

    pub fn send(&self, alert: serde_json::Value) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(alert) {
            self.facts.webhook_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}
