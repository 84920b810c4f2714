//! Starting the engine: a fresh datapath attached to the ports, or the
//! pinned one an earlier controller left, adopted only when the run
//! directory knows exactly what the kernel enforces.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::PathBuf,
    sync::Arc,
};

use anyhow::{bail, Context, Result};

use super::{
    backstop, decide,
    engine::{detach, log, now_rfc3339, unix_now, Engine, Started},
    ports,
    state::{Enforced, RunDir, State},
    upgrade,
};
use crate::{
    control::InterfaceStatus,
    datapath::{check_fits, migrate, Counts, Datapath, MapSizeRequest, MapSizes},
    decisions::{holding, Decision},
    feeds::{self, FeedSet},
    inventory,
    policy::{
        compile::{compile, Compiled},
        hex,
        load::read_policy,
        Policy,
    },
    system,
};

pub struct RunOptions {
    pub policy: PathBuf,
    pub interfaces: Vec<String>,
    pub pin_dir: PathBuf,
    pub run_dir: PathBuf,
    pub sizes: MapSizeRequest,
    /// Where `/metrics` is served (plain HTTP).
    pub metrics_addr: std::net::SocketAddr,
    /// Serving metrics beyond loopback must be asked for explicitly.
    pub metrics_allow_remote: bool,
    /// Write every flow event as a JSON line here (`-` for stdout).
    pub events_out: Option<PathBuf>,
    /// Adopting pins whose policy the run directory does not know: apply
    /// `policy` over them as a new generation instead of refusing.
    pub reapply: bool,
    /// Where and how ports are attached.
    pub attach: ports::AttachOptions,
    /// The inventory database and the decisions' copy live here.
    pub state_dir: PathBuf,
    /// Cap on devices the policy does not place by registration or decision.
    pub max_unknown_devices: usize,
    /// Every alert is POSTed here as JSON.
    pub alert_webhook: Option<String>,
    /// Following a site through etcd, and the file to seed it with.
    pub fleet: Option<(crate::fleet::Options, Option<Vec<u8>>)>,
}

pub fn start(opts: &RunOptions) -> Result<Engine> {
    system::require_btf()?;
    system::ensure_bpffs(&opts.pin_dir)?;
    let (policy, bytes) = read_policy(&opts.policy)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&opts.run_dir)
        .with_context(|| format!("creating the run directory {}", opts.run_dir.display()))?;
    fs::set_permissions(&opts.run_dir, fs::Permissions::from_mode(0o700))?;
    let run = RunDir::new(&opts.run_dir);
    upgrade::resume(opts)?;
    match Datapath::pinned_layout(&opts.pin_dir) {
        None => fresh(opts, policy, bytes, run),
        Some(layout) if migrate::MIGRATES_FROM.contains(&layout) => {
            upgrade::upgrade(opts, &policy, &bytes, &run)?;
            adopt(opts, policy, bytes, run)
        }
        // Our layout; another is refused with what to do.
        Some(_) => adopt(opts, policy, bytes, run),
    }
}

pub(super) fn enforced_record(
    file: &Policy,
    policy: &Policy,
    decisions: &[Decision],
    now: i64,
    path: &std::path::Path,
) -> Enforced {
    Enforced {
        sha256: file.sha256_hex(),
        path: path.to_owned(),
        applied_at: now_rfc3339(),
        segment_ids: file.segment_ids(),
        decisions: holding(decisions, now).into_values().cloned().collect(),
        meta_sha256: (policy.sha256 != file.sha256).then(|| policy.sha256_hex()),
    }
}

/// The decisions recorded in the inventory database (or its copy).
pub(super) fn recorded_decisions(opts: &RunOptions) -> Vec<Decision> {
    let (d, warning) = backstop::recorded(&inventory::db_path(&opts.state_dir));
    if let Some(w) = warning {
        log(format!("warning: runtime decisions: {w}"));
    }
    d
}

/// The feeds' contents kept from the last run: enforced from the first
/// generation, before any fetch.
pub(super) fn cached_feeds(opts: &RunOptions, file: &Policy) -> Arc<FeedSet> {
    Arc::new(feeds::refresh::load_cached(
        &feeds_dir(&opts.state_dir),
        &file.doc.feeds,
    ))
}

/// What a new datapath's first generation holds (`policy` with the cached
/// feeds) and the map sizes for it: the rule `check` applies, the policy
/// and one as large must fit.
pub(super) fn first_generation(
    opts: &RunOptions,
    file: &Policy,
    policy: &Policy,
) -> Result<(Compiled, MapSizes, Arc<FeedSet>)> {
    let feed_set = cached_feeds(opts, file);
    let compiled =
        compile(policy).with_feeds(feeds::compile::compile(&feed_set, &policy.doc.feeds));
    let counts = Counts::of(&compiled);
    let sizes = opts.sizes.resolve(&counts);
    check_fits(&sizes, &counts, &counts)?;
    Ok((compiled, sizes, feed_set))
}

