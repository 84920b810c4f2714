//! `ispf service --config FILE` (what the systemd unit runs), `ispf man
//! DIR` and `ispf completions SHELL` (what the package ships).

use std::{path::Path, process::ExitCode};

use anyhow::{Context, Result};
use clap::CommandFactory;
use ispf::config::Config;

use super::Cli;

/// The `ispf run` arguments a configuration means: one code path for the
/// service and the command line.
pub fn run_args(c: &Config) -> Vec<String> {
    let mut a: Vec<String> = vec!["ispf".into(), "run".into()];
    let mut opt = |k: &str, v: String| {
        a.push(format!("--{k}"));
        a.push(v);
    };
    for i in &c.interfaces {
        opt("iface", i.clone());
    }
    if let Some(p) = &c.policy {
        opt("policy", p.display().to_string());
    }
    if let Some(e) = &c.etcd {
        opt("etcd", e.endpoints.join(","));
        opt("site", e.site.clone());
        for (k, v) in [
            ("fleet-host", e.host.clone()),
            ("etcd-ca", e.ca.as_ref().map(|p| p.display().to_string())),
            (
                "etcd-cert",
                e.cert.as_ref().map(|p| p.display().to_string()),
            ),
            ("etcd-key", e.key.as_ref().map(|p| p.display().to_string())),
            ("etcd-user", e.user.clone()),
            (
                "etcd-password-file",
                e.password_file.as_ref().map(|p| p.display().to_string()),
            ),
        ] {
            if let Some(v) = v {
                opt(k, v);
            }
        }
    }
    opt("metrics-addr", c.metrics_addr.to_string());
    opt("state-dir", c.state_dir.display().to_string());
    opt("pin-dir", c.pin_dir.display().to_string());
    opt("run-dir", c.run_dir.display().to_string());
    opt("hook", c.hook.clone());
    for (k, v) in &c.map_sizes {
        opt("map-size", format!("{k}={v}"));
    }
    if let Some(e) = &c.events {
        opt("events", e.display().to_string());
    }
    if let Some(w) = &c.alert_webhook {
        opt("alert-webhook", w.clone());
    }
    if let Some(n) = c.max_unknown_devices {
        opt("max-unknown-devices", n.to_string());
    }
    if c.metrics_allow_remote {
        a.push("--metrics-allow-remote".into());
    }
    a
}

/// The `ispf run` a configuration means, for the caller to run; `None`
/// when `check` only checked it (and said so).
pub fn service(config: &Path, check: bool) -> Result<Option<super::Command>> {
    let c = Config::read(config)?;
    let args = run_args(&c);
    let cli = Cli::try_parse_from_args(&args).with_context(|| {
        format!(
            "{}: the settings do not make an `ispf run`",
            config.display()
        )
    })?;
    if check {
        if let Some(p) = &c.policy {
            ispf::policy::load::read_policy(p)?;
        }
        println!(
            "{}: ok ({} interfaces)",
            config.display(),
            c.interfaces.len()
        );
        return Ok(None);
    }
    Ok(Some(cli.command))
}

pub fn man(dir: &Path) -> Result<ExitCode> {
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    let write = |c: clap::Command, name: &str| -> Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c).render(&mut buf)?;
        std::fs::write(dir.join(format!("{name}.1")), buf)?;
        Ok(())
    };
    write(cmd.clone(), "ispf")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("ispf-{}", sub.get_name());
        let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
        write(sub.clone().name(leaked), &name)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    clap_complete::generate(shell, &mut Cli::command(), "ispf", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

impl Cli {
    fn try_parse_from_args(args: &[String]) -> Result<Cli, clap::Error> {
        <Cli as clap::Parser>::try_parse_from(args)
    }
}
