//! Offering a round's new feed contents to the engine, which may refuse
//! them (no room for a generation as large): what it takes becomes the
//! refresher's last good contents and is copied to disk; what it refuses
//! is said in its feed's status and read again at the backoff's retry.
//! A refused round is offered again one change at a time, so that one
//! feed too large for the maps does not hold back the others.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::Arc,
    time::Instant,
};

use super::{keep, refused_backoff, Apply, Feed};
use crate::{
    clock::{log, unix_now},
    feeds::{Contents, FeedSet, FeedStatus},
};

/// New contents read this round, (index in the feeds, text, contents,
/// lapse): `lapse`, read again from the kept copy because an indicator
/// passed its `valid_until`, not fetched: taking or refusing it says
/// nothing of the source, and it is not kept again.
pub(super) type Fresh = (usize, String, Arc<Contents>, bool);

/// `set` without the feeds in `gone`, with `fresh`'s contents.
fn compose(set: &FeedSet, gone: &BTreeSet<String>, fresh: &[&Fresh], feeds: &[Feed]) -> FeedSet {
    let mut next = set.clone();
    next.feeds.retain(|name, _| !gone.contains(name));
    for (i, _, c, _) in fresh {
        next.feeds.insert(feeds[*i].doc.name.clone(), c.clone());
    }
    next
}

/// Offers `fresh` and the removals in `gone`; see the module.
pub(super) fn offer(
    apply: &Apply,
    set: &mut FeedSet,
    gone: &mut BTreeSet<String>,
    fresh: Vec<Fresh>,
    feeds: &mut [Feed],
    st: &mut BTreeMap<String, FeedStatus>,
    cache_dir: &Path,
) {
    let all: Vec<&Fresh> = fresh.iter().collect();
    let whole = compose(set, gone, &all, feeds);
    let refused = match apply(Arc::new(whole.clone())) {
        Ok(()) => {
            took(set, whole, gone, feeds);
            for x in &fresh {
                taken(x, feeds, st, cache_dir);
            }
            return;
        }
        Err(why) => why,
    };
    if fresh.len() + usize::from(!gone.is_empty()) <= 1 {
        // A removal alone refused is said by the caller, once.
        if let Some(x) = fresh.first() {
            turned_down(x, &refused, set, feeds, st);
        }
        return;
    }
    if !gone.is_empty() {
        let without = compose(set, gone, &[], feeds);
        if apply(Arc::new(without.clone())).is_ok() {
            took(set, without, gone, feeds);
        }
    }
    for x in &fresh {
        let next = compose(set, gone, &[x], feeds);
        match apply(Arc::new(next.clone())) {
            Ok(()) => {
                took(set, next, gone, feeds);
                taken(x, feeds, st, cache_dir);
            }
            Err(why) => turned_down(x, &why, set, feeds, st),
        }
    }
}

/// The engine took `next`, which holds no contents awaiting removal.
fn took(set: &mut FeedSet, next: FeedSet, gone: &mut BTreeSet<String>, feeds: &mut [Feed]) {
    let smaller = next.entries() < set.entries();
    *set = next;
    gone.clear();
    if smaller {
        room_may_have_come(feeds);
    }
}

fn status<'a>(st: &'a mut BTreeMap<String, FeedStatus>, f: &Feed) -> &'a mut FeedStatus {
    st.entry(f.doc.name.clone())
        .or_insert_with(|| FeedStatus::new(&f.doc))
}

/// The engine took a smaller set: feeds it refused are read and offered
/// again at the next round, since room may have come.
fn room_may_have_come(feeds: &mut [Feed]) {
    for f in feeds.iter_mut().filter(|f| f.refused) {
        f.due = Instant::now();
    }
}

/// The engine took `x`: it is the feed's last good contents, kept on disk
/// (only now: a start must not begin with contents the engine refused).
fn taken(x: &Fresh, feeds: &mut [Feed], st: &mut BTreeMap<String, FeedStatus>, cache_dir: &Path) {
    let (i, text, c, lapse) = x;
    let f = &mut feeds[*i];
    let s = status(st, f);
    s.show(c);
    if *lapse {
        return;
    }
    if f.refused {
        log(format!(
            "feed {}: its contents are enforced now",
            f.doc.name
        ));
    }
    f.failures = 0;
    f.refused = false;
    f.refusals = 0;
    s.error = None;
    s.last_refresh = Some(unix_now());
    f.copy_stale = keep(cache_dir, &f.doc, text)
        .inspect_err(|e| log(format!("feed {}: cannot keep a copy: {e}", f.doc.name)))
        .is_err();
}

/// The engine refused `x`: the feed keeps what `set` holds of it, and
/// reads its text again at the backoff's retry.
fn turned_down(
    x: &Fresh,
    why: &str,
    set: &FeedSet,
    feeds: &mut [Feed],
    st: &mut BTreeMap<String, FeedStatus>,
) {
    let (i, _, c, lapse) = x;
    let f = &mut feeds[*i];
    if *lapse {
        // Tried again in a minute; the source's own state is untouched.
        log(format!(
            "feed {}: dropping indicators past their valid_until was refused: {why}",
            f.doc.name
        ));
        f.lapse_after = Instant::now() + refused_backoff(0);
        return;
    }
    let s = status(st, f);
    // Not a fetch failure: the text was read, and is read again at the
    // refusal's own backoff.
    f.refusals += 1;
    f.refused = true;
    s.failures += 1;
    let kept = match set.feeds.get(&f.doc.name) {
        Some(old) => format!(
            "its last good contents ({} entries) stay enforced",
            old.distinct()
        ),
        None => "nothing of it is enforced".to_owned(),
    };
    let msg = format!(
        "its new contents ({} entries) were refused: {why}",
        c.distinct()
    );
    log(format!("feed {}: {msg}; {kept}", f.doc.name));
    s.error = Some(msg);
    s.entries = set.feeds.get(&f.doc.name).map_or(0, |old| old.distinct());
    f.due = Instant::now() + refused_backoff(f.refusals - 1);
}
