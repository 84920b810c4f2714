//! What every way of starting shares (a fresh start, adopting pins of this
//! layout, upgrading pins of an older one): the options of `ispf run`, what
//! the run directory recorded, and what a new datapath's first generation
//! holds.

use std::{path::PathBuf, sync::Arc};

use anyhow::Result;

use super::{
    backstop,
    engine::{log, now_rfc3339},
    ports,
    state::{Enforced, RunDir, State, PLACEMENT},
};
use crate::{
    datapath::{check_fits, Counts, MapSizeRequest, MapSizes},
    decisions::{holding, roles_refused_now, Decision, Kind},
    feeds::{self, compile::CompileCache, FeedSet},
    inventory,
    policy::{
        compile::{compile, Compiled},
        Policy,
    },
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
        placement: PLACEMENT,
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

/// The recorded role decisions that `file` refuses now, each with why:
/// they would move a device it makes life-critical (see
/// [`roles_refused_now`]). A fresh start leaves them out of its first
/// generation and the engine records them as ended once it serves:
/// enforcing them until then would open a life-critical device to a
/// role's segment for as long as the start takes.
pub(super) fn roles_refused_at_start(
    opts: &RunOptions,
    file: &Policy,
    decisions: &[Decision],
) -> Vec<(Decision, String)> {
    if !decisions.iter().any(|d| d.kind == Kind::Role) {
        return Vec::new();
    }
    let index = crate::policy::DeviceIndex::of(file);
    // Read-only: a missing database (nothing seen yet) is not created here.
    let conn = inventory::db::open_reader(&inventory::db_path(&opts.state_dir)).ok();
    roles_refused_now(file, &index, decisions, |mac| {
        super::expiry::seen_in(conn.as_ref(), mac)
    })
}

/// The feeds' contents kept from the last run: enforced from the first
/// generation, before any fetch.
pub(super) fn cached_feeds(opts: &RunOptions, file: &Policy) -> Arc<FeedSet> {
    Arc::new(feeds::refresh::load_cached(
        &feeds_dir(&opts.state_dir),
        &file.doc.feeds,
    ))
}

/// A new datapath's first generation.
pub(super) struct First {
    /// `policy` with the cached feeds.
    pub compiled: Compiled,
    /// The map sizes for it.
    pub sizes: MapSizes,
    pub feeds: Arc<FeedSet>,
    /// Holds the feeds' compilation, so that the engine's first decisions
    /// reuse it rather than compile every entry again.
    pub feed_cache: CompileCache,
}

/// What a new datapath's first generation holds and the map sizes for it:
/// the rule `check` applies, the policy and one as large must fit.
///
/// Feeds kept from the last run that leave no room for it start nothing
/// of theirs: the policy starts without them (said), since a firewall
/// that does not start because a feed grew protects no one. They are
/// fetched again and offered as a refresh, which says why it is refused.
pub(super) fn first_generation(opts: &RunOptions, file: &Policy, policy: &Policy) -> Result<First> {
    let feed_set = cached_feeds(opts, file);
    let with_feeds = first_with(opts, file, policy, feed_set.clone());
    match with_feeds {
        Err(e) if !feed_set.feeds.is_empty() => {
            // Dropped only when they are what does not fit.
            let without = first_with(opts, file, policy, Arc::new(FeedSet::default()))?;
            log(format!(
                "warning: the threat feeds kept from the last run ({} entries) are not enforced: {e}; the policy starts without them",
                feed_set.entries()
            ));
            Ok(without)
        }
        first => first,
    }
}

fn first_with(
    opts: &RunOptions,
    file: &Policy,
    policy: &Policy,
    feed_set: Arc<FeedSet>,
) -> Result<First> {
    let mut feed_cache = CompileCache::default();
    // The skips are logged by the caller that enforces them: an upgrade
    // says them once, when it adopts what it built here.
    let feeds = feed_cache.compile(&feed_set, file, policy);
    let compiled = compile(policy).with_feeds(feeds);
    let counts = Counts::of(&compiled);
    let sizes = opts.sizes.resolve(&counts);
    check_fits(&sizes, &counts, &counts)?;
    Ok(First {
        compiled,
        sizes,
        feeds: feed_set,
        feed_cache,
    })
}

pub fn feeds_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("feeds")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn options(state: &std::path::Path) -> RunOptions {
        RunOptions {
            policy: "t.json".into(),
            interfaces: vec![],
            pin_dir: state.join("pins"),
            run_dir: state.join("run"),
            sizes: Default::default(),
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_allow_remote: false,
            events_out: None,
            reapply: false,
            attach: ports::AttachOptions {
                hook: ports::Hook::Xdp,
                keep_gro_off: false,
            },
            state_dir: state.to_owned(),
            max_unknown_devices: 0,
            alert_webhook: None,
            fleet: None,
        }
    }

    /// A policy with one device and feed `block`, whose cached text in
    /// `state` is `cached`.
    fn with_cached_feed(state: &std::path::Path, cached: &str) -> Policy {
        let cache = feeds_dir(state);
        std::fs::create_dir_all(&cache).unwrap();
        let text = r#"{ "version": 1, "segments": [{ "name": "a" }],
            "devices": [{ "name": "d", "ipv4": "10.0.0.1", "segment": "a" }],
            "rules": [],
            "feeds": [{ "name": "block", "source": "/nonexistent", "format": "plain", "action": "deny" }] }"#;
        std::fs::write(feeds::refresh::cache_file(&cache, "block"), cached).unwrap();
        Policy::from_str(text, std::path::Path::new("t.json")).expect("valid")
    }

    /// A feed that grew past the maps while enforced (or a copy written
    /// by an older ispf) must not keep the firewall from starting.
    #[test]
    fn cached_feeds_without_room_start_the_policy_without_them() {
        let state = std::env::temp_dir().join(format!("ispf-boot-big-{}", std::process::id()));
        let policy = with_cached_feed(&state, "192.0.2.7\n192.0.2.8\n");
        let mut opts = options(&state);
        opts.sizes.feeds = Some(3);
        let first = first_generation(&opts, &policy, &policy);
        std::fs::remove_dir_all(&state).unwrap();
        let first = first.expect("the policy starts");
        assert!(first.feeds.feeds.is_empty());
        assert!(first.compiled.feeds.v4.is_empty());
        assert_eq!(first.compiled.dev_v4.len(), 1, "the policy is whole");
    }

    #[test]
    fn the_first_generation_hands_its_feed_compilation_on() {
        let state = std::env::temp_dir().join(format!("ispf-boot-{}", std::process::id()));
        let policy = with_cached_feed(&state, "192.0.2.7\n198.51.100.0/24\n");
        let opts = options(&state);
        let mut first = first_generation(&opts, &policy, &policy).unwrap();
        std::fs::remove_dir_all(&state).unwrap();
        assert_eq!(first.compiled.feeds.v4.len(), 1, "the cached feed was read");
        assert_eq!(first.compiled.feeds.net4.len(), 1);
        // The engine's first decision asks the cache again with the same
        // contents: it must get this very compilation, not a new one.
        let again = first.feed_cache.compile(&first.feeds, &policy, &policy);
        assert!(Arc::ptr_eq(&first.compiled.feeds, &again));
    }
}
