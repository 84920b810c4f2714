//! The engine's side of threat feeds: a new feed set from the refresher,
//! enforced as one generation over the same file and decisions, or refused
//! (no room for it twice in the double-buffered maps) with the set
//! enforced before kept, and the refresher told either way.

use std::sync::Arc;

use super::engine::{log, unix_now, Engine};
use crate::feeds::FeedSet;

impl Engine {
    /// New feed contents: the same file and decisions with them, as one
    /// generation. Refused (capacity), the feeds enforced before stay, and
    /// the refresher is told so that it keeps them too.
    pub(super) fn apply_feeds(&mut self, set: Arc<FeedSet>) -> std::result::Result<(), String> {
        let old = std::mem::replace(&mut self.feeds, set);
        let now = unix_now();
        let (file, policy) = (self.file.clone(), self.policy.clone());
        let path = self.enforced.path.clone();
        let decisions = self.decisions.to_vec();
        if let Err(why) = self.feeds_fit() {
            log(format!(
                "threat feeds not applied, the previous contents stay enforced: {why}"
            ));
            self.feeds = old;
            self.precompiled = None;
            self.publish();
            return Err(why);
        }
        let applied = match self.enforce(file, policy, &path, None, decisions, now) {
            Ok(g) => {
                log(format!(
                    "threat feeds: {} entries read, {} of them skipped for holding several segments, applied as generation {g}",
                    self.feeds.entries(),
                    self.feed_skips.len()
                ));
                Ok(())
            }
            Err(e) => {
                let why = crate::describe(&e);
                log(format!(
                    "threat feeds not applied, the previous contents stay enforced: {why}"
                ));
                self.feeds = old;
                Err(why)
            }
        };
        // A compilation left unused (a failure before the write) holds the
        // refused feeds under the file's and policy's key.
        self.precompiled = None;
        self.publish();
        applied
    }

    /// Whether the enforced file and policy with [`Self::feeds`] fit the
    /// maps with room for a generation as large. A set that fits only
    /// beside the enforced generation would be enforced, then refuse
    /// every later reload, decision and refresh. (A set no larger than the
    /// enforced one in any map that fits beside it always fits twice: the
    /// double buffer needs no exception for removals.) The compilation is
    /// kept for the `enforce` that follows.
    pub(super) fn feeds_fit(&mut self) -> std::result::Result<(), String> {
        self.precompiled = None;
        let policy = self.policy.clone();
        self.precompile_if_it_fits(&policy)
    }
}
