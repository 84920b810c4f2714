//! Identity's metrics: sessions by role, accounting packets by result,
//! accepted packets that changed nothing by cause. User names and MACs
//! never become labels.

use super::{counter, gauge};
use crate::identity::{Facts, RESULTS};

pub(super) fn render(r: &prometheus::Registry, f: &Facts) -> prometheus::Result<()> {
    let sessions = gauge(
        r,
        "ispf_identity_sessions",
        "Role sessions open now (RADIUS accounting), by role.",
        &["role"],
    )?;
    let mut by_role = std::collections::BTreeMap::<String, i64>::new();
    for s in f.sessions() {
        *by_role.entry(s.role).or_default() += 1;
    }
    for (role, n) in by_role {
        sessions.with_label_values(&[&role]).set(n);
    }
    let packets = counter(
        r,
        "ispf_radius_packets_total",
        "RADIUS accounting packets received, by result (accepted, bad_authenticator, unknown_client, malformed, duplicate).",
        &["result"],
    )?;
    let seen = f.packets.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for result in RESULTS {
        packets
            .with_label_values(&[result])
            .inc_by(seen.get(result).copied().unwrap_or(0));
    }
    let ignored = counter(
        r,
        "ispf_identity_ignored_total",
        "Accepted accounting packets that bound nothing, by cause (no_role, no_mac, no_session, ended, stale, unseen_mac, life_critical, refused, other_status).",
        &["cause"],
    )?;
    for (cause, n) in f.ignored.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        ignored.with_label_values(&[cause]).inc_by(*n);
    }
    Ok(())
}
