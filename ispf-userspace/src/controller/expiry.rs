//! Decisions over time: an expiry undone as its own generation,
//! convergence after a start with what was recorded while no controller
//! ran, and role sessions a new file no longer allows.

use std::sync::Arc;

use anyhow::Result;

use super::engine::{log, unix_now, Engine};
use crate::{
    clock::rfc3339,
    decisions::{holding, roles_refused_now, Decision, Kind},
    inventory::store,
    policy::Policy,
};

/// The role sweeps still to enforce: of some devices' decisions, or of
/// all of them.
#[derive(Debug, Default)]
pub(super) enum Sweep {
    #[default]
    Nothing,
    Of(Vec<String>),
    All,
}

impl Sweep {
    fn add(&mut self, macs: Option<&[String]>) {
        *self = match (std::mem::take(self), macs) {
            (Sweep::All, _) | (_, None) => Sweep::All,
            (Sweep::Nothing, Some(m)) => Sweep::Of(m.to_vec()),
            (Sweep::Of(mut had), Some(m)) => {
                had.extend(
                    m.iter()
                        .filter(|x| !had.contains(x))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                Sweep::Of(had)
            }
        };
    }
}

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

    /// The role decisions among `decisions` that `file` would refuse
    /// now (see [`roles_refused_now`]), with why.
    pub(super) fn roles_refused(
        &mut self,
        file: &Arc<Policy>,
        decisions: &[Decision],
    ) -> Vec<(Decision, String)> {
        if !decisions.iter().any(|d| d.kind == Kind::Role) {
            return Vec::new();
        }
        let index = self.file_index.of(file);
        // Where the inventory saw each: a device the file registers by
        // address only is known by those.
        let mut seen: std::collections::HashMap<String, Vec<std::net::IpAddr>> = Default::default();
        for d in decisions.iter().filter(|d| d.kind == Kind::Role) {
            let addresses = self.seen_addresses(&d.mac);
            seen.insert(d.mac.clone(), addresses);
        }
        roles_refused_now(file, &index, decisions, |mac| {
            seen.get(mac).cloned().unwrap_or_default()
        })
    }

    /// Ends the role decisions the enforced file would refuse now, as one
    /// generation: once the engine serves, after a start, for decisions
    /// recorded by a controller without this check or enforced by pins it
    /// adopted (a reload ends them with the file it applies, see
    /// `try_reload`). Those a fresh start left out of its first generation
    /// are recorded as ended with it.
    pub(super) fn end_roles_the_file_refuses(&mut self) {
        let left_out = std::mem::take(&mut self.refused_at_start);
        if !left_out.is_empty() {
            // Never enforced by this datapath: the first generation left
            // them out, so it is the generation they end with.
            let g = self.dp.epoch();
            self.roles_ended(left_out, g, unix_now());
        }
        self.end_refused_roles(None);
    }

    /// Ends, as one generation, the role decisions the enforced file
    /// would refuse now: of the devices `macs` names, else of every one.
    pub(super) fn end_refused_roles(&mut self, macs: Option<&[String]>) {
        if let Err(e) = self.try_end_refused_roles(macs) {
            log(format!(
                "warning: role sessions that move a life-critical device could not be ended, retrying every second: {}",
                crate::describe(&e)
            ));
            self.sweep_again.add(macs);
        }
    }

    /// Retries, at each tick, the sweeps that could not be enforced: the
    /// admit that asked for one was already applied and answered, and
    /// nothing else would end those roles before a reload or a start.
    pub(super) fn sweep_pending(&mut self) {
        let pending = std::mem::take(&mut self.sweep_again);
        let r = match &pending {
            Sweep::Nothing => return,
            Sweep::Of(macs) => self.try_end_refused_roles(Some(macs)),
            Sweep::All => self.try_end_refused_roles(None),
        };
        match r {
            Ok(0) => {}
            Ok(n) => log(format!(
                "{n} role session(s) that move a life-critical device ended on a retry"
            )),
            Err(_) => self.sweep_again = pending,
        }
    }

