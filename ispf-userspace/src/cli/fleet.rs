//! `ispf fleet status|push|history` and the `--etcd` options `ispf run`
//! shares with them; `--etcd` and `--site` also come from `ISPF_ETCD` and
//! `ISPF_SITE`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context, Result};
use ispf::{
    clock::{rfc3339, unix_now},
    fleet::{self, client, keys},
    policy::{diff, load::read_policy, Policy},
};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct EtcdArgs {
    /// etcd endpoints (comma-separated URLs): the site's policy and
    /// decisions come from there.
    #[arg(long, env = "ISPF_ETCD", value_delimiter = ',', value_name = "URL")]
    pub etcd: Vec<String>,
    /// The site (hospital) whose keys this host follows.
    #[arg(long, env = "ISPF_SITE")]
    pub site: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    #[arg(long)]
    pub etcd_user: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,
    /// This host's name in the site's status keys (default: the hostname).
    #[arg(long, env = "ISPF_FLEET_HOST")]
    pub fleet_host: Option<String>,
}

impl EtcdArgs {
    /// The fleet options, if `--etcd` was given.
    pub fn options(&self) -> Result<Option<fleet::Options>> {
        if self.etcd.is_empty() {
            if self.site.is_some() {
                bail!("--site needs --etcd (or ISPF_ETCD)");
            }
            return Ok(None);
        }
        let o = fleet::Options {
            endpoints: self.etcd.clone(),
            site: self
                .site
                .clone()
                .context("--etcd needs --site (or ISPF_SITE)")?,
            host: self.fleet_host.clone().unwrap_or_else(fleet::hostname),
            ca: self.etcd_ca.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            user: self.etcd_user.clone(),
            password_file: self.etcd_password_file.clone(),
        };
        o.check()?;
        Ok(Some(o))
    }

