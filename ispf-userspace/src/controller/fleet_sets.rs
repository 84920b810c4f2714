//! How a fleet decision set that cannot be enforced whole is cut down:
//! pure set logic over a trial function, tested on the host.

use std::collections::BTreeMap;

use crate::decisions::{Decision, Kind};

/// A decision key of the site: `decisions/<mac>/<kind>`.
pub(super) type Key = (String, Kind);

/// What `new` keeps of `old` (the values this host enforced for keys still
/// in `new`), and what `new` changes.
pub(super) fn split(
    old: &BTreeMap<Key, Decision>,
    new: &BTreeMap<Key, Decision>,
) -> (BTreeMap<Key, Decision>, Vec<(Key, Decision)>) {
    let kept = old
        .iter()
        .filter(|(k, _)| new.contains_key(*k))
        .map(|(k, d)| (k.clone(), d.clone()))
        .collect();
    let changes = new
        .iter()
        .filter(|(k, d)| old.get(*k) != Some(*d))
        .map(|(k, d)| (k.clone(), d.clone()))
        .collect();
    (kept, changes)
}

/// Which changes go first when not all fit: an admit that places a
/// device in a life-critical segment (a pump's place), then a quarantine
/// (it contains an attacker), a role (a clinician waits for it), any
/// other admit.
pub(super) fn rank(d: &Decision, life_critical: impl Fn(&str) -> bool) -> u8 {
    match d.kind {
        Kind::Admit if d.segment.as_deref().is_some_and(&life_critical) => 0,
        Kind::Quarantine => 1,
        Kind::Role => 2,
        Kind::Admit => 3,
    }
}

/// Adds `changes` to `kept` where they apply: a group that `applies` with
/// what is kept is kept whole; one that does not is split in halves, down
/// to each change that cannot be applied, which goes to `refused` with
/// why. Of `k` changes with `b` bad, about `2·b·log2 k` trials, each a copy
/// of the whole set, where one trial per change made a site's burst of
/// thousands of keys quadratic on the engine thread.
pub(super) fn admit<K: Ord + Clone, D: Clone>(
    kept: &mut BTreeMap<K, D>,
    changes: &[(K, D)],
    applies: &mut impl FnMut(&BTreeMap<K, D>) -> Result<(), String>,
    refused: &mut Vec<(D, String)>,
) {
    if changes.is_empty() {
        return;
    }
    let mut trial = kept.clone();
    trial.extend(changes.iter().cloned());
    match applies(&trial) {
        Ok(()) => *kept = trial,
        Err(why) if changes.len() == 1 => refused.push((changes[0].1.clone(), why)),
        Err(_) => {
            let (first, rest) = changes.split_at(changes.len() / 2);
            admit(kept, first, applies, refused);
            admit(kept, rest, applies, refused);
        }
    }
}

/// Adds to `kept` the longest prefix of `changes` that `applies` with it
/// (fitting the maps grows with each change), found by bisection: about
/// `log2 k` trials, each a compilation of the whole set, where halving
/// down to every change that does not fit took thousands. The rest go to
/// `refused`, with why the first of them does not fit; all of them when
/// `kept` alone does not (nothing of the changes is then tried).
pub(super) fn fit_prefix<K: Ord + Clone, D: Clone>(
    kept: &mut BTreeMap<K, D>,
    changes: &[(K, D)],
    applies: &mut impl FnMut(&BTreeMap<K, D>) -> Result<(), String>,
    refused: &mut Vec<(D, String)>,
) {
    let with = |n: usize| {
        let mut trial = kept.clone();
        trial.extend(changes[..n].iter().cloned());
        trial
    };
    // `lo` applies (or is 0), `hi` does not, once known.
    let (mut lo, mut hi, mut why) = (0, changes.len() + 1, String::new());
    if let Err(e) = applies(kept) {
        hi = 0;
        why = e;
    }
    while hi > 0 && lo + 1 < hi {
        let mid = (lo + hi) / 2;
        match applies(&with(mid)) {
            Ok(()) => lo = mid,
            Err(e) => {
                hi = mid;
                why = e;
            }
        }
    }
    let take = if hi == 0 { 0 } else { lo };
    *kept = with(take);
    refused.extend(
        changes[take..]
            .iter()
            .map(|(_, d)| (d.clone(), why.clone())),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes that clash (two keys claiming one address) or cannot apply
    /// alone are refused; every other is kept, in far fewer trials than
    /// one per change.
    #[test]
    fn clashing_changes_are_found_by_halves_and_the_rest_kept() {
        // Value: the address a change claims; 0 never applies.
        let mut kept: BTreeMap<u32, u32> = (0..100).map(|k| (k, 1_000 + k)).collect();
        let mut changes: Vec<(u32, u32)> = (100..4_196).map(|k| (k, 10_000 + k)).collect();
        changes[7].1 = 0;
        changes[3_000].1 = 1_005; // claims what key 5 holds
        changes[4_000].1 = 10_000 + 100; // claims what changes[0] claims
        let mut trials = 0;
        let mut applies = |m: &BTreeMap<u32, u32>| {
            trials += 1;
            let mut seen = std::collections::HashSet::new();
            match m.values().find(|v| **v == 0 || !seen.insert(**v)) {
                Some(v) => Err(format!("address {v} twice or none")),
                None => Ok(()),
            }
        };
        let mut refused = Vec::new();
        admit(&mut kept, &changes, &mut applies, &mut refused);
        let mut bad: Vec<u32> = refused.iter().map(|(d, _)| *d).collect();
        bad.sort();
        assert_eq!(bad, [0, 1_005, 10_100]);
        assert_eq!(kept.len(), 100 + changes.len() - 3);
        assert!(trials < 80, "{trials} trials for 4,096 changes");
    }

    /// Changes beyond what fits are refused with why, the rest taken, in
    /// a handful of trials; nothing is taken when what is kept alone does
    /// not fit.
    #[test]
    fn as_many_changes_as_fit_are_taken() {
        let kept: BTreeMap<u32, u32> = (0..10).map(|k| (k, k)).collect();
        let changes: Vec<(u32, u32)> = (10..5_000).map(|k| (k, k)).collect();
        let mut trials = 0;
        let fits = |cap: usize| {
            move |m: &BTreeMap<u32, u32>| {
                if m.len() <= cap {
                    Ok(())
                } else {
                    Err(format!("{} entries, room for {cap}", m.len()))
                }
            }
        };
        let mut applies = |m: &BTreeMap<u32, u32>| {
            trials += 1;
            fits(1_000)(m)
        };
        let (mut k, mut refused) = (kept.clone(), Vec::new());
        fit_prefix(&mut k, &changes, &mut applies, &mut refused);
        assert_eq!(k.len(), 1_000);
        assert_eq!(refused.len(), changes.len() - 990);
        assert!(refused[0].1.contains("room for 1000"), "{:?}", refused[0]);
        assert!(trials < 20, "{trials} trials");
        // All fit: all taken.
        let (mut k, mut refused) = (kept.clone(), Vec::new());
        fit_prefix(&mut k, &changes, &mut fits(10_000), &mut refused);
        assert_eq!((k.len(), refused.len()), (5_000, 0));
        // What is kept alone does not fit: nothing of the changes.
        let (mut k, mut refused) = (kept.clone(), Vec::new());
        fit_prefix(&mut k, &changes, &mut fits(5), &mut refused);
        assert_eq!((k.len(), refused.len()), (10, changes.len()));
    }
}
