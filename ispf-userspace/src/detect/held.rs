//! Alerts over the global bound, held back and raised as it allows:
//! critical ones first, each (device, kind, service) once, none for longer
//! than [`HELD_S`].

use std::collections::VecDeque;

use super::logic::Draft;

/// Alerts held back at most.
pub const MAX_HELD: usize = 1_000;
/// A held alert older than this is dropped (counted as suppressed): a
/// storm that long has drowned the operator anyway.
pub const HELD_S: i64 = 300;

#[derive(Default)]
pub struct Held {
    /// With when each was drafted, oldest first.
    q: VecDeque<(i64, Draft)>,
}

impl Held {
    /// Holds `d`, drafted at `now`. False when it cannot be: full of
    /// alerts at least as grave (a critical one takes the place of the
    /// oldest warning, whose loss `displaced` counts). An alert held
    /// already (the same scan, or the same service, at a later flow) is
    /// held once.
    pub fn hold(&mut self, now: i64, d: &Draft, displaced: &mut u64) -> bool {
        let same = |h: &Draft| h.mac == d.mac && h.kind == d.kind && h.service == d.service;
        if self.q.iter().any(|(_, h)| same(h)) {
            return true;
        }
        if self.q.len() >= MAX_HELD {
            let warning = self.q.iter().position(|(_, h)| !h.critical);
            match warning {
                Some(i) if d.critical => {
                    self.q.remove(i);
                    *displaced += 1;
                }
                _ => return false,
            }
        }
        self.q.push_back((now, d.clone()));
        true
    }

    /// Drops what was held past [`HELD_S`] at `now`; says how many.
    pub fn expire(&mut self, now: i64) -> usize {
        let before = self.q.len();
        self.q.retain(|(at, _)| now - at <= HELD_S);
        before - self.q.len()
    }

    /// The next alert to raise: the oldest critical one, else the oldest.
    pub fn next(&mut self) -> Option<Draft> {
        let i = self.q.iter().position(|(_, d)| d.critical).unwrap_or(0);
        self.q.remove(i).map(|(_, d)| d)
    }

    /// A device released by hand: what it was held for is not raised.
    pub fn forget(&mut self, mac: &str) {
        self.q.retain(|(_, d)| d.mac != mac);
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::logic::Kind;

    fn draft(mac: &str, critical: bool) -> Draft {
        Draft {
            mac: mac.into(),
            kind: Kind::Scan,
            critical,
            segment: "ws".into(),
            detail: String::new(),
            service: None,
            src_ip: None,
        }
    }

    /// Full of warnings, a critical alert takes the oldest one's place;
    /// full of critical ones, it cannot be held. The same alert is held
    /// once.
    #[test]
    fn a_critical_alert_displaces_the_oldest_warning() {
        let mut h = Held::default();
        let mut displaced = 0;
        for n in 0..MAX_HELD {
            assert!(h.hold(0, &draft(&format!("w{n}"), false), &mut displaced));
        }
        assert!(
            h.hold(1, &draft("w5", false), &mut displaced),
            "held already"
        );
        assert!(!h.hold(1, &draft("w-new", false), &mut displaced));
        assert!(h.hold(1, &draft("pump-scan", true), &mut displaced));
        assert_eq!(displaced, 1);
        assert_eq!(h.next().unwrap().mac, "pump-scan");
        assert_eq!(h.next().unwrap().mac, "w1", "w0 gave its place");
        assert_eq!(h.expire(HELD_S), 0);
        assert_eq!(h.expire(HELD_S + 1), MAX_HELD - 2);
        assert!(h.is_empty());
    }
}
