//! Starting over the pins of an ispf whose map layout is older: a
//! datapath of this layout is given the policy the old one enforces (as
//! the run directory records it), the old one's connection state and
//! counts are carried over, and every port's link is switched to the new
//! program atomically ([`crate::datapath::migrate`]). The ordinary
//! adoption then takes over. Packets of allowed and established flows
//! meet one program or the other throughout; nothing is detached.

use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::{
    boot::{
        enforced_record, first_generation, recorded, recorded_decisions, roles_refused_at_start,
        run_state, RunOptions,
    },
    decide,
    engine::{log, unix_now},
    expiry::without,
    state::{RunDir, State},
};
use crate::{
    datapath::{
        handover::{self, Resumed},
        migrate::{self, OldPins, Pass},
        Datapath,
    },
    policy::{hex, Policy},
};

/// Finishes or undoes an upgrade a controller did not live to finish.
pub fn resume(opts: &RunOptions) -> Result<()> {
    match handover::resume(&opts.pin_dir, &crash_point)
        .context("resuming an interrupted upgrade")?
    {
        Resumed::Nothing => {}
        Resumed::Finished => log(format!(
            "finished the upgrade of {} a controller began: its ports already ran the new program",
            opts.pin_dir.display()
        )),
        Resumed::Undone => log(format!(
            "undid the upgrade of {} a controller began and did not live to switch every port: every port runs the older program again; upgrading again",
            opts.pin_dir.display()
        )),
    }
    Ok(())
}

/// Upgrades the pins under `opts.pin_dir`, which are of a layout this
/// ispf migrates. On an error before the ports are switched, the old
/// datapath enforces on, untouched.
pub fn upgrade(opts: &RunOptions, given: &Policy, given_bytes: &[u8], run: &RunDir) -> Result<()> {
    let old = OldPins::open(&opts.pin_dir).context("opening the older ispf's pins")?;
    let kernel_sha = hex(&old.meta.sha256);
    let state = run_state(run);
    // The ids the old kernel's connection state and counters hold.
    let known = recorded(run, &state, &kernel_sha, given, given_bytes);
    let (file, bytes, path, decisions, carry) = match known {
        Some((file, bytes, rec)) => (file, bytes, rec.path.clone(), rec.decisions, true),
        // Segment ids unknown: connection state and counts would be
        // misnamed, so they start afresh.
        None if opts.reapply => (
            Arc::new(given.clone()),
            given_bytes.to_vec(),
            opts.policy.clone(),
            recorded_decisions(opts),
            false,
        ),
        None => bail!(
            "the datapath pinned under {} (layout {}) enforces a policy (sha256 {}) that the run directory {} has no record of, so it cannot be upgraded in place with its connections. Enforcement continues unchanged. To upgrade applying a policy (connections are re-established): ispf run --reapply --policy FILE ...; or remove enforcement (an outage): ispf detach --pin-dir {}",
            opts.pin_dir.display(),
            old.layout,
            &kernel_sha[..16],
            opts.run_dir.display(),
            opts.pin_dir.display()
        ),
    };
    // A role the file refuses is not carried into the new datapath; the
    // adopting engine's `converge` finds it recorded and ends it.
    let decisions = without(&decisions, &roles_refused_at_start(opts, &file, &decisions));
    let now = unix_now();
    let policy = decide::desired(&file, &decisions, now)?;
    let first = first_generation(opts, &file, &policy)?;
    let rec = enforced_record(&file, &policy, &decisions, now, &path);
    let staging = migrate::staging_dir(&opts.pin_dir);

    // Until the ports are switched, a failure leaves the old datapath as
    // the only one.
    let prepared = (|| -> Result<(Datapath, migrate::Carried)> {
        let mut dp = Datapath::load_pinned(first.sizes, &staging)?;
        crash_point("during-staging");
        if !carry {
            handover::nothing_to_carry(&opts.pin_dir)?;
        }
        dp.continue_epochs_after(old.meta.epoch);
        run.save_policy(&rec.sha256, &bytes)?;
        dp.apply(&first.compiled)?;
        let mut carried = migrate::Carried::default();
        if carry {
            carried = dp.carry_state(&old, Pass::All)?;
        }
        // Both records: whichever datapath a crash leaves enforcing is
        // known to the next start.
        let mut enforced = vec![rec.clone()];
        enforced.extend(state.enforced.iter().cloned());
        run.save(&State {
            enforced,
            interfaces: state.interfaces.clone(),
        })?;
        if carry {
            // What the old program opened while the policy was written.
            carried.flows += dp.carry_state(&old, Pass::CatchUp)?.flows;
        }
        Ok((dp, carried))
    })();
    let (mut dp, carried) = match prepared {
        Ok(p) => p,
        Err(e) => {
            let _ = handover::abandon(&opts.pin_dir);
            return Err(e.context(format!(
                "upgrading {} from layout {}: nothing was switched; the older datapath enforces on",
                opts.pin_dir.display(),
                old.layout
            )));
        }
    };
    crash_point("before-switch");
    let between = |n: usize| {
        if n == 1 {
            crash_point("between-ports");
        }
    };
    let ports = match dp.take_over_links(&old, &opts.pin_dir, &between) {
        Ok(p) => p,
        Err(e) => {
            drop(dp);
            let undone = handover::resume(&opts.pin_dir, &|_| {});
            return Err(anyhow::Error::new(e).context(format!(
                "upgrading {} from layout {}: {}",
                opts.pin_dir.display(),
                old.layout,
                match undone {
                    Ok(_) => "no port was switched; the older datapath enforces on".to_owned(),
                    Err(u) => format!(
                        "and switching the ports back failed too ({u}); the next start tries again"
                    ),
                }
            )));
        }
    };
    crash_point("after-switch");
    // The old program ran until its ports moved: the flows it opened
    // meanwhile, and everything it counted; then the pins move.
    let (late, warnings) = handover::complete(&opts.pin_dir, &mut dp, &old, &crash_point)?;
    for w in warnings {
        log(format!("warning: not carried: {w}"));
    }
    log(format!(
        "upgraded {} from map layout {} to {} without detaching: generation {}, {} connections carried ({} opened during the switch), {} fragments; switched {}",
        opts.pin_dir.display(),
        old.layout,
        ispf_common::LAYOUT_VERSION,
        dp.epoch(),
        carried.flows + late.flows,
        late.flows,
        carried.fragments + late.fragments,
        if ports.is_empty() {
            "no port".to_owned()
        } else {
            ports.join(", ")
        }
    ));
    Ok(())
}

/// Tests only: ends the process at the named point of an upgrade, as a
/// crash or `kill -9` there would, so the tests can show that the next
/// start finishes or undoes it.
fn crash_point(name: &str) {
    if std::env::var("ISPF_TEST_UPGRADE_ABORT").as_deref() == Ok(name) {
        log(format!("test: aborting the upgrade at {name}"));
        std::process::abort();
    }
}