pub fn feeds_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("feeds")
}

fn fresh(opts: &RunOptions, file: Policy, bytes: Vec<u8>, run: RunDir) -> Result<Engine> {
    let file = Arc::new(file);
    for iface in &opts.interfaces {
        system::check_interface(iface)?;
    }
    let decisions: Vec<Decision> = recorded_decisions(opts)
        .into_iter()
        .filter(|d| match &d.segment {
            Some(seg) if file.segment_id(seg).is_none() => {
                log(format!(
                    "warning: the {} of {} names segment `{seg}`, which {} does not have: not applied (add the segment, or `ispf release {}`)",
                    d.kind.as_str(),
                    d.mac,
                    opts.policy.display(),
                    d.mac
                ));
                false
            }
            _ => true,
        })
        .collect();
    let now = unix_now();
    let policy = match decide::desired(&file, &decisions, now) {
        Ok(p) => p,
        Err(e) => {
            log(format!("warning: {e:#}; enforcing the file alone"));
            file.clone()
        }
    };
    let (compiled, sizes, feed_set) = first_generation(opts, &file, &policy)?;
    let mut dp = Datapath::load_pinned(sizes, &opts.pin_dir)?;
    let enforced = enforced_record(&file, &policy, &decisions, now, &opts.policy);
    let started = (|| -> Result<Vec<InterfaceStatus>> {
        run.save_policy(&enforced.sha256, &bytes)?;
        dp.apply(&compiled)?;
        let mut attached = Vec::new();
        for iface in &opts.interfaces {
            attached.push(ports::attach(&mut dp, iface, &opts.pin_dir, opts.attach)?);
        }
        Ok(attached)
    })();
    let ports = match started {
        Ok(p) => p,
        Err(e) => {
            // Nothing half-attached: unpin what this start created.
            drop(dp);
            let _ = detach(&opts.pin_dir, &run);
            return Err(e.context("nothing was attached"));
        }
    };
    let started = Started {
        dp,
        file,
        policy,
        decisions,
        feeds: feed_set,
        enforced: enforced.clone(),
        adopted: false,
        ports,
    };
    let e = Engine::new(
        started,
        &opts.pin_dir,
        run,
        opts.attach,
        inventory::db_path(&opts.state_dir),
    );
    e.save_state(vec![enforced])?;
    log(format!(
        "enforcing {} (generation {}) on {}",
        opts.policy.display(),
        e.dp.epoch(),
        e.ports
            .iter()
            .map(|i| format!("{} ({})", i.name, i.mode))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(e)
}

/// The run directory's state; an unreadable one is reported and read as
/// empty (it is rewritten at the next change).
pub(super) fn run_state(run: &RunDir) -> State {
    match run.load() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            log(format!("warning: {e}"));
            State::default()
        }
    }
}

/// What the run directory records of the policy the kernel enforces
/// (`kernel_sha`, from the meta map): the file it was compiled from, with
/// the segment ids the kernel's state holds, and the record itself.
pub(super) fn recorded(
    run: &RunDir,
    state: &State,
    kernel_sha: &str,
    given: &Policy,
    given_bytes: &[u8],
) -> Option<(Arc<Policy>, Vec<u8>, Enforced)> {
    let rec = state
        .enforced
        .iter()
        .find(|e| e.kernel_sha256() == kernel_sha)?
        .clone();
    let bytes = run
        .policy(&rec.sha256)
        .or_else(|| (given.sha256_hex() == rec.sha256).then(|| given_bytes.to_vec()))?;
    let text = String::from_utf8(bytes.clone()).ok()?;
    let mut file = Policy::from_str(&text, &rec.path).ok()?;
    file.keep_ids(&rec.segment_ids);
    Some((Arc::new(file), bytes, rec))
}

