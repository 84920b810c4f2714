//! Decisions over time: an expiry undone as its own generation, and
//! convergence after a start with what was recorded while no controller
//! ran.

use std::sync::Arc;

use anyhow::Result;

use super::engine::{log, unix_now, Engine};
use crate::{
    clock::rfc3339,
    decisions::{holding, Decision},
    inventory::store,
};

impl Engine {
    /// Decisions whose expiry passed are undone (enforcement first: it
    /// does not wait for the database).
    pub(super) fn expire(&mut self) {
        let now = unix_now();
        let expired: Vec<Decision> = self
            .decisions
            .iter()
            .filter(|d| d.expires.is_some_and(|e| e <= now))
            .cloned()
            .collect();
        if expired.is_empty() {
            return;
        }
        let kept: Vec<Decision> = self
            .decisions
            .iter()
            .filter(|d| d.expires.is_none_or(|e| e > now))
            .cloned()
            .collect();
        let applied = self.desired(&kept, now).and_then(|policy| {
            let file = self.file.clone();
            let path = self.enforced.path.clone();
            self.enforce(file, policy, &path, None, kept, now)
        });
        if let Err(e) = applied {
            log(format!(
                "expired decisions could not be undone yet: {}",
                crate::describe(&e)
            ));
            return;
        }
        let entries: Vec<store::TimelineEntry> = expired
            .iter()
            .map(|d| store::TimelineEntry {
                mac: d.mac.clone(),
                at: now,
                event: "expired".into(),
                detail: format!(
                    "{} of {} by {} expired",
                    d.kind.as_str(),
                    rfc3339(d.at),
                    d.actor
                ),
                actor: None,
            })
            .collect();
        let removed: Vec<_> = expired.iter().map(|d| (d.mac.clone(), d.kind)).collect();
        if let Ok(conn) = self.db() {
            if store::record_decisions(conn, &[], &removed, &entries).is_err() {
                self.db = None;
            }
        }
        self.save_backstop();
        for d in &expired {
            log(format!("{}: {} expired", d.mac, d.kind.as_str()));
            self.device_event(&d.mac, "released", "expired", "ispf");
        }
        self.publish();
    }

    /// After a start: brings what is enforced in line with the decisions
    /// recorded (a decision made, released or expired while no controller
    /// ran).
    pub fn converge(&mut self, recorded: Vec<Decision>) -> Result<()> {
        let now = unix_now();
        let want = self.desired(&recorded, now)?;
        if want.sha256 == self.policy.sha256 {
            self.decisions = Arc::new(recorded);
            return Ok(());
        }
        let file = self.file.clone();
        let path = self.enforced.path.clone();
        let g = self.enforce(file, want, &path, None, recorded, now)?;
        log(format!(
            "applied the recorded runtime decisions ({} holding) as generation {g}",
            holding(&self.decisions, now).len()
        ));
        Ok(())
    }
}
