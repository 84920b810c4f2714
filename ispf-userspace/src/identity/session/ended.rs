//! Replays: what the controller remembers of sessions that ended, so that a
//! captured `Start` or `Interim-Update` sent again after the session's `Stop`
//! (or a NAS retransmitting a `Start` it sent before the `Stop`) does not
//! bind the device again. The listener's duplicate check only covers the
//! NAS's retransmissions (30 s, same authenticator); a replay a minute
//! later passes it and verifies, since its authenticator is genuine.
//!
//! - A session the NAS stopped stays stopped for [`REMEMBER_S`]: its
//!   `Acct-Session-Id` is unique for the NAS (RFC 2866 §5.5), so no genuine
//!   packet names it again, until the NAS restarts (`Accounting-On`/`Off`:
//!   a NAS may count its ids from 1 again), when it becomes lapsed.
//! - A session the controller ended by itself (no update in time, its role
//!   left the policy, the table full, the engine refused it, the file made
//!   the device life-critical) is lapsed: it comes back with the NAS's next
//!   update, but only with an `Event-Timestamp` newer than the last one
//!   the session carried, when it carried one.
//! - An `Event-Timestamp` more than [`REMEMBER_S`] older than the newest
//!   its NAS sent is stale: the age is the NAS's own clock's, so a NAS
//!   whose clock was never set still works.
//!
//! Saved in the inventory database (table `sessions_ended`) so that a
//! restart of the controller does not forget it.

use std::collections::{HashMap, HashSet};

use super::Ignored;

/// How long an ended session is remembered: a day.
pub const REMEMBER_S: i64 = 24 * 3600;
/// At most this many are remembered (a NAS cannot grow the controller
/// without bound); the oldest go first, a tenth at a time.
pub const MAX_ENDED: usize = 200_000;
/// How long after a refusal an update of the same second still tries
/// again.
const REFUSED_RETRY_S: i64 = 60;
/// NASes whose newest timestamp is kept (far more than any site has;
/// beyond, the ages start again).
const MAX_NAS: usize = 65_536;

pub type Key = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// The NAS sent its `Stop`.
    Stopped,
    /// The controller ended it.
    Lapsed,
    /// The engine refused its binding (an unseen MAC, a life-critical
    /// device): the NAS's next update, even within the same second, tries
    /// again.
    Refused,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Stopped => "stopped",
            How::Lapsed => "lapsed",
            How::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<How> {
        match s {
            "stopped" => Some(How::Stopped),
            "lapsed" => Some(How::Lapsed),
            "refused" => Some(How::Refused),
            _ => None,
        }
    }
}

/// One remembered session, as saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    pub how: How,
    /// Unix seconds (the controller's) when it ended.
    pub at: i64,
    /// The newest `Event-Timestamp` it carried.
    pub last_event: Option<u32>,
}

/// What changed since the last save.
#[derive(Debug)]
pub struct Unsaved {
    /// Rewrite the whole table (`rows` is all of it).
    pub rewrite: bool,
    /// Each key with what is remembered of it (`None`: delete its row).
    pub rows: Vec<(Key, Option<Gone>)>,
}

#[derive(Debug, Default)]
pub struct Ended {
    by_key: HashMap<Key, (Gone, u64)>,
    seq: u64,
    /// Keys recorded or forgotten since the last save.
    unsaved: HashSet<Key>,
    /// Too many unsaved (the database was away): the next save rewrites
    /// the table.
    rewrite: bool,
    /// Each NAS's newest timestamp, and since when (this clock) it has
    /// had updates refused as a day older, if it has.
    nas_newest: HashMap<String, (u32, Option<i64>)>,
    last_aged: i64,
}

