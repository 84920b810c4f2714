//! The threat feeds' metrics, labelled by feed name (bounded by the
//! policy: at most 64 feeds), never by address.

use prometheus::Registry;

use super::{counter, gauge};
use crate::feeds::FeedStatus;

pub(super) fn render(r: &Registry, feeds: &[FeedStatus]) -> prometheus::Result<()> {
    let entries = gauge(
        r,
        "ispf_feed_entries",
        "Addresses and networks each feed lists (its last good contents, enforced).",
        &["feed"],
    )?;
    let hits = counter(
        r,
        "ispf_feed_hits_total",
        "Flows a feed listed an end of, by what happened: dropped, or passed (alert feeds, life-critical and monitor-mode segments).",
        &["feed", "action"],
    )?;
    let refreshed = gauge(
        r,
        "ispf_feed_last_refresh_timestamp_seconds",
        "Unix time of each feed's last successful refresh (0: never).",
        &["feed"],
    )?;
    let failures = counter(
        r,
        "ispf_feed_refresh_failures_total",
        "Fetches or parses of each feed that failed (its last good contents stayed enforced).",
        &["feed"],
    )?;
    let skipped = gauge(
        r,
        "ispf_feed_skipped_entries",
        "Lines or indicators of each feed's last read that could not be enforced.",
        &["feed"],
    )?;
    for f in feeds {
        let n = f.name.as_str();
        entries.with_label_values(&[n]).set(f.entries as i64);
        hits.with_label_values(&[n, "dropped"])
            .inc_by(f.hits_dropped);
        hits.with_label_values(&[n, "passed"]).inc_by(f.hits_passed);
        refreshed
            .with_label_values(&[n])
            .set(f.last_refresh.unwrap_or(0));
        failures.with_label_values(&[n]).inc_by(f.failures);
        skipped.with_label_values(&[n]).set(f.skipped as i64);
    }
    Ok(())
}
