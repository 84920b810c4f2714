//! What the session table remembers across packets and restarts: the
//! sessions and ended sessions the database kept, and whether an update
//! is news (module `ended`).

use super::{
    ended::{Ended, Gone, How, Key, Unsaved},
    Ignored, Session, Sessions,
};

/// Packets of one second taken for a session (a NAS sends two or three
/// at most): beyond, more of the same second are no news.
const SAME_SECOND: usize = 8;

impl Sessions {
    /// The sessions recorded before a restart whose device a role decision
    /// still holds (`held`), and those it does not. Every session listed
    /// holds its device's role decision: one whose decision ended just
    /// before the controller was killed (the table is saved once a
    /// second) is over, not open; its next update, if the NAS sends one,
    /// tries again and meets the engine's checks, as a lapsed session's
    /// (`ended`, remembered with the rest). The session the decision
    /// names (`names`) holds it, else the device's newest.
    pub fn restore(
        list: Vec<Session>,
        ended: Vec<(Key, Gone)>,
        held: impl Fn(&str) -> bool,
        names: impl Fn(&Session) -> bool,
        now: i64,
    ) -> (Self, Vec<Session>) {
        let mut s = Sessions {
            ended: Ended::restore(ended, now),
            ..Default::default()
        };
        let (mut list, stale): (Vec<Session>, Vec<Session>) =
            list.into_iter().partition(|x| held(&x.mac));
        for x in list.iter().chain(&stale) {
            s.ended.seed(&x.nas, x.last_event, now);
        }
        for x in &stale {
            s.ended.record(x.key(), How::Lapsed, now, x.last_event);
        }
        list.sort_by_key(|x| x.since);
        // The session the device's role decision names holds it; when the
        // decision names none of them (written by a controller that did
        // not say), the newest.
        let named: Vec<(String, Key)> = list
            .iter()
            .filter(|x| names(x))
            .map(|x| (x.mac.clone(), x.key()))
            .collect();
        for x in list {
            s.bound.insert(x.mac.clone(), x.key());
            s.by_key.insert(x.key(), x);
        }
        for (mac, key) in named {
            s.bound.insert(mac, key);
        }
        for key in s.bound.values() {
            if let Some(x) = s.by_key.get_mut(key) {
                x.enforced = true;
            }
        }
        (s, stale)
    }

    /// Whether a `Start`/`Interim-Update` for `key` carrying `event` is
    /// news: `Err` for a replay or an out-of-date one, `Ok(false)` for
    /// the session's last timestamp again. Raises the last timestamp.
    pub(super) fn fresh(
        &mut self,
        key: &Key,
        event: Option<u32>,
        auth: &[u8; 16],
        now: i64,
    ) -> Result<bool, Ignored> {
        if self.ended.too_old(&key.0, event, now) {
            return Err(Ignored::Stale);
        }
        let Some(s) = self.by_key.get_mut(key) else {
            self.ended.check(key, event, now)?;
            return Ok(true);
        };
        let news = match (s.last_event, event) {
            (Some(last), Some(e)) if e < last => return Err(Ignored::Stale),
            // A NAS may send two updates within a second, or repeat its
            // timestamp: a packet of that second not seen yet is news, one
            // seen (a replay, even of several in turn) is not.
            (Some(last), Some(e)) if e == last => {
                let seen = s.seen_auth.contains(auth) || s.seen_auth.len() >= SAME_SECOND;
                if !seen {
                    s.seen_auth.push(*auth);
                }
                !seen
            }
            (_, Some(_)) => {
                s.last_event = event;
                s.seen_auth = vec![*auth];
                true
            }
            (_, None) => true,
        };
        Ok(news)
    }

    /// What the database should remember of ended sessions (see
    /// [`Ended::unsaved`]).
    pub fn ended_unsaved(&self) -> Option<Unsaved> {
        self.ended.unsaved()
    }

    /// Whether the last [`Self::ended_unsaved`] was saved.
    pub fn ended_saved(&mut self, ok: bool) {
        if ok {
            self.ended.saved();
        } else {
            self.ended.not_saved();
        }
    }
}
