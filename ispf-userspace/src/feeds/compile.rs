//! Feeds into map entries, and the controller's index of the same entries
//! (to name the feed and indicator of a threat the datapath reports).
//!
//! Overlaps are resolved here so the datapath's first hit is final: the
//! same network in several feeds keeps the strongest action (`deny` over
//! `alert`, then the feed listed first), and an address or network inside
//! a `deny` network of any feed becomes `deny` itself.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use ipnet::IpNet;
use ispf_common::{
    FeedVal, FEEDS_V4_HOSTS, FEEDS_V4_NETS, FEEDS_V6_HOSTS, FEEDS_V6_NETS, FEED_ALERT, FEED_DENY,
};

use super::{
    own::{OwnSubnets, Skip},
    Entry, FeedSet,
};
use crate::policy::{FeedAction, FeedDoc, Policy};

/// Feed entries as the maps take them (keys without the generation slot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompiledFeeds {
    pub v4: Vec<([u8; 4], FeedVal)>,
    pub v6: Vec<([u8; 16], FeedVal)>,
    pub net4: Vec<([u8; 4], u8, FeedVal)>,
    pub net6: Vec<([u8; 16], u8, FeedVal)>,
    /// Entries not enforced because they cover the policy's own subnets.
    pub skips: Vec<Skip>,
}

impl CompiledFeeds {
    /// `Settings::feeds`: which maps hold entries.
    pub fn flags(&self) -> u8 {
        let mut f = 0;
        if !self.v4.is_empty() {
            f |= FEEDS_V4_HOSTS;
        }
        if !self.net4.is_empty() {
            f |= FEEDS_V4_NETS;
        }
        if !self.v6.is_empty() {
            f |= FEEDS_V6_HOSTS;
        }
        if !self.net6.is_empty() {
            f |= FEEDS_V6_NETS;
        }
        f
    }

    /// Entries in the maps.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len() + self.net4.len() + self.net6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn stronger(a: FeedVal, b: FeedVal) -> FeedVal {
    if b.action > a.action || (b.action == a.action && b.feed < a.feed) {
        b
    } else {
        a
    }
}

type Resolved = HashMap<IpNet, (FeedVal, Option<Arc<Entry>>)>;

/// Every listed network with the strongest entry for it, overlaps
/// resolved, without the networks `skip` says why not to enforce
/// (returned as skips).
fn resolve(
    set: &FeedSet,
    docs: &[FeedDoc],
    skip: &dyn Fn(&IpNet) -> Option<String>,
) -> (Resolved, Vec<Skip>) {
    let mut all: Resolved = HashMap::new();
    let mut skips = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let Some(c) = set.feeds.get(&doc.name) else {
            continue;
        };
        let action = match doc.action {
            FeedAction::Deny => FEED_DENY,
            FeedAction::Alert => FEED_ALERT,
        };
        let val = FeedVal {
            feed: i as u8,
            action,
            _pad: [0; 2],
        };
        for e in &c.entries {
            if let Some(why) = skip(&e.net) {
                skips.push(skip_of(i, e, why));
                continue;
            }
            match all.get_mut(&e.net) {
                Some(cur) => {
                    let s = stronger(cur.0, val);
                    if s != cur.0 {
                        *cur = (s, Some(Arc::new(e.clone())));
                    }
                }
                None => {
                    all.insert(e.net, (val, Some(Arc::new(e.clone()))));
                }
            }
        }
    }
    // Inside a deny network: deny.
    let deny_nets: HashMap<IpNet, FeedVal> = all
        .iter()
        .filter(|(n, (v, _))| v.action == FEED_DENY && n.prefix_len() < n.max_prefix_len())
        .map(|(n, (v, _))| (*n, *v))
        .collect();
    if !deny_nets.is_empty() {
        let mut lens: Vec<u8> = deny_nets.keys().map(IpNet::prefix_len).collect();
        lens.sort_unstable();
        lens.dedup();
        for (net, (val, _)) in all.iter_mut() {
            if val.action == FEED_DENY {
                continue;
            }
            for &l in lens.iter().filter(|l| **l < net.prefix_len()) {
                let Ok(outer) = IpNet::new(net.network(), l) else {
                    continue;
                };
                if let Some(d) = deny_nets.get(&outer.trunc()) {
                    *val = *d;
                    break;
                }
            }
        }
    }
    (all, skips)
}

/// What a compilation was of (the contents, the declarations and the
/// policy file's hash), and its result.
type Compiled = (Arc<FeedSet>, Vec<FeedDoc>, [u8; 32], Arc<CompiledFeeds>);

/// The last compilation, reused while neither the feeds' contents (the
/// same `Arc`, which the refresher replaces on every change), the
/// policy's feed declarations nor the policy file change. Every runtime
/// decision is a whole generation: compiling a million feed entries again
/// for each one made a role session take half a second.
#[derive(Default)]
pub struct CompileCache {
    last: Option<Compiled>,
}

