//! The engine's side of runtime decisions: the desired state (the policy
//! file with the decisions that hold), applied like a reload as one
//! generation; decisions recorded in the inventory database before they are
//! applied. Expiries and convergence after a start are in `expiry.rs`.

use std::{path::Path, sync::Arc};

use anyhow::{anyhow, Context, Result};
use serde_json::json;

use super::{
    engine::{log, unix_now, Engine, Outcome},
    state::{Enforced, PLACEMENT},
};
use crate::{
    clock::now_rfc3339,
    decisions::{
        applied, holding, life_critical, plan, with_plan, Decision, DecisionRequest, Kind, Plan,
    },
    feeds::own,
    inventory::{db, store},
    policy::{
        compile::{compile, Compiled},
        Policy,
    },
};

/// What [`Engine::precompiled`] was compiled from: the file's hash and
/// that of the file with the decisions (the feeds do not change within
/// the engine call that keeps it).
pub(super) type CompiledKey = ([u8; 32], [u8; 32]);

/// The file with the decisions that hold at `now` applied (see
/// [`applied`]).
pub fn desired(file: &Arc<Policy>, decisions: &[Decision], now: i64) -> Result<Arc<Policy>> {
    Ok(applied(file, None, decisions, now)?)
}

/// The outcome of each request, in order: the refusals as they were, the
/// accepted ones (one plan each, in the same order) as `done` says.
pub(super) fn merge(
    outcomes: Vec<Option<String>>,
    plans: Vec<Plan>,
    mut done: impl FnMut(Plan) -> (String, u32, Option<Decision>),
) -> Vec<Outcome> {
    let mut plans = plans.into_iter();
    outcomes
        .into_iter()
        .map(|refused| match refused {
            Some(e) => Err(e),
            None => Ok(done(plans.next().expect("one plan per accepted request"))),
        })
        .collect()
}

/// What a set of plans records and undoes: decisions to put, and the
/// (MAC, kind) pairs to remove.
pub(super) fn changes(plans: &[Plan]) -> (Vec<Decision>, Vec<(String, Kind)>) {
    let put = plans.iter().filter_map(|p| p.put.clone()).collect();
    let removed = plans
        .iter()
        .flat_map(|p| p.remove.iter().map(|k| (p.mac.clone(), *k)))
        .collect();
    (put, removed)
}

/// The decisions that hold, for the run-directory record.
fn held(decisions: &[Decision], now: i64) -> Vec<Decision> {
    holding(decisions, now).into_values().cloned().collect()
}

impl Engine {
    /// [`desired`] over the enforced file, on its index (made once per
    /// file).
    pub(super) fn desired(&mut self, decisions: &[Decision], now: i64) -> Result<Arc<Policy>> {
        let index = self.file_index.of(&self.file);
        Ok(applied(&self.file, Some(&index), decisions, now)?)
    }

    /// Applies `file` with `decisions` (already worked out as `policy` for
    /// `now`) as one generation. The run directory knows it before the
    /// kernel does.
    pub(super) fn enforce(
        &mut self,
        file: Arc<Policy>,
        policy: Arc<Policy>,
        path: &Path,
        bytes: Option<&[u8]>,
        decisions: Vec<Decision>,
        now: i64,
    ) -> Result<u32> {
        let gone: Vec<u16> = self
            .file
            .segment_ids()
            .into_iter()
            .filter(|(name, _)| file.segment_id(name).is_none())
            .map(|(_, id)| id)
            .collect();
        let next = Enforced {
            sha256: file.sha256_hex(),
            path: path.to_owned(),
            applied_at: now_rfc3339(),
            segment_ids: file.segment_ids(),
            decisions: held(&decisions, now),
            meta_sha256: (policy.sha256 != file.sha256).then(|| policy.sha256_hex()),
            placement: PLACEMENT,
        };
        if let Some(bytes) = bytes {
            self.run.save_policy(&next.sha256, bytes)?;
        }
        self.save_state(vec![self.enforced.clone(), next.clone()])?;
        let compiled = self.compiled(&file, &policy);
        let generation = match self.dp.apply(&compiled) {
            Ok(g) => g,
            Err(e) => {
                let _ = self.save_state(vec![self.enforced.clone()]);
                self.run.prune(&[&self.enforced.sha256]);
                return Err(e.into());
            }
        };
        if compiled.feeds.skips != *self.feed_skips {
            if let Some(said) = own::changed(&self.feed_skips, &compiled.feeds.skips, &policy) {
                log(said);
            }
            self.feed_skips = Arc::new(compiled.feeds.skips.clone());
        }
        if !gone.is_empty() {
            self.dp.end_segments(&gone)?;
        }
        if !Arc::ptr_eq(&self.file, &file) {
            // The old file's index would keep it (tens of MB at 100k
            // devices) alive until the next decision.
            self.file_index = Default::default();
        }
        self.file = file;
        self.policy = policy;
        self.decisions = Arc::new(decisions);
        self.enforced = next;
        // The generation enforced now is this controller's, not the one it
        // found pinned (`ispf status` said "adopted" until a restart).
        self.adopted = false;
        self.save_state(vec![self.enforced.clone()])?;
        self.run.prune(&[&self.enforced.sha256]);
        Ok(generation)
    }

