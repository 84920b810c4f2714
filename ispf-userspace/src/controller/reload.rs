//! Reloading the policy file: refused whole when it cannot be applied with
//! the runtime decisions that hold (or on a host that follows a fleet
//! site), else applied as one generation with its diff reported.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result};

use super::{
    decide::desired,
    engine::{log, now_rfc3339, unix_now, Engine},
    expiry::without,
};
use crate::{
    control::{ReloadReport, Response},
    decisions::file_change_effects,
    feeds::{
        self,
        own::{OwnSubnets, Skip},
    },
    policy::FeedDoc,
    policy::{diff::diff, load::read_policy},
};

impl Engine {
    /// `from_fleet`: the site's revision, which the fleet hands over; any
    /// other reload on a host of a fleet (a client's, SIGHUP's, even of
    /// the file the fleet wrote) would split it from the other hosts.
    pub fn reload(&mut self, path: Option<PathBuf>, dry_run: bool, from_fleet: bool) -> Response {
        let path = path
            .or_else(|| self.reload_default.clone())
            .unwrap_or_else(|| self.enforced.path.clone());
        if self.fleet.is_some() && !dry_run && !from_fleet {
            let site = self.fleet.as_ref().map_or("", |f| f.site());
            let message = if path.file_name().is_some_and(|n| {
                n == crate::fleet::CANDIDATE_FILE || n == crate::fleet::POLICY_FILE
            }) {
                format!(
                    "this host follows fleet site {site}, and {} is its copy of the site's revision, not a file to edit: change the site with `ispf fleet push FILE`",
                    path.display()
                )
            } else {
                format!(
                    "this host follows fleet site {site}: push the file to every host with `ispf fleet push {}` (or `ispf reload --dry-run` to review it here)",
                    path.display()
                )
            };
            // Said here too: a SIGHUP (`systemctl reload`) has nobody to
            // answer.
            log(format!("reload refused, enforcement unchanged: {message}"));
            return Response::Error { message };
        }
        self.busy(Some(format!(
            "applying {} since {}",
            path.display(),
            now_rfc3339()
        )));
        let result = self.try_reload(&path, dry_run);
        // Kept only for that reload's `enforce` (see `enforceable`).
        self.precompiled = None;
        self.busy(None);
        if !dry_run {
            self.last_reload_unix = unix_now();
            self.last_reload_ok = result.is_ok();
        }
        let resp = match result {
            Ok(r) => {
                if r.applied {
                    self.reload_default = None;
                    self.reloads_ok += 1;
                    log(format!(
                        "applied {} as generation {}",
                        path.display(),
                        r.generation
                    ));
                }
                Response::Reload(r)
            }
            Err(e) => {
                if !dry_run {
                    self.reloads_failed += 1;
                }
                log(format!(
                    "reload refused, enforcement unchanged: {}",
                    crate::describe(&e)
                ));
                Response::Error {
                    message: format!(
                        "{}\nthe running policy (generation {}) stays enforced",
                        crate::describe(&e),
                        self.dp.epoch()
                    ),
                }
            }
        };
        self.publish();
        resp
    }

