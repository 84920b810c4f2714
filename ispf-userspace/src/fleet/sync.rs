//! A host following its site: connect (with backoff), read the site,
//! apply the policy revision and the decisions, then watch for changes and
//! report status under a lease, until etcd goes away — then again. What
//! is enforced changes only when a new revision or decision set is
//! applied; losing etcd changes nothing.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use etcd_client::{Client, EventType, WatchOptions};

use super::{client, keys, Facts, FleetError, Hooks, Options, POLICY_FILE, REVISION_FILE};
use crate::{
    clock::{log, unix_now},
    decisions::{Decision, Kind},
};

/// The status key lives this long without a keep-alive.
const LEASE_TTL: i64 = 15;
const REPORT_EVERY: Duration = Duration::from_secs(5);

struct Site {
    policy: Option<(Vec<u8>, i64)>,
    decisions: BTreeMap<(String, Kind), Decision>,
    /// The last decision set handed to the engine.
    applied: Option<Vec<Decision>>,
    /// The revision the engine refused, by etcd version and content: not
    /// tried again.
    refused: (i64, [u8; 32]),
    /// What the enforced revision's document hashes to. A version alone
    /// does not name a document: deleting the key starts versions again
    /// at 1, so a new document can arrive with the number of an old one.
    enforced_sha: Option<[u8; 32]>,
    /// Why the revision or decisions last handed over were refused (or a
    /// decision is enforced here otherwise than written).
    policy_error: Option<String>,
    decision_error: Option<String>,
}