    /// Whether `decisions` can be enforced over the enforced file: they
    /// apply to it, and the result fits the maps beside the generation
    /// enforced now. The compilation of a set that can is kept for the
    /// `enforce` that follows within the same engine call, which then
    /// compiles once, not twice; the caller clears it when done.
    pub(super) fn enforceable(
        &mut self,
        decisions: &[Decision],
        now: i64,
    ) -> std::result::Result<(), String> {
        let policy = self
            .desired(decisions, now)
            .map_err(|e| crate::describe(&e))?;
        self.precompile_if_it_fits(&policy)
    }

    /// Compiles `policy` over the enforced file with the feeds and keeps
    /// the compilation for the `enforce` that follows, if it fits the maps
    /// with room for a generation as large.
    pub(super) fn precompile_if_it_fits(
        &mut self,
        policy: &Policy,
    ) -> std::result::Result<(), String> {
        let file = self.file.clone();
        let c = self.compiled(&file, policy);
        self.dp
            .fits(&c)
            .map_err(|e| crate::describe(&anyhow::Error::from(e)))?;
        self.precompiled = Some(((file.sha256, policy.sha256), c));
        Ok(())
    }

    /// `decisions` over the enforced file, as one generation: what the
    /// controller's own changes to the decisions (expiry, narrowing) do.
    pub(super) fn enforce_decisions(&mut self, decisions: Vec<Decision>, now: i64) -> Result<u32> {
        let policy = self.desired(&decisions, now)?;
        let file = self.file.clone();
        let path = self.enforced.path.clone();
        self.enforce(file, policy, &path, None, decisions, now)
    }

    /// What the datapath gets for `policy`: its compilation with the feeds'
    /// current contents.
    pub(super) fn compiled(&mut self, file: &Policy, policy: &Policy) -> Compiled {
        if let Some((key, c)) = self.precompiled.take() {
            if key == (file.sha256, policy.sha256) {
                return c;
            }
        }
        let feeds = self.feed_cache.compile(&self.feeds, file, policy);
        compile(policy).with_feeds(feeds)
    }

    /// The engine's own connection to the inventory database, opened when
    /// first needed and again after a failure.
    pub(super) fn db(&mut self) -> Result<&mut rusqlite::Connection> {
        if self.db.is_none() {
            self.db = Some(db::open(&self.inventory_db)?);
        }
        Ok(self.db.as_mut().expect("just opened"))
    }

    /// Ends the roles held on the devices `put` admits into a segment the
    /// file makes life-critical, as one generation. A role outranks an
    /// admit, so a role held on such a device (a NAS reporting a new
    /// pump's MAC) would keep it out of its segment.
    pub(super) fn end_roles_admitted_into_life_critical(&mut self, put: &[Decision]) {
        let macs: Vec<String> = put
            .iter()
            .filter(|d| {
                d.kind == Kind::Admit
                    && d.segment.as_ref().is_some_and(|s| {
                        life_critical(&self.file, std::slice::from_ref(s)).is_some()
                    })
            })
            .map(|d| d.mac.clone())
            .collect();
        if !macs.is_empty() {
            self.end_refused_roles(Some(&macs));
        }
    }

    /// Several decisions (a burst of role sessions) in one generation: each
    /// planned against the ones before it; those refused are reported and
    /// the rest applied together.
    pub fn decide_many(&mut self, reqs: &[DecisionRequest], actor: &str) -> Vec<Outcome> {
        match self.decide_together(reqs, actor) {
            Ok(outcomes) => outcomes,
            Err(e) => reqs.iter().map(|_| Err(crate::describe(&e))).collect(),
        }
    }

