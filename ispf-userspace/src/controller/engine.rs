//! The engine: the one thread that owns the datapath and changes what is
//! enforced — reloads, re-attaching ports that come back, reaping stale
//! fragments, detaching. Everything else talks to it through commands and
//! reads what it publishes ([`Shared`]), so a long reload never delays an
//! answer to `ispf status` or a scrape.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::sync::oneshot;

use super::{
    ports::{self, LinkEvent},
    shared::{Shared, Snapshot},
    state::{Enforced, RunDir, State},
};
use crate::{
    control::{InterfaceStatus, Response},
    datapath::Datapath,
    decisions::{Decision, DecisionRequest},
    feeds::FeedSet,
    policy::Policy,
};

/// What became of one decision request: its message, generation and the
/// decision recorded; or why it was refused.
pub type Outcome = std::result::Result<(String, u32, Option<Decision>), String>;

pub enum Command {
    Reload {
        path: Option<PathBuf>,
        dry_run: bool,
        /// The site's revision, handed over by the fleet: the only reload
        /// a host of a fleet takes.
        from_fleet: bool,
        reply: oneshot::Sender<Response>,
    },
    Link(LinkEvent),
    /// Once a second: check every port against the kernel; now and then
    /// reap fragment state.
    Tick,
    Detach {
        reply: oneshot::Sender<Response>,
    },
    /// The controller is stopping (enforcement stays in the pins).
    Stop,
    /// New threat-feed contents; the answer says whether they are
    /// enforced (refused, the contents enforced before stay).
    Feeds {
        set: Arc<FeedSet>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Admit, quarantine or release a device.
    Decide {
        op: DecisionRequest,
        actor: String,
        reply: oneshot::Sender<Response>,
    },
    /// The site's decisions, as etcd holds them (fleet mode).
    FleetDecisions {
        set: Vec<Decision>,
        reply: oneshot::Sender<Result<Vec<String>, String>>,
    },
    /// Several decisions in one generation (a burst of role sessions).
    DecideMany {
        ops: Vec<DecisionRequest>,
        actor: String,
        reply: oneshot::Sender<Vec<Outcome>>,
    },
}

pub use crate::clock::{log, now_rfc3339, unix_now};

/// What a fresh start or an adoption hands the engine.
pub struct Started {
    pub dp: Datapath,
    /// The policy file, as enforced.
    pub file: Arc<Policy>,
    /// The file with the decisions applied: what the datapath holds.
    pub policy: Arc<Policy>,
    /// The decisions applied (as recorded where they were read from).
    pub decisions: Vec<Decision>,
    /// The feeds' contents applied.
    pub feeds: Arc<FeedSet>,
    /// Their compilation, when the start made one.
    pub feed_cache: crate::feeds::compile::CompileCache,
    pub enforced: Enforced,
    pub adopted: bool,
    pub ports: Vec<InterfaceStatus>,
    /// Recorded role decisions the start left out of the first
    /// generation because the file refuses them: recorded as ended once
    /// the engine serves.
    pub refused_roles: Vec<(Decision, String)>,
}

pub struct Engine {
    pub dp: Datapath,
    /// The policy file, as enforced.
    pub file: Arc<Policy>,
    /// The file with the runtime decisions applied: what is enforced.
    pub policy: Arc<Policy>,
    /// Every runtime decision recorded (expired ones until they are
    /// cleaned up).
    pub decisions: Arc<Vec<Decision>>,
    /// The threat feeds' last good contents.
    pub feeds: Arc<FeedSet>,
    /// Their compilation, reused across decisions.
    pub(super) feed_cache: crate::feeds::compile::CompileCache,
    /// Their entries the datapath does not hold because they hold several
    /// segments: of the generation enforced, not of a refused one.
    pub(super) feed_skips: Arc<Vec<crate::feeds::own::Skip>>,
    /// The enforced file's devices by MAC, address and name, for
    /// decisions.
    pub(super) file_index: crate::decisions::IndexCache,
    /// The inventory database, where decisions are recorded.
    pub inventory_db: PathBuf,
    pub(super) db: Option<rusqlite::Connection>,
    pub enforced: Enforced,
    pub adopted: bool,
    pub ports: Vec<InterfaceStatus>,
    pub pin_dir: PathBuf,
    pub run: RunDir,
    pub shared: Option<Arc<Shared>>,
    /// How ports are attached, again when they come back.
    pub attach: ports::AttachOptions,
    /// In a fleet, decisions go to etcd first (and come back by the watch).
    pub fleet: Option<crate::fleet::writer::Writer>,
    pub(super) reloads_ok: u64,
    pub(super) reloads_failed: u64,
    pub(super) last_reload_unix: i64,
    pub(super) last_reload_ok: bool,
    last_gc: Instant,
    /// See [`Started::refused_roles`].
    pub(super) refused_at_start: Vec<(Decision, String)>,
    /// The file a reload naming none applies instead of the enforced
    /// one's: the file this controller was started with, when it adopted
    /// pins that enforce another (`policy =` changed, then a restart).
    pub(super) reload_default: Option<PathBuf>,
    /// Role sweeps that could not be enforced, retried at each tick.
    pub(super) sweep_again: super::sweep::Pending,
    /// The addresses each held role's device was last judged with by
    /// `recheck_roles`.
    pub(super) roles_seen_at: std::collections::HashMap<String, Vec<std::net::IpAddr>>,
    /// A compilation [`Engine::enforceable`] made, for the `enforce` of
    /// the same call (see [`Engine::compiled`]).
    pub(super) precompiled: Option<(super::decide::CompiledKey, crate::policy::compile::Compiled)>,
    /// Warnings of a cause met at every tick, held back while it lasts.
    pub(super) quiet: super::quiet::Quiet,
    /// The fleet's decision keys, as first delivered.
    pub(super) fleet_seen: super::fleet_stale::Seen,
}

impl Engine {
    pub fn new(
        s: Started,
        pin_dir: &Path,
        run: RunDir,
        attach: ports::AttachOptions,
        inventory_db: PathBuf,
    ) -> Self {
        Self {
            fleet: None,
            attach,
            dp: s.dp,
            file: s.file,
            policy: s.policy,
            decisions: Arc::new(s.decisions),
            feed_skips: Arc::new(s.feed_cache.skips_of(&s.feeds)),
            feeds: s.feeds,
            feed_cache: s.feed_cache,
            file_index: Default::default(),
            inventory_db,
            db: None,
            enforced: s.enforced,
            adopted: s.adopted,
            ports: s.ports,
            pin_dir: pin_dir.to_owned(),
            run,
            shared: None,
            reloads_ok: 0,
            reloads_failed: 0,
            last_reload_unix: unix_now(),
            last_reload_ok: true,
            last_gc: Instant::now(),
            refused_at_start: s.refused_roles,
            sweep_again: Default::default(),
            roles_seen_at: Default::default(),
            precompiled: None,
            reload_default: None,
            quiet: Default::default(),
            fleet_seen: Default::default(),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            policy: self.policy.clone(),
            file_sha256: self.file.sha256_hex(),
            decisions: self.decisions.clone(),
            feeds: self.feeds.clone(),
            feed_skips: self.feed_skips.clone(),
            policy_path: self.enforced.path.clone(),
            generation: self.dp.epoch(),
            applied_at: self.enforced.applied_at.clone(),
            adopted: self.adopted,
            pin_dir: self.pin_dir.clone(),
            interfaces: self.ports.clone(),
            reloads_ok: self.reloads_ok,
            reloads_failed: self.reloads_failed,
            last_reload_unix: self.last_reload_unix,
            last_reload_ok: self.last_reload_ok,
        }
    }

