//! Starting the engine: a fresh datapath attached to the ports, or the
//! pinned one an earlier controller left, adopted only when the run
//! directory knows exactly what the kernel enforces.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    sync::Arc,
};

use anyhow::{bail, Context, Result};

use super::{
    boot::{
        cached_feeds, enforced_record, first_generation, recorded, recorded_decisions,
        roles_refused_at_start, run_state, RunOptions,
    },
    decide,
    engine::{detach, log, unix_now, Engine, Started},
    expiry::without,
    ports,
    state::RunDir,
    upgrade,
};
use crate::{
    control::InterfaceStatus,
    datapath::{migrate, Datapath},
    decisions::Decision,
    feeds::FeedSet,
    inventory,
    policy::{compile::compile, hex, load::read_policy, Policy},
    system,
};

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
    let e = match Datapath::pinned_layout(&opts.pin_dir) {
        None => fresh(opts, policy, bytes, run)?,
        Some(layout) if migrate::MIGRATES_FROM.contains(&layout) => {
            upgrade::upgrade(opts, &policy, &bytes, &run)?;
            adopt(opts, policy, bytes, run)?
        }
        // Our layout; another is refused with what to do.
        Some(_) => adopt(opts, policy, bytes, run)?,
    };
    Ok(e)
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
    let refused = roles_refused_at_start(opts, &file, &decisions);
    let decisions = without(&decisions, &refused);
    let now = unix_now();
    let policy = match decide::desired(&file, &decisions, now) {
        Ok(p) => p,
        Err(e) => {
            log(format!(
                "warning: {}; enforcing the file alone",
                crate::describe(&e)
            ));
            file.clone()
        }
    };
    let first = first_generation(opts, &file, &policy)?;
    let skipped = crate::feeds::own::summary(&first.compiled.feeds.skips, &policy);
    let mut dp = Datapath::load_pinned(first.sizes, &opts.pin_dir)?;
    let enforced = enforced_record(&file, &policy, &decisions, now, &opts.policy);
    let started = (|| -> Result<Vec<InterfaceStatus>> {
        run.save_policy(&enforced.sha256, &bytes)?;
        dp.apply(&first.compiled)?;
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
    if let Some(said) = skipped {
        log(said);
    }
    let started = Started {
        dp,
        file,
        policy,
        decisions,
        feeds: first.feeds,
        feed_cache: first.feed_cache,
        enforced: enforced.clone(),
        adopted: false,
        ports,
        refused_roles: refused,
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
    // A reload naming no file applies the one this start was given
    // (`policy =` changed, then a restart), not the enforced one's.
    let mut reload_default = None;
    let (file, policy, decisions, enforced) = match known {
        Some((file, policy, bytes, rec)) => {
            run.save_policy(&rec.sha256, &bytes)?;
            if given.sha256_hex() != rec.sha256 {
                log(format!(
                    "warning: {} differs from the enforced policy (generation {}, {}); the enforced one stays until a reload applies the file: `ispf reload {}` (or `systemctl reload ispf`)",
                    opts.policy.display(),
                    dp.epoch(),
                    rec.path.display(),
                    opts.policy.display()
                ));
            }
            // Also when its bytes are the same now: it is the file the
            // operator will edit next.
            // A fleet host's enforced file is the site's copy, and only the
            // fleet reloads it.
            let fleet = rec
                .path
                .file_name()
                .is_some_and(|n| n == crate::fleet::CANDIDATE_FILE);
            if opts.policy != rec.path && !fleet {
                log(format!(
                    "a reload naming no file (SIGHUP, `systemctl reload ispf`) applies {}, the file this start was given, not {}",
                    opts.policy.display(),
                    rec.path.display()
                ));
                reload_default = Some(opts.policy.clone());
            }
            let decisions = rec.decisions.clone();
            (file, policy, decisions, rec)
        }
        None if opts.reapply => {
            // The ids the kernel's connection state holds are unknown:
            // start connection state afresh rather than misname it.
            let decisions = recorded_decisions(opts);
            // Recorded as ended by `converge`, which finds them again.
            let decisions = without(&decisions, &roles_refused_at_start(opts, &given, &decisions));
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
    said_kept(opts, &dp, &names);
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
        // Adoption trusts the kernel, not the pin files: the hook is the
        // link's; XDP's native or generic mode only the state can say.
        if let Some(tc) = ports::attached_at(&opts.pin_dir, &name, ids) {
            let mode = match (tc, known_mode.as_str()) {
                (true, _) => ports::MODE_TC.to_owned(),
                (false, ports::MODE_TC) => ports::MODE_NATIVE.to_owned(),
                (false, _) => known_mode,
            };
            said_hook_kept(opts.attach.hook, &name, &mode);
            port_list.push(InterfaceStatus {
                ifindex: crate::bpfsys::ifindex(&name),
                name,
                mode,
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
        feed_cache: Default::default(),
        enforced: enforced.clone(),
        adopted: true,
        ports: port_list,
        // Those the pins enforce are ended by `converge`, below.
        refused_roles: Vec::new(),
    };
    let mut e = Engine::new(
        started,
        &opts.pin_dir,
        run,
        opts.attach,
        inventory::db_path(&opts.state_dir),
    );
    e.save_state(vec![enforced])?;
    e.reload_default = reload_default;
    // Whatever is applied next carries the cached feed contents, if the
    // maps have room for them twice (else every later change would be
    // refused): those that do not are dropped, like at a fresh start.
    let adopted_epoch = e.dp.epoch();
    let (mut feed_set, mut dropped) = (feed_set, false);
    e.feeds = feed_set.clone();
    if !feed_set.feeds.is_empty() {
        if let Err(why) = e.feeds_fit() {
            // Dropped only when they are what does not fit.
            e.feeds = Arc::new(FeedSet::default());
            if e.feeds_fit().is_ok() {
                log(format!(
                    "warning: the threat feeds kept from the last run ({} entries) are not enforced: {why}",
                    feed_set.entries()
                ));
                feed_set = e.feeds.clone();
                dropped = true;
            } else {
                e.feeds = feed_set.clone();
            }
        }
        e.precompiled = None;
    }
    // Decisions made, released or expired while no controller ran.
    if let Err(err) = e.converge(recorded_decisions(opts)) {
        log(format!(
            "warning: the recorded runtime decisions are not applied: {}",
            crate::describe(&err)
        ));
    }
    // The pins hold feed entries this controller cannot read back: one
    // generation replaces them, also with none when those kept were
    // dropped.
    if e.dp.epoch() == adopted_epoch && (dropped || !feed_set.feeds.is_empty()) {
        let _ = e.apply_feeds(feed_set);
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

/// A port the pins keep at another hook than `--hook` names: said, as
/// map sizes are; kept, since moving it means detaching it.
fn said_hook_kept(hook: ports::Hook, name: &str, mode: &str) {
    let wanted = match hook {
        ports::Hook::Xdp if mode == ports::MODE_TC => "xdp",
        ports::Hook::Tc if mode != ports::MODE_TC => "tc",
        _ => return,
    };
    log(format!(
        "warning: {name} stays attached at {mode} (--hook {wanted} is not applied): an adopting start keeps the pinned links. To move it: `ispf detach` (enforcement stops), then start again"
    ));
}

/// What an adopting start keeps of the pinned datapath although this
/// start's options say otherwise: map sizes, and ports no longer named.
/// Said, since the operator changed them on purpose; kept, since changing
/// them means an outage the operator must choose (`ispf detach`).
fn said_kept(opts: &RunOptions, dp: &Datapath, pinned: &[String]) {
    let unmet = opts.sizes.unmet(&dp.sizes());
    if !unmet.is_empty() {
        log(format!(
            "warning: map sizes {} are not applied: an adopting start keeps the pinned maps. To resize them: `ispf detach` (enforcement stops), then start again",
            unmet.join(", ")
        ));
    }
    let unnamed: Vec<&str> = pinned
        .iter()
        .filter(|p| !opts.interfaces.contains(p))
        .map(String::as_str)
        .collect();
    if !unnamed.is_empty() {
        log(format!(
            "warning: {} stay enforced although this start does not name them: a restart never takes enforcement off a port. To stop enforcing them: `ispf detach` (every port), then start with the ports to enforce",
            unnamed.join(", ")
        ));
    }
}
