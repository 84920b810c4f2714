//! What a reload changes, in the terms a network engineer reviews: devices
//! added, removed or moved between segments, and segment pairs that gain or
//! lose permitted services.

use std::collections::{BTreeMap, BTreeSet};

use ispf_common::{FAMILY_V4, IPPROTO_ICMP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use serde::Serialize;

use super::{compile::allows, Policy};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PolicyDiff {
    pub devices_added: Vec<String>,
    pub devices_removed: Vec<String>,
    /// `(device, old segment, new segment)`.
    pub devices_moved: Vec<(String, String, String)>,
    /// Devices whose MAC, addresses or VLAN changed.
    pub devices_readdressed: Vec<String>,
    /// `(from, to, services newly allowed)`.
    pub opened: Vec<(String, String, Vec<String>)>,
    /// `(from, to, services no longer allowed)`.
    pub closed: Vec<(String, String, Vec<String>)>,
}

impl PolicyDiff {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A kind of traffic to compare the two policies on.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Probe {
    proto: Option<u8>,
    port: Option<u16>,
}

impl Probe {
    fn label(&self) -> String {
        let name = |p: u8| match p {
            IPPROTO_TCP => "tcp".to_owned(),
            IPPROTO_UDP => "udp".to_owned(),
            IPPROTO_SCTP => "sctp".to_owned(),
            IPPROTO_ICMP => "icmp".to_owned(),
            n => format!("proto {n}"),
        };
        match (self.proto, self.port) {
            (None, _) => "any other protocol".to_owned(),
            (Some(p), Some(port)) => format!("{}/{port}", name(p)),
            (Some(p), None) if matches!(p, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP) => {
                format!("{} other ports", name(p))
            }
            (Some(p), None) => name(p),
        }
    }
}

fn probes(policies: &[&Policy]) -> BTreeSet<Probe> {
    let mut out = BTreeSet::new();
    out.insert(Probe {
        proto: None,
        port: None,
    });
    for p in [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP] {
        out.insert(Probe {
            proto: Some(p),
            port: None,
        });
    }
    for policy in policies {
        for r in &policy.rules {
            for &(family, proto) in r.protos.iter().flatten() {
                if family != FAMILY_V4 && proto != ispf_common::IPPROTO_ICMPV6 {
                    continue;
                }
                let proto = if proto == ispf_common::IPPROTO_ICMPV6 {
                    IPPROTO_ICMP
                } else {
                    proto
                };
                out.insert(Probe {
                    proto: Some(proto),
                    port: None,
                });
                for &(lo, _) in r.ports.iter().flatten() {
                    out.insert(Probe {
                        proto: Some(proto),
                        port: Some(lo),
                    });
                }
            }
        }
    }
    out
}

fn allowed_services(p: &Policy, src: &str, dst: &str, probes: &BTreeSet<Probe>) -> BTreeSet<Probe> {
    let (Some(s), Some(d)) = (p.segment_id(src), p.segment_id(dst)) else {
        return BTreeSet::new();
    };
    probes
        .iter()
        .copied()
        .filter(|pr| allows(p, s, d, FAMILY_V4, pr.proto, pr.port))
        .collect()
}

pub fn diff(old: &Policy, new: &Policy) -> PolicyDiff {
    let mut d = PolicyDiff::default();
    let by_name = |p: &Policy| {
        p.devices
            .iter()
            .map(|dev| (dev.name.clone(), dev.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let (od, nd) = (by_name(old), by_name(new));
    for (name, n) in &nd {
        match od.get(name) {
            None => d.devices_added.push(name.clone()),
            Some(o) => {
                let (os, ns) = (old.segment_name(o.segment), new.segment_name(n.segment));
                if os != ns {
                    d.devices_moved
                        .push((name.clone(), os.to_owned(), ns.to_owned()));
                }
                if (o.mac, &o.ipv4, &o.ipv6, o.vlan) != (n.mac, &n.ipv4, &n.ipv6, n.vlan) {
                    d.devices_readdressed.push(name.clone());
                }
            }
        }
    }
    d.devices_removed = od
        .keys()
        .filter(|k| !nd.contains_key(*k))
        .cloned()
        .collect();

    let probes = probes(&[old, new]);
    let names: BTreeSet<String> = old
        .segments
        .iter()
        .chain(&new.segments)
        .map(|s| s.name.clone())
        .collect();
    for src in &names {
        for dst in &names {
            let before = allowed_services(old, src, dst, &probes);
            let after = allowed_services(new, src, dst, &probes);
            let opened: Vec<String> = after.difference(&before).map(Probe::label).collect();
            let closed: Vec<String> = before.difference(&after).map(Probe::label).collect();
            if !opened.is_empty() {
                d.opened.push((src.clone(), dst.clone(), opened));
            }
            if !closed.is_empty() {
                d.closed.push((src.clone(), dst.clone(), closed));
            }
        }
    }
    d
}

impl std::fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no change in devices or permitted traffic");
        }
        for n in &self.devices_added {
            writeln!(f, "+ device {n}")?;
        }
        for n in &self.devices_removed {
            writeln!(f, "- device {n}")?;
        }
        for (n, a, b) in &self.devices_moved {
            writeln!(f, "~ device {n} moves {a} -> {b}")?;
        }
        for n in &self.devices_readdressed {
            writeln!(f, "~ device {n} changes its MAC, addresses or VLAN")?;
        }
        for (a, b, s) in &self.opened {
            writeln!(f, "+ opens {a} -> {b}: {}", s.join(", "))?;
        }
        for (a, b, s) in &self.closed {
            writeln!(f, "- closes {a} -> {b}: {}", s.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra_rule: &str, pump_segment: &str) -> Policy {
        let text = format!(
            r#"{{"version": 1,
            "segments": [{{"name": "pumps"}}, {{"name": "pis"}}, {{"name": "ws"}}],
            "devices": [{{"name": "p1", "mac": "02:00:00:00:00:01", "segment": "{pump_segment}"}},
                        {{"name": "srv", "ipv4": "10.0.0.1", "segment": "pis"}}],
            "rules": [{{"from": "pumps", "to": "pis", "proto": "tcp", "ports": [2575], "action": "allow"}}{extra_rule}]}}"#
        );
        Policy::from_str(&text, "t.json".as_ref()).unwrap()
    }

    #[test]
    fn reports_moves_and_opened_and_closed_services() {
        let old = policy("", "pumps");
        let new = policy(
            r#", {"from": "ws", "to": "pis", "proto": "tcp", "ports": [443], "action": "allow"}"#,
            "ws",
        );
        let d = diff(&old, &new);
        assert_eq!(
            d.devices_moved,
            vec![("p1".into(), "pumps".into(), "ws".into())]
        );
        assert!(d.devices_added.is_empty() && d.devices_removed.is_empty());
        assert_eq!(
            d.opened,
            vec![("ws".into(), "pis".into(), vec!["tcp/443".into()])]
        );
        assert!(d.closed.is_empty());
        let back = diff(&new, &old);
        assert_eq!(
            back.closed,
            vec![("ws".into(), "pis".into(), vec!["tcp/443".into()])]
        );
        assert!(diff(&old, &old).is_empty());
        assert!(format!("{d}").contains("+ opens ws -> pis: tcp/443"));
    }
}
