//! The distinct (address, port) targets a device opened flows to within
//! the scan window, as the spec counts them: a target seen again is one
//! target with a later time, so repeated flows to one service cannot push
//! a scan's earlier targets out of the count. Memory is bounded by the
//! threshold: it keeps the newest that many targets, all a count that
//! stops at the threshold needs.

use std::collections::{HashMap, VecDeque};

pub type Target = (String, u16);

#[derive(Default)]
pub struct Window {
    /// Each target's latest sighting's sequence number.
    last: HashMap<Target, u64>,
    /// Sightings in time order; one is live while `last` holds its
    /// sequence number (a later sighting of its target replaces it).
    order: VecDeque<(i64, u64, Target)>,
    seq: u64,
}

impl Window {
    /// Counts `target` seen at `now` (unix seconds) and returns how many
    /// distinct targets were seen within the last `window` seconds, at
    /// most `threshold`.
    pub fn see(&mut self, target: Target, now: i64, window: i64, threshold: usize) -> usize {
        while self
            .order
            .front()
            .is_some_and(|(t, _, _)| *t <= now - window)
        {
            let (_, seq, k) = self.order.pop_front().expect("a front");
            if self.last.get(&k) == Some(&seq) {
                self.last.remove(&k);
            }
        }
        // Full, the oldest target makes room: the newest `threshold`
        // are what a scan still inside the window is counted from once
        // older ones leave it.
        if !self.last.contains_key(&target) && self.last.len() >= threshold.max(1) {
            while let Some((_, seq, k)) = self.order.pop_front() {
                if self.last.get(&k) == Some(&seq) {
                    self.last.remove(&k);
                    break;
                }
            }
        }
        self.seq += 1;
        self.last.insert(target.clone(), self.seq);
        self.order.push_back((now, self.seq, target));
        // Repeats leave dead sightings behind: dropped once they
        // outnumber the live ones, so each costs O(1) on average.
        if self.order.len() > 2 * self.last.len() + 64 {
            let last = &self.last;
            self.order.retain(|(_, seq, k)| last.get(k) == Some(seq));
        }
        self.last.len()
    }

    pub fn clear(&mut self) {
        self.last.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ip: &str, port: u16) -> Target {
        (ip.to_owned(), port)
    }

    /// The review's evasion: seven flows to one allowed service between
    /// probes used to push earlier probes out of a bounded list of raw
    /// flows, so twenty targets in ten seconds never added up to twenty.
    #[test]
    fn repeated_flows_to_one_target_do_not_hide_a_scan() {
        let mut w = Window::default();
        let mut seen = 0;
        for probe in 0..20u16 {
            for _ in 0..7 {
                w.see(t("10.0.0.1", 443), 0, 10, 20);
            }
            seen = w.see(t("10.0.9.9", probe), probe as i64 / 3, 10, 20);
        }
        assert_eq!(seen, 20);
        assert!(w.order.len() <= 2 * w.last.len() + 64, "{}", w.order.len());
    }

    #[test]
    fn targets_leave_the_window_and_repeats_count_once() {
        let mut w = Window::default();
        assert_eq!(w.see(t("a", 1), 0, 10, 5), 1);
        assert_eq!(w.see(t("a", 1), 1, 10, 5), 1);
        assert_eq!(w.see(t("b", 1), 2, 10, 5), 2);
        // `a` was seen again at 1: it stays until 11.
        assert_eq!(w.see(t("c", 1), 10, 10, 5), 3);
        assert_eq!(w.see(t("c", 1), 11, 10, 5), 2, "a left at 11");
        assert_eq!(w.see(t("d", 1), 12, 10, 5), 2, "b left at 12");
        // Held at the threshold: a flood of targets costs no more memory.
        for i in 0..1000 {
            w.see(t("x", i), 13, 10, 5);
        }
        assert_eq!(w.last.len(), 5);
        assert!(w.order.len() <= 2 * 5 + 64);
    }

    /// Targets seen while the window was full still count once the older
    /// ones leave it (the review's case: twenty probes, twenty more just
    /// before the window ends, then one after).
    #[test]
    fn a_full_window_keeps_the_newest_targets() {
        let mut w = Window::default();
        for p in 0..20 {
            w.see(t("a", p), 0, 10, 20);
        }
        for p in 0..20 {
            w.see(t("b", p), 9, 10, 20);
        }
        assert_eq!(w.see(t("c", 1), 10, 10, 20), 20, "b's twenty and c");
    }
}
