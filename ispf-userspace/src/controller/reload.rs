//! Reloading the policy file: refused whole when it cannot be applied with
//! the runtime decisions that hold (or on a host that follows a fleet
//! site), else applied as one generation with its diff reported.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Result;

use super::{
    decide::desired,
    engine::{log, now_rfc3339, unix_now, Engine},
    expiry::without,
};
use crate::{
    control::{ReloadReport, Response},
    decisions::file_change_effects,
    policy::{diff::diff, load::read_policy},
};

impl Engine {
    /// `from_fleet`: the site's revision, which the fleet hands over; any
    /// other reload on a host of a fleet (a client's, SIGHUP's, even of
    /// the file the fleet wrote) would split it from the other hosts.
    pub fn reload(&mut self, path: Option<PathBuf>, dry_run: bool, from_fleet: bool) -> Response {
        let path = path.unwrap_or_else(|| self.enforced.path.clone());
        if self.fleet.is_some() && !dry_run && !from_fleet {
            let site = self.fleet.as_ref().map_or("", |f| f.site());
            let message = if path
                .file_name()
                .is_some_and(|n| n == crate::fleet::CANDIDATE_FILE)
            {
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
        self.busy(None);
        if !dry_run {
            self.last_reload_unix = unix_now();
            self.last_reload_ok = result.is_ok();
        }
        let resp = match result {
            Ok(r) => {
                if r.applied {
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
        let mut d = diff(&self.policy, &new);
        d.decisions = notes;
        let generation = if dry_run {
            self.dp.epoch()
        } else {
            let g = self.enforce(file, new, path, Some(&bytes), decisions, now)?;
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
