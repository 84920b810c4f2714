//! The refresher's feeds as the enforced policy lists them: a feed whose
//! declaration is unchanged keeps its state; one new or changed starts
//! afresh (its status keeps its contents' counts when only its `action` or
//! `refresh_s` changed); one no longer listed goes.

use std::{collections::BTreeMap, time::Instant};

use super::{origin, Feed};
use crate::{feeds::FeedStatus, policy::FeedDoc};

/// Makes `feeds` and their statuses `st` those of `docs`. Returns the
/// feeds whose source or format changed: what they held is another
/// source's list, no longer to be enforced.
pub(super) fn configure(
    docs: Vec<FeedDoc>,
    feeds: &mut Vec<Feed>,
    st: &mut BTreeMap<String, FeedStatus>,
) -> Vec<String> {
    let mut old: BTreeMap<String, Feed> =
        feeds.drain(..).map(|f| (f.doc.name.clone(), f)).collect();
    let mut moved = Vec::new();
    for d in docs {
        match old.remove(&d.name) {
            Some(f) if f.doc == d => feeds.push(f),
            prev => {
                let mut status = FeedStatus::new(&d);
                // The kept copy is still what it was for the same source.
                let copy_stale = prev
                    .as_ref()
                    .is_some_and(|p| p.copy_stale && origin(&p.doc) == origin(&d));
                match (prev, st.get(&d.name)) {
                    (Some(p), _) if origin(&p.doc) != origin(&d) => moved.push(d.name.clone()),
                    // Only its action or refresh changed: the same
                    // contents stay enforced, and are said.
                    (Some(_), Some(was)) => {
                        status.entries = was.entries;
                        status.skipped = was.skipped;
                        status.problems = was.problems.clone();
                        status.last_refresh = was.last_refresh;
                    }
                    _ => {}
                }
                st.insert(d.name.clone(), status);
                feeds.push(Feed {
                    doc: d,
                    validators: Default::default(),
                    due: Instant::now(),
                    failures: 0,
                    bad_text: false,
                    refused: false,
                    refusals: 0,
                    lapse_after: Instant::now(),
                    copy_stale,
                });
            }
        }
    }
    st.retain(|name, _| feeds.iter().any(|f| &f.doc.name == name));
    moved
}