    fn required(&self) -> Result<fleet::Options> {
        self.options()?
            .context("the fleet commands need --etcd URL[,URL...] and --site NAME (or ISPF_ETCD and ISPF_SITE)")
    }
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum FleetCommand {
    /// Every host of the site: its revision, generation, health, and how
    /// long ago it reported.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Validate FILE here, then make it the site's policy (compare-and-swap
    /// on the revision read: a concurrent push is refused, not lost).
    Push {
        file: PathBuf,
        /// Push only if the site is still at this revision.
        #[arg(long)]
        if_revision: Option<i64>,
    },
    /// The site's revisions, newest first, with what each changed.
    History,
}

fn rt() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn run(cmd: FleetCommand, etcd: &EtcdArgs) -> Result<ExitCode> {
    let o = etcd.required()?;
    rt()?.block_on(async {
        let mut c = client::connect(&o).await?;
        match cmd {
            FleetCommand::Status { json } => status(&mut c, &o, json).await,
            FleetCommand::Push { file, if_revision } => push(&mut c, &o, &file, if_revision).await,
            FleetCommand::History => history(&mut c, &o).await,
        }
    })
}

async fn status(c: &mut etcd_client::Client, o: &fleet::Options, json: bool) -> Result<ExitCode> {
    let (kvs, _) = client::site(c, &o.site).await?;
    let latest = client::policy(c, &o.site).await?.map_or(0, |(_, r)| r);
    // Whoever can write the site writes these values: the host is named
    // by its key (a value cannot report under another host's name), and
    // their text is printed without control characters (an escape could
    // erase another host's "(BEHIND)").
    let mut hosts: Vec<keys::HostStatus> = kvs
        .iter()
        .filter_map(|(k, v, _)| match keys::parse(&o.site, k) {
            keys::Key::Host(name) => Some((name, v)),
            _ => None,
        })
        .filter_map(|(name, v)| {
            let mut h: keys::HostStatus = serde_json::from_slice(v).ok()?;
            h.host = ispf::printable(&name);
            h.health = ispf::printable(&h.health);
            h.last_error = h.last_error.as_deref().map(ispf::printable);
            Some(h)
        })
        .collect();
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    let now = unix_now();
    if json {
        for h in &hosts {
            println!(
                "{}",
                serde_json::json!({
                    "host": h.host, "revision": h.revision, "generation": h.generation,
                    "reported": rfc3339(h.reported), "reported_s_ago": now - h.reported,
                    "latest": h.revision == latest, "policy_sha256": h.policy_sha256,
                    "interfaces": h.interfaces, "health": h.health, "last_error": h.last_error,
                })
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "site {}: revision {latest}, {} hosts reporting",
        o.site,
        hosts.len()
    );
    for h in &hosts {
        println!(
            "  {:<24} revision {:<5} {:<10} generation {:<6} reported {:>3} s ago  {}{}",
            h.host,
            h.revision,
            if h.revision == latest {
                "(latest)"
            } else {
                "(BEHIND)"
            },
            h.generation,
            now - h.reported,
            h.health,
            h.last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn push(
    c: &mut etcd_client::Client,
    o: &fleet::Options,
    file: &std::path::Path,
    if_revision: Option<i64>,
) -> Result<ExitCode> {
    let (policy, bytes) = read_policy(file)?;
    let current = client::policy(c, &o.site).await?;
    let read = if_revision.unwrap_or_else(|| current.as_ref().map_or(0, |(_, r)| *r));
    if let Some((old, _)) = &current {
        if old == &bytes {
            println!(
                "site {} already enforces this file (revision {read})",
                o.site
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    // `USER` is unset under systemd and in many automation runners; the
    // password database names whoever runs this.
    let by = std::env::var("SUDO_USER").unwrap_or_else(|_| {
        // SAFETY: getuid cannot fail and touches no memory of ours.
        ispf::system::user_name(unsafe { libc::getuid() })
    });
    let pushed = keys::Pushed {
        revision: 0,
        etcd_revision: 0,
        by: format!("{by} on {}", o.host),
        at: unix_now(),
        sha256: policy.sha256_hex(),
        from_file: file.display().to_string(),
    };
    match client::push(c, &o.site, &bytes, read, &pushed).await? {
        Ok(rev) => {
            println!("pushed {} to site {} as revision {rev}; hosts apply it as they receive it (`ispf fleet status`)", file.display(), o.site);
            Ok(ExitCode::SUCCESS)
        }
        Err(now) => bail!(
            "conflict: site {} is at revision {now}, not {read} as read; another push landed in between. Review `ispf fleet history` and push again",
            o.site
        ),
    }
}

async fn history(c: &mut etcd_client::Client, o: &fleet::Options) -> Result<ExitCode> {
    let (kvs, _) = client::site(c, &o.site).await?;
    let mut entries: Vec<keys::Pushed> = kvs
        .iter()
        .filter(|(k, _, _)| matches!(keys::parse(&o.site, k), keys::Key::History(_)))
        .filter_map(|(_, v, _)| serde_json::from_slice(v).ok())
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.revision));
    // The diffs need each revision's document: etcd keeps the policy key's
    // earlier values until it compacts them.
    let mut docs: Vec<Option<Policy>> = Vec::new();
    for e in &entries {
        docs.push(
            client::policy_at(c, &o.site, e.etcd_revision)
                .await
                .ok()
                .flatten()
                .and_then(|b| {
                    std::str::from_utf8(&b)
                        .ok()
                        .and_then(|t| Policy::from_str(t, std::path::Path::new("etcd")).ok())
                }),
        );
    }
    for (i, e) in entries.iter().enumerate() {
        println!(
            "revision {}  {}  by {}  from {}  sha256 {}",
            e.revision,
            rfc3339(e.at),
            e.by,
            e.from_file,
            &e.sha256[..16.min(e.sha256.len())]
        );
        match (
            docs.get(i).cloned().flatten(),
            docs.get(i + 1).cloned().flatten(),
        ) {
            (Some(new), Some(old)) => {
                let d = diff::diff(&old, &new);
                if d.is_empty() {
                    println!("    (no change to what is enforced)");
                }
                for line in d.to_string().lines() {
                    println!("    {line}");
                }
            }
            (Some(_), None) if i + 1 == entries.len() => println!("    (the first revision)"),
            _ => println!("    (the document is no longer in etcd's history: compacted)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `ispf run` enforces first. In a fleet, the site's last good
/// revision kept on disk wins (a restart without etcd enforces it); else
/// the site's policy, fetched now, so that a joining host never enforces
/// its own `--policy` over the site's, even for a second; else, when the
/// site has none, `--policy` (which also seeds it); and when etcd cannot
/// be reached, `--policy` until the site's revision arrives.
pub fn run_policy(
    policy: Option<PathBuf>,
    fleet: Option<&fleet::Options>,
    state_dir: &std::path::Path,
) -> Result<(PathBuf, Option<Vec<u8>>)> {
    let Some(o) = fleet else {
        return Ok((
            policy.context("--policy FILE is needed (or --etcd and --site to follow a site)")?,
            None,
        ));
    };
    let seed = match &policy {
        Some(p) => {
            Some(std::fs::read(p).with_context(|| format!("reading --policy {}", p.display()))?)
        }
        None => None,
    };
    let kept = state_dir.join(fleet::POLICY_FILE);
    if kept.is_file() {
        return Ok((kept, seed));
    }
    let fetched = rt()?.block_on(async {
        let mut c = client::connect(o).await?;
        client::policy(&mut c, &o.site).await
    });
    match (fetched, policy) {
        (Ok(Some((bytes, rev))), _) => {
            std::fs::create_dir_all(state_dir)?;
            ispf::controller::state::write_atomic(&kept, &bytes)?;
            ispf::controller::state::write_atomic(&state_dir.join(fleet::REVISION_FILE), rev.to_string().as_bytes())?;
            Ok((kept, seed))
        }
        (Ok(None), Some(p)) => Ok((p, seed)),
        (Ok(None), None) => bail!("site {} has no policy in etcd yet: seed it with --policy FILE (or `ispf fleet push FILE`)", o.site),
        (Err(e), Some(p)) => {
            ispf::clock::log(format!(
                "warning: {e}: enforcing --policy {} until the site's revision arrives",
                p.display()
            ));
            Ok((p, seed))
        }
        (Err(e), None) => bail!("{e}, and no last good revision is kept at {}: give --policy FILE to start", kept.display()),
    }
}
