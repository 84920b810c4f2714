//! The threat-feed maps: written, cleared and counted per generation slot
//! like the policy maps, by the one writer. Single addresses go in hash
//! maps in batches (a million in well under a second); networks go in LPM
//! tries, which have no batch operations, one by one.

use std::sync::Arc;

use aya::maps::{HashMap, LpmTrie, MapData};
use ispf_common::*;

use super::{
    access::{fd, keys_where, lpm_keys_of, map_err, v4_key, v4_lpm, v6_key, v6_lpm, Source},
    batch::{drop_keys, hash, lpm, Budget},
    delta::{diff, diff3},
    Result,
};
use crate::feeds::compile::CompiledFeeds;

pub(super) struct FeedMaps {
    pub v4: HashMap<MapData, V4Key, FeedVal>,
    pub v6: HashMap<MapData, V6Key, FeedVal>,
    pub net4: LpmTrie<MapData, [u8; 5], FeedVal>,
    pub net6: LpmTrie<MapData, [u8; 17], FeedVal>,
}

impl FeedMaps {
    pub fn open(source: &mut Source) -> Result<Self> {
        let mut take = |name: &'static str| source(name);
        Ok(Self {
            v4: HashMap::try_from(take(MAP_FEED_V4)?).map_err(map_err(MAP_FEED_V4))?,
            v6: HashMap::try_from(take(MAP_FEED_V6)?).map_err(map_err(MAP_FEED_V6))?,
            net4: LpmTrie::try_from(take(MAP_FEED_NET4)?).map_err(map_err(MAP_FEED_NET4))?,
            net6: LpmTrie::try_from(take(MAP_FEED_NET6)?).map_err(map_err(MAP_FEED_NET6))?,
        })
    }

    /// Writes `c` into slot `s`, which holds `old` (`None`: nothing).
    /// The very entries the slot holds (a runtime decision's generation
    /// shares them with the one before) are not compared again.
    pub fn write(
        &mut self,
        old: Option<&Arc<CompiledFeeds>>,
        c: &Arc<CompiledFeeds>,
        s: u8,
        b: &mut Budget,
    ) -> Result<()> {
        if old.is_some_and(|o| Arc::ptr_eq(o, c)) {
            return Ok(());
        }
        let d = diff(old.map(|o| &o.v4[..]), &c.v4);
        hash(fd(&self.v4), MAP_FEED_V4, d, |a| v4_key(s, a), b)?;
        let d = diff(old.map(|o| &o.v6[..]), &c.v6);
        hash(fd(&self.v6), MAP_FEED_V6, d, |a| v6_key(s, a), b)?;
        let d = diff3(old.map(|o| &o.net4[..]), &c.net4);
        lpm(&mut self.net4, MAP_FEED_NET4, d, |a, p| v4_lpm(s, a, p), b)?;
        let d = diff3(old.map(|o| &o.net6[..]), &c.net6);
        lpm(&mut self.net6, MAP_FEED_NET6, d, |a, p| v6_lpm(s, a, p), b)
    }

    pub fn clear(&mut self, c: &CompiledFeeds, s: u8) -> Result<()> {
        let k: Vec<_> = c.v4.iter().map(|(a, _)| v4_key(s, *a)).collect();
        drop_keys(fd(&self.v4), MAP_FEED_V4, &k)?;
        let k: Vec<_> = c.v6.iter().map(|(a, _)| v6_key(s, *a)).collect();
        drop_keys(fd(&self.v6), MAP_FEED_V6, &k)?;
        for (a, plen, _) in &c.net4 {
            let _ = self.net4.remove(&v4_lpm(s, a, *plen));
        }
        for (a, plen, _) in &c.net6 {
            let _ = self.net6.remove(&v6_lpm(s, a, *plen));
        }
        Ok(())
    }

    /// Clears every entry of slot `s`, whoever wrote it.
    pub fn clear_by_scan(&mut self, s: u8) -> Result<()> {
        let k = keys_where(&self.v4, |k| k.slot == s);
        drop_keys(fd(&self.v4), MAP_FEED_V4, &k)?;
        let k = keys_where(&self.v6, |k| k.slot == s);
        drop_keys(fd(&self.v6), MAP_FEED_V6, &k)?;
        for k in lpm_keys_of(&self.net4, s) {
            let _ = self.net4.remove(&k);
        }
        for k in lpm_keys_of(&self.net6, s) {
            let _ = self.net6.remove(&k);
        }
        Ok(())
    }

    /// Entries of slot `s`: (hosts v4, hosts v6, networks v4, networks v6).
    pub fn count(&self, s: u8) -> [usize; 4] {
        [
            keys_where(&self.v4, |k| k.slot == s).len(),
            keys_where(&self.v6, |k| k.slot == s).len(),
            lpm_keys_of(&self.net4, s).len(),
            lpm_keys_of(&self.net6, s).len(),
        ]
    }
}
