//! Host tests of what is remembered of ended sessions.

use super::*;

fn key(id: &str) -> Key {
    ("10.0.0.1".into(), id.into())
}

#[test]
fn a_stopped_session_stays_stopped_until_it_ages_out() {
    let mut e = Ended::default();
    e.record(key("S"), How::Stopped, 1000, Some(990));
    assert_eq!(e.check(&key("S"), Some(5000), 2000), Err(Ignored::Ended));
    assert_eq!(e.check(&key("S"), None, 2000), Err(Ignored::Ended));
    assert_eq!(e.check(&key("T"), None, 2000), Ok(()));
    e.age(1000 + REMEMBER_S);
    assert_eq!(e.check(&key("S"), None, 2000), Ok(()));
    assert_eq!(e.len(), 0);
}

#[test]
fn a_lapsed_session_reopens_only_with_a_newer_event() {
    let mut e = Ended::default();
    e.record(key("S"), How::Lapsed, 1000, Some(990));
    assert_eq!(e.check(&key("S"), Some(990), 2000), Err(Ignored::Stale));
    assert_eq!(e.check(&key("S"), Some(991), 2000), Ok(()));
    // Still remembered until a binding forgets it, at the newer time: the
    // update that carried 991 may have bound nothing (no role in it).
    assert_eq!(e.check(&key("S"), Some(991), 2000), Err(Ignored::Stale));
    assert_eq!(
        e.check(&key("S"), None, 2000),
        Ok(()),
        "no timestamp to judge"
    );
    e.forget(&key("S"));
    assert_eq!(e.check(&key("S"), Some(1), 2000), Ok(()));
}

#[test]
fn a_nas_restart_lets_its_ids_be_used_again_but_not_replayed() {
    let mut e = Ended::default();
    e.record(key("1"), How::Stopped, 1000, Some(990));
    e.record(key("2"), How::Stopped, 1000, None);
    e.record(("10.0.0.2".into(), "1".into()), How::Stopped, 1000, None);
    e.nas_restarted("10.0.0.1", Some(1500), 2000);
    // Session id 1 handed out again after the restart: newer, opens.
    assert_eq!(e.check(&key("1"), Some(1600), 2000), Ok(()));
    // A packet of before the restart, replayed: refused.
    assert_eq!(e.check(&key("2"), Some(1400), 2000), Err(Ignored::Stale));
    // Another NAS's stays stopped.
    assert_eq!(
        e.check(&("10.0.0.2".into(), "1".into()), Some(1600), 2000),
        Err(Ignored::Ended)
    );
    // Without a timestamp, the NAS's stopped sessions are forgotten.
    e.nas_restarted("10.0.0.2", None, 2000);
    assert_eq!(
        e.check(&("10.0.0.2".into(), "1".into()), None, 2000),
        Ok(())
    );
}

#[test]
fn recording_again_keeps_the_newest_timestamp_and_the_record_fresh() {
    let mut e = Ended::default();
    e.record(key("S"), How::Lapsed, 1000, Some(2000));
    e.record(key("S"), How::Stopped, 1000, Some(1500));
    assert_eq!(e.check(&key("S"), None, 2000), Err(Ignored::Ended));
    // The NAS's clock went back past it: kept as it was.
    e.nas_restarted("10.0.0.1", Some(1800), 2000);
    assert_eq!(e.check(&key("S"), Some(1900), 2000), Err(Ignored::Ended));
    // Recorded twice within a second: the second record is the one kept.
    e.record(key("T"), How::Stopped, 5000, None);
    e.forget(&key("T"));
    e.record(key("T"), How::Stopped, 5000, None);
    e.age(5000 + 100);
    assert_eq!(e.check(&key("T"), None, 2000), Err(Ignored::Ended));
}

