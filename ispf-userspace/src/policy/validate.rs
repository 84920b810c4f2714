//! Checks a policy document against the specification and resolves names.
//! Every problem is collected (not just the first) with its JSON path.

use std::collections::HashMap;

use foldhash::{fast::RandomState as Fast, HashMap as FastMap};

use ipnet::IpNet;
use ispf_common::MAX_SEGMENTS;

use super::{Action, Device, Mode, Policy, PolicyDoc, Problem, Problems, Segment};

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `aa:bb:cc:dd:ee:ff` (or with `-`), case-insensitive.
/// Without allocating: it runs for every device of every reload and
/// runtime decision.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut n = 0;
    for p in s.split([':', '-']) {
        if n == mac.len() || p.len() != 2 {
            return None;
        }
        mac[n] = u8::from_str_radix(p, 16).ok()?;
        n += 1;
    }
    (n == mac.len()).then_some(mac)
}

/// Whether a device can send from `mac`: neither multicast nor zero.
pub fn is_device_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0 && *mac != [0; 6]
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
    // By name: a policy may have thousands of segments and a hundred
    // thousand devices naming them. Ids wrap past 65,535 segments rather
    // than panic; such a policy is refused for its size below.
    let seg_ids: HashMap<&str, u16> = segments
        .iter()
        .enumerate()
        .rev()
        .map(|(i, s)| (s.name.as_str(), (i as u16).wrapping_add(1)))
        .collect();
    let seg_id = |name: &str| seg_ids.get(name).copied();

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
    // Owners by index, paths written only for a problem: this loop runs
    // for every device of every reload and runtime decision.
    let n = doc.devices.len();
    let mut dev_names: FastMap<&str, usize> = FastMap::with_capacity_and_hasher(n, Fast::default());
    let mut mac_owner: FastMap<[u8; 6], usize> =
        FastMap::with_capacity_and_hasher(n, Fast::default());
    let mut ip_owner: FastMap<std::net::IpAddr, usize> =
        FastMap::with_capacity_and_hasher(n, Fast::default());
    let mut devices = Vec::with_capacity(doc.devices.len());
    for (i, d) in doc.devices.iter().enumerate() {
        let path = || format!("devices[{i}]");
        if let Some(first) = dev_names.insert(d.name.as_str(), i) {
            pr.add(
                format!("{}.name", path()),
                format!("device `{}` is already defined at devices[{first}]", d.name),
            );
        }
        let segment = seg_id(&d.segment).unwrap_or_else(|| {
            pr.add(
                format!("{}.segment", path()),
                format!("unknown segment `{}`; list it under `segments`", d.segment),
            );
            0
        });
        let mac = d.mac.as_ref().and_then(|m| match parse_mac(m) {
            None => {
                pr.add(
                    format!("{}.mac", path()),
                    format!("`{m}` is not a MAC address such as 02:00:00:00:10:01"),
                );
                None
            }
            Some(mac) if !is_device_mac(&mac) => {
                pr.add(
                    format!("{}.mac", path()),
                    format!("`{m}` is a multicast or zero MAC, which no device sends from"),
                );
                None
            }
            Some(mac) => {
                if let Some(other) = mac_owner.insert(mac, i) {
                    pr.add(
                        format!("{}.mac", path()),
                        format!("duplicate MAC {m}: already used at devices[{other}].mac"),
                    );
                }
                Some(mac)
            }
        });
        let ipv4 = d.ipv4.as_ref().map(|x| x.to_vec()).unwrap_or_default();
        let ipv6 = d.ipv6.as_ref().map(|x| x.to_vec()).unwrap_or_default();
        if d.mac.is_none() && ipv4.is_empty() && ipv6.is_empty() {
            pr.add(
                path(),
                "a device needs at least one of `mac`, `ipv4`, `ipv6`",
            );
        }
        let addrs = ipv4
            .iter()
            .map(|a| ("ipv4", std::net::IpAddr::V4(*a)))
            .chain(ipv6.iter().map(|a| ("ipv6", std::net::IpAddr::V6(*a))));
        for (field, ip) in addrs {
            if let Some(other) = ip_owner.insert(ip, i) {
                if other != i {
                    pr.add(
                        format!("{}.{field}", path()),
                        format!("duplicate address {ip}: already used at devices[{other}]"),
                    );
                }
            }
        }
        let vlan = d.vlan.unwrap_or(0);
        if d.vlan.is_some() && !(1..=4094).contains(&vlan) {
            pr.add(
                format!("{}.vlan", path()),
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

    let rules = super::rules::check(&doc, seg_id, &mut pr);
    pr.0.extend(super::section_checks::feeds_and_detection(&doc));
    pr.0.extend(super::section_checks::identity(&doc));

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
        file_devices: devices.len(),
        devices,
        routers,
        rules,
    })
}
