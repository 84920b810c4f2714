//! Detection's metrics: alerts by kind and severity, what was suppressed
//! or not delivered. Labels are kinds and severities, never a device.

use std::sync::atomic::Ordering;

use prometheus::{IntCounter, Registry};

use super::counter;
use crate::detect::Facts;

pub(super) fn render(r: &Registry, f: &Facts) -> prometheus::Result<()> {
    let alerts = counter(
        r,
        "ispf_alerts_total",
        "Alerts raised, by kind (scan, anomaly) and severity (warning, critical).",
        &["kind", "severity"],
    )?;
    for ((k, s), n) in f.alerts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        alerts.with_label_values(&[k, s]).inc_by(*n);
    }
    for (name, help, v) in [
        (
            "ispf_alerts_suppressed_total",
            "Alerts not raised: over a device's or the controller's alert rate.",
            f.suppressed.load(Ordering::Relaxed),
        ),
        (
            "ispf_detection_events_lost_total",
            "Flow events detection could not take: it was behind.",
            f.behind.load(Ordering::Relaxed),
        ),
        (
            "ispf_auto_quarantines_total",
            "Devices quarantined automatically on an alert.",
            f.quarantined.load(Ordering::Relaxed),
        ),
        (
            "ispf_alert_webhook_failures_total",
            "Alerts the webhook could not deliver after its retries.",
            f.webhook_failures.load(Ordering::Relaxed),
        ),
    ] {
        let c = IntCounter::new(name, help)?;
        r.register(Box::new(c.clone()))?;
        c.inc_by(v);
    }
    Ok(())
}