pub(super) fn run(
    opts: Options,
    state_dir: PathBuf,
    seed: Option<Vec<u8>>,
    hooks: Hooks,
    facts: Arc<Facts>,
    stop: Arc<AtomicBool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log(format!(
                "fleet: cannot start ({e}); enforcing the last good revision only"
            ));
            return;
        }
    };
    let mut site = Site {
        policy: None,
        decisions: BTreeMap::new(),
        applied: None,
        refused: (0, [0; 32]),
        enforced_sha: std::fs::read(state_dir.join(POLICY_FILE))
            .ok()
            .map(|b| crate::policy::sha256(&b)),
        policy_error: None,
        decision_error: None,
    };
    let mut backoff = Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) {
        let r = rt.block_on(follow(
            &opts,
            &state_dir,
            seed.as_deref(),
            &hooks,
            &facts,
            &stop,
            &mut site,
        ));
        facts.connected.store(false, Ordering::Relaxed);
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = r {
            log(format!(
                "fleet: {e}; enforcement unchanged, retrying in {backoff:?}"
            ));
            facts.set_error(Some(e.to_string()));
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn follow(
    opts: &Options,
    state_dir: &Path,
    seed: Option<&[u8]>,
    hooks: &Hooks,
    facts: &Facts,
    stop: &AtomicBool,
    site: &mut Site,
) -> Result<(), FleetError> {
    let mut c = client::connect(opts).await?;
    let (kvs, rev) = client::site(&mut c, &opts.site).await?;
    site.policy = None;
    // Decisions deleted while this host was away end; one whose value
    // cannot be read keeps what this host last read of it.
    let mut present = std::collections::BTreeSet::new();
    for (k, v, version) in kvs {
        if let keys::Key::Decision { mac, kind } = keys::parse(&opts.site, &k) {
            present.insert((mac, kind));
        }
        absorb(&opts.site, &k, Some((&v, version)), site);
    }
    site.decisions.retain(|k, _| present.contains(k));
    let enforcing = facts.revision.load(Ordering::Relaxed);
    if site.policy.is_none() && enforcing != 0 {
        // The key was deleted, or etcd restored from nothing: this host's
        // startup file may be months old. Only a host that never enforced
        // a revision of the site seeds it.
        let msg = format!(
            "site {} has no policy (deleted?); revision {enforcing} stays enforced here; push one with `ispf fleet push`",
            opts.site
        );
        log(format!("fleet: {msg}"));
        site.policy_error = Some(msg);
    } else if site.policy.is_none() {
        if let Some(seed) = seed {
            let pushed = keys::Pushed {
                revision: 1,
                etcd_revision: 0,
                by: format!("ispf run on {} (seed)", opts.host),
                at: unix_now(),
                sha256: crate::policy::hex(&crate::policy::sha256(seed)),
                from_file: "--policy".into(),
            };
            if let Ok(r) = client::push(&mut c, &opts.site, seed, 0, &pushed).await? {
                log(format!(
                    "fleet: site {} had no policy; seeded it with --policy as revision {r}",
                    opts.site
                ));
            }
            // Written or not (another host seeded first), the watch brings it.
        }
    }
    facts.connected.store(true, Ordering::Relaxed);
    facts.set_error(None);
    log(format!(
        "fleet: following site {} at {}",
        opts.site,
        opts.endpoints.join(",")
    ));
    apply(state_dir, hooks, facts, site);
    facts.last_sync.store(unix_now(), Ordering::Relaxed);

    let lease = c
        .lease_grant(LEASE_TTL, None)
        .await
        .map_err(|e| {
            FleetError::Unreachable(format!("granting the status lease: {}", client::plain(&e)))
        })?
        .id();
    let (mut keeper, mut keepalive) = c.lease_keep_alive(lease).await.map_err(|e| {
        FleetError::Unreachable(format!("keeping the status lease: {}", client::plain(&e)))
    })?;
    report(&mut c, opts, hooks, facts, lease).await?;
    let (_watcher, mut watch) = c
        .watch_client()
        .max_decoding_message_size(client::MAX_MESSAGE)
        .watch(
            keys::site_prefix(&opts.site),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(rev + 1),
            ),
        )
        .await
        .map_err(|e| {
            FleetError::Unreachable(format!("watching the site: {}", client::plain(&e)))
        })?;
    let mut tick = tokio::time::interval(REPORT_EVERY);
    let mut stopping = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            msg = watch.message() => {
                let msg = msg.map_err(|e| FleetError::Unreachable(format!("the watch: {}", client::plain(&e))))?
                    .ok_or_else(|| FleetError::Unreachable("the watch ended".into()))?;
                if msg.canceled() {
                    return Err(FleetError::Unreachable(format!("the watch was cancelled (compacted at {})", msg.compact_revision())));
                }
                let mut changed = false;
                for ev in msg.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let value = match ev.event_type() {
                        EventType::Put => Some((kv.value(), kv.version())),
                        EventType::Delete => None,
                    };
                    changed |= absorb(&opts.site, kv.key(), value, site);
                }
                facts.last_sync.store(unix_now(), Ordering::Relaxed);
                if changed {
                    apply(state_dir, hooks, facts, site);
                    report(&mut c, opts, hooks, facts, lease).await?;
                }
            }
            _ = tick.tick() => {
                keeper.keep_alive().await.map_err(|e| FleetError::Unreachable(format!("keeping the status lease: {}", client::plain(&e))))?;
                let _ = keepalive.message().await;
                if (hooks.reapply)() {
                    site.applied = None;
                    apply(state_dir, hooks, facts, site);
                }
                report(&mut c, opts, hooks, facts, lease).await?;
            }
            _ = stopping.tick() => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
        }
    }
}

/// Takes one key's new value (`None`: deleted); whether it matters to
/// what is enforced.
fn absorb(site_name: &str, key: &[u8], value: Option<(&[u8], i64)>, site: &mut Site) -> bool {
    match keys::parse(site_name, key) {
        keys::Key::Policy => {
            site.policy = value.map(|(v, version)| (v.to_vec(), version));
            true
        }
        keys::Key::Decision { mac, kind } => {
            // Only a deletion ends a decision: a value that cannot be read
            // (a hand edit, a truncated write) leaves what it held, as
            // bad input never changes what is enforced.
            let Some((v, _)) = value else {
                return site.decisions.remove(&(mac, kind)).is_some();
            };
            let held = if site.decisions.contains_key(&(mac.clone(), kind)) {
                "the decision it held stays"
            } else {
                "nothing is decided"
            };
            match keys::decode_decision(v) {
                Some(d) if d.mac == mac && d.kind == kind => {
                    site.decisions.insert((mac, kind), d);
                    return true;
                }
                Some(_) => log(format!(
                    "fleet: ignoring decision key {} whose value names another device or kind; {held}",
                    String::from_utf8_lossy(key)
                )),
                None => log(format!(
                    "fleet: ignoring decision key {}: its value is not a decision ({} bytes); {held}: write it with `ispf quarantine`/`admit`/`release`, or delete the key",
                    String::from_utf8_lossy(key),
                    v.len()
                )),
            }
            false
        }
        keys::Key::Other => {
            if value.is_some() && key.starts_with(keys::decisions_prefix(site_name).as_bytes()) {
                log(format!(
                    "fleet: ignoring key {}: not a decision key as ispf writes them (decisions/aa:bb:cc:dd:ee:ff/admit|quarantine|role, MAC in lower case): delete it",
                    crate::printable(&String::from_utf8_lossy(key))
                ));
            }
            false
        }
        _ => false,
    }
}