impl Ended {
    /// What the database remembered, oldest first; each NAS's newest
    /// timestamp is the newest these carry, until it sends a newer one.
    pub fn restore(mut rows: Vec<(Key, Gone)>, now: i64) -> Self {
        rows.sort_by_key(|(_, g)| g.at);
        let mut e = Ended::default();
        for (k, g) in rows {
            e.seed(&k.0, g.last_event, now);
            e.seq += 1;
            e.by_key.insert(k, (g, e.seq));
        }
        e
    }

    /// Raises `nas`'s newest timestamp to `event` (from what a restart
    /// restored: a replay a day older is refused before the NAS speaks).
    pub fn seed(&mut self, nas: &str, event: Option<u32>, now: i64) {
        if let Some(e) = event.filter(|e| i64::from(*e) <= now + REMEMBER_S) {
            let n = self.nas_newest.entry(nas.to_owned()).or_insert((e, None));
            if e > n.0 {
                *n = (e, None);
            }
        }
    }

    /// Remembers `key` as ended; a newer timestamp than one it already
    /// had raises it.
    pub fn record(&mut self, key: Key, how: How, at: i64, last_event: Option<u32>) {
        let last_event = self
            .by_key
            .get(&key)
            .map_or(last_event, |(g, _)| g.last_event.max(last_event));
        self.seq += 1;
        self.unsaved.insert(key.clone());
        self.by_key.insert(
            key,
            (
                Gone {
                    how,
                    at,
                    last_event,
                },
                self.seq,
            ),
        );
        if self.by_key.len() > MAX_ENDED {
            self.evict_oldest(MAX_ENDED / 10);
        }
    }

    /// Whether a `Start`/`Interim-Update` for `key` carrying `event` may
    /// open it again. It stays remembered until [`Self::forget`] (a
    /// binding): an update that binds nothing (no role in it) raises its
    /// last timestamp, so an older one replayed is still refused.
    pub fn check(&mut self, key: &Key, event: Option<u32>, now: i64) -> Result<(), Ignored> {
        let Some((g, _)) = self.by_key.get_mut(key) else {
            return Ok(());
        };
        match (g.how, g.last_event, event) {
            (How::Stopped, _, _) => Err(Ignored::Ended),
            (How::Lapsed, Some(last), Some(e)) if e <= last => Err(Ignored::Stale),
            (How::Refused, Some(last), Some(e)) if e < last => Err(Ignored::Stale),
            // The refused update again, much later: a replay (a NAS's
            // retry of the same second comes within the minute).
            (How::Refused, Some(last), Some(e)) if e == last && now - g.at > REFUSED_RETRY_S => {
                Err(Ignored::Stale)
            }
            (_, _, Some(e)) => {
                if g.last_event != Some(e) {
                    g.last_event = Some(e);
                    self.unsaved.insert(key.clone());
                }
                Ok(())
            }
            (_, _, None) => Ok(()),
        }
    }

    pub fn knows(&self, key: &Key) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn forget(&mut self, key: &Key) {
        if self.by_key.remove(key).is_some() {
            self.unsaved.insert(key.clone());
        }
    }

    /// The NAS restarted: its stopped sessions become lapsed as of just
    /// before its `Accounting-On`/`Off` (forgotten when it carries no
    /// timestamp), so that the ids it hands out again open new sessions,
    /// even within that second, while replays of older packets stay
    /// refused.
    pub fn nas_restarted(&mut self, nas: &str, event: Option<u32>, now: i64) {
        // Older than the newest it sent: a replay of an old
        // Accounting-On, or a clock that came back wrong (which cannot be
        // told apart: an authenticator never seen may be one captured
        // before this controller started). Its sessions end (the caller
        // ends them: that fails safe); nothing remembered changes, its
        // clock included, which ages out a day after it last rose.
        if let (Some(e), Some((n, _))) = (event, self.nas_newest.get(nas)) {
            if e < *n {
                return;
            }
        }
        let _ = self.too_old(nas, event, now);
        let keys: Vec<Key> = self.by_key.keys().filter(|k| k.0 == nas).cloned().collect();
        for k in keys {
            let (g, _) = self.by_key.get_mut(&k).expect("listed");
            match (g.how, event) {
                (How::Stopped, None) => {
                    self.by_key.remove(&k);
                }
                // The NAS's clock went back (one without a battery):
                // its old sessions cannot be told from new ones by time,
                // so they stay as they were (an id it hands out again is
                // refused for the day: a role refused, not one granted
                // to a replay).
                (_, Some(e)) if g.last_event.is_some_and(|l| l >= e) => continue,
                (_, Some(e)) => {
                    g.how = How::Lapsed;
                    g.last_event = Some(e.saturating_sub(1));
                }
                (_, None) => continue,
            }
            self.unsaved.insert(k);
        }
    }

