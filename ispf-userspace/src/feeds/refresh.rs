//! The feed refresher: a thread that fetches each feed when it is due (a
//! file also whenever it changes, checked every second), keeps its last
//! good contents when a fetch or a parse fails (backing off: 5 s, 10 s, ...
//! up to the feed's `refresh_s`), keeps a copy of each good fetch on disk
//! for the next start, and hands every new feed set to the engine.

mod configure;
mod lapse;
mod offer;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{fetch, parse, FeedSet, FeedStatus};
use crate::{
    clock::{log, unix_now},
    policy::FeedDoc,
};

/// Where a feed's last good text is kept (its name hashed: names may hold
/// any character).
pub(crate) fn cache_file(dir: &Path, name: &str) -> PathBuf {
    let h = crate::policy::hex(&crate::policy::sha256(name.as_bytes()));
    dir.join(format!("{}.feed", &h[..32]))
}

/// What a cached text was read from, kept beside it: a feed whose
/// `source` or `format` changed while no controller ran must not enforce
/// the old source's list.
fn origin_file(dir: &Path, name: &str) -> PathBuf {
    cache_file(dir, name).with_extension("origin")
}

fn origin(doc: &FeedDoc) -> String {
    format!("{:?} {}", doc.format, doc.source)
}

/// Keeps `text` as feed `doc`'s last good text; the origin second, so
/// that a crash between the two leaves a text that is not read.
fn keep(dir: &Path, doc: &FeedDoc, text: &str) -> Result<(), crate::controller::state::StateError> {
    use crate::controller::state::write_atomic;
    write_atomic(&cache_file(dir, &doc.name), text.as_bytes())?;
    write_atomic(&origin_file(dir, &doc.name), origin(doc).as_bytes())
}

/// Forgets feed `name`'s cached text (its source changed).
fn forget(dir: &Path, name: &str) {
    let _ = std::fs::remove_file(cache_file(dir, name));
    let _ = std::fs::remove_file(origin_file(dir, name));
}

/// The feeds' last good contents as cached on disk: enforced from the
/// first generation of a start, before any fetch. A copy kept for another
/// source is not read (one kept before origins were recorded is).
pub fn load_cached(dir: &Path, docs: &[FeedDoc]) -> FeedSet {
    let mut set = FeedSet::default();
    for d in docs {
        if let Ok(o) = std::fs::read_to_string(origin_file(dir, &d.name)) {
            if o != origin(d) {
                continue;
            }
        }
        let Ok(text) = std::fs::read_to_string(cache_file(dir, &d.name)) else {
            continue;
        };
        if let Ok(c) = parse(d.format, &text, unix_now()) {
            set.feeds.insert(d.name.clone(), Arc::new(c));
        }
    }
    set
}

struct Feed {
    doc: FeedDoc,
    validators: fetch::Validators,
    due: Instant,
    failures: u32,
    /// The last failure was the text `validators` describe, unreadable:
    /// unchanged, it still fails. (After a fetch failure, an unchanged
    /// answer, a 304, is the last good text: a success.)
    bad_text: bool,
    /// The engine refused its last text: read again (not answered "not
    /// modified") at the backoff's retry, since room may have come.
    refused: bool,
    /// Refusals in a row, for [`refused_backoff`] (fetch failures count
    /// apart).
    refusals: u32,
    /// A lapse (see `lapse`) the engine refused is tried again after this.
    lapse_after: Instant,
    /// The kept copy is not the text of the contents in the set (keeping
    /// it failed): a lapse must not read it, but the source.
    copy_stale: bool,
}

/// Hands a feed set to the engine; the answer says whether it is
/// enforced (refused, the set enforced before stays).
pub type Apply = Box<dyn Fn(Arc<FeedSet>) -> Result<(), String> + Send>;

/// The feeds the enforced policy lists, read once a second (a reload
/// changes them).
pub type Docs = Arc<dyn Fn() -> Vec<FeedDoc> + Send + Sync>;

/// The controller's handle on the refresher: statuses come out.
pub struct Refresher {
    pub status: Arc<Mutex<Vec<FeedStatus>>>,
}

impl Refresher {
    pub fn start(
        docs: Docs,
        cache_dir: PathBuf,
        initial: FeedSet,
        apply: Apply,
    ) -> std::io::Result<Self> {
        let status = Arc::new(Mutex::new(Vec::new()));
        let st = status.clone();
        std::thread::Builder::new()
            .name("ispf-feeds".into())
            .spawn(move || run(docs, cache_dir, initial, apply, st))?;
        Ok(Self { status })
    }

