//! Host tests of the refresher with a real file feed and an engine that
//! refuses, then takes, what it is given.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use super::*;

fn doc(source: &str) -> FeedDoc {
    serde_json::from_value(serde_json::json!({
        "name": "block", "source": source, "format": "plain", "refresh_s": 300
    }))
    .unwrap()
}

/// Writes a feed file already settled (older than a second).
fn write_settled(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(5))
        .unwrap();
}

/// A fresh directory for a test's feed files, and its cache under it.
fn scratch(tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("cache");
    (dir, cache)
}

/// An engine that takes every set, and the last set it took.
fn taking() -> (Arc<Mutex<FeedSet>>, Apply) {
    let last = Arc::new(Mutex::new(FeedSet::default()));
    let took = last.clone();
    let apply: Apply = Box::new(move |set: Arc<FeedSet>| {
        *took.lock().unwrap() = (*set).clone();
        Ok(())
    });
    (last, apply)
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < until, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Contents the engine refuses are not kept: not as the refresher's
/// last good contents (every later refresh would carry them and be
/// refused too), not on disk (the next start would begin with them), and
/// the status says why. Taken, they are kept, with their origin.
#[test]
fn refused_contents_are_neither_kept_nor_cached() {
    let (dir, cache) = scratch("ispf-refresh");
    let feed = dir.join("block.txt");
    write_settled(&feed, "192.0.2.1\n");
    let source = feed.to_str().unwrap().to_owned();
    let d = doc(&source);
    let docs: Docs = {
        let d = d.clone();
        Arc::new(move || vec![d.clone()])
    };
    let refuse = Arc::new(AtomicBool::new(true));
    let offered = Arc::new(Mutex::new(Vec::<usize>::new()));
    let apply: Apply = {
        let (refuse, offered) = (refuse.clone(), offered.clone());
        Box::new(move |set: Arc<FeedSet>| {
            offered.lock().unwrap().push(set.entries());
            if refuse.load(Ordering::SeqCst) {
                Err("no room in the maps".into())
            } else {
                Ok(())
            }
        })
    };
    let r = Refresher::start(docs, cache.clone(), FeedSet::default(), apply).unwrap();
    let status = || r.statuses().into_iter().next().unwrap_or_default();
    wait_for("the refusal in the status", || {
        status()
            .error
            .is_some_and(|e| e.contains("no room in the maps"))
    });
    assert_eq!(status().entries, 0, "{:?}", status());
    assert!(!cache_file(&cache, "block").exists(), "refused, yet cached");
    // The same text is not offered again every second (only at the
    // backoff's retry, after 5 s).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(offered.lock().unwrap().clone(), [1]);

    // The list changes and fits: it is enforced, and kept.
    refuse.store(false, Ordering::SeqCst);
    write_settled(&feed, "192.0.2.1\n192.0.2.2\n");
    wait_for("the new contents enforced", || status().entries == 2);
    assert_eq!(status().error, None);
    assert_eq!(offered.lock().unwrap().last(), Some(&2));
    assert_eq!(load_cached(&cache, std::slice::from_ref(&d)).entries(), 2);
    // A copy kept for another source is not enforced at a start.
    let moved = doc("/elsewhere/block.txt");
    assert!(load_cached(&cache, &[moved]).feeds.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One feed too large for the maps does not hold back another read in the
/// same round, and is offered again, its file unchanged, once the engine
/// takes a smaller set (which may have made room).
#[test]
fn a_refused_feed_holds_back_no_other_and_is_offered_again() {
    let (dir, cache) = scratch("ispf-refresh-two");
    let (big, small) = (dir.join("big.txt"), dir.join("small.txt"));
    write_settled(&big, "192.0.2.1\n192.0.2.2\n192.0.2.3\n");
    write_settled(&small, "198.51.100.1\n");
    let named = |name: &str, path: &Path| {
        let mut d = doc(path.to_str().unwrap());
        d.name = name.into();
        d
    };
    let all = vec![named("big", &big), named("small", &small)];
    let docs: Docs = {
        let all = all.clone();
        Arc::new(move || all.clone())
    };
    let room = Arc::new(AtomicBool::new(false));
    let apply: Apply = {
        let room = room.clone();
        Box::new(move |set: Arc<FeedSet>| {
            let fits = room.load(Ordering::SeqCst) || !set.feeds.contains_key("big");
            fits.then_some(())
                .ok_or_else(|| "no room for big".to_owned())
        })
    };
    let r = Refresher::start(docs, cache.clone(), FeedSet::default(), apply).unwrap();
    let of = |name: &str| {
        r.statuses()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_default()
    };
    wait_for("small enforced beside a refused big", || {
        of("small").entries == 1 && of("big").error.is_some()
    });
    assert_eq!(of("big").entries, 0);
    assert_eq!(
        load_cached(&cache, &all).feeds.keys().collect::<Vec<_>>(),
        ["small"]
    );
    room.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(of("big").entries, 0, "not offered every second");
    // Small's list shrinks: that may have made room, so big is offered.
    write_settled(&small, "# nothing listed today\n");
    wait_for("big enforced after small shrank, unchanged", || {
        of("big").entries == 3
    });
    assert_eq!(of("big").error, None);
    assert_eq!(load_cached(&cache, &all).entries(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A feed whose source changes to one listing the same addresses (a
/// mirror, a moved file) is enforced from the new source, not left out
/// with the old source's removal.
#[test]
fn a_new_source_with_the_same_list_stays_enforced() {
    let (dir, cache) = scratch("ispf-refresh-moved");
    let (a, b) = (dir.join("a.txt"), dir.join("b.txt"));
    write_settled(&a, "192.0.2.1\n");
    write_settled(&b, "192.0.2.1\n");
    let current = Arc::new(Mutex::new(doc(a.to_str().unwrap())));
    let docs: Docs = {
        let current = current.clone();
        Arc::new(move || vec![current.lock().unwrap().clone()])
    };
    let (last, apply) = taking();
    let r = Refresher::start(docs, cache.clone(), FeedSet::default(), apply).unwrap();
    let status = || r.statuses().into_iter().next().unwrap_or_default();
    wait_for("enforced from a", || status().entries == 1);
    *current.lock().unwrap() = doc(b.to_str().unwrap());
    wait_for("enforced from b", || {
        status().source.ends_with("b.txt")
            && status().entries == 1
            && last.lock().unwrap().entries() == 1
    });
    // Settled: the engine's last set still holds it.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(last.lock().unwrap().entries(), 1);
    assert_eq!(status().entries, 1);
    let moved = doc(b.to_str().unwrap());
    assert_eq!(load_cached(&cache, &[moved]).entries(), 1, "kept for b");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A STIX indicator past its `valid_until` is skipped then, although the
/// file does not change; one whose `valid_until` the source moved later
/// (the same addresses) is not dropped at the old time.
#[test]
fn an_indicator_is_dropped_at_its_valid_until() {
    let (dir, cache) = scratch("ispf-refresh-until");
    let feed = dir.join("vendor.json");
    let at =
        |s: u64| humantime::format_rfc3339(SystemTime::now() + Duration::from_secs(s)).to_string();
    let indicator = |id: &str, ip: &str, until: Option<&str>| {
        let mut o = serde_json::json!({
            "type": "indicator", "id": id, "pattern_type": "stix",
            "pattern": format!("[ipv4-addr:value = '{ip}']")
        });
        if let Some(u) = until {
            o["valid_until"] = u.into();
        }
        o
    };
    let bundle = |a_until: &str, b_until: &str| {
        serde_json::json!({"type": "bundle", "id": "bundle--1", "objects": [
            indicator("indicator--a", "192.0.2.1", Some(a_until)),
            indicator("indicator--b", "192.0.2.2", Some(b_until)),
        ]})
        .to_string()
    };
    // a ends in 10 s, b in a day.
    let start = Instant::now();
    write_settled(&feed, &bundle(&at(10), &at(86_400)));
    let mut d = doc(feed.to_str().unwrap());
    d.format = crate::policy::FeedFormat::Stix2;
    let kept = {
        let (d, cache) = (d.clone(), cache.clone());
        move || load_cached(&cache, std::slice::from_ref(&d))
    };
    let docs: Docs = Arc::new(move || vec![d.clone()]);
    let (last, apply) = taking();
    let r = Refresher::start(docs, cache.clone(), FeedSet::default(), apply).unwrap();
    let status = || r.statuses().into_iter().next().unwrap_or_default();
    wait_for("both indicators enforced", || status().entries == 2);
    // The source moves a's end to a day from now: the kept copy follows,
    // and a stays past its old end.
    write_settled(&feed, &bundle(&at(86_400), &at(86_400)));
    let far = unix_now() + 80_000;
    wait_for("the copy follows the source", || {
        let k = kept();
        !k.feeds.is_empty() && k.feeds.values().all(|c| c.expires.is_some_and(|e| e > far))
    });
    std::thread::sleep((start + Duration::from_secs(12)).saturating_duration_since(Instant::now()));
    assert_eq!((status().entries, last.lock().unwrap().entries()), (2, 2));
    // Now a ends in 4 s: it is dropped then, the file unchanged.
    write_settled(&feed, &bundle(&at(4), &at(86_400)));
    wait_for("a dropped at its valid_until", || {
        status().entries == 1 && last.lock().unwrap().entries() == 1
    });
    assert_eq!(status().error, None);
    std::fs::remove_dir_all(&dir).unwrap();
}
