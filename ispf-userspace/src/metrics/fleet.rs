//! The fleet's metrics: connected to etcd, which revision is enforced,
//! when the site was last read.

use std::sync::atomic::Ordering;

use prometheus::{IntGauge, Registry};

use crate::fleet::Facts;

pub(super) fn render(r: &Registry, f: &Facts) -> prometheus::Result<()> {
    for (name, help, v) in [
        (
            "ispf_fleet_connected",
            "1 while this host follows its site in etcd (enforcement does not depend on it).",
            f.connected.load(Ordering::Relaxed) as i64,
        ),
        (
            "ispf_fleet_revision",
            "The site's policy revision this host enforces.",
            f.revision.load(Ordering::Relaxed),
        ),
        (
            "ispf_fleet_latest_revision",
            "The site's newest policy revision, as last seen in etcd.",
            f.latest.load(Ordering::Relaxed),
        ),
        (
            "ispf_fleet_last_sync_timestamp_seconds",
            "Unix time of the last read or watch event from etcd.",
            f.last_sync.load(Ordering::Relaxed),
        ),
    ] {
        let g = IntGauge::new(name, help)?;
        r.register(Box::new(g.clone()))?;
        g.set(v);
    }
    Ok(())
}
