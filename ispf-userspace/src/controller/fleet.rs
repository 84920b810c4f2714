//! The engine's side of a fleet: decisions made here are written to etcd
//! instead of enforced at once (the site's decision set, when the watch
//! delivers it, is taken by [`super::fleet_take`]).

use std::collections::HashMap;

use anyhow::{anyhow, Result};

use super::{
    decide::{changes, merge},
    engine::{log, Engine, Outcome},
};
use crate::decisions::{Kind, Plan, SessionEnd};

/// Turns each accepted request whose role end could not be written
/// (`failed`: the plan's index among the accepted ones, its MAC and why)
/// into that request's failure; a bind of the same device in the burst
/// did land.
fn unwritten_ends(outcomes: &mut [Outcome], failed: &HashMap<usize, (&str, &str)>) {
    for (i, o) in outcomes.iter_mut().filter(|o| o.is_ok()).enumerate() {
        if let Some((mac, e)) = failed.get(&i) {
            *o = Err(format!(
                "{mac}: the end of its role could not be written to etcd: {e}"
            ));
        }
    }
}

impl Engine {
    /// Fleet mode: the planned decisions are written to etcd; every host
    /// (this one included) applies them when its watch delivers them.
    pub(super) fn write_to_fleet(
        &mut self,
        plans: Vec<Plan>,
        outcomes: Vec<Option<String>>,
        actor: &str,
    ) -> Result<Vec<Outcome>> {
        let fleet = self.fleet.as_ref().expect("fleet mode");
        let (put, mut removed) = changes(&plans);
        // A session's end deletes its role's key only while it holds a
        // decision that end ends (`SessionEnd::ends`), judged on etcd's
        // value: this host's copy may lag it both ways, another host's
        // newer session's key and this host's own writes not delivered
        // back yet.
        let (ending, ends): (Vec<usize>, Vec<(String, SessionEnd)>) = plans
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, (p.mac.clone(), p.ends.clone()?))))
            .unzip();
        let ending_macs: std::collections::HashSet<&str> =
            ends.iter().map(|(m, _)| m.as_str()).collect();
        removed.retain(|(mac, kind)| !(*kind == Kind::Role && ending_macs.contains(mac.as_str())));
        let ended = fleet.write_ending(&put, &removed, &ends).map_err(|e| {
            anyhow!("{e}; the decision is not made (it must reach every host of the site)")
        })?;
        if !ended.kept.is_empty() {
            log(format!(
                "fleet: {} kept: each holds a role decision another host's session made (or was rewritten while being deleted), which an end here does not end; a host that refused that decision keeps enforcing its own copy until that session ends",
                ended.kept.join(", ")
            ));
        }
        // By the plan each belongs to: an end that failed is that
        // request's failure, although the burst's other writes landed (the
        // listener's sweep asks again).
        let failed: HashMap<usize, (&str, &str)> = ended
            .failed
            .iter()
            .map(|(i, e)| (ending[*i], (ends[*i].0.as_str(), e.as_str())))
            .collect();
        if !failed.is_empty() {
            let keys: Vec<String> = ended
                .failed
                .iter()
                .map(|(i, e)| format!("decisions/{}/role ({e})", ends[*i].0))
                .collect();
            log(format!(
                "warning: fleet: the end of {} could not be written: the role stays in etcd with no session here until its key is deleted (etcdctl del), or, for a role this host's listener made, until its sweep of roles no session holds ends it",
                keys.join(", ")
            ));
        }
        let site = fleet.site().to_owned();
        let generation = self.dp.epoch();
        let mut planned = 0;
        let mut outcomes = merge(outcomes, plans, |p| {
            let message = format!(
                "{} {}: {} (written to fleet site {site}; every host applies it when etcd delivers it)",
                p.mac, p.event, p.detail
            );
            // An end that failed is said as one, above and by its caller.
            if !failed.contains_key(&planned) {
                log(format!("{message}, by {actor}"));
            }
            planned += 1;
            (message, generation, p.put)
        });
        unwritten_ends(&mut outcomes, &failed);
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_that_could_not_be_written_is_its_requests_failure() {
        let ok = |m: &str| -> Outcome { Ok((m.into(), 1, None)) };
        // The second request was refused before planning: three plans.
        let mut outcomes = vec![ok("a"), Err("refused".into()), ok("b"), ok("c")];
        // The second plan ended b's role and failed; the third bound b
        // again, and that landed.
        let failed = HashMap::from([(1, ("02:00:00:00:00:0b", "timed out"))]);
        unwritten_ends(&mut outcomes, &failed);
        assert!(outcomes[0].is_ok() && outcomes[3].is_ok());
        assert_eq!(outcomes[1], Err("refused".into()));
        assert_eq!(
            outcomes[2],
            Err(
                "02:00:00:00:00:0b: the end of its role could not be written to etcd: timed out"
                    .into()
            )
        );
    }
}
