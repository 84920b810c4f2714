//! Runtime decisions, as the spec ("Runtime decisions") and the README
//! state them, applied to the policy document: per device (MAC) the
//! decision of highest precedence — quarantine, role session, admit —
//! puts it in its segment (a quarantine in `defaults.unknown_source`).
//! A device the file registers by MAC keeps its entry in that segment; any
//! other becomes an entry of its MAC, and a quarantine of it takes the
//! addresses the device was seen with: an address no entry names becomes
//! the device's, an entry naming it by address alone moves with the
//! device (unless it is in a life-critical segment and the quarantine was
//! not forced: then the entry and its address stay), and an address
//! another MAC's entry names stays that device's.

use std::{collections::BTreeMap, net::IpAddr};

use ispf::{
    decisions::{Decision, Kind},
    policy::PolicyDoc,
};
use serde_json::{json, Value};

fn rank(k: Kind) -> u8 {
    match k {
        Kind::Quarantine => 0,
        Kind::Role => 1,
        Kind::Admit => 2,
    }
}

fn same_mac(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The addresses an entry names (`ipv4`/`ipv6`: one or a list).
fn addresses(dev: &Value) -> Vec<IpAddr> {
    ["ipv4", "ipv6"]
        .iter()
        .flat_map(|f| match &dev[*f] {
            Value::String(s) => vec![s.clone()],
            Value::Array(l) => l
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        })
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The document with `decisions` (all holding) applied.
pub fn apply(doc: &PolicyDoc, decisions: &[Decision]) -> PolicyDoc {
    let mut winner: BTreeMap<String, &Decision> = BTreeMap::new();
    for d in decisions {
        let key = d.mac.to_ascii_lowercase();
        match winner.get(&key) {
            Some(w) if rank(w.kind) <= rank(d.kind) => {}
            _ => {
                winner.insert(key, d);
            }
        }
    }
    let mut v = serde_json::to_value(doc).unwrap();
    let file: Vec<Value> = v["devices"].as_array().cloned().unwrap_or_default();
    let life_critical = |seg: Option<&str>| {
        doc.segments
            .iter()
            .any(|s| Some(s.name.as_str()) == seg && s.life_critical)
    };
    let mut devices = file.clone();
    let mut added = Vec::new();
    for (mac, d) in winner {
        let segment = match d.kind {
            Kind::Quarantine => doc.defaults.unknown_source.clone(),
            _ => d
                .segment
                .clone()
                .expect("an admit or role names its segment"),
        };
        let registered: Vec<usize> = (0..devices.len())
            .filter(|&i| {
                devices[i]["mac"]
                    .as_str()
                    .is_some_and(|m| same_mac(m, &mac))
            })
            .collect();
        if !registered.is_empty() {
            for i in registered {
                devices[i]["segment"] = json!(segment);
            }
            continue;
        }
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for a in &d.addresses {
            // The file's last entry naming an address owns it.
            match (0..file.len())
                .rev()
                .find(|&i| addresses(&file[i]).contains(a))
            {
                None => match a {
                    IpAddr::V4(x) => v4.push(x.to_string()),
                    IpAddr::V6(x) => v6.push(x.to_string()),
                },
                // An entry by address alone is the device and moves,
                // unless it is life-critical and no one forced it.
                Some(i)
                    if file[i]["mac"].is_null()
                        && (d.forced || !life_critical(file[i]["segment"].as_str())) =>
                {
                    devices[i]["segment"] = json!(segment)
                }
                Some(_) => {}
            }
        }
        let mut dev = json!({
            "name": format!("model-{}", mac.replace(':', "")),
            "mac": mac,
            "segment": segment,
        });
        if !v4.is_empty() {
            dev["ipv4"] = json!(v4);
        }
        if !v6.is_empty() {
            dev["ipv6"] = json!(v6);
        }
        added.push(dev);
    }
    devices.extend(added);
    v["devices"] = Value::Array(devices);
    serde_json::from_value(v).unwrap()
}
