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
    own::{self, OwnSubnets, Skip},
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
/// resolved, without the entries that cover `own` subnets (returned as
/// skips).
fn resolve(set: &FeedSet, docs: &[FeedDoc], own: &OwnSubnets) -> (Resolved, Vec<Skip>) {
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
            if let Some(why) = own.covered_by(&e.net) {
                let at = super::guard::at(e);
                let why = format!("{at}: `{}` {why}; skipped", e.net);
                skips.push(Skip { feed: i, why });
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
/// declared subnets), and its result.
type Compiled = (
    Arc<FeedSet>,
    Vec<FeedDoc>,
    Vec<(IpNet, String)>,
    Arc<CompiledFeeds>,
);

/// The last compilation, reused while neither the feeds' contents (the
/// same `Arc`, which the refresher replaces on every change) nor the
/// policy's feed declarations change. Every runtime decision is a whole
/// generation: compiling a million feed entries again for each one made a
/// role session take half a second.
#[derive(Default)]
pub struct CompileCache {
    last: Option<Compiled>,
}

impl CompileCache {
    /// [`compile`] of `set` with `policy`'s feed declarations and
    /// subnets, from the cache when they are what it was last asked for.
    /// Also says whether it compiled anew.
    pub fn compile(&mut self, set: &Arc<FeedSet>, policy: &Policy) -> (Arc<CompiledFeeds>, bool) {
        let docs = &policy.doc.feeds;
        let declared = own::declared(policy);
        if let Some((s, d, o, c)) = &self.last {
            if Arc::ptr_eq(s, set) && d == docs && *o == declared {
                return (c.clone(), false);
            }
        }
        let own = OwnSubnets::from_declared(declared.clone());
        let c = Arc::new(compile(set, docs, &own));
        self.last = Some((set.clone(), docs.to_vec(), declared, c.clone()));
        (c, true)
    }

    /// The skips of the last compilation, if it was of `set`.
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
    let (all, skips) = resolve(set, docs, own);
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
    pub fn new(set: &FeedSet, docs: &[FeedDoc], own: &OwnSubnets) -> Self {
        let (nets, _) = resolve(set, docs, own);
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
mod tests {
    use super::*;
    use crate::feeds::{plain, Contents};

    fn doc(name: &str, action: FeedAction) -> FeedDoc {
        FeedDoc {
            name: name.into(),
            source: "/x".into(),
            format: Default::default(),
            refresh_s: 300,
            action,
        }
    }

    #[test]
    fn overlaps_keep_the_strongest_and_deny_networks_cover_what_they_contain() {
        let none = OwnSubnets::default();
        let mut set = FeedSet::default();
        let alert: Contents = plain::parse("192.0.2.7\n198.51.100.0/25\n2001:db8::5\n10.9.9.9\n");
        let deny: Contents = plain::parse("192.0.2.0/24\n2001:db8::/64\n10.9.9.9\n");
        set.feeds.insert("watch".into(), Arc::new(alert));
        set.feeds.insert("block".into(), Arc::new(deny));
        let docs = [
            doc("watch", FeedAction::Alert),
            doc("block", FeedAction::Deny),
        ];
        let c = compile(&set, &docs, &none);
        let host = |a: [u8; 4]| c.v4.iter().find(|(x, _)| *x == a).map(|x| x.1);
        // Inside block's /24: deny, attributed to block (feed 1).
        assert_eq!(
            host([192, 0, 2, 7]).map(|v| (v.action, v.feed)),
            Some((FEED_DENY, 1))
        );
        // Listed by both: deny wins.
        assert_eq!(host([10, 9, 9, 9]).map(|v| v.action), Some(FEED_DENY));
        let net = c.net4.iter().find(|x| x.1 == 25).unwrap();
        assert_eq!(net.2.action, FEED_ALERT, "not inside a deny network");
        assert_eq!(c.v6[0].1.action, FEED_DENY);
        assert_eq!(
            c.flags(),
            FEEDS_V4_HOSTS | FEEDS_V4_NETS | FEEDS_V6_HOSTS | FEEDS_V6_NETS
        );
        let idx = FeedIndex::new(&set, &docs, &none);
        let l = idx.lookup("192.0.2.200".parse().unwrap()).unwrap();
        assert_eq!((l.feed.as_str(), l.deny, l.line), ("block", true, Some(1)));
        let l = idx.lookup("198.51.100.9".parse().unwrap()).unwrap();
        assert_eq!((l.feed.as_str(), l.deny), ("watch", false));
        assert!(idx.lookup("203.0.113.1".parse().unwrap()).is_none());
    }

    /// A policy declaring `feeds` and a segment `s{i}` owning each of
    /// `subnets`.
    fn policy(feeds: serde_json::Value, subnets: &[&str]) -> Policy {
        let segments: Vec<serde_json::Value> = subnets
            .iter()
            .enumerate()
            .map(|(i, n)| serde_json::json!({ "name": format!("s{i}"), "subnets": [n] }))
            .collect();
        let doc = serde_json::json!({ "version": 1, "feeds": feeds, "segments": segments });
        Policy::from_doc(serde_json::from_value(doc).unwrap()).unwrap()
    }

    /// A network holding two segments' subnets is skipped and named;
    /// what it held keeps its own action (an alert inside stays an alert),
    /// and one segment's subnet listed whole is enforced.
    #[test]
    fn entries_holding_several_segments_are_skipped_and_named() {
        let mut set = FeedSet::default();
        let deny = plain::parse("10.100.0.0/15\n10.100.1.1\n10.64.0.0/10\n10.101.0.0/16\n");
        set.feeds.insert("block".into(), Arc::new(deny));
        set.feeds
            .insert("watch".into(), Arc::new(plain::parse("10.100.2.0/24\n")));
        let docs = [
            doc("block", FeedAction::Deny),
            doc("watch", FeedAction::Alert),
        ];
        let p = policy(serde_json::json!([]), &["10.100.0.0/16", "10.101.0.0/16"]);
        let own = OwnSubnets::of(&p);
        let c = compile(&set, &docs, &own);
        assert_eq!(c.v4.len(), 1, "the host stays");
        assert_eq!(c.v4[0].1.action, FEED_DENY);
        let mut nets: Vec<(u8, u8)> = c.net4.iter().map(|n| (n.1, n.2.action)).collect();
        nets.sort_unstable();
        assert_eq!(nets, [(16, FEED_DENY), (24, FEED_ALERT)], "{:?}", c.skips);
        let whys: Vec<(usize, &str)> = c.skips.iter().map(|s| (s.feed, s.why.as_str())).collect();
        assert_eq!(whys.len(), 2, "{whys:?}");
        assert!(whys[0].1.starts_with("line 1: `10.100.0.0/15` holds the subnets of several segments (10.100.0.0/16 of `s0`, 10.101.0.0/16 of `s1`)"), "{whys:?}");
        assert!(whys[1].1.starts_with("line 3: `10.64.0.0/10`"), "{whys:?}");
        let idx = FeedIndex::new(&set, &docs, &own);
        assert!(!idx.lookup("10.100.2.9".parse().unwrap()).unwrap().deny);
        assert!(idx.lookup("10.100.200.9".parse().unwrap()).is_none());
        assert!(idx.lookup("10.101.9.9".parse().unwrap()).unwrap().deny);
    }

    #[test]
    fn the_cache_compiles_again_only_when_contents_or_declarations_change() {
        let mut set = FeedSet::default();
        set.feeds.insert(
            "block".into(),
            Arc::new(plain::parse("192.0.2.1\n10.6.0.0/15\n")),
        );
        let set = Arc::new(set);
        let deny = serde_json::json!([{ "name": "block", "source": "/x" }]);
        let p = policy(deny.clone(), &["10.8.0.0/16", "10.9.0.0/16"]);
        let mut cache = CompileCache::default();
        let (first, fresh) = cache.compile(&set, &p);
        assert!(fresh);
        assert_eq!(*first, compile(&set, &p.doc.feeds, &OwnSubnets::of(&p)));
        let (same, fresh) = cache.compile(&set, &p);
        assert!(Arc::ptr_eq(&first, &same) && !fresh);
        // The declaration changes (deny -> alert): compiled again.
        let alert = policy(
            serde_json::json!([{ "name": "block", "source": "/x", "action": "alert" }]),
            &["10.8.0.0/16", "10.9.0.0/16"],
        );
        let (second, _) = cache.compile(&set, &alert);
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.v4[0].1.action, FEED_ALERT);
        // New contents arrive as a new set, even with equal contents.
        let again = Arc::new((*set).clone());
        let (third, _) = cache.compile(&again, &alert);
        assert!(!Arc::ptr_eq(&second, &third));
        assert_eq!(*second, *third);
        // The segments' subnets move under the listed /15: compiled
        // again, and the entry is skipped.
        let moved = policy(deny, &["10.6.0.0/16", "10.7.0.0/16"]);
        let (fourth, fresh) = cache.compile(&again, &moved);
        assert!(fresh && fourth.net4.is_empty() && fourth.skips.len() == 1);
        assert_eq!(cache.skips_of(&again), fourth.skips);
    }
}