#[test]
fn the_memory_is_bounded_and_drops_the_oldest() {
    let mut e = Ended::default();
    for i in 0..MAX_ENDED + 10 {
        e.record(key(&i.to_string()), How::Stopped, 1000, None);
    }
    assert!(e.len() <= MAX_ENDED && e.len() >= MAX_ENDED * 9 / 10);
    assert_eq!(e.check(&key("0"), None, 2000), Ok(()), "oldest dropped");
    assert_eq!(
        e.check(&key(&(MAX_ENDED + 9).to_string()), None, 2000),
        Err(Ignored::Ended),
        "newest kept"
    );
}

#[test]
fn ages_are_measured_on_the_nas_clock() {
    let mut e = Ended::default();
    let now = 1_000_000_000;
    // A NAS whose clock was never set (1970): its own times work.
    assert!(!e.too_old("a", Some(100), now));
    assert!(!e.too_old("a", Some(200), now));
    assert!(!e.too_old("a", Some(200 + REMEMBER_S as u32 + 300), now));
    assert!(
        e.too_old("a", Some(100), now),
        "a day older than its newest"
    );
    // One far in the future (a glitch) does not become the newest.
    assert!(!e.too_old("b", Some(now as u32), now));
    assert!(!e.too_old("b", Some((now + 10 * REMEMBER_S) as u32), now));
    assert!(!e.too_old("b", Some(now as u32 + 10), now));
    assert!(!e.too_old("c", None, now));
}

#[test]
fn unsaved_changes_are_listed_once() {
    let mut e = Ended::default();
    assert!(e.unsaved().is_none());
    e.record(key("S"), How::Stopped, 1000, Some(5));
    e.record(key("T"), How::Lapsed, 1000, None);
    e.forget(&key("T"));
    let Unsaved { rewrite, mut rows } = e.unsaved().unwrap();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!rewrite);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].1.as_ref().map(|g| g.how), Some(How::Stopped));
    assert_eq!(rows[1].1, None, "T's row is deleted");
    e.saved();
    assert!(e.unsaved().is_none());
}

#[test]
fn a_refused_update_retries_within_the_minute_only() {
    let mut e = Ended::default();
    e.record(key("R"), How::Refused, 1000, Some(990));
    assert_eq!(e.check(&key("R"), Some(989), 1010), Err(Ignored::Stale));
    assert_eq!(e.check(&key("R"), Some(990), 1030), Ok(()));
    assert_eq!(
        e.check(&key("R"), Some(990), 1100),
        Err(Ignored::Stale),
        "a replay later"
    );
    assert_eq!(e.check(&key("R"), Some(991), 1100), Ok(()));
}

#[test]
fn an_old_accounting_on_changes_nothing_remembered() {
    let mut e = Ended::default();
    assert!(!e.too_old("10.0.0.1", Some(5000), 6000));
    e.record(key("S"), How::Stopped, 6000, Some(4000));
    // Replayed, from before the newest the NAS sent: stays stopped.
    e.nas_restarted("10.0.0.1", Some(3000), 6000);
    assert_eq!(e.check(&key("S"), Some(5500), 6000), Err(Ignored::Ended));
    // Its clock came back wrong, a day behind: refused as stale (a replay
    // cannot be told apart), for a day at most after its clock last rose.
    let mut c = Ended::default();
    assert!(!c.too_old("n", Some(200_000), 200_000));
    c.nas_restarted("n", Some(100), 200_000);
    assert!(c.too_old("n", Some(150), 200_000));
    c.age(200_000 + REMEMBER_S);
    assert!(!c.too_old("n", Some(150), 200_000 + REMEMBER_S));
    // A NAS that is only quiet for a day keeps its clock: a replay a day
    // older is still refused.
    let mut q = Ended::default();
    assert!(!q.too_old("q", Some(200_000), 200_000));
    q.age(200_000 + 3 * REMEMBER_S);
    assert!(q.too_old("q", Some(100), 200_000 + 3 * REMEMBER_S));
    // A timestamp of 0 does not wrap.
    let mut z = Ended::default();
    z.record(key("Z"), How::Stopped, 10, None);
    z.nas_restarted("10.0.0.1", Some(0), 10);
    assert_eq!(z.check(&key("Z"), Some(1), 10), Ok(()));
}
