//! Role decisions the engine ended by itself (a reload or start that
//! makes a device life-critical; in a fleet, a key deleted): the listener
//! finds a binding no decision holds and forgets its session.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::decisions::{Decision, Kind};

/// How long a binding may go without its role decision before it is
/// forgotten: in a fleet a new binding's decision arrives by the watch
/// after the listener has moved on, and a Stop's deletion and the next
/// Start's key on the same device can arrive in two revisions.
pub(super) const GONE_GRACE: Duration = Duration::from_secs(3);

/// Bound devices without a role decision, and since when.
#[derive(Default)]
pub(super) struct Unheld {
    /// The decision set `roles` was made from.
    of: Option<Arc<Vec<Decision>>>,
    roles: HashSet<String>,
    since: HashMap<String, Instant>,
}

impl Unheld {
    /// The devices of `bound` that have had no role decision in
    /// `decisions` for `grace`; each is said once.
    pub(super) fn due<'a>(
        &mut self,
        decisions: &Arc<Vec<Decision>>,
        bound: impl Iterator<Item = &'a String>,
        grace: Duration,
    ) -> Vec<String> {
        if !self.of.as_ref().is_some_and(|o| Arc::ptr_eq(o, decisions)) {
            self.roles = decisions
                .iter()
                .filter(|d| d.kind == Kind::Role)
                .map(|d| d.mac.clone())
                .collect();
            self.of = Some(decisions.clone());
        }
        let now = Instant::now();
        let mut still = HashMap::new();
        for mac in bound.filter(|m| !self.roles.contains(*m)) {
            let t = self.since.get(mac).copied().unwrap_or(now);
            still.insert(mac.clone(), t);
        }
        self.since = still;
        let due: Vec<String> = self
            .since
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= grace)
            .map(|(m, _)| m.clone())
            .collect();
        for m in &due {
            self.since.remove(m);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(mac: &str) -> Decision {
        Decision {
            mac: mac.into(),
            kind: Kind::Role,
            segment: Some("ws".into()),
            name: None,
            risk: None,
            reason: "t".into(),
            forced: false,
            actor: "t".into(),
            at: 0,
            expires: None,
            addresses: vec![],
        }
    }

    #[test]
    fn a_binding_without_its_decision_for_the_grace_is_due_and_one_that_gets_it_is_not() {
        let (a, b) = (
            "02:00:00:00:00:0a".to_owned(),
            "02:00:00:00:00:0b".to_owned(),
        );
        let bound = [a.clone(), b.clone()];
        let mut u = Unheld::default();
        let both = Arc::new(vec![role(&a), role(&b)]);
        assert!(u.due(&both, bound.iter(), Duration::ZERO).is_empty());
        // b's decision is not there yet (a fleet's watch), then arrives.
        let only_a = Arc::new(vec![role(&a)]);
        let long = Duration::from_secs(60);
        assert!(u.due(&only_a, bound.iter(), long).is_empty());
        assert!(u.due(&both, bound.iter(), Duration::ZERO).is_empty());
        // a's decision goes and stays gone.
        let only_b = Arc::new(vec![role(&b)]);
        assert_eq!(
            u.due(&only_b, bound.iter(), Duration::ZERO),
            vec![a.clone()]
        );
        // Said once (the caller forgets the binding).
        assert!(u
            .due(&only_b, [b.clone()].iter(), Duration::ZERO)
            .is_empty());
    }
}
