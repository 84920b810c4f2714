//! Alerts over the global bound, held back and raised as it allows: those
//! that would contain a device first, then critical ones, each (device,
//! kind, service) once, none for longer than [`HELD_S`].

use std::collections::{HashSet, VecDeque};

use super::logic::{Draft, Kind, Service};

/// Alerts held back at most.
pub const MAX_HELD: usize = 1_000;
/// A held alert older than this is dropped (counted as suppressed): a
/// storm that long has drowned the operator anyway.
pub const HELD_S: i64 = 300;

type Key = (String, Kind, Option<Service>);

fn key(d: &Draft) -> Key {
    (d.mac.clone(), d.kind, d.service.clone())
}

/// Which held alert goes first: one that may quarantine (a worm's scan,
/// a flow towards a pump), then a critical one (a pump's own, which only
/// alerts), then the rest.
fn rank(d: &Draft) -> (bool, bool) {
    (d.urgent, d.critical)
}

#[derive(Default)]
pub struct Held {
    /// With when each was drafted, oldest first.
    q: VecDeque<(i64, Draft)>,
    keys: HashSet<Key>,
}

impl Held {
    /// Holds `d`, drafted at `now`. False when it cannot be: full of
    /// alerts at least as urgent (a more urgent one takes the place of the
    /// oldest less urgent, whose loss `displaced` counts). An alert held
    /// already (the same scan, or the same service, at a later flow) is
    /// held once.
    pub fn hold(&mut self, now: i64, d: &Draft, displaced: &mut u64) -> bool {
        if self.keys.contains(&key(d)) {
            return true;
        }
        if self.q.len() >= MAX_HELD {
            // The oldest of the least urgent goes, if less urgent than `d`:
            // not a worm's scan for a pump's alert while warnings stay.
            let least = self.q.iter().map(|(_, h)| rank(h)).min();
            let Some(least) = least.filter(|r| *r < rank(d)) else {
                return false;
            };
            let Some(i) = self.q.iter().position(|(_, h)| rank(h) == least) else {
                return false;
            };
            if let Some((_, gone)) = self.q.remove(i) {
                self.keys.remove(&key(&gone));
                *displaced += 1;
            }
        }
        self.keys.insert(key(d));
        self.q.push_back((now, d.clone()));
        true
    }

    /// Whether the alert `(mac, kind, service)` is held.
    pub fn holds(&self, mac: &str, kind: Kind, service: Option<&Service>) -> bool {
        self.keys
            .contains(&(mac.to_owned(), kind, service.cloned()))
    }

    /// Drops what was held past [`HELD_S`] at `now`; says how many. From
    /// the front, oldest first: a clock stepped back keeps later ones at
    /// most that much longer.
    pub fn expire(&mut self, now: i64) -> usize {
        let mut n = 0;
        while self.q.front().is_some_and(|(at, _)| now - at > HELD_S) {
            if let Some((_, d)) = self.q.pop_front() {
                self.keys.remove(&key(&d));
                n += 1;
            }
        }
        n
    }

    /// The next alert to raise: the oldest of the most urgent.
    pub fn next(&mut self) -> Option<Draft> {
        let top = self.q.iter().map(|(_, d)| rank(d)).max()?;
        let i = self.q.iter().position(|(_, d)| rank(d) == top)?;
        let (_, d) = self.q.remove(i)?;
        self.keys.remove(&key(&d));
        Some(d)
    }

    /// A device released by hand: what it was held for is not raised.
    pub fn forget(&mut self, mac: &str) {
        self.q.retain(|(_, d)| d.mac != mac);
        self.keys.retain(|k| k.0 != mac);
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(mac: &str, urgent: bool) -> Draft {
        Draft {
            mac: mac.into(),
            kind: Kind::Scan,
            critical: false,
            urgent,
            segment: "ws".into(),
            detail: String::new(),
            service: None,
            src_ip: None,
        }
    }

    /// Full of alerts that only alert, one that may contain a device takes
    /// the oldest one's place; full of urgent ones, another cannot be
    /// held. The same alert is held once.
    #[test]
    fn an_urgent_alert_displaces_the_oldest_lesser_one() {
        let mut h = Held::default();
        let mut displaced = 0;
        for n in 0..MAX_HELD {
            assert!(h.hold(0, &draft(&format!("w{n}"), false), &mut displaced));
        }
        assert!(
            h.hold(1, &draft("w5", false), &mut displaced),
            "held already"
        );
        assert!(h.holds("w5", Kind::Scan, None));
        assert!(!h.hold(1, &draft("w-new", false), &mut displaced));
        assert!(h.hold(1, &draft("worm", true), &mut displaced));
        assert_eq!(displaced, 1);
        // A pump's critical alert that may not quarantine displaces a
        // warning, not the worm's scan queued before the warnings.
        let mut pump = draft("pump", false);
        pump.critical = true;
        assert!(h.hold(1, &pump, &mut displaced));
        assert!(h.holds("worm", Kind::Scan, None) && !h.holds("w1", Kind::Scan, None));
        assert!(h.next().unwrap().mac == "worm" && h.next().unwrap().mac == "pump");
        assert!(!h.holds("w0", Kind::Scan, None), "w0 gave its place");
        assert_eq!(h.next().unwrap().mac, "w2");
        h.forget("w3");
        assert!(!h.holds("w3", Kind::Scan, None));
        assert_eq!(h.expire(HELD_S), 0);
        assert_eq!(h.expire(HELD_S + 1), MAX_HELD - 4);
        assert!(h.is_empty() && h.keys.is_empty());
    }
}