impl CompileCache {
    /// [`compile`] of `set` with `policy`'s feed declarations, skipping
    /// what holds several of `file`'s segments, from the cache when they
    /// are what it was last asked for.
    pub fn compile(
        &mut self,
        set: &Arc<FeedSet>,
        file: &Policy,
        policy: &Policy,
    ) -> Arc<CompiledFeeds> {
        let docs = &policy.doc.feeds;
        if let Some((s, d, f, c)) = &self.last {
            if Arc::ptr_eq(s, set) && d == docs && *f == file.sha256 {
                return c.clone();
            }
        }
        let c = Arc::new(compile(set, docs, &OwnSubnets::of(file)));
        self.last = Some((set.clone(), docs.to_vec(), file.sha256, c.clone()));
        c
    }

    /// The skips of the last compilation, if it was of `set` (at start,
    /// what the first generation enforced).
    pub fn skips_of(&self, set: &Arc<FeedSet>) -> Vec<Skip> {
        match &self.last {
            Some((s, _, _, c)) if Arc::ptr_eq(s, set) => c.skips.clone(),
            _ => Vec::new(),
        }
    }
}

pub fn compile(set: &FeedSet, docs: &[FeedDoc], own: &OwnSubnets) -> CompiledFeeds {
    let mut c = CompiledFeeds::default();
    if set.feeds.is_empty() {
        return c;
    }
    let (all, skips) = resolve(set, docs, &|n| own.covered_by(n));
    c.skips = skips;
    for (net, (val, _)) in all {
        match (net, net.prefix_len() == net.max_prefix_len()) {
            (IpNet::V4(n), true) => c.v4.push((n.addr().octets(), val)),
            (IpNet::V4(n), false) => c.net4.push((n.addr().octets(), n.prefix_len(), val)),
            (IpNet::V6(n), true) => c.v6.push((n.addr().octets(), val)),
            (IpNet::V6(n), false) => c.net6.push((n.addr().octets(), n.prefix_len(), val)),
        }
    }
    c
}

/// What of `set` holds several of `own`'s segments, as a compilation
/// would skip it (for `ispf reload --dry-run`, which applies nothing).
pub fn skips(set: &FeedSet, docs: &[FeedDoc], own: &OwnSubnets) -> Vec<Skip> {
    let mut out = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        for e in set.feeds.get(&doc.name).iter().flat_map(|c| &c.entries) {
            if let Some(why) = own.covered_by(&e.net) {
                out.push(skip_of(i, e, why));
            }
        }
    }
    out
}

fn skip_of(feed: usize, e: &Entry, why: String) -> Skip {
    let at = super::guard::at(e);
    Skip {
        feed,
        net: e.net,
        why: format!("{at}: `{}` {why}; skipped", e.net),
    }
}

/// What the controller knows of a listed address: the feed, its action,
/// the entry (indicator or line) and the network that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub feed: String,
    pub deny: bool,
    pub net: IpNet,
    pub indicator: Option<String>,
    pub line: Option<u32>,
}

/// The controller's longest-prefix index of the same entries.
#[derive(Default)]
pub struct FeedIndex {
    nets: Resolved,
    lens4: Vec<u8>,
    lens6: Vec<u8>,
    names: Vec<String>,
}

impl FeedIndex {
    /// Of what the maps hold: `set` without the networks `skipped`.
    pub fn new(set: &FeedSet, docs: &[FeedDoc], skipped: &[Skip]) -> Self {
        let skipped: std::collections::HashSet<IpNet> = skipped.iter().map(|k| k.net).collect();
        let (nets, _) = resolve(set, docs, &|n| skipped.contains(n).then(String::new));
        let mut lens4: Vec<u8> = Vec::new();
        let mut lens6: Vec<u8> = Vec::new();
        for n in nets.keys() {
            match n {
                IpNet::V4(_) => lens4.push(n.prefix_len()),
                IpNet::V6(_) => lens6.push(n.prefix_len()),
            }
        }
        for l in [&mut lens4, &mut lens6] {
            l.sort_unstable_by(|a, b| b.cmp(a));
            l.dedup();
        }
        Self {
            nets,
            lens4,
            lens6,
            names: docs.iter().map(|d| d.name.clone()).collect(),
        }
    }

    /// The entry listing `ip`, longest prefix first.
    pub fn lookup(&self, ip: IpAddr) -> Option<Listed> {
        let lens = if ip.is_ipv4() {
            &self.lens4
        } else {
            &self.lens6
        };
        for &l in lens {
            let Ok(n) = IpNet::new(ip, l) else { continue };
            if let Some((v, e)) = self.nets.get(&n.trunc()) {
                return Some(Listed {
                    feed: self.names.get(v.feed as usize).cloned().unwrap_or_default(),
                    deny: v.action == FEED_DENY,
                    net: n.trunc(),
                    indicator: e.as_ref().and_then(|e| e.indicator.clone()),
                    line: e.as_ref().and_then(|e| e.line),
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
