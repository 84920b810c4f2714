//! Replays: what the controller remembers of sessions that ended, so that a
//! captured `Start` or `Interim-Update` sent again after the session's `Stop`
//! (or a NAS retransmitting a `Start` it sent before the `Stop`) does not
//! bind the device again. The listener's duplicate check only covers the
//! NAS's retransmissions (30 s, same authenticator); a replay a minute
//! later passes it and verifies, since its authenticator is genuine.
//!
//! - A session the NAS stopped stays stopped for [`REMEMBER_S`]: its
//!   `Acct-Session-Id` is unique for the NAS (RFC 2866 §5.5), so no genuine
//!   packet names it again. A NAS that does reuse one within the day has it
//!   ignored (`cause="ended"`): the role is not granted, which fails safe.
//! - A session the controller ended by itself (no update in time, its role
//!   left the policy, the table full, the file made the device
//!   life-critical) may come back with the NAS's next update, as before,
//!   but only with an `Event-Timestamp` newer than the last one the
//!   session had, when it had one: a replay of an update already taken
//!   carries an old one.
//! - Any `Start`/`Interim-Update` whose `Event-Timestamp` is older than
//!   the last one its open session had, or than [`REMEMBER_S`] before now,
//!   is stale (`cause="stale"`).
//!
//! What this does not cover (README): a replay after a restart of the
//! controller (this memory is not saved) of a session whose NAS sends no
//! `Event-Timestamp`, and one more than a day later from such a NAS.

use std::collections::{HashMap, VecDeque};

use super::Ignored;

/// How long an ended session is remembered: a day.
pub const REMEMBER_S: i64 = 24 * 3600;
/// At most this many are remembered (a NAS cannot grow the controller
/// without bound); the oldest go first.
pub const MAX_ENDED: usize = 200_000;

type Key = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// The NAS sent its `Stop`.
    Stopped,
    /// The controller ended it (timeout, policy, cap, life-critical).
    Lapsed,
}

#[derive(Debug, Clone, Copy)]
struct Gone {
    how: How,
    at: i64,
    last_event: Option<u32>,
}

#[derive(Debug, Default)]
pub struct Ended {
    by_key: HashMap<Key, Gone>,
    order: VecDeque<(i64, Key)>,
}

/// Whether `event` (an `Event-Timestamp`) is more than [`REMEMBER_S`]
/// before `now`.
pub fn too_old(event: Option<u32>, now: i64) -> bool {
    event.is_some_and(|e| i64::from(e) < now - REMEMBER_S)
}

impl Ended {
    pub fn record(&mut self, key: Key, how: How, at: i64, last_event: Option<u32>) {
        self.age(at);
        self.by_key.insert(
            key.clone(),
            Gone {
                how,
                at,
                last_event,
            },
        );
        self.order.push_back((at, key));
    }

    /// Whether a `Start`/`Interim-Update` for `key` carrying `event` may
    /// open it again; if so, it is forgotten here.
    pub fn reopen(&mut self, key: &Key, event: Option<u32>, now: i64) -> Result<(), Ignored> {
        self.age(now);
        let Some(g) = self.by_key.get(key) else {
            return Ok(());
        };
        match (g.how, g.last_event, event) {
            (How::Stopped, _, _) => return Err(Ignored::Ended),
            (How::Lapsed, Some(last), Some(e)) if e <= last => return Err(Ignored::Stale),
            (How::Lapsed, Some(_), None) => return Err(Ignored::Stale),
            _ => {}
        }
        self.by_key.remove(key);
        Ok(())
    }

    /// Drops what is older than a day, and the oldest beyond the cap. The
    /// order may name a key recorded again since: only the entry with the
    /// same time goes.
    fn age(&mut self, now: i64) {
        while let Some((at, _)) = self.order.front() {
            if *at > now - REMEMBER_S && self.order.len() < MAX_ENDED {
                break;
            }
            let (at, key) = self.order.pop_front().expect("non-empty");
            if self.by_key.get(&key).is_some_and(|g| g.at == at) {
                self.by_key.remove(&key);
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> Key {
        ("10.0.0.1".into(), id.into())
    }

    #[test]
    fn a_stopped_session_stays_stopped_for_a_day() {
        let mut e = Ended::default();
        e.record(key("S"), How::Stopped, 1000, Some(990));
        assert_eq!(e.reopen(&key("S"), Some(5000), 1100), Err(Ignored::Ended));
        assert_eq!(e.reopen(&key("S"), None, 1100), Err(Ignored::Ended));
        assert_eq!(e.reopen(&key("T"), None, 1100), Ok(()));
        assert_eq!(e.reopen(&key("S"), None, 1000 + REMEMBER_S), Ok(()));
        assert_eq!(e.len(), 0);
    }

    #[test]
    fn a_lapsed_session_reopens_only_with_a_newer_event() {
        let mut e = Ended::default();
        e.record(key("S"), How::Lapsed, 1000, Some(990));
        assert_eq!(e.reopen(&key("S"), Some(990), 1100), Err(Ignored::Stale));
        assert_eq!(e.reopen(&key("S"), None, 1100), Err(Ignored::Stale));
        assert_eq!(e.reopen(&key("S"), Some(991), 1100), Ok(()));
        // Forgotten once reopened.
        assert_eq!(e.reopen(&key("S"), Some(1), 1100), Ok(()));
        // A session that never had a timestamp comes back as before.
        e.record(key("N"), How::Lapsed, 1000, None);
        assert_eq!(e.reopen(&key("N"), None, 1100), Ok(()));
    }

    #[test]
    fn a_key_recorded_again_outlives_its_first_record() {
        let mut e = Ended::default();
        e.record(key("S"), How::Stopped, 1000, None);
        assert_eq!(e.reopen(&key("S"), None, 1000), Err(Ignored::Ended));
        e.record(key("S"), How::Stopped, 2000, None);
        assert_eq!(
            e.reopen(&key("S"), None, 1000 + REMEMBER_S),
            Err(Ignored::Ended),
            "the second record is younger than a day"
        );
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut e = Ended::default();
        for i in 0..MAX_ENDED + 10 {
            e.record(key(&i.to_string()), How::Stopped, 1000, None);
        }
        assert!(e.len() <= MAX_ENDED);
        assert_eq!(e.reopen(&key("0"), None, 1000), Ok(()), "oldest dropped");
    }

    #[test]
    fn old_event_timestamps_are_too_old() {
        assert!(too_old(Some(100), 100 + REMEMBER_S + 1));
        assert!(!too_old(Some(100), 100 + REMEMBER_S));
        assert!(!too_old(None, i64::MAX));
    }
}
