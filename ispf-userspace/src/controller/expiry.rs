//! Decisions over time: an expiry undone as its own generation, and
//! convergence after a start with what was recorded while no controller
//! ran (without the role sessions the file refuses: see `sweep`).

use std::sync::Arc;

use anyhow::Result;

use super::{
    engine::{log, unix_now, Engine},
    state::PLACEMENT,
};
use crate::{
    clock::rfc3339,
    decisions::{holding, leaves_entries_in_place, Decision},
    inventory::store,
    policy::Policy,
};

/// [`super::quiet`]'s cause for expired decisions not undone yet.
const UNDO: &str = "undo";

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
            // Released or replaced meanwhile: nothing left to undo.
            self.quiet.clear(UNDO);
            return;
        }
        let kept: Vec<Decision> = self
            .decisions
            .iter()
            .filter(|d| d.expires.is_none_or(|e| e > now))
            .cloned()
            .collect();
        // Retried every second; said once, then every five minutes.
        if let Err(e) = self.enforce_decisions(kept, now) {
            self.quiet.log(UNDO, 0, || {
                format!(
                    "expired decisions could not be undone yet (retried every second): {}",
                    crate::describe(&e)
                )
            });
            return;
        }
        if self.quiet.clear(UNDO) {
            log("expired decisions undone at last");
        }
        let undone: Vec<(Decision, &str, String)> = expired
            .into_iter()
            .map(|d| {
                let detail = format!(
                    "{} of {} by {} expired",
                    d.kind.as_str(),
                    rfc3339(d.at),
                    d.actor
                );
                (d, "expired", detail)
            })
            .collect();
        self.record_undone(&undone, now);
        for (d, _, _) in &undone {
            log(format!("{}: {} expired", d.mac, d.kind.as_str()));
            self.device_event(&d.mac, "released", "expired", "ispf");
        }
        self.publish();
    }

    /// The addresses the inventory last saw `mac` with (none if it cannot
    /// be read).
    pub(super) fn seen_addresses(&mut self, mac: &str) -> Vec<std::net::IpAddr> {
        seen_in(self.db().ok().map(|c| &*c), mac)
    }

    /// Records decisions undone by the controller itself: the database
    /// (with a timeline entry each) and its copy.
    pub(super) fn record_undone(&mut self, undone: &[(Decision, &str, String)], now: i64) {
        let entries: Vec<store::TimelineEntry> = undone
            .iter()
            .map(|(d, event, detail)| store::TimelineEntry {
                mac: d.mac.clone(),
                at: now,
                event: (*event).into(),
                detail: detail.clone(),
                actor: None,
            })
            .collect();
        let removed: Vec<_> = undone
            .iter()
            .map(|(d, _, _)| (d.mac.clone(), d.kind))
            .collect();
        self.record_enforced(&[], &removed, &entries);
        self.save_backstop();
    }

    /// After a start: brings what is enforced in line with the decisions
    /// recorded (a decision made, released or expired while no controller
    /// ran).
    ///
    /// A role the file refuses is left out, whether or not the pins
    /// enforced it, and recorded as ended once the engine serves (see
    /// [`Self::end_roles_the_file_refuses`]): a start that found it only in
    /// the database (a start before failed after enforcing, or `--reapply`)
    /// must not enforce it again for the moment until then.
    pub fn converge(&mut self, recorded: Vec<Decision>) -> Result<()> {
        let file = self.file.clone();
        let refused = self.roles_refused(&file, &recorded);
        let converged = self.converge_on(file, without(&recorded, &refused));
        // Those the engine still holds (it could not converge) it ends
        // itself when it serves; the others are only recorded ended then,
        // even when the generation without them was enforced and a later
        // step failed.
        let held = self.decisions.clone();
        self.refused_at_start
            .extend(refused.into_iter().filter(|(d, _)| !held.contains(d)));
        converged
    }

    fn converge_on(&mut self, file: Arc<Policy>, recorded: Vec<Decision>) -> Result<()> {
        let now = unix_now();
        let want = self.desired(&recorded, now)?;
        // Pins an older ispf enforced hash the same, but moved the
        // entries an unforced quarantine now leaves in place.
        let older =
            self.enforced.placement < PLACEMENT && leaves_entries_in_place(&file, &recorded, now);
        if want.sha256 == self.policy.sha256 && !older {
            self.decisions = Arc::new(recorded);
        } else {
            let path = self.enforced.path.clone();
            let g = self.enforce(file, want, &path, None, recorded, now)?;
            log(format!(
                "applied the recorded runtime decisions ({} holding) as generation {g}",
                holding(&self.decisions, now).len()
            ));
        }
        Ok(())
    }
}

/// The addresses the inventory behind `conn` last saw `mac` with (none if
/// it cannot be read).
pub(super) fn seen_in(conn: Option<&rusqlite::Connection>, mac: &str) -> Vec<std::net::IpAddr> {
    let (Some(conn), Some(m)) = (conn, crate::policy::parse_mac(mac)) else {
        return Vec::new();
    };
    match store::device(conn, &m) {
        Ok(Some(d)) => d.last_addresses(),
        _ => Vec::new(),
    }
}

/// `decisions` without those of `ended`.
pub(super) fn without(decisions: &[Decision], ended: &[(Decision, String)]) -> Vec<Decision> {
    decisions
        .iter()
        .filter(|d| !ended.iter().any(|(e, _)| e == *d))
        .cloned()
        .collect()
}
