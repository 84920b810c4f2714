//! Retransmissions: a NAS that got no Accounting-Response in time sends
//! the same request again, and it must be answered without being taken
//! twice.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
};

/// A duplicate is the same client, identifier and authenticator within
/// this long (RFC 5080 §2.2.2 suggests a few seconds; NASes retry for ~30).
const DUP_WINDOW_S: i64 = 30;
/// At most this many requests are remembered: a flood cannot grow it.
const DUP_MAX: usize = 65_536;

pub(super) type DupKey = (SocketAddr, u8, [u8; 16]);

/// The requests accepted within the window, oldest first.
#[derive(Default)]
pub(super) struct Dups {
    seen: HashMap<DupKey, i64>,
    order: VecDeque<(i64, DupKey)>,
}

impl Dups {
    /// Whether `key` was accepted within the window; remembers it if not.
    pub(super) fn repeated(&mut self, key: DupKey, now: i64) -> bool {
        if self.seen.contains_key(&key) {
            return true;
        }
        while self
            .order
            .front()
            .is_some_and(|(t, _)| *t <= now - DUP_WINDOW_S || self.order.len() >= DUP_MAX)
        {
            let (_, k) = self.order.pop_front().expect("non-empty");
            self.seen.remove(&k);
        }
        self.seen.insert(key, now);
        self.order.push_back((now, key));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_a_duplicate_within_the_window_only() {
        let from: SocketAddr = "127.0.0.1:1813".parse().unwrap();
        let mut d = Dups::default();
        assert!(!d.repeated((from, 7, [1; 16]), 100));
        assert!(d.repeated((from, 7, [1; 16]), 110));
        // Another authenticator is another request.
        assert!(!d.repeated((from, 7, [2; 16]), 110));
        // Forgotten once the window has passed (and a newer one arrives).
        assert!(!d.repeated((from, 8, [3; 16]), 131));
        assert!(!d.repeated((from, 7, [1; 16]), 131));
    }
}
