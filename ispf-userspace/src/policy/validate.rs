//! Checks a policy document against the specification and resolves names.
//! Every problem is collected (not just the first) with its JSON path.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;
use ispf_common::{
    FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
    MAX_SEGMENTS,
};

use super::{
    Action, Device, Mode, Policy, PolicyDoc, PortDoc, Problem, ProtoDoc, ProtoSet, Rule, Segment,
};

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `aa:bb:cc:dd:ee:ff` (or with `-`), case-insensitive.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        mac[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

fn proto_set(p: &ProtoDoc) -> Option<ProtoSet> {
    let both = |n: u8| vec![(FAMILY_V4, n), (FAMILY_V6, n)];
    Some(match p {
        ProtoDoc::Number(n) => both(*n),
        ProtoDoc::Name(s) => match s.as_str() {
            "tcp" => both(IPPROTO_TCP),
            "udp" => both(IPPROTO_UDP),
            "sctp" => both(IPPROTO_SCTP),
            "icmp" => vec![(FAMILY_V4, IPPROTO_ICMP), (FAMILY_V6, IPPROTO_ICMPV6)],
            _ => return None,
        },
    })
}

fn port_range(p: &PortDoc) -> Result<(u16, u16), String> {
    match p {
        PortDoc::Port(n) => Ok((*n, *n)),
        PortDoc::Range(s) => {
            let bad = || format!("`{s}` is not a port or a \"lo-hi\" range of ports 0-65535");
            let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
            let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
            let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
            if lo > hi {
                return Err(format!("range `{s}` is empty: {lo} is above {hi}"));
            }
            Ok((lo, hi))
        }
    }
}

pub(super) fn validate(doc: PolicyDoc) -> Result<Policy, Vec<Problem>> {
    let mut pr = Problems(Vec::new());
    if doc.version != 1 {
        pr.add(
            "version",
            format!(
                "version {} is not supported; this ispf reads version 1",
                doc.version
            ),
        );
    }

    // Segments.
    let mut segments = Vec::new();
    let mut seg_path: HashMap<String, String> = HashMap::new();
    let mut vlan_owner: HashMap<u16, String> = HashMap::new();
    let mut prefix_owner: HashMap<IpNet, String> = HashMap::new();
    for (i, s) in doc.segments.iter().enumerate() {
        let path = format!("segments[{i}]");
        if !valid_name(&s.name) {
            pr.add(
                format!("{path}.name"),
                format!(
                    "`{}` is not a valid segment name: use 1-32 of a-z, 0-9 and -",
                    s.name
                ),
            );
        }
        if let Some(first) = seg_path.insert(s.name.clone(), path.clone()) {
            pr.add(
                format!("{path}.name"),
                format!("segment `{}` is already defined at {first}", s.name),
            );
        }
        if s.name == "world" && (!s.vlans.is_empty() || !s.subnets.is_empty()) {
            pr.add(
                &path,
                "`world` is every address nobody claims; it cannot own VLANs or subnets",
            );
        }
        for (j, v) in s.vlans.iter().enumerate() {
            let vpath = format!("{path}.vlans[{j}]");
            if !(1..=4094).contains(v) {
                pr.add(&vpath, format!("VLAN {v} is outside 1-4094"));
            } else if let Some(other) = vlan_owner.insert(*v, vpath.clone()) {
                pr.add(&vpath, format!("VLAN {v} is already assigned at {other}; a VLAN belongs to at most one segment"));
            }
        }
        let mut subnets = Vec::new();
        for (j, c) in s.subnets.iter().enumerate() {
            let spath = format!("{path}.subnets[{j}]");
            match c.parse::<IpNet>() {
                Err(_) => pr.add(
                    &spath,
                    format!("`{c}` is not an IPv4 or IPv6 CIDR such as 10.50.0.0/24"),
                ),
                Ok(net) if net.trunc() != net => pr.add(
                    &spath,
                    format!("`{c}` has host bits set; did you mean {}?", net.trunc()),
                ),
                Ok(net) => {
                    if let Some(other) = prefix_owner.insert(net, spath.clone()) {
                        pr.add(&spath, format!("{net} is already owned at {other}; identical prefixes in two places are ambiguous"));
                    }
                    subnets.push(net);
                }
            }
        }
        segments.push(Segment {
            name: s.name.clone(),
            vlans: s.vlans.clone(),
            subnets,
            monitor: s.mode == Mode::Monitor,
            intra_deny: s.intra == Action::Deny,
            life_critical: s.life_critical,
        });
    }
    let mut implicit = |name: &str| {
        if let Some(i) = segments.iter().position(|s| s.name == name) {
            return i as u16 + 1;
        }
        segments.push(Segment {
            name: name.to_owned(),
            vlans: vec![],
            subnets: vec![],
            monitor: false,
            intra_deny: false,
            life_critical: false,
        });
        segments.len() as u16
    };
    let world = implicit("world");
    let unknown_name = doc.defaults.unknown_source.clone();
    if !valid_name(&unknown_name) {
        pr.add(
            "defaults.unknown_source",
            format!("`{unknown_name}` is not a valid segment name: use 1-32 of a-z, 0-9 and -"),
        );
    } else if unknown_name == "world" {
        pr.add(
            "defaults.unknown_source",
            "unknown sources cannot join `world`: name a quarantine segment",
        );
    }
    let unknown = implicit(&unknown_name);
    if segments.len() as u32 >= MAX_SEGMENTS {
        pr.add(
            "segments",
            format!(
                "{} segments; ispf supports at most {}",
                segments.len(),
                MAX_SEGMENTS - 1
            ),
        );
    }
    let seg_id = |name: &str| {
        segments
            .iter()
            .position(|s| s.name == name)
            .map(|i| i as u16 + 1)
    };

    // Routers.
    let mut routers = Vec::new();
    for (i, r) in doc.defaults.routers.iter().enumerate() {
        match parse_mac(r) {
            Some(m) => routers.push(m),
            None => pr.add(
                format!("defaults.routers[{i}]"),
                format!("`{r}` is not a MAC address such as 02:00:00:00:00:fe"),
            ),
        }
    }

    // Devices.
    let mut devices = Vec::new();
    let mut dev_names: HashMap<&str, usize> = HashMap::new();
    let mut mac_owner: HashMap<[u8; 6], String> = HashMap::new();
    let mut ip_owner: BTreeMap<std::net::IpAddr, String> = BTreeMap::new();
    for (i, d) in doc.devices.iter().enumerate() {
        let path = format!("devices[{i}]");
        if let Some(first) = dev_names.insert(d.name.as_str(), i) {
            pr.add(
                format!("{path}.name"),
                format!("device `{}` is already defined at devices[{first}]", d.name),
            );
        }
        let segment = seg_id(&d.segment).unwrap_or_else(|| {
            pr.add(
                format!("{path}.segment"),
                format!("unknown segment `{}`; list it under `segments`", d.segment),
            );
            0
        });
        let mac = d.mac.as_ref().and_then(|m| match parse_mac(m) {
            None => {
                pr.add(
                    format!("{path}.mac"),
                    format!("`{m}` is not a MAC address such as 02:00:00:00:10:01"),
                );
                None
            }
            Some(mac) if mac[0] & 1 == 1 || mac == [0; 6] => {
                pr.add(
                    format!("{path}.mac"),
                    format!("`{m}` is a multicast or zero MAC, which no device sends from"),
                );
                None
            }
            Some(mac) => {
                if let Some(other) = mac_owner.insert(mac, format!("{path}.mac")) {
                    pr.add(
                        format!("{path}.mac"),
                        format!("duplicate MAC {m}: already used at {other}"),
                    );
                }
                Some(mac)
            }
        });
        let ipv4 = d.ipv4.as_ref().map(|x| x.to_vec()).unwrap_or_default();
        let ipv6 = d.ipv6.as_ref().map(|x| x.to_vec()).unwrap_or_default();
        if d.mac.is_none() && ipv4.is_empty() && ipv6.is_empty() {
            pr.add(
                &path,
                "a device needs at least one of `mac`, `ipv4`, `ipv6`",
            );
        }
        let addrs = ipv4
            .iter()
            .map(|a| ("ipv4", std::net::IpAddr::V4(*a)))
            .chain(ipv6.iter().map(|a| ("ipv6", std::net::IpAddr::V6(*a))));
        for (field, ip) in addrs {
            if let Some(other) = ip_owner.insert(ip, path.clone()) {
                if other != path {
                    pr.add(
                        format!("{path}.{field}"),
                        format!("duplicate address {ip}: already used at {other}"),
                    );
                }
            }
        }
        let vlan = d.vlan.unwrap_or(0);
        if d.vlan.is_some() && !(1..=4094).contains(&vlan) {
            pr.add(
                format!("{path}.vlan"),
                format!("VLAN {vlan} is outside 1-4094"),
            );
        }
        devices.push(Device {
            name: d.name.clone(),
            mac,
            ipv4,
            ipv6,
            vlan,
            segment,
        });
    }

    // Rules.
    let mut rules = Vec::new();
    for (i, r) in doc.rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        let mut end = |field: &str, name: &str| -> Option<u16> {
            if name == "*" {
                return None;
            }
            seg_id(name).or_else(|| {
                pr.add(
                    format!("{path}.{field}"),
                    format!("unknown segment `{name}`; use a listed segment, `world` or `*`"),
                );
                None
            })
        };
        let from = end("from", &r.from);
        let to = end("to", &r.to);
        let protos = r.proto.as_ref().and_then(|p| {
            proto_set(p).or_else(|| {
                pr.add(
                    format!("{path}.proto"),
                    format!("unknown protocol {p:?}: use tcp, udp, icmp, sctp or a number 0-255"),
                );
                None
            })
        });
        let ports = r.ports.as_ref().map(|ports| {
            let port_proto = protos.as_ref().is_some_and(|ps| {
                ps.iter()
                    .all(|(_, p)| matches!(*p, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP))
            });
            if !port_proto {
                pr.add(
                    format!("{path}.ports"),
                    "ports need `proto` tcp, udp or sctp",
                );
            }
            if ports.is_empty() {
                pr.add(
                    format!("{path}.ports"),
                    "an empty port list matches nothing; omit `ports` for any port",
                );
            }
            ports
                .iter()
                .enumerate()
                .filter_map(|(j, p)| {
                    port_range(p)
                        .map_err(|m| pr.add(format!("{path}.ports[{j}]"), m))
                        .ok()
                })
                .collect::<Vec<_>>()
        });
        rules.push(Rule {
            index: i,
            from,
            to,
            protos,
            ports,
            allow: r.action == Action::Allow,
        });
    }
    check_conflicts(&rules, &doc, &mut pr);
    pr.0.extend(super::sections::check(&doc));
    pr.0.extend(super::identity::check(&doc));

    if !pr.0.is_empty() {
        return Err(pr.0);
    }
    let ids = (1..=segments.len() as u16).collect();
    Ok(Policy {
        doc,
        sha256: [0; 32],
        ids,
        segments,
        world,
        unknown,
        devices,
        routers,
        rules,
    })
}

