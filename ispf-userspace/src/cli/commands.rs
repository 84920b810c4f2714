//! What each subcommand does.

use std::{io::Write, path::Path, process::ExitCode, time::Duration};

use super::{
    map_sizes,
    offline::{check, replay},
    show, Command, EntryArg, HookArg, Verdict,
};
use anyhow::Result;
use ispf::{
    control::{self, Request, Response},
    controller::{self, AttachOptions, Hook, RunOptions},
    datapath::Entry,
    events::EventFilter,
    policy::{load::absolute, PolicyDoc},
};

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Check {
            policy,
            map_sizes: m,
        } => check(&policy, map_sizes(&m), !m.is_empty()),
        Command::Replay {
            policy,
            pcap,
            json,
            hook,
        } => replay(
            &policy,
            &pcap,
            json,
            match hook {
                EntryArg::Xdp => Entry::Xdp,
                EntryArg::Tc => Entry::Tc,
            },
        ),
        Command::Fleet { cmd, etcd } => super::fleet::run(cmd, &etcd),
        Command::Service { config, check } => match super::service::service(&config, check)? {
            Some(run_it) => run(run_it),
            None => Ok(ExitCode::SUCCESS),
        },
        Command::Completions { shell } => super::service::completions(shell),
        Command::Man { dir } => super::service::man(&dir),
        Command::Run {
            policy,
            etcd,
            interfaces,
            pin_dir,
            run_dir,
            map_sizes: m,
            metrics_addr,
            metrics_allow_remote,
            events_out,
            reapply,
            hook,
            keep_gro_off,
            state_dir,
            max_unknown_devices,
            alert_webhook,
        } => {
            let hook = match hook {
                HookArg::Xdp => Hook::Xdp,
                HookArg::Tc => Hook::Tc,
                HookArg::Auto => Hook::Auto,
            };
            let state_dir = absolute(state_dir);
            let fleet = etcd.options()?;
            let (policy, seed) =
                super::fleet::run_policy(policy.map(absolute), fleet.as_ref(), &state_dir)?;
            controller::run(RunOptions {
                policy,
                fleet: fleet.map(|f| (f, seed)),
                interfaces,
                // As `ispf status` reports it, and `detach` compares it.
                pin_dir: absolute(pin_dir),
                run_dir,
                sizes: map_sizes(&m),
                metrics_addr,
                metrics_allow_remote,
                events_out,
                reapply,
                attach: AttachOptions { hook, keep_gro_off },
                state_dir,
                max_unknown_devices,
                alert_webhook,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Events {
            segment,
            reason,
            verdict,
            run_dir,
        } => {
            let filter = EventFilter {
                segment,
                reason,
                verdict: verdict.map(|v| match v {
                    Verdict::Pass => "pass".to_owned(),
                    Verdict::Drop => "drop".to_owned(),
                }),
            };
            let mut r = control::subscribe(&run_dir, filter)?;
            let mut out = std::io::stdout().lock();
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut r, &mut line)? > 0 {
                out.write_all(line.as_bytes())?;
                out.flush()?;
                line.clear();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Top { once, run_dir } => {
            show::top(&run_dir, once)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload {
            policy,
            dry_run,
            run_dir,
        } => reload(policy, dry_run, &run_dir),
        Command::Status { json, run_dir } => {
            match control::request(&run_dir, &Request::Status, Duration::from_secs(30))? {
                Response::Status(s) if json => {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                    Ok(ExitCode::SUCCESS)
                }
                Response::Status(s) => {
                    show::print_status(&s);
                    Ok(ExitCode::SUCCESS)
                }
                Response::Error { message } => anyhow::bail!("{message}"),
                other => anyhow::bail!("unexpected answer {other:?}"),
            }
        }
        Command::Detach { pin_dir, run_dir } => detach(pin_dir.as_deref(), &run_dir),
        c @ (Command::Devices { .. }
        | Command::Device { .. }
        | Command::Admit { .. }
        | Command::Quarantine { .. }
        | Command::Release { .. }
        | Command::ExportDevices { .. }) => super::devices::run(c),
        Command::Sessions { json, run_dir } => super::identity::sessions(json, &run_dir),
        c @ (Command::Feeds { .. } | Command::Alerts { .. } | Command::Baseline { .. }) => {
            super::detect::run(c)
        }
        Command::Schema => {
            let schema = schemars::schema_for!(PolicyDoc);
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn reload(policy: Option<std::path::PathBuf>, dry_run: bool, run_dir: &Path) -> Result<ExitCode> {
    // The controller resolves relative paths from its own directory.
    let policy = policy.map(absolute);
    match control::request(
        run_dir,
        &Request::Reload {
            policy: policy.clone(),
            dry_run,
        },
        Duration::from_secs(300),
    )? {
        Response::Reload(r) => {
            print!("{}", r.diff);
            if r.applied {
                println!(
                    "applied {} as generation {}",
                    r.policy_path.display(),
                    r.generation
                );
            } else {
                println!(
                    "dry run: nothing applied (generation {} stays)",
                    r.generation
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Response::Error { message } => {
            eprintln!("ispf: reload refused: {message}");
            if let Some(hint) = unseen_by_controller(policy.as_deref(), &message) {
                eprintln!("ispf: {hint}");
            }
            Ok(ExitCode::FAILURE)
        }
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

/// Why the controller may not see a file this shell sees: the unit runs
/// it with a private /tmp (and a read-only view of most of the system),
/// so `ispf reload /tmp/x.json` fails with "No such file" while `ispf
/// check /tmp/x.json` passes.
fn unseen_by_controller(policy: Option<&Path>, message: &str) -> Option<String> {
    let p = policy?;
    // About the policy itself, not a file it names.
    let named = message.contains(&p.display().to_string());
    if !named || !message.contains("No such file") || !p.exists() {
        return None;
    }
    Some(format!(
        "{} exists here, but not where the controller runs: the ispf unit has its own /tmp and /var/tmp (PrivateTmp). Put the file under /etc/ispf (or another path the unit reads) and reload that",
        p.display()
    ))
}

/// `pin_dir`: as the operator named it (`None`: not named).
fn detach(pin_dir: Option<&Path>, run_dir: &Path) -> Result<ExitCode> {
    // A controller answers on `run_dir`: it is the one detached, so it
    // must be the one the operator named. A typo in one of two flags
    // must not take enforcement off another care unit.
    if let Some(named) = pin_dir {
        let theirs = match control::request(run_dir, &Request::Status, Duration::from_secs(30)) {
            Ok(Response::Status(s)) => Some(s.pin_dir),
            // No controller: the pins are removed offline, below.
            Err(control::ControlError::Connect { .. }) => None,
            Ok(other) => {
                let said = match other {
                    Response::Error { message } => message,
                    other => format!("{other:?}"),
                };
                anyhow::bail!(
                    "nothing was detached: the controller answering on {} did not say which pins it uses ({said}); try again, or detach it with `ispf detach --run-dir {}` alone",
                    run_dir.display(),
                    run_dir.display()
                )
            }
            Err(e) => anyhow::bail!(
                "nothing was detached: cannot ask the controller on {} which pins it uses: {e}",
                run_dir.display()
            ),
        };
        let same = |a: &Path, b: &Path| {
            let (a, b) = (absolute(a.to_owned()), absolute(b.to_owned()));
            a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
        };
        if let Some(theirs) = theirs.filter(|p| !same(named, p)) {
            anyhow::bail!(
                "nothing was detached: the controller answering on {} enforces with pins at {}, not {}. To detach that controller, run `ispf detach --run-dir {}`; to detach the pins at {}, name the run directory of the controller that uses them",
                run_dir.display(),
                theirs.display(),
                named.display(),
                run_dir.display(),
                named.display()
            );
        }
    }
    let pin_dir = pin_dir.unwrap_or(Path::new(ispf::control::DEFAULT_PIN_DIR));
    // Known before the request: a controller started right after this one
    // stops must not be waited for.
    let holder = controller::holder(run_dir);
    match control::request(run_dir, &Request::Detach, Duration::from_secs(30)) {
        Ok(Response::Detached) => {
            // It answers before it has let go of its directories: a start
            // right after would be refused as "in use".
            if controller::stopped(run_dir, holder, Duration::from_secs(30)) {
                println!("detached; the controller has stopped");
            } else {
                println!("detached; the controller is still stopping");
            }
        }
        Ok(Response::Error { message }) => anyhow::bail!("detach failed: {message}"),
        Ok(other) => anyhow::bail!("unexpected answer {other:?}"),
        // No controller: remove what it left pinned.
        Err(control::ControlError::Connect { .. }) => {
            ispf::system::require_root()?;
            match controller::detach(pin_dir, run_dir)? {
                // Still success: the off switch of a unit that is off.
                None => println!(
                    "nothing to detach: no ispf pins at {} and no controller answers on {}",
                    pin_dir.display(),
                    run_dir.display()
                ),
                Some(ifaces) => println!(
                    "detached from {}",
                    if ifaces.is_empty() {
                        "no interface".to_owned()
                    } else {
                        ifaces.join(", ")
                    }
                ),
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_the_controller_cannot_see_is_explained() {
        let here = std::env::temp_dir().join(format!("ispf-unseen-{}.json", std::process::id()));
        std::fs::write(&here, "{}").unwrap();
        let said = format!(
            "cannot read {}: No such file or directory (os error 2)",
            here.display()
        );
        let said = said.as_str();
        let hint = unseen_by_controller(Some(&here), said).unwrap();
        assert!(
            hint.contains("PrivateTmp") && hint.contains("/etc/ispf"),
            "{hint}"
        );
        assert!(unseen_by_controller(Some(&here), "invalid JSON").is_none());
        std::fs::remove_file(&here).unwrap();
        assert!(
            unseen_by_controller(Some(&here), said).is_none(),
            "gone here too"
        );
    }
}