fn adopt(opts: &RunOptions, given: Policy, given_bytes: Vec<u8>, run: RunDir) -> Result<Engine> {
    let given = Arc::new(given);
    let mut dp = Datapath::adopt(&opts.pin_dir).context("adopting the pinned datapath")?;
    let kernel_sha = hex(&dp.stats().meta().sha256);
    let state = run_state(&run);
    let known =
        recorded(&run, &state, &kernel_sha, &given, &given_bytes).and_then(|(file, bytes, rec)| {
            // The decisions as they held when applied (none has expired
            // for this purpose): exactly what the kernel holds.
            let policy = decide::desired(&file, &rec.decisions, i64::MIN).ok()?;
            (policy.sha256_hex() == kernel_sha).then_some((file, policy, bytes, rec))
        });
    let (file, policy, decisions, enforced) = match known {
        Some((file, policy, bytes, rec)) => {
            run.save_policy(&rec.sha256, &bytes)?;
            if given.sha256_hex() != rec.sha256 {
                log(format!(
                    "warning: {} differs from the enforced policy (generation {}, {}); it stays enforced until `ispf reload` applies the file",
                    opts.policy.display(),
                    dp.epoch(),
                    rec.path.display()
                ));
            }
            let decisions = rec.decisions.clone();
            (file, policy, decisions, rec)
        }
        None if opts.reapply => {
            // The ids the kernel's connection state holds are unknown:
            // start connection state afresh rather than misname it.
            let decisions = recorded_decisions(opts);
            let now = unix_now();
            let policy = decide::desired(&given, &decisions, now)?;
            let rec = enforced_record(&given, &policy, &decisions, now, &opts.policy);
            run.save_policy(&rec.sha256, &given_bytes)?;
            dp.reset_state()?;
            dp.apply(&compile(&policy))?;
            log(format!(
                "applied {} over the pinned datapath as generation {} (--reapply); connections are re-established",
                opts.policy.display(),
                dp.epoch()
            ));
            (given, policy, decisions, rec)
        }
        None => bail!(
            "the datapath pinned under {} enforces a policy (sha256 {}, generation {}) that the run directory {} has no record of, so this controller cannot tell which policy or segment ids it would manage. Enforcement continues unchanged. To manage it again, apply a policy over it as a new generation (connections are re-established): ispf run --reapply --policy FILE ...; or remove enforcement (an outage): ispf detach --pin-dir {}",
            opts.pin_dir.display(),
            &kernel_sha[..16],
            dp.epoch(),
            opts.run_dir.display(),
            opts.pin_dir.display()
        ),
    };
    let mut names = ports::pinned_links(&opts.pin_dir);
    for i in &opts.interfaces {
        if !names.contains(i) {
            system::check_interface(i)?;
            names.push(i.clone());
        }
    }
    let ids = ports::ProgramIds::of(&dp);
    let mut port_list = Vec::new();
    for name in names {
        let known_mode = state
            .interfaces
            .iter()
            .find(|i| i.name == name)
            .map_or("native".to_owned(), |i| i.mode.clone());
        // Adoption trusts the kernel, not the pin files.
        if ports::attached(&opts.pin_dir, &name, ids) {
            port_list.push(InterfaceStatus {
                ifindex: crate::bpfsys::ifindex(&name),
                name,
                mode: known_mode,
                attached: true,
            });
        } else if crate::bpfsys::ifindex(&name) != 0 {
            log(format!("{name}: not attached any more; attaching again"));
            port_list.push(ports::attach(&mut dp, &name, &opts.pin_dir, opts.attach)?);
        } else {
            log(format!(
                "warning: {name} does not exist now; it is enforced again when it returns"
            ));
            port_list.push(InterfaceStatus {
                name,
                mode: known_mode,
                attached: false,
                ifindex: 0,
            });
        }
    }
    // The kernel holds feed contents this controller cannot read back:
    // they are applied again (one generation) once the cached ones load.
    let feed_set = cached_feeds(opts, &file);
    let started = Started {
        dp,
        file,
        policy,
        decisions,
        feeds: Arc::new(FeedSet::default()),
        enforced: enforced.clone(),
        adopted: true,
        ports: port_list,
    };
    let mut e = Engine::new(
        started,
        &opts.pin_dir,
        run,
        opts.attach,
        inventory::db_path(&opts.state_dir),
    );
    e.save_state(vec![enforced])?;
    // Whatever is applied next carries the cached feed contents.
    let adopted_epoch = e.dp.epoch();
    e.feeds = feed_set.clone();
    // Decisions made, released or expired while no controller ran.
    if let Err(err) = e.converge(recorded_decisions(opts)) {
        log(format!(
            "warning: the recorded runtime decisions are not applied: {err:#}"
        ));
    }
    if e.dp.epoch() == adopted_epoch && !feed_set.feeds.is_empty() {
        e.apply_feeds(feed_set);
    }
    log(format!(
        "adopted the pinned datapath at {}: generation {}, {} connections tracked, on {}",
        opts.pin_dir.display(),
        e.dp.epoch(),
        e.dp.conntrack_len(),
        e.ports
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(e)
}
