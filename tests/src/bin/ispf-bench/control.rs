//! The control plane: compile, apply and reload times from 1,000 to a
//! million devices, and the maps' memory at a million.

use std::{collections::BTreeMap, time::Instant};

use anyhow::Result;
use ispf::{
    datapath::{Counts, Datapath, MapSizeRequest},
    policy::compile::compile,
};
use serde_json::json;

use crate::{corpus::synthetic_policy, Bench};

pub fn control_plane(b: &mut Bench) -> Result<()> {
    let mut apply = BTreeMap::new();
    let mut reload = BTreeMap::new();
    let mut memory = BTreeMap::new();
    for &d in &b.cfg.apply_sizes {
        eprintln!("control plane: {d} devices");
        let p = synthetic_policy(d, 32, 1000)?;
        let t = Instant::now();
        let compiled = compile(&p);
        let compile_ms = t.elapsed().as_secs_f64() * 1000.0;
        // Sized as `ispf run` sizes maps for this policy.
        let sizes = MapSizeRequest::default().resolve(&Counts::of(&compiled));
        let mut dp = Datapath::load(sizes)?;
        let t = Instant::now();
        dp.apply(&compiled)?;
        let apply_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        dp.apply(&compiled)?;
        let reload_ms = t.elapsed().as_secs_f64() * 1000.0;
        let mb = dp.map_memory_bytes() as f64 / (1 << 20) as f64;
        apply.insert(
            d,
            json!({ "compile_ms": compile_ms, "apply_ms": apply_ms, "entries": compiled.entry_count(), "device_map_entries": sizes.devices }),
        );
        reload.insert(d, reload_ms);
        memory.insert(d, mb);
    }
    let at = |n: usize, k: &str| {
        apply
            .get(&n)
            .and_then(|v| v[k].as_f64())
            .unwrap_or(f64::NAN)
    };
    b.put("apply_ms_100k_devices", at(100_000, "apply_ms"));
    b.put("apply_ms_1m_devices", at(1_000_000, "apply_ms"));
    b.put(
        "map_memory_mb_1m_devices",
        memory.get(&1_000_000).copied().unwrap_or(f64::NAN),
    );
    b.results.insert(
        "control_plane".into(),
        json!({ "apply": apply, "reload_ms": reload, "map_memory_mb": memory }),
    );
    Ok(())
}