    pub(super) fn publish(&self) {
        if let Some(s) = &self.shared {
            s.publish(self.snapshot());
        }
    }

    pub fn save_state(&self, enforced: Vec<Enforced>) -> Result<()> {
        self.run.save(&State {
            enforced,
            interfaces: self.ports.clone(),
        })?;
        Ok(())
    }

    /// Serves commands until a detach or until every sender is gone.
    pub fn serve(mut self, rx: std::sync::mpsc::Receiver<Command>, shared: Arc<Shared>) {
        self.shared = Some(shared);
        self.publish();
        // Recorded by a controller that did not check them; here, where
        // the fleet's writer and the listener's channel exist.
        self.end_roles_the_file_refuses();
        // A command taken while gathering hand decisions, to run next.
        let mut next: Option<Command> = None;
        while let Some(cmd) = next.take().or_else(|| rx.recv().ok()) {
            match cmd {
                Command::Reload {
                    path,
                    dry_run,
                    from_fleet,
                    reply,
                } => {
                    let r = self.reload(path, dry_run, from_fleet);
                    let _ = reply.send(r);
                }
                Command::Link(ev) => self.on_link(ev),
                Command::Tick => self.tick(),
                Command::Detach { reply } => {
                    let r = self.detach();
                    let _ = reply.send(r);
                    return;
                }
                Command::Stop => return,
                Command::Feeds { set, reply } => {
                    let _ = reply.send(self.apply_feeds(set));
                }
                Command::Decide { op, actor, reply } => {
                    next = self.decide_queued(op, actor, reply, &rx);
                }
                Command::FleetDecisions { set, reply } => {
                    let r = self.fleet_decisions(set);
                    let _ = reply.send(r);
                }
                Command::DecideMany { ops, actor, reply } => {
                    let r = self.decide_many(&ops, &actor);
                    let _ = reply.send(r);
                }
            }
        }
    }

    pub(super) fn busy(&self, what: Option<String>) {
        if let Some(s) = &self.shared {
            s.set_busy(what);
        }
    }

    fn tick(&mut self) {
        self.expire();
        self.sweep_pending();
        let before = self.ports.clone();
        for i in 0..self.ports.len() {
            self.check_port(i);
        }
        if self.ports != before {
            let _ = self.save_state(vec![self.enforced.clone()]);
            self.publish();
        }
        if self.last_gc.elapsed() >= Duration::from_secs(10) {
            self.last_gc = Instant::now();
            let timeout = self.policy.doc.defaults.timeouts.fragment;
            self.dp.gc_fragments(timeout);
            self.narrow_quarantines();
            self.recheck_roles();
        }
    }

    fn detach(&mut self) -> Response {
        match detach(&self.pin_dir, &self.run) {
            Ok(ifaces) => {
                log(format!(
                    "detached from {}; enforcement removed",
                    ifaces.join(", ")
                ));
                Response::Detached
            }
            Err(e) => Response::Error {
                message: crate::describe(&e),
            },
        }
    }
}

/// Removes every ispf pin under `pin_dir` and the run-directory state: the
/// links go (so the program is detached from every interface), then the
/// program and maps, which the kernel frees once nothing holds them.
pub fn detach(pin_dir: &Path, run: &RunDir) -> Result<Vec<String>> {
    let ifaces = ports::unpin_all(pin_dir)?;
    if pin_dir.exists() {
        std::fs::remove_dir_all(pin_dir)
            .with_context(|| format!("removing pins under {}", pin_dir.display()))?;
    }
    run.clear();
    Ok(ifaces)
}