/// Hands a new revision and a changed decision set to the engine.
fn apply(state_dir: &Path, hooks: &Hooks, facts: &Facts, site: &mut Site) {
    if let Some((bytes, version)) = site.policy.clone() {
        let have = facts.revision.load(Ordering::Relaxed);
        let sha = crate::policy::sha256(&bytes);
        let new = version != have || site.enforced_sha != Some(sha);
        if new && (version, sha) != site.refused {
            let candidate = state_dir.join(super::CANDIDATE_FILE);
            let r = crate::controller::state::write_atomic(&candidate, &bytes)
                .map_err(|e| e.to_string())
                .and_then(|_| (hooks.policy)(candidate.clone()));
            match r {
                Ok(()) => {
                    let saved = crate::controller::state::write_atomic(
                        &state_dir.join(POLICY_FILE),
                        &bytes,
                    )
                    .and_then(|_| {
                        crate::controller::state::write_atomic(
                            &state_dir.join(REVISION_FILE),
                            version.to_string().as_bytes(),
                        )
                    });
                    if let Err(e) = saved {
                        log(format!(
                            "fleet: revision {version} enforced but not kept on disk: {e}"
                        ));
                    }
                    facts.revision.store(version, Ordering::Relaxed);
                    site.enforced_sha = Some(sha);
                    // Decision keys refused under the old revision (an
                    // admit into a segment this one adds) are checked again.
                    site.applied = None;
                    site.policy_error = None;
                    log(format!("fleet: enforcing revision {version}"));
                }
                Err(e) => {
                    site.refused = (version, sha);
                    let msg = format!(
                        "revision {version} refused, revision {have} stays enforced: {}",
                        clip(&e)
                    );
                    log(format!("fleet: {msg}"));
                    site.policy_error = Some(msg);
                }
            }
        } else if !new {
            // The site's revision is the one enforced: whatever was said
            // before (no policy, a refusal since replaced) is over.
            site.policy_error = None;
        }
        facts.latest.store(version, Ordering::Relaxed);
    }
    let set: Vec<Decision> = site.decisions.values().cloned().collect();
    if site.applied.as_ref() != Some(&set) {
        match (hooks.decisions)(set.clone()) {
            Ok(refused) => {
                site.applied = Some(set);
                site.decision_error = (!refused.is_empty())
                    .then(|| clip(&format!("decisions: {}", refused.join("; "))));
            }
            Err(e) => {
                let e = clip(&e);
                log(format!(
                    "fleet: the site's decisions could not be applied yet: {e}"
                ));
                site.decision_error = Some(format!("decisions: {e}"));
            }
        }
    }
    // What is wrong now, not what once was: an error goes once fixed.
    let errors: Vec<&str> = [&site.policy_error, &site.decision_error]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    facts.set_error((!errors.is_empty()).then(|| errors.join("; ")));
}

/// Messages go to the log and into this host's status key in etcd, which
/// is rewritten every few seconds: a document with a huge field name must
/// not make every host write megabytes (and fill etcd's quota).
const MAX_MESSAGE: usize = 2048;

fn clip(s: &str) -> String {
    crate::clip(s, MAX_MESSAGE)
}

async fn report(
    c: &mut Client,
    opts: &Options,
    hooks: &Hooks,
    facts: &Facts,
    lease: i64,
) -> Result<(), FleetError> {
    let (generation, sha, interfaces, health) = (hooks.report)();
    let s = keys::HostStatus {
        host: opts.host.clone(),
        revision: facts.revision.load(Ordering::Relaxed),
        generation,
        policy_sha256: sha,
        interfaces,
        health,
        last_error: facts.error(),
        reported: unix_now(),
    };
    client::put(
        c,
        keys::host(&opts.site, &s.host),
        serde_json::to_vec(&s).unwrap_or_default(),
        Some(lease),
    )
    .await
}