    pub fn statuses(&self) -> Vec<FeedStatus> {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// When a feed the engine refused is read and offered again: 1 minute,
/// doubling to an hour (each offer compiles the whole set); a file feed
/// also at once when it changes, and any refused feed when the engine
/// takes a smaller set (room may have come).
fn refused_backoff(failures: u32) -> Duration {
    Duration::from_secs(60u64.saturating_mul(1 << failures.min(6)).min(3600))
}

fn backoff(failures: u32, refresh_s: u32) -> Duration {
    let s = 5u64
        .saturating_mul(1 << failures.min(16))
        .min(refresh_s.max(1) as u64);
    Duration::from_secs(s)
}

fn run(
    docs_of: Docs,
    cache_dir: PathBuf,
    mut set: FeedSet,
    apply: Apply,
    status: Arc<Mutex<Vec<FeedStatus>>>,
) {
    let _ = std::fs::create_dir_all(&cache_dir);
    let mut feeds: Vec<Feed> = Vec::new();
    let mut st: BTreeMap<String, FeedStatus> = BTreeMap::new();
    let mut docs = docs_of();
    configure::configure(docs.clone(), &mut feeds, &mut st);
    // Feeds whose source changed: their old contents leave the set the
    // engine is offered next, and the refresher's once it takes it.
    let mut gone: BTreeSet<String> = BTreeSet::new();
    let mut gone_retry = Instant::now();
    let mut gone_tries = 0u32;
    for (name, c) in &set.feeds {
        if let Some(s) = st.get_mut(name) {
            s.show(c);
        }
    }
    loop {
        *status.lock().unwrap_or_else(|e| e.into_inner()) = st.values().cloned().collect();
        std::thread::sleep(Duration::from_secs(1));
        let now_docs = docs_of();
        if now_docs != docs {
            docs = now_docs;
            for name in configure::configure(docs.clone(), &mut feeds, &mut st) {
                log(format!(
                    "feed {name}: its source changed; what the old source listed is removed"
                ));
                forget(&cache_dir, &name);
                if set.feeds.contains_key(&name) {
                    gone.insert(name);
                    // A new removal is offered now, not after an earlier
                    // one's backoff.
                    (gone_retry, gone_tries) = (Instant::now(), 0);
                }
            }
            // A feed the policy no longer lists is not compiled, but the
            // engine holds its contents until offered a set without them:
            // listed again before that, they would be enforced at once.
            let listed = |name: &String| feeds.iter().any(|f| &f.doc.name == name);
            let unlisted: Vec<String> = set.feeds.keys().filter(|n| !listed(n)).cloned().collect();
            for name in unlisted {
                set.feeds.remove(&name);
                gone.insert(name);
                (gone_retry, gone_tries) = (Instant::now(), 0);
            }
        }
        // Contents read this round, enforced only once the engine takes
        // them: (feed index, text, contents).
        let mut fresh: Vec<offer::Fresh> = Vec::new();
        for (i, f) in feeds.iter_mut().enumerate() {
            // An indicator of the enforced contents is past its
            // valid_until: the kept text is read again (no fetch), so that
            // it is skipped now, not when the source next changes.
            let lapsed = (Instant::now() >= f.lapse_after)
                .then(|| lapse::lapsed(&cache_dir, f, &set))
                .flatten();
            if let Some(lapsed) = lapsed {
                match lapsed {
                    Some((text, c))
                        if !set
                            .feeds
                            .get(&f.doc.name)
                            .is_some_and(|o| o.entries == c.entries) =>
                    {
                        fresh.push((i, text, Arc::new(c), true));
                        continue;
                    }
                    // The same entries: only the next expiry moved.
                    Some((_, c)) => {
                        let s = st
                            .entry(f.doc.name.clone())
                            .or_insert_with(|| FeedStatus::new(&f.doc));
                        s.show(&c);
                        set.feeds.insert(f.doc.name.clone(), Arc::new(c));
                    }
                    // No kept copy to read: the source is read again, once
                    // (a failing source keeps its last good contents).
                    None => {
                        lapse::read_once(&mut set, &f.doc.name);
                        f.validators = Default::default();
                        f.due = Instant::now();
                    }
                }
            }
            let is_file = !f.doc.source.starts_with("http");
            let due = Instant::now() >= f.due;
            // A file is looked at every second; while it fails, only a
            // change (the fix) or the backoff's retry reads it again.
            let look =
                is_file && (f.failures == 0 || fetch::file_changed(&f.doc.source, &f.validators));
            if !due && !look {
                continue;
            }
            let s = st
                .entry(f.doc.name.clone())
                .or_insert_with(|| FeedStatus::new(&f.doc));
            // A feed refreshed every few seconds cannot wait 20 s for one.
            let timeout = Duration::from_secs((f.doc.refresh_s as u64).clamp(2, 20));
            if f.refused && due {
                f.validators = Default::default();
            }
            let fetched = fetch::fetch(&f.doc.source, &mut f.validators, timeout);
            let text_read = matches!(fetched, Ok(Some(_)));
            let got = fetched.and_then(|text| match text {
                None => Ok(None),
                Some(t) => parse(f.doc.format, &t, unix_now()).map(|c| Some((t, c))),
            });
            // A fetch that failed leaves the validators on the last text
            // read, good or bad.
            f.bad_text = match &got {
                Err(_) if text_read => true,
                Ok(Some(_)) => false,
                _ => f.bad_text,
            };
            match got {
                // A file still being written: not read yet, so neither a
                // refresh nor a recovery.
                Ok(None) if is_file && fetch::file_changed(&f.doc.source, &f.validators) => {}
                // Unchanged: a refresh if it was good (or came back after a
                // failure to fetch); if its text failed to parse, the same
                // text still fails, and is not a refresh.
                Ok(None) if !f.bad_text => {
                    if f.failures > 0 {
                        log(format!("feed {}: fetched again, unchanged", f.doc.name));
                        f.failures = 0;
                        s.error = None;
                    }
                    if due {
                        s.last_refresh = Some(unix_now());
                        f.due = Instant::now() + Duration::from_secs(f.doc.refresh_s as u64);
                    }
                }
                Ok(None) => {
                    if due {
                        f.due = Instant::now() + backoff(f.failures - 1, f.doc.refresh_s);
                    }
                }
                Ok(Some((text, c))) => {
                    if f.failures > 0 {
                        log(format!("feed {}: fetched again", f.doc.name));
                    }
                    f.due = Instant::now() + Duration::from_secs(f.doc.refresh_s as u64);
                    // Contents awaiting removal (another source's, or of a
                    // feed listed again) are not this text's.
                    let same = !gone.contains(&f.doc.name)
                        && set
                            .feeds
                            .get(&f.doc.name)
                            .is_some_and(|old| old.entries == c.entries);
                    if same {
                        f.failures = 0;
                        f.refused = false;
                        f.refusals = 0;
                        s.error = None;
                        s.last_refresh = Some(unix_now());
                        s.show(&c);
                        // The same entries with other expiries (a
                        // valid_until moved): the set and the kept copy
                        // follow, or the old expiry would drop an indicator
                        // the source still lists. A copy kept by an older
                        // ispf records its origin now.
                        let moved =
                            set.feeds.get(&f.doc.name).map(|o| o.expires) != Some(c.expires);
                        if moved || f.copy_stale || !origin_file(&cache_dir, &f.doc.name).exists() {
                            f.copy_stale = keep(&cache_dir, &f.doc, &text)
                                .inspect_err(|e| {
                                    log(format!("feed {}: cannot keep a copy: {e}", f.doc.name))
                                })
                                .is_err();
                        }
                        if moved {
                            set.feeds.insert(f.doc.name.clone(), Arc::new(c));
                        }
                    } else {
                        fresh.push((i, text, Arc::new(c), false));
                    }
                }
                Err(e) => {
                    f.failures += 1;
                    s.failures += 1;
                    let msg = e.to_string();
                    if s.error.as_deref() != Some(msg.as_str()) {
                        let kept = if set.feeds.contains_key(&f.doc.name) {
                            format!(
                                "its last good contents ({} entries) stay enforced",
                                s.entries
                            )
                        } else {
                            "it never loaded, so nothing of it is enforced".to_owned()
                        };
                        log(format!("feed {}: {msg}; {kept}", f.doc.name));
                    }
                    s.error = Some(msg);
                    f.due = Instant::now() + backoff(f.failures - 1, f.doc.refresh_s);
                }
            }
        }
        if fresh.is_empty() && (gone.is_empty() || Instant::now() < gone_retry) {
            continue;
        }
        offer::offer(
            &apply, &mut set, &mut gone, fresh, &mut feeds, &mut st, &cache_dir,
        );
        if gone.is_empty() {
            gone_tries = 0;
        } else {
            // Said once; tried again after a minute, doubling to an hour.
            if gone_tries == 0 {
                log(format!(
                    "threat feeds: the engine refused to remove the old contents of {gone:?}; tried again later"
                ));
            }
            gone_retry = Instant::now() + refused_backoff(gone_tries);
            gone_tries += 1;
        }
    }
}

#[cfg(test)]
mod tests;
