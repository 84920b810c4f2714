//! STIX indicators past their `valid_until` while the feed's text does not
//! change (a file untouched, a server answering 304): the kept text is read
//! again at the earliest `valid_until`, so that the spec's "an indicator
//! past its `valid_until` is skipped" holds then, not at the source's next
//! change.

use std::{path::Path, sync::Arc};

use super::{cache_file, parse, Feed};
use crate::{
    clock::unix_now,
    feeds::{Contents, FeedSet},
};

/// Feed `f`'s enforced contents in `set` hold an indicator past its
/// `valid_until`: its kept text read again now (None inside: no kept copy
/// can be read).
#[allow(clippy::type_complexity)]
pub(super) fn lapsed(dir: &Path, f: &Feed, set: &FeedSet) -> Option<Option<(String, Contents)>> {
    let now = unix_now();
    let until = set.feeds.get(&f.doc.name)?.expires?;
    if now < until {
        return None;
    }
    if f.copy_stale {
        return Some(None);
    }
    let text = std::fs::read_to_string(cache_file(dir, &f.doc.name)).ok();
    Some(text.and_then(|t| parse(f.doc.format, &t, now).ok().map(|c| (t, c))))
}

/// Forgets the expiry of `name`'s contents in `set`, so that a source read
/// again because no kept copy could be is read once, not every second.
pub(super) fn read_once(set: &mut FeedSet, name: &str) {
    if let Some(c) = set.feeds.get(name) {
        let mut c = (**c).clone();
        c.expires = None;
        set.feeds.insert(name.to_owned(), Arc::new(c));
    }
}