/// Rank of a rule's specificity (0 most specific): pair level then kind.
pub(crate) fn specificity(r: &Rule) -> (u8, u8) {
    let pair = match (r.from.is_some(), r.to.is_some()) {
        (true, true) => 0,
        (true, false) => 1,
        (false, true) => 2,
        (false, false) => 3,
    };
    let kind = if r.ports.is_some() {
        0
    } else if r.protos.is_some() {
        1
    } else {
        2
    };
    (pair, kind)
}

fn overlap(a: &Rule, b: &Rule) -> bool {
    let protos = match (&a.protos, &b.protos) {
        (Some(x), Some(y)) => x.iter().any(|p| y.contains(p)),
        _ => true,
    };
    let ports = match (&a.ports, &b.ports) {
        (Some(x), Some(y)) => x
            .iter()
            .any(|(l1, h1)| y.iter().any(|(l2, h2)| l1 <= h2 && l2 <= h1)),
        _ => true,
    };
    protos && ports
}

fn check_conflicts(rules: &[Rule], doc: &PolicyDoc, pr: &mut Problems) {
    // Rules can only conflict with rules of the same pair and specificity.
    type Group = (Option<u16>, Option<u16>, (u8, u8));
    let mut groups: HashMap<Group, Vec<&Rule>> = HashMap::new();
    for r in rules {
        groups
            .entry((r.from, r.to, specificity(r)))
            .or_default()
            .push(r);
    }
    let mut found = Vec::new();
    for group in groups.values() {
        for (i, a) in group.iter().enumerate() {
            for b in &group[i + 1..] {
                if a.allow != b.allow && overlap(a, b) {
                    found.push((a.index, b.index));
                }
            }
        }
    }
    found.sort_unstable();
    for (a, b) in found {
        let ra = &doc.rules[a];
        pr.add(
            format!("rules[{b}]"),
            format!(
                "conflicts with rules[{a}]: both match {} -> {} at the same specificity and one allows what the other denies; narrow one of them or make them agree",
                ra.from, ra.to
            ),
        );
    }
}
