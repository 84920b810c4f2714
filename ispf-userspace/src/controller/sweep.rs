//! Role sessions the enforced file refuses now (they move a device out of
//! a life-critical segment): found, ended as one generation, recorded,
//! and retried with backoff when that generation could not be enforced.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;

use super::{
    engine::{log, unix_now, Engine},
    expiry::without,
};
use crate::{
    decisions::{roles_refused_now, Decision, Kind},
    inventory::history,
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

/// A sweep that could not be enforced, and when to try it again: after
/// 1 s, doubling to at most a minute, so a lasting fault (a full disk, a
/// full map) does not compile the whole policy every second.
#[derive(Debug, Default)]
pub(super) struct Pending {
    sweep: Sweep,
    next: Option<Instant>,
    delay: Duration,
}

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);

impl Pending {
    /// A sweep of `macs` (all: `None`) failed at `now`: the delay until
    /// the pending sweeps are tried again.
    fn failed(&mut self, macs: Option<&[String]>, now: Instant) -> Duration {
        let due = self.next;
        self.sweep.add(macs);
        let delay = self.again(now);
        // Another sweep's failure does not push back a retry already due
        // sooner.
        if let Some(due) = due {
            self.next = Some(due.min(now + delay));
        }
        delay
    }

    /// The pending sweeps failed again at `now`.
    fn again(&mut self, now: Instant) -> Duration {
        self.delay = if self.delay.is_zero() {
            FIRST_RETRY
        } else {
            (self.delay * 2).min(LAST_RETRY)
        };
        self.next = Some(now + self.delay);
        self.delay
    }

    fn due(&self, now: Instant) -> bool {
        self.pending() && self.next.is_none_or(|t| t <= now)
    }

    fn pending(&self) -> bool {
        !matches!(self.sweep, Sweep::Nothing)
    }
}

impl Engine {
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
        let r = self.try_end_refused_roles(macs);
        if r.is_ok() {
            // Generations are being enforced again: the pending sweeps
            // need not wait out their delay.
            self.sweep_again.next = None;
        }
        if let Err(e) = r {
            let delay = self.sweep_again.failed(macs, Instant::now());
            log(format!(
                "warning: role sessions that move a life-critical device could not be ended, retrying in {}s: {}",
                delay.as_secs(),
                crate::describe(&e)
            ));
        }
    }

    /// Every ten seconds: ends the roles whose device the inventory has
    /// seen since at an address the file places in a life-critical
    /// segment, as a reload would. Otherwise a role kept such a device out
    /// of its segment until the session's next interim update (up to an
    /// hour) or the next reload. Only devices whose last addresses changed
    /// since the last check are judged, and only when the file places
    /// anything life-critical by address. While a failed sweep waits out
    /// its backoff, nothing is judged.
    pub(super) fn recheck_roles(&mut self) {
        let roles: std::collections::HashSet<String> = self
            .decisions
            .iter()
            .filter(|d| d.kind == Kind::Role)
            .map(|d| d.mac.clone())
            .collect();
        self.roles_seen_at.retain(|mac, _| roles.contains(mac));
        if roles.is_empty()
            || self.sweep_again.pending()
            || !life_critical_by_address(&self.file)
            || self.db().is_err()
        {
            return;
        }
        let (macs, parsed): (Vec<String>, Vec<[u8; 6]>) = roles
            .into_iter()
            .filter_map(|mac| {
                let m = crate::policy::parse_mac(&mac)?;
                Some((mac, m))
            })
            .unzip();
        // A read that failed says nothing: judged at the next tick.
        let Ok(Ok(seen)) = self.db().map(|c| history::last_addresses(c, &parsed)) else {
            return;
        };
        let mut changed = Vec::new();
        for (mac, now) in macs.into_iter().zip(seen) {
            if self.roles_seen_at.get(&mac) != Some(&now) {
                self.roles_seen_at.insert(mac.clone(), now);
                changed.push(mac);
            }
        }
        if changed.is_empty() {
            return;
        }
        self.end_refused_roles(Some(&changed));
        // Not judged after all (the sweep waits to be retried): judged
        // afresh once it is done.
        if self.sweep_again.pending() {
            for mac in &changed {
                self.roles_seen_at.remove(mac);
            }
        }
    }

    /// Retries, at each tick once due, the sweeps that could not be
    /// enforced: the admit that asked for one was already applied and
    /// answered, and nothing else would end those roles before a reload
    /// or a start.
    pub(super) fn sweep_pending(&mut self) {
        let now = Instant::now();
        if !self.sweep_again.due(now) {
            return;
        }
        let mut pending = std::mem::take(&mut self.sweep_again);
        let r = match &pending.sweep {
            Sweep::Nothing => return,
            Sweep::Of(macs) => self.try_end_refused_roles(Some(macs)),
            Sweep::All => self.try_end_refused_roles(None),
        };
        match r {
            Ok(n) => log(format!(
                "the retried sweep of role sessions that move a life-critical device is done: {n} ended"
            )),
            Err(e) => {
                let delay = pending.again(now);
                log(format!(
                    "warning: role sessions that move a life-critical device still could not be ended, retrying in {}s: {}",
                    delay.as_secs(),
                    crate::describe(&e)
                ));
                self.sweep_again = pending;
            }
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
        let g = match self.enforce(file, policy, &path, None, kept, now) {
            Ok(g) => g,
            // Enforced, and the engine holds them no more, though a later
            // step (saving the run state) failed: nothing would find them
            // again, so they are recorded ended with this generation.
            Err(e) if !ended.iter().any(|(d, _)| self.decisions.contains(d)) => {
                log(format!(
                    "warning: the role sessions were ended as generation {}, but {}",
                    self.dp.epoch(),
                    crate::describe(&e)
                ));
                self.dp.epoch()
            }
            Err(e) => return Err(e),
        };
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
            match f.delete_unchanged(&ended) {
                Err(e) => log(format!(
                    "fleet: the ended role decisions stay in etcd ({e}); every host refuses them"
                )),
                // Changed since (a newer session's): said, not silent.
                Ok(left) if !left.is_empty() => log(format!(
                    "fleet: {} not deleted from etcd: each holds another decision than the one ended (written since); every host checks it again as it stands",
                    left.join(", ")
                )),
                Ok(_) => {}
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
}

/// Whether `file` places anything in a life-critical segment by address
/// (a subnet, or a device entry without a MAC): only then can where a
/// device was seen make it life-critical.
fn life_critical_by_address(file: &Policy) -> bool {
    // Run every ten seconds over every device of the file: the segments'
    // ids first, rather than a search of them per device.
    let critical: std::collections::HashSet<u16> = file
        .segments
        .iter()
        .zip(&file.ids)
        .filter(|(s, _)| s.life_critical)
        .map(|(_, id)| *id)
        .collect();
    file.segments
        .iter()
        .any(|s| s.life_critical && !s.subnets.is_empty())
        || file
            .devices
            .iter()
            .any(|d| d.mac.is_none() && critical.contains(&d.segment))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Pending, Sweep};

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

    #[test]
    fn a_failing_sweep_is_retried_after_a_doubling_delay_of_at_most_a_minute() {
        let t = Instant::now();
        let mut p = Pending::default();
        assert!(!p.due(t), "nothing pending");
        assert_eq!(p.failed(Some(&macs(&["a"])), t), Duration::from_secs(1));
        assert!(!p.due(t) && p.due(t + Duration::from_secs(1)));
        let delays: Vec<u64> = (0..8).map(|_| p.again(t).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(matches!(&p.sweep, Sweep::Of(m) if *m == macs(&["a"])));
    }
}
