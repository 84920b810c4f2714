//! Starting the engine: a fresh datapath attached to the ports, or the
//! pinned one an earlier controller left, adopted only when the run
//! directory knows exactly what the kernel enforces.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::PathBuf,
};

use anyhow::{bail, Context, Result};

use super::{
    engine::{detach, log, now_rfc3339, Engine, Started},
    ports,
    state::{Enforced, RunDir},
};
use crate::{
    control::InterfaceStatus,
    datapath::{check_fits, Counts, Datapath, MapSizeRequest},
    policy::{compile::compile, hex, load::read_policy, Policy},
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
    if Datapath::pinned_layout(&opts.pin_dir).is_some() {
        return adopt(opts, policy, bytes, run);
    }
    fresh(opts, policy, bytes, run)
}

fn enforced_record(p: &Policy, path: &std::path::Path) -> Enforced {
    Enforced {
        sha256: p.sha256_hex(),
        path: path.to_owned(),
        applied_at: now_rfc3339(),
        segment_ids: p.segment_ids(),
    }
}

fn fresh(opts: &RunOptions, policy: Policy, bytes: Vec<u8>, run: RunDir) -> Result<Engine> {
    for iface in &opts.interfaces {
        system::check_interface(iface)?;
    }
    let compiled = compile(&policy);
    let counts = Counts::of(&compiled);
    let sizes = opts.sizes.resolve(&counts);
    // The rule `check` applies: the policy and one as large must fit.
    check_fits(&sizes, &counts, &counts)?;
    let mut dp = Datapath::load_pinned(sizes, &opts.pin_dir)?;
    let enforced = enforced_record(&policy, &opts.policy);
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
        policy,
        enforced: enforced.clone(),
        adopted: false,
        ports,
    };
    let e = Engine::new(started, &opts.pin_dir, run, opts.attach);
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
    let mut dp = Datapath::adopt(&opts.pin_dir).context("adopting the pinned datapath")?;
    let kernel_sha = hex(&dp.stats().meta().sha256);
    let state = match run.load() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            log(format!("warning: {e}"));
            Default::default()
        }
    };
    let record = state
        .enforced
        .iter()
        .find(|e| e.sha256 == kernel_sha)
        .cloned();
    let known = record.and_then(|rec| {
        let bytes = run
            .policy(&kernel_sha)
            .or_else(|| (given.sha256_hex() == kernel_sha).then(|| given_bytes.clone()))?;
        let text = String::from_utf8(bytes.clone()).ok()?;
        let mut p = Policy::from_str(&text, &rec.path).ok()?;
        p.keep_ids(&rec.segment_ids);
        Some((p, bytes, rec))
    });
    let (policy, enforced) = match known {
        Some((p, bytes, rec)) => {
            run.save_policy(&rec.sha256, &bytes)?;
            if given.sha256_hex() != rec.sha256 {
                log(format!(
                    "warning: {} differs from the enforced policy (generation {}, {}); it stays enforced until `ispf reload` applies the file",
                    opts.policy.display(),
                    dp.epoch(),
                    rec.path.display()
                ));
            }
            (p, rec)
        }
        None if opts.reapply => {
            // The ids the kernel's connection state holds are unknown:
            // start connection state afresh rather than misname it.
            let rec = enforced_record(&given, &opts.policy);
            run.save_policy(&rec.sha256, &given_bytes)?;
            dp.reset_state()?;
            dp.apply(&compile(&given))?;
            log(format!(
                "applied {} over the pinned datapath as generation {} (--reapply); connections are re-established",
                opts.policy.display(),
                dp.epoch()
            ));
            (given, rec)
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
    let started = Started {
        dp,
        policy,
        enforced: enforced.clone(),
        adopted: true,
        ports: port_list,
    };
    let e = Engine::new(started, &opts.pin_dir, run, opts.attach);
    e.save_state(vec![enforced])?;
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
