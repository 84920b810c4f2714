//! Delivered decision keys that had expired long before this host first
//! saw them: not enforced (they are over), and said rather than left out
//! silently, since a host whose clock is ahead of the writer's would
//! otherwise not hold a short quarantine and say nothing.

use std::collections::BTreeMap;

use super::fleet_sets::Key;
use crate::{decisions::Decision, fleet::writer::EXPIRY_GRACE_S};

/// How long past its expiry a delivered key must be for more than the
/// time etcd keeps it ([`EXPIRY_GRACE_S`], on the writer's clock) and a
/// small difference between two hosts' clocks to explain it.
const LONG_EXPIRED_S: i64 = EXPIRY_GRACE_S + 10;

pub(super) fn long_expired(ago: i64) -> String {
    format!(
        "it had expired more than {LONG_EXPIRED_S} s before this host first saw it ({ago} s ago by this host's clock), longer than etcd keeps a key the fleet wrote: this host's clock is probably ahead of the writer's (check both hosts' time synchronisation), or the key was written by hand with an expiry in the past, or etcd or this host restarted since it was written (then it goes by itself)"
    )
}

/// The delivered keys, each with the decision it held when this host first
/// saw it (its time and expiry) and whether that had then expired more
/// than [`LONG_EXPIRED_S`] before. Judged once, at the first delivery: etcd
/// may keep a key past its lease's end later on (a restarted etcd restarts
/// its leases), which says nothing of this host's clock.
#[derive(Default)]
pub(super) struct Seen(BTreeMap<Key, ((i64, Option<i64>), bool)>);

impl Seen {
    /// Those of `set` that were long expired when first seen, with how
    /// long ago they expired; forgets the keys no longer delivered.
    pub(super) fn stale<'a>(&mut self, set: &'a [Decision], now: i64) -> Vec<(&'a Decision, i64)> {
        let mut seen = BTreeMap::new();
        let mut stale = Vec::new();
        for d in set {
            let k = (d.mac.clone(), d.kind);
            let id = (d.at, d.expires);
            let ago = d.expires.map_or(0, |e| now.saturating_sub(e));
            let long = match self.0.get(&k) {
                Some((was, long)) if *was == id => *long,
                _ => ago > LONG_EXPIRED_S,
            };
            // Not once it holds again (the clock was set right).
            if long && ago >= 0 && d.expires.is_some() {
                stale.push((d, ago));
            }
            seen.insert(k, (id, long));
        }
        self.0 = seen;
        stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::Kind;

    fn quarantine(mac: &str, at: i64, expires: Option<i64>) -> Decision {
        Decision {
            mac: mac.into(),
            kind: Kind::Quarantine,
            segment: None,
            name: None,
            risk: None,
            reason: "scan".into(),
            forced: false,
            actor: "detect".into(),
            at,
            expires,
            addresses: Vec::new(),
        }
    }

    #[test]
    fn a_key_is_judged_stale_only_when_first_seen() {
        let mut seen = Seen::default();
        let fresh = quarantine("02:00:00:00:00:01", 1_000, Some(1_060));
        let stale = quarantine("02:00:00:00:00:02", 1_000, Some(1_010));
        let forever = quarantine("02:00:00:00:00:03", 1_000, None);
        let set = [fresh.clone(), stale.clone(), forever];
        let got = seen.stale(&set, 1_050);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0, got[0].1), (&stale, 40));
        // Later, the fresh one is long expired (etcd kept it past its
        // lease): not this host's clock. The stale one is still said.
        let got = seen.stale(&set, 2_000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, &stale);
        // Rewritten, the key is judged again; gone, it is forgotten.
        let rewritten = quarantine("02:00:00:00:00:02", 1_990, Some(2_100));
        assert!(seen.stale(&[rewritten], 2_000).is_empty());
        assert_eq!(seen.stale(std::slice::from_ref(&stale), 2_000).len(), 1);
        assert!(seen.stale(&[], 2_000).is_empty());
        assert_eq!(seen.stale(std::slice::from_ref(&fresh), 2_000).len(), 1);
        // Judged stale, then the clock set right: holds again, not said.
        assert!(seen.stale(std::slice::from_ref(&fresh), 1_050).is_empty());
        // A hand-written expiry far in the past does not overflow.
        let absurd = quarantine("02:00:00:00:00:04", 0, Some(i64::MIN));
        assert_eq!(seen.stale(&[absurd], 2_000)[0].1, i64::MAX);
    }
}
