//! The site's decision set, when the watch delivers it: checked as this
//! host would have checked each decision had it been asked, recorded (with
//! a timeline entry per change) and enforced as one generation.

use std::collections::BTreeMap;

use super::{
    engine::{log, unix_now, Engine},
    fleet_sets::{admit, fit_prefix, rank, split, Key},
    fleet_stale::long_expired,
};
use crate::{
    decisions::{check_foreign, holding, Decision, Kind},
    inventory::store,
};

impl Engine {
    /// Makes the site's decision set the one enforced: recorded (with a
    /// timeline entry per change) and applied as one generation. A new or
    /// changed decision this host would have refused had it been asked
    /// (see [`check_foreign`]), or that cannot be applied with the others,
    /// is not enforced: what this host enforced for its key stays. Returns
    /// why each was refused, and each quarantine enforced here without an
    /// address (see [`Engine::life_critical_used`]).
    pub(super) fn fleet_decisions(
        &mut self,
        set: Vec<Decision>,
    ) -> std::result::Result<Vec<String>, String> {
        let r = self.take_fleet_decisions(set);
        // Kept only for this call's `enforce` (see `enforceable`).
        self.precompiled = None;
        r
    }

    fn take_fleet_decisions(
        &mut self,
        set: Vec<Decision>,
    ) -> std::result::Result<Vec<String>, String> {
        let now = unix_now();
        let key = |d: &Decision| (d.mac.clone(), d.kind);
        let old: BTreeMap<_, _> = self.decisions.iter().map(|d| (key(d), d.clone())).collect();
        // A timed decision past its expiry is over here (`expire` undid
        // it, or will at its next tick and record it as expired) although
        // etcd keeps its key a few seconds more: delivered again, it is
        // not recorded as decided again, nor as released by the fleet.
        let over = |d: &Decision| d.expires.is_some_and(|e| e <= now);
        let mut new: BTreeMap<_, _> = set
            .iter()
            .filter(|d| !over(d))
            .map(|d| (key(d), d.clone()))
            .collect();
        for (k, d) in old.iter().filter(|(_, d)| over(d)) {
            new.entry(k.clone()).or_insert_with(|| d.clone());
        }
        // Said, not only left out: past etcd's grace when first seen, this
        // host's clock or the key is wrong, and a short quarantine would
        // silently not hold. Not a key this host still enforces.
        let mut refused: Vec<String> = self
            .fleet_seen
            .stale(&set, now)
            .into_iter()
            .filter(|(d, _)| {
                // The same decision (a narrowed copy is one too).
                old.get(&key(d)).map(|o| (o.at, o.expires)) != Some((d.at, d.expires))
            })
            .map(|(d, ago)| refusal(d, &long_expired(ago)))
            .collect();
        let index = self.file_index.of(&self.file);
        let mut judge = None;
        let changed: Vec<Decision> = new
            .values()
            .filter(|d| old.get(&key(d)) != Some(*d))
            .cloned()
            .collect();
        // An admit places the device as much as a sighting does: a role
        // must not move a device the site admitted into a life-critical
        // segment, seen here or not. By MAC, not a scan of the set for
        // each of a burst of role keys.
        let admitted: std::collections::HashMap<&str, &String> = set
            .iter()
            .filter(|a| a.kind == Kind::Admit && !over(a))
            .filter_map(|a| Some((a.mac.as_str(), a.segment.as_ref()?)))
            .collect();
        let mut stripped_notes = Vec::new();
        for d in &changed {
            let mut d = d.clone();
            // An address a life-critical device used, as this host saw (the
            // planning host may not have): the quarantine is enforced here
            // without it, as `plan` would have made it.
            let stripped = match self.life_critical_used(&d) {
                Ok(s) => s,
                // The inventory cannot say: what this host enforced for
                // the key stays (a key it narrowed comes back every
                // delivery); a new one is taken without its addresses.
                Err(e) if old.contains_key(&key(&d)) => {
                    keep_old(&mut new, &old, key(&d));
                    refused.push(refusal(
                        &d,
                        &format!(
                            "the inventory cannot say which of its addresses a life-critical device used ({}), so what this host enforced for the key stays",
                            crate::describe(&e)
                        ),
                    ));
                    continue;
                }
                Err(_) => d.addresses.clone(),
            };
            if !stripped.is_empty() {
                d.addresses.retain(|a| !stripped.contains(a));
                new.insert(key(&d), d.clone());
            }
            let known = self.known(&d.mac, &mut judge, changed.len());
            let mut segments = known.segments;
            // A quarantine's own addresses are checked by `check_foreign`.
            if d.kind == Kind::Role {
                segments.extend(known.by_address);
                segments.extend(admitted.get(d.mac.as_str()).map(|s| (*s).clone()));
            }
            if let Err(e) = check_foreign(&d, &self.file, &index, &segments) {
                refused.push(refusal(&d, &e.to_string()));
                keep_old(&mut new, &old, key(&d));
            } else if !stripped.is_empty() {
                // Said where a refusal is (the log, `ispf fleet status`):
                // this host enforces the key otherwise than the others.
                let text = format!(
                    "decision key decisions/{}/quarantine (by {}) is enforced here without {}: a device this host saw in a life-critical segment (or the file registers there) used it within the day, or the inventory cannot say",
                    d.mac,
                    d.actor,
                    stripped.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                );
                stripped_notes.push((
                    key(&d),
                    d.clone(),
                    crate::clip(&crate::printable(&text), 1024),
                ));
            }
        }
        // Together they may still clash (two devices given one address):
        // then the changes are admitted over what stays in halves, down to
        // the ones that cannot be applied.
        if self
            .desired(&new.values().cloned().collect::<Vec<_>>(), now)
            .is_err()
        {
            let (mut kept, changes) = split(&old, &new);
            let mut applies = |trial: &BTreeMap<Key, Decision>| {
                self.desired(&trial.values().cloned().collect::<Vec<_>>(), now)
                    .map(|_| ())
                    .map_err(|e| crate::describe(&e))
            };
            let mut bad = Vec::new();
            admit(&mut kept, &changes, &mut applies, &mut bad);
            refused.extend(bad.iter().map(|(d, why)| refusal(d, why)));
            new = kept;
        }
        // Or not fit the maps (thousands of admits): then as many changes
        // as fit are taken, quarantines first, and the rest refused, so
        // that one burst of keys does not stop every later decision. A
        // compilation per trial, a dozen trials for thousands of keys.
        if self
            .enforceable(&new.values().cloned().collect::<Vec<_>>(), now)
            .is_err()
        {
            let (mut kept, mut changes) = split(&old, &new);
            let file = self.file.clone();
            changes.sort_by_key(|(_, d)| {
                rank(d, |s| {
                    crate::decisions::life_critical(&file, &[s.to_owned()]).is_some()
                })
            });
            let mut applies = |trial: &BTreeMap<Key, Decision>| {
                self.enforceable(&trial.values().cloned().collect::<Vec<_>>(), now)
            };
            let mut bad = Vec::new();
            fit_prefix(&mut kept, &changes, &mut applies, &mut bad);
            refused.extend(bad.iter().map(|(d, why)| refusal(d, why)));
            new = kept;
        }
        // Only those the clash check did not set aside.
        refused.extend(
            stripped_notes
                .into_iter()
                .filter(|(k, d, _)| new.get(k) == Some(d))
                .map(|(_, _, text)| text),
        );
        for r in &refused {
            log(format!("fleet: {r}"));
        }
        let set: Vec<Decision> = new.values().cloned().collect();
        if old == new {
            return Ok(refused);
        }
        let put: Vec<Decision> = new
            .iter()
            .filter(|(k, d)| old.get(*k) != Some(*d))
            .map(|(_, d)| d.clone())
            .collect();
        let removed: Vec<(String, Kind)> = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        let mut entries: Vec<store::TimelineEntry> = put
            .iter()
            .map(|d| store::TimelineEntry {
                mac: d.mac.clone(),
                at: now,
                event: match d.kind {
                    Kind::Quarantine => "quarantined",
                    Kind::Admit => "admitted",
                    Kind::Role => "session_started",
                }
                .into(),
                detail: format!("{} (from the fleet)", d.reason),
                actor: Some(d.actor.clone()),
            })
            .collect();
        entries.extend(removed.iter().map(|(mac, kind)| {
            store::TimelineEntry {
                mac: mac.clone(),
                at: now,
                event: if *kind == Kind::Role {
                    "session_ended"
                } else {
                    "released"
                }
                .into(),
                detail: format!("{} undone (from the fleet)", kind.as_str()),
                actor: None,
            }
        }));
        let policy = self.desired(&set, now).map_err(|e| crate::describe(&e))?;
        let file = self.file.clone();
        let path = self.enforced.path.clone();
        let before = self.dp.epoch();
        let r = self
            .enforce(file, policy, &path, None, set.clone(), now)
            .map_err(|e| crate::describe(&e));
        // Recorded once enforced (a generation written, even if saving
        // the run state after it failed): a set the datapath refused must
        // not show in `ispf device` as quarantined, nor come back at a
        // restart without etcd, and one it took must not go unrecorded
        // (the next delivery finds nothing changed). etcd is the record in
        // a fleet; the local copy serves such a restart, so a failure to
        // write it does not stop enforcement.
        // Not when the datapath switched but the engine kept its old list
        // (a failure after the switch): what follows works from that list.
        let applied = r.is_ok() || (self.dp.epoch() != before && *self.decisions == set);
        if applied {
            self.record_enforced(&put, &removed, &entries);
            for e in &entries {
                let by = e.actor.clone().unwrap_or_else(|| "fleet".into());
                self.device_event(&e.mac, &e.event, &e.detail, &by);
            }
        }
        self.save_backstop();
        self.publish();
        if applied {
            // A role the site no longer holds (another host's session
            // ended it, a revision made the device life-critical, an
            // operator deleted the key): this host's listener forgets the
            // session it names, which the NAS's next update then binds
            // again through the usual checks, rather than keep it listed
            // and bound to nothing. After the publish: the listener reads
            // the decisions that hold from the snapshot.
            if let Some(s) = &self.shared {
                for key in removed.iter().filter(|(_, k)| *k == Kind::Role) {
                    if let Some(d) = old.get(key) {
                        s.role_ended(&d.mac, &d.reason);
                    }
                }
            }
        }
        let r = r.map(|g| {
            log(format!(
                "fleet: {} decisions enforced as generation {g}",
                holding(&self.decisions, now).len()
            ));
            refused
        });
        if applied {
            self.end_roles_admitted_into_life_critical(&put);
        }
        r
    }
}

/// Puts back what this host enforced for `k`, or nothing if it had none.
fn keep_old(new: &mut BTreeMap<Key, Decision>, old: &BTreeMap<Key, Decision>, k: Key) {
    match old.get(&k) {
        Some(d) => new.insert(k, d.clone()),
        None => new.remove(&k),
    };
}

/// Said in the log and in etcd: what anyone who can write the key put
/// there is escaped and cut short.
fn refusal(d: &Decision, why: &str) -> String {
    let text = format!(
        "decision key decisions/{}/{} (by {}) refused, not enforced here: {why}; fix or delete the key",
        d.mac,
        d.kind.as_str(),
        d.actor
    );
    crate::clip(&crate::printable(&text), 1024)
}
