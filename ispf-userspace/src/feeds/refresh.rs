//! The feed refresher: a thread that fetches each feed when it is due (a
//! file also whenever it changes, checked every second), keeps its last
//! good contents when a fetch or a parse fails (backing off: 5 s, 10 s, ...
//! up to the feed's `refresh_s`), keeps a copy of each good fetch on disk
//! for the next start, and hands every new feed set to the engine.

use std::{
    collections::BTreeMap,
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

/// The feeds' last good contents as cached on disk: enforced from the
/// first generation of a start, before any fetch.
pub fn load_cached(dir: &Path, docs: &[FeedDoc]) -> FeedSet {
    let mut set = FeedSet::default();
    for d in docs {
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
}

pub type Apply = Box<dyn Fn(Arc<FeedSet>) + Send>;

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
    let configure =
        |docs: Vec<FeedDoc>, feeds: &mut Vec<Feed>, st: &mut BTreeMap<String, FeedStatus>| {
            let old: BTreeMap<String, Feed> =
                feeds.drain(..).map(|f| (f.doc.name.clone(), f)).collect();
            let mut old = old;
            for d in docs {
                match old.remove(&d.name) {
                    Some(f) if f.doc == d => feeds.push(f),
                    _ => {
                        st.insert(d.name.clone(), FeedStatus::new(&d));
                        feeds.push(Feed {
                            doc: d,
                            validators: Default::default(),
                            due: Instant::now(),
                            failures: 0,
                            bad_text: false,
                        });
                    }
                }
            }
            st.retain(|name, _| feeds.iter().any(|f| &f.doc.name == name));
        };
    let mut docs = docs_of();
    configure(docs.clone(), &mut feeds, &mut st);
    for (name, c) in &set.feeds {
        if let Some(s) = st.get_mut(name) {
            s.entries = c.distinct();
            s.skipped = c.skipped;
            s.problems = c.report();
        }
    }
    loop {
        *status.lock().unwrap_or_else(|e| e.into_inner()) = st.values().cloned().collect();
        std::thread::sleep(Duration::from_secs(1));
        let now_docs = docs_of();
        if now_docs != docs {
            docs = now_docs;
            configure(docs.clone(), &mut feeds, &mut st);
            set.feeds
                .retain(|name, _| feeds.iter().any(|f| &f.doc.name == name));
        }
        let mut changed = false;
        for f in &mut feeds {
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
                    f.failures = 0;
                    s.error = None;
                    s.last_refresh = Some(unix_now());
                    s.entries = c.distinct();
                    s.skipped = c.skipped;
                    s.problems = c.report();
                    f.due = Instant::now() + Duration::from_secs(f.doc.refresh_s as u64);
                    let same = set
                        .feeds
                        .get(&f.doc.name)
                        .is_some_and(|old| old.entries == c.entries);
                    if !same {
                        let path = cache_file(&cache_dir, &f.doc.name);
                        if let Err(e) =
                            crate::controller::state::write_atomic(&path, text.as_bytes())
                        {
                            log(format!("feed {}: cannot keep a copy: {e}", f.doc.name));
                        }
                        set.feeds.insert(f.doc.name.clone(), Arc::new(c));
                        changed = true;
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
        if changed {
            apply(Arc::new(set.clone()));
        }
    }
}
