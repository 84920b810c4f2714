//! Decisions made on this host go to etcd first: the engine plans them
//! (the same checks as without a fleet) and writes them here; every host,
//! this one included, applies them when its watch delivers them. If etcd
//! cannot be reached the decision is refused: a decision that reached one
//! host only would split the site. A decision that expires is put under
//! an etcd lease that ends a little after it, so etcd deletes its key:
//! the site's keys do not grow with every timed quarantine ever made.

use super::{client, keys, FleetError, Options};
use crate::decisions::{role_held_on, Decision, Kind, SessionEnd};

/// How long after a decision expires etcd keeps its key: a host whose
/// clock runs a little behind still sees it expire by itself first.
pub const EXPIRY_GRACE_S: i64 = 5;

/// The TTL of the lease for a decision that expires at `expires` (unix
/// seconds), granted at `now`.
pub fn expiry_lease_ttl(expires: i64, now: i64) -> i64 {
    expires.saturating_sub(now).max(0) + EXPIRY_GRACE_S
}

/// What [`Writer::write_ending`] did not end: role keys kept (another
/// host's session's decision, or one rewritten while it was being
/// deleted) and those whose end failed, by their index in `ends`, with
/// why.
#[derive(Debug, Default)]
pub struct Ended {
    pub kept: Vec<String>,
    pub failed: Vec<(usize, String)>,
}

pub struct Writer {
    opts: Options,
    rt: tokio::runtime::Runtime,
}

impl Writer {
    pub fn new(opts: Options) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self { opts, rt })
    }

    pub fn site(&self) -> &str {
        &self.opts.site
    }

    /// Writes `put` and deletes `remove`, each a key of its own.
    pub fn write(&self, put: &[Decision], remove: &[(String, Kind)]) -> Result<(), FleetError> {
        self.write_ending(put, remove, &[]).map(|_| ())
    }

    /// [`write`](Self::write), then each session end of `ends` (a MAC and
    /// what may be ended) deletes that MAC's role key while it holds a
    /// decision the end ends: after the puts, so that a burst that binds
    /// and then ends a session leaves no role. Returns the role keys kept,
    /// and those whose end failed with why: the puts have landed by then,
    /// so that failure is not the whole write's.
    pub fn write_ending(
        &self,
        put: &[Decision],
        remove: &[(String, Kind)],
        ends: &[(String, SessionEnd)],
    ) -> Result<Ended, FleetError> {
        self.rt.block_on(async {
            let mut c = client::connect(&self.opts).await?;
            let now = crate::clock::unix_now();
            for d in put {
                let value = serde_json::to_vec(d).map_err(|e| FleetError::Config(e.to_string()))?;
                let lease = match d.expires.map(|e| expiry_lease_ttl(e, now)) {
                    Some(ttl) => Some(client::lease(&mut c, ttl).await?),
                    None => None,
                };
                client::put(
                    &mut c,
                    keys::decision(&self.opts.site, &d.mac, d.kind),
                    value,
                    lease,
                )
                .await?;
            }
            for (mac, kind) in remove {
                client::delete(&mut c, keys::decision(&self.opts.site, mac, *kind)).await?;
            }
            let mut done = Ended::default();
            for (i, (mac, end)) in ends.iter().enumerate() {
                let key = keys::decision(&self.opts.site, mac, Kind::Role);
                // The last value read decides (the delete is retried when
                // the key changes under it).
                let newer_here = std::cell::Cell::new(false);
                let ends = |d: Option<&Decision>| {
                    let (ends, here) = judge_end(end, mac, d);
                    newer_here.set(here);
                    ends
                };
                match client::delete_if_holds(&mut c, key, ends).await {
                    Ok(true) => {}
                    Ok(false) if newer_here.get() => {}
                    Ok(false) => done.kept.push(format!("decisions/{mac}/role")),
                    Err(e) => done.failed.push((i, e.to_string())),
                }
            }
            Ok(done)
        })
    }
}

/// Whether session end `end` of `mac`'s role deletes the key holding
/// `d`, and, when it does not, whether `d` is a newer session's role this
/// host made. A value that is no role of this device (a hand edit, a torn
/// write) is what every host still enforces as the last good one: the end
/// deletes it, as it always did. A newer session's role this host made (a
/// NAS's re-authentication: the Stop and the Start in one burst, the
/// Start's put written first) is kept as a matter of course; only another
/// host's is worth saying.
fn judge_end(end: &SessionEnd, mac: &str, d: Option<&Decision>) -> (bool, bool) {
    let ends = d.is_none_or(|d| d.kind != Kind::Role || d.mac != mac || end.ends(d));
    let here = !ends
        && d.zip(end.host.as_deref())
            .is_some_and(|(d, h)| role_held_on(d, h));
    (ends, here)
}

impl Writer {
    /// Deletes the keys of `ended`, each only while it still holds that
    /// decision: a host that applies a revision late must not delete a
    /// newer decision written for the same device since. Returns the keys
    /// left (another decision written since), as `decisions/<mac>/<kind>`.
    pub fn delete_unchanged(&self, ended: &[Decision]) -> Result<Vec<String>, FleetError> {
        self.rt.block_on(async {
            let mut c = client::connect(&self.opts).await?;
            let mut left = Vec::new();
            for d in ended {
                let key = keys::decision(&self.opts.site, &d.mac, d.kind);
                if !client::delete_if_holds(&mut c, key, |x| x == Some(d)).await? {
                    left.push(format!("decisions/{}/{}", d.mac, d.kind.as_str()));
                }
            }
            Ok(left)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::{session_mark, test_role};

    #[test]
    fn an_end_keeps_a_newer_sessions_role_and_says_so_only_for_another_host() {
        let mac = "02:00:00:00:30:01";
        let role = |session: &str, host: &str| test_role(session, Some(host));
        let end = SessionEnd {
            host: Some("a".into()),
            session: Some(session_mark("10.0.0.9", "S2")),
        };
        // Its own role, or a key already gone: deleted.
        assert_eq!(judge_end(&end, mac, Some(&role("S2", "a"))), (true, false));
        assert_eq!(judge_end(&end, mac, None), (true, false));
        // A re-authentication's newer role here: kept, nothing to say.
        assert_eq!(judge_end(&end, mac, Some(&role("S3", "a"))), (false, true));
        // Another host's: kept and said.
        assert_eq!(judge_end(&end, mac, Some(&role("T1", "b"))), (false, false));
        // A value that is no role of this device: deleted.
        let other = Decision {
            mac: "02:00:00:00:30:02".into(),
            ..role("S3", "a")
        };
        assert_eq!(judge_end(&end, mac, Some(&other)), (true, false));
    }

    #[test]
    fn an_expiring_decision_outlives_its_expiry_in_etcd_by_the_grace() {
        assert_eq!(expiry_lease_ttl(1_000, 900), 100 + EXPIRY_GRACE_S);
        // Already expired (a slow write): etcd removes it soon.
        assert_eq!(expiry_lease_ttl(900, 1_000), EXPIRY_GRACE_S);
        assert_eq!(expiry_lease_ttl(i64::MIN, i64::MAX), EXPIRY_GRACE_S);
    }
}
