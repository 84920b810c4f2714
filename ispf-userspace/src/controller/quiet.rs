//! Warnings of a cause the engine meets again at every tick (expired
//! decisions it cannot undo yet, a quarantine it cannot narrow yet, or
//! whose addresses the inventory cannot check). Each is retried as often
//! as before, since recovering sooner matters more than a quiet log; what
//! is logged is the first occurrence, then at most one line every
//! [`EVERY`] saying how many were held back, so that one lasting cause
//! does not bury the rest of the log. Once the cause is gone
//! ([`Quiet::clear`]), or it concerns other things than it did (another
//! set of devices: its `about`), the next occurrence is logged at once.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// How often a lasting cause is logged again.
pub const EVERY: Duration = Duration::from_secs(300);

/// What is held back, by cause.
#[derive(Default)]
pub struct Quiet {
    causes: HashMap<&'static str, Held>,
}

struct Held {
    logged: Instant,
    held: u64,
    about: u64,
}

impl Quiet {
    /// The line to log for an occurrence of `cause` at `now`, or `None`
    /// while it is held back. `about` says what it concerns (0: always the
    /// same): a change is logged at once. `message` is only made when it is
    /// logged.
    pub fn warn(
        &mut self,
        cause: &'static str,
        about: u64,
        now: Instant,
        message: impl FnOnce() -> String,
    ) -> Option<String> {
        let fresh = Held {
            logged: now,
            held: 0,
            about,
        };
        match self.causes.get_mut(cause) {
            Some(h) if h.about == about && now.saturating_duration_since(h.logged) < EVERY => {
                h.held += 1;
                None
            }
            Some(h) => {
                let line = match h.held {
                    0 => message(),
                    n => format!(
                        "{} (and {n} more like it in the last {} s)",
                        message(),
                        now.saturating_duration_since(h.logged).as_secs()
                    ),
                };
                *h = fresh;
                Some(line)
            }
            None => {
                self.causes.insert(cause, fresh);
                Some(message())
            }
        }
    }

    /// [`Self::warn`] now, and the line, if any, logged.
    pub fn log(&mut self, cause: &'static str, about: u64, message: impl FnOnce() -> String) {
        if let Some(line) = self.warn(cause, about, Instant::now(), message) {
            crate::clock::log(line);
        }
    }

    /// `cause` is gone: its next occurrence is logged at once. Returns
    /// whether it was there.
    pub fn clear(&mut self, cause: &'static str) -> bool {
        self.causes.remove(cause).is_some()
    }
}

/// What a warning concerns, for [`Quiet::warn`]'s `about`: the things it
/// names (devices' MACs), in order.
pub fn about<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    names.into_iter().for_each(|n| n.hash(&mut h));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_cause_is_logged_once_then_every_five_minutes_with_a_count() {
        let mut q = Quiet::default();
        let t0 = Instant::now();
        let msg = || "x".to_owned();
        assert_eq!(q.warn("a", 0, t0, msg).as_deref(), Some("x"));
        for s in 1..300 {
            assert_eq!(q.warn("a", 0, t0 + Duration::from_secs(s), msg), None);
        }
        // Another cause is not held back by the first.
        assert_eq!(q.warn("b", 0, t0, msg).as_deref(), Some("x"));
        assert_eq!(
            q.warn("a", 0, t0 + EVERY, msg).as_deref(),
            Some("x (and 299 more like it in the last 300 s)")
        );
        let later = t0 + EVERY + Duration::from_secs(1);
        assert_eq!(q.warn("a", 0, later, msg), None);
        // About something else: said at once, with what was held back.
        assert_eq!(
            q.warn("a", 7, later, msg).as_deref(),
            Some("x (and 1 more like it in the last 1 s)")
        );
        assert_eq!(q.warn("a", 7, later, msg), None);
        // Gone, then back: said at once.
        assert!(q.clear("a"));
        assert!(!q.clear("a"));
        assert_eq!(q.warn("a", 7, later, msg).as_deref(), Some("x"));
    }

    #[test]
    fn a_message_is_made_only_when_it_is_logged() {
        let mut q = Quiet::default();
        let t0 = Instant::now();
        q.warn("a", 0, t0, || "x".into());
        assert!(q
            .warn("a", 0, t0, || panic!("made while held back"))
            .is_none());
    }
}