    /// Whether `event` from `nas` is more than [`REMEMBER_S`] older than
    /// the newest that NAS sent; a timestamp not ahead of the controller's
    /// clock by more than a day becomes the newest (one far in the future,
    /// a NAS's glitch, would refuse everything after it).
    pub fn too_old(&mut self, nas: &str, event: Option<u32>, now: i64) -> bool {
        let Some(e) = event else {
            return false;
        };
        let e64 = i64::from(e);
        let newest = self.nas_newest.get(nas).map(|(n, _)| *n);
        if newest.is_some_and(|n| e64 < i64::from(n) - REMEMBER_S) {
            if let Some((_, since)) = self.nas_newest.get_mut(nas) {
                since.get_or_insert(now);
            }
            return true;
        }
        if e64 <= now + REMEMBER_S && newest.is_none_or(|n| e > n) {
            if self.nas_newest.len() >= MAX_NAS {
                self.nas_newest.clear();
            }
            self.nas_newest.insert(nas.to_owned(), (e, None));
        }
        false
    }

    /// Forgets what ended more than a day ago (checked once a minute).
    pub fn age(&mut self, now: i64) {
        if now - self.last_aged < 60 {
            return;
        }
        self.last_aged = now;
        let old: Vec<Key> = self
            .by_key
            .iter()
            .filter(|(_, (g, _))| g.at <= now - REMEMBER_S)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.forget(&k);
        }
        // A NAS whose clock came back wrong is refused as stale for a day
        // at most, not until this controller restarts; one that is only
        // quiet keeps its clock (replays older than a day stay refused).
        self.nas_newest
            .retain(|_, (_, since)| since.is_none_or(|t| t > now - REMEMBER_S));
    }

    fn evict_oldest(&mut self, n: usize) {
        let mut seqs: Vec<(u64, Key)> = self
            .by_key
            .iter()
            .map(|(k, (_, s))| (*s, k.clone()))
            .collect();
        let n = n.min(seqs.len());
        if n == 0 {
            return;
        }
        seqs.select_nth_unstable_by_key(n - 1, |(s, _)| *s);
        for (_, k) in seqs.into_iter().take(n) {
            self.forget(&k);
        }
    }

    /// What to save: `None` when nothing changed.
    pub fn unsaved(&self) -> Option<Unsaved> {
        if self.unsaved.is_empty() && !self.rewrite {
            return None;
        }
        let rows = if self.rewrite {
            self.by_key
                .iter()
                .map(|(k, (g, _))| (k.clone(), Some(g.clone())))
                .collect()
        } else {
            self.unsaved
                .iter()
                .map(|k| (k.clone(), self.by_key.get(k).map(|(g, _)| g.clone())))
                .collect()
        };
        Some(Unsaved {
            rewrite: self.rewrite,
            rows,
        })
    }

    pub fn saved(&mut self) {
        self.unsaved.clear();
        self.rewrite = false;
    }

    /// The save failed: kept for the next, but not without bound.
    pub fn not_saved(&mut self) {
        if self.unsaved.len() > 2 * MAX_ENDED {
            self.unsaved.clear();
            self.rewrite = true;
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
#[path = "ended_tests.rs"]
mod tests;