    fn try_end_refused_roles(&mut self, macs: Option<&[String]>) -> Result<usize> {
        let file = self.file.clone();
        // Those devices' decisions only: the check reads the inventory
        // once per role.
        let judged: Vec<Decision> = match macs {
            Some(macs) => self
                .decisions
                .iter()
                .filter(|d| macs.contains(&d.mac))
                .cloned()
                .collect(),
            None => self.decisions.to_vec(),
        };
        let ended = self.roles_refused(&file, &judged);
        if ended.is_empty() {
            return Ok(0);
        }
        let n = ended.len();
        let now = unix_now();
        let kept = without(&self.decisions, &ended);
        let policy = self.desired(&kept, now)?;
        let path = self.enforced.path.clone();
        let g = self.enforce(file, policy, &path, None, kept, now)?;
        self.roles_ended(ended, g, now);
        self.publish();
        Ok(n)
    }

    /// Records role decisions ended because the file makes their devices
    /// life-critical, enforced as generation `g`: the database, the
    /// timeline, the log and events, the RADIUS listener (which forgets
    /// their sessions), and in a fleet etcd, whose keys every host would
    /// otherwise refuse at every revision.
    pub(super) fn roles_ended(&mut self, ended: Vec<(Decision, String)>, g: u32, now: i64) {
        let undone: Vec<(Decision, &str, String)> = ended
            .into_iter()
            .map(|(d, why)| {
                let detail = format!("{} ended: {why}", d.reason);
                (d, "session_ended", detail)
            })
            .collect();
        self.record_undone(&undone, now);
        if let Some(f) = &self.fleet {
            let ended: Vec<Decision> = undone.iter().map(|(d, _, _)| d.clone()).collect();
            if let Err(e) = f.delete_unchanged(&ended) {
                log(format!(
                    "fleet: the ended role decisions stay in etcd ({e}); every host refuses them"
                ));
            }
        }
        // Published first: the listener reads the decisions that hold
        // from the snapshot when it takes the notices, and would keep a
        // session whose role the old snapshot still shows.
        self.publish();
        for (d, event, detail) in &undone {
            log(format!("{} {event} (generation {g}): {detail}", d.mac));
            self.device_event(&d.mac, event, detail, "ispf");
            if let Some(s) = &self.shared {
                s.role_ended(&d.mac, &d.reason);
            }
        }
    }

    /// The addresses the inventory last saw `mac` with (none if it cannot
    /// be read).
    fn seen_addresses(&mut self, mac: &str) -> Vec<std::net::IpAddr> {
        seen_in(self.db().ok().map(|c| &*c), mac)
    }

    /// Records decisions undone by the controller itself: the database
    /// (with a timeline entry each) and its copy.
    fn record_undone(&mut self, undone: &[(Decision, &str, String)], now: i64) {
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
        if let Ok(conn) = self.db() {
            if store::record_decisions(conn, &[], &removed, &entries).is_err() {
                self.db = None;
            }
        }
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
        if want.sha256 == self.policy.sha256 {
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
        Ok(Some(d)) => d
            .ipv4
            .map(std::net::IpAddr::V4)
            .into_iter()
            .chain(d.ipv6.map(std::net::IpAddr::V6))
            .collect(),
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

#[cfg(test)]
mod tests {
    use super::Sweep;

    fn macs(m: &[&str]) -> Vec<String> {
        m.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pending_sweeps_gather_their_devices_and_all_outranks_some() {
        let mut s = Sweep::default();
        s.add(Some(&macs(&["a"])));
        s.add(Some(&macs(&["b", "a"])));
        assert!(matches!(&s, Sweep::Of(m) if *m == macs(&["a", "b"])));
        s.add(None);
        assert!(matches!(s, Sweep::All));
        s.add(Some(&macs(&["c"])));
        assert!(matches!(s, Sweep::All));
    }
}
