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
    let idx = FeedIndex::new(&set, &docs, &[]);
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
    assert!(whys[0].1.starts_with("line 1: `10.100.0.0/15` holds the addresses of several segments (10.100.0.0/16 of `s0`, 10.101.0.0/16 of `s1`)"), "{whys:?}");
    assert!(whys[1].1.starts_with("line 3: `10.64.0.0/10`"), "{whys:?}");
    let idx = FeedIndex::new(&set, &docs, &c.skips);
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
    let first = cache.compile(&set, &p, &p);
    assert_eq!(*first, compile(&set, &p.doc.feeds, &OwnSubnets::of(&p)));
    let same = cache.compile(&set, &p, &p);
    assert!(Arc::ptr_eq(&first, &same));
    // The declaration changes (deny -> alert): compiled again.
    let alert = policy(
        serde_json::json!([{ "name": "block", "source": "/x", "action": "alert" }]),
        &["10.8.0.0/16", "10.9.0.0/16"],
    );
    let second = cache.compile(&set, &alert, &alert);
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(second.v4[0].1.action, FEED_ALERT);
    // New contents arrive as a new set, even with equal contents.
    let again = Arc::new((*set).clone());
    let third = cache.compile(&again, &alert, &alert);
    assert!(!Arc::ptr_eq(&second, &third));
    assert_eq!(*second, *third);
    // The file's segments' subnets move under the listed /15:
    // compiled again, and the entry is skipped (the file decides, the
    // declarations are the policy's).
    let moved = policy(deny, &["10.6.0.0/16", "10.7.0.0/16"]);
    let fourth = cache.compile(&again, &moved, &alert);
    assert!(!Arc::ptr_eq(&third, &fourth));
    assert!(fourth.net4.is_empty() && fourth.skips.len() == 1);
}