    fn try_reload(&mut self, path: &Path, dry_run: bool) -> Result<ReloadReport> {
        let (mut file, bytes) = read_policy(path)?;
        file.keep_ids(&self.file.segment_ids());
        let now = unix_now();
        let file = Arc::new(file);
        // Role decisions the new file makes move a life-critical device end
        // with it, in the same generation (and are not said to hold on).
        let ended = self.roles_refused(&file, &self.decisions.clone());
        let decisions = without(&self.decisions, &ended);
        let mut notes =
            file_change_effects(&self.file, &file, &decisions, now).map_err(|broken| {
                anyhow::anyhow!(
                    "{} cannot be applied with the runtime decisions that hold:\n  {}",
                    path.display(),
                    broken.join("\n  ")
                )
            })?;
        notes.extend(
            ended.iter().map(|(d, why)| {
                format!("ends the role decision of {} ({}): {why}", d.mac, d.reason)
            }),
        );
        let new = desired(&file, &decisions, now)?;
        let leaving = self.leaving_life_critical(&new);
        let mut d = diff(&self.policy, &new);
        d.decisions = notes;
        match leaving {
            Ok(Some(line)) => {
                // A reload by SIGHUP or a fleet revision has no one reading
                // its report: the log is where it is seen.
                if !dry_run {
                    log(format!("reload of {}: {line}", path.display()));
                }
                d.settings.push(line);
            }
            Ok(None) => {}
            Err(warning) => d.decisions.push(warning),
        }
        let (skipped, old_docs) = (self.feed_skips.clone(), self.policy.doc.feeds.clone());
        // What the apply would refuse, the dry run says; and either says
        // when the maps would then hold no room for a generation as large
        // (as `ispf check` does), since every later reload and decision
        // would fail. The compilation serves the apply.
        let c = self.compiled(&file, &new);
        if dry_run {
            self.dp
                .fits_beside_enforced(&c)
                .with_context(|| format!("{} would not fit the maps", path.display()))?;
        }
        if let Err(e) = self.dp.fits(&c) {
            d.decisions.push(format!(
                "warning: the maps would then hold no room for another generation as large, so every later reload and runtime decision would fail: {e}"
            ));
        }
        self.precompiled = Some(((file.sha256, new.sha256), c));
        let generation = if dry_run {
            if !self.feeds.feeds.is_empty() && file.sha256 != self.file.sha256 {
                let own = OwnSubnets::of(&file);
                let after = feeds::compile::skips(&self.feeds, &new.doc.feeds, &own);
                d.feeds = feed_notes((&skipped, &old_docs), (&after, &new.doc.feeds));
            }
            self.dp.epoch()
        } else {
            let docs = new.doc.feeds.clone();
            let g = self.enforce(file, new, path, Some(&bytes), decisions, now)?;
            d.feeds = feed_notes((&skipped, &old_docs), (&self.feed_skips, &docs));
            if !ended.is_empty() {
                self.roles_ended(ended, g, now);
            }
            g
        };
        Ok(ReloadReport {
            policy_path: path.to_owned(),
            diff: d,
            applied: !dry_run,
            generation,
        })
    }
}

/// What a file change does to the feeds' entries that hold several
/// segments: skipped now, or enforced again. Skips name feeds by their
/// position in their own file's list, which a new file may reorder, so
/// they are compared by name; a feed the new file drops says nothing.
fn feed_notes(
    (before, old_docs): (&[Skip], &[FeedDoc]),
    (after, new_docs): (&[Skip], &[FeedDoc]),
) -> Vec<String> {
    let named = |skips: &[Skip], docs: &[FeedDoc]| -> HashSet<(String, ipnet::IpNet)> {
        skips
            .iter()
            .filter_map(|k| Some((docs.get(k.feed)?.name.clone(), k.net)))
            .collect()
    };
    let (was, is) = (named(before, old_docs), named(after, new_docs));
    let mut out: Vec<String> = after
        .iter()
        .filter_map(|k| {
            let name = &new_docs.get(k.feed)?.name;
            (!was.contains(&(name.clone(), k.net)))
                .then(|| format!("threat feed `{name}`: {}", k.why))
        })
        .collect();
    let mut again: Vec<&(String, ipnet::IpNet)> = was
        .iter()
        .filter(|k| !is.contains(*k) && new_docs.iter().any(|d| d.name == k.0))
        .collect();
    again.sort_unstable();
    out.extend(again.into_iter().map(|(name, net)| {
        format!(
            "threat feed `{name}`: `{net}` is enforced again: it no longer holds several segments"
        )
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_notes_name_what_a_file_starts_and_stops_skipping() {
        let skip = |feed: usize, net: &str| Skip {
            feed,
            net: net.parse().unwrap(),
            why: format!("line 1: `{net}` holds the addresses of several segments"),
        };
        let docs = |names: &[&str]| -> Vec<FeedDoc> {
            names
                .iter()
                .map(|n| {
                    serde_json::from_value(serde_json::json!({ "name": n, "source": "/x" }))
                        .unwrap()
                })
                .collect()
        };
        let ab = docs(&["a", "b"]);
        let before = [skip(0, "10.0.0.0/9"), skip(1, "10.0.0.0/9")];
        let after = [skip(0, "10.0.0.0/9"), skip(0, "10.128.0.0/9")];
        assert_eq!(
            feed_notes((&before, &ab), (&after, &ab)),
            [
                "threat feed `a`: line 1: `10.128.0.0/9` holds the addresses of several segments",
                "threat feed `b`: `10.0.0.0/9` is enforced again: it no longer holds several segments",
            ]
        );
        assert!(feed_notes((&after, &ab), (&after, &ab)).is_empty());
        // A feed added in front moves the others' positions: nothing
        // changed for `a`; `b`, dropped, says nothing.
        let xa = docs(&["x", "a"]);
        let moved = [skip(1, "10.0.0.0/9")];
        assert!(feed_notes((&before[..1], &ab), (&moved, &xa)).is_empty());
        assert!(feed_notes((&before, &ab), (&moved, &xa)).is_empty());
    }
}