    /// [`Self::decide_many`], or why none of them was applied (they could
    /// not be recorded or enforced together; each was planned alone).
    pub(super) fn decide_together(
        &mut self,
        reqs: &[DecisionRequest],
        actor: &str,
    ) -> Result<Vec<Outcome>> {
        self.busy(Some(format!("applying a decision since {}", now_rfc3339())));
        let r = self.try_decide_many(reqs, actor);
        self.busy(None);
        self.publish();
        // In a fleet the admit comes back from etcd: `fleet_decisions`.
        if let (Ok(outcomes), None) = (&r, &self.fleet) {
            let put: Vec<Decision> = outcomes
                .iter()
                .filter_map(|o| o.as_ref().ok().and_then(|(_, _, d)| d.clone()))
                .collect();
            self.end_roles_admitted_into_life_critical(&put);
        }
        if let Err(e) = &r {
            log(format!(
                "decision refused, enforcement unchanged: {}",
                crate::describe(e)
            ));
        }
        r
    }

    fn try_decide_many(&mut self, reqs: &[DecisionRequest], actor: &str) -> Result<Vec<Outcome>> {
        let now = unix_now();
        let mut decisions = self.decisions.to_vec();
        let mut plans = Vec::new();
        let mut outcomes: Vec<Option<String>> = Vec::new();
        // Every request is planned against the same enforced policy.
        let mut judge = None;
        for req in reqs {
            let known = self.known(req.mac(), &mut judge, reqs.len());
            match plan(req, actor, now, &self.policy, &decisions, &known) {
                Ok(p) => {
                    decisions = with_plan(&decisions, &p);
                    plans.push(p);
                    outcomes.push(None);
                }
                Err(e) => outcomes.push(Some(e.to_string())),
            }
        }
        if plans.is_empty() {
            return Ok(outcomes
                .into_iter()
                .map(|e| Err(e.unwrap_or_default()))
                .collect());
        }
        if self.fleet.is_some() {
            return self.write_to_fleet(plans, outcomes, actor);
        }
        let policy = self.desired(&decisions, now)?;
        let entries: Vec<store::TimelineEntry> = plans
            .iter()
            .map(|p| store::TimelineEntry {
                mac: p.mac.clone(),
                at: now,
                event: p.event.into(),
                detail: p.detail.clone(),
                actor: Some(actor.to_owned()),
            })
            .collect();
        // Durable before it is enforced: a controller that dies in between
        // applies it when it starts again.
        let (put, removed) = changes(&plans);
        let db = self.inventory_db.clone();
        let not_recorded = || {
            format!(
                "the decision cannot be recorded in {}, so it is not applied",
                db.display()
            )
        };
        let conn = self.db().with_context(not_recorded)?;
        if let Err(e) = store::record_decisions(conn, &put, &removed, &entries) {
            self.db = None;
            let e = match e {
                db::DbError::Sql(e) => db::explain(&db, &e),
                e => e,
            };
            return Err(anyhow!(e).context(not_recorded()));
        }
        let file = self.file.clone();
        let path = self.enforced.path.clone();
        let generation = match self.enforce(file, policy, &path, None, decisions, now) {
            Ok(g) => g,
            Err(e) => {
                // Undo the record: what is recorded is what is enforced.
                let undo_put: Vec<_> = put.iter().map(|d| (d.mac.clone(), d.kind)).collect();
                let restore: Vec<Decision> = self
                    .decisions
                    .iter()
                    .filter(|d| plans.iter().any(|p| p.mac == d.mac))
                    .cloned()
                    .collect();
                if let Ok(conn) = self.db() {
                    let _ = store::record_decisions(conn, &restore, &undo_put, &[]);
                }
                return Err(e);
            }
        };
        self.save_backstop();
        Ok(merge(outcomes, plans, |p| {
            let message = format!(
                "{} {}: {} (generation {generation})",
                p.mac, p.event, p.detail
            );
            log(format!("{message}, by {actor}"));
            self.device_event(&p.mac, p.event, &p.detail, actor);
            (message, generation, p.put)
        }))
    }

    pub(super) fn device_event(&self, mac: &str, action: &str, detail: &str, actor: &str) {
        if let Some(s) = &self.shared {
            s.deliver_note(&json!({
                "time": now_rfc3339(),
                "event": "device",
                "action": action,
                "mac": mac,
                "detail": detail,
                "by": actor,
            }));
        }
    }
}
