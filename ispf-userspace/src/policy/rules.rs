//! The rules of a policy document: protocols and ports, the segments
//! they join, and conflicts (two rules of one pair and specificity, one
//! allowing what the other denies).

use std::collections::HashMap;

use ispf_common::{
    FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
};

use super::{Action, PolicyDoc, PortDoc, Problems, ProtoDoc, ProtoSet, Rule};

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

/// The document's rules, with segment names resolved by `seg_id`; every
/// problem found goes to `pr`.
pub(super) fn check(
    doc: &PolicyDoc,
    seg_id: impl Fn(&str) -> Option<u16>,
    pr: &mut Problems,
) -> Vec<Rule> {
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
    check_conflicts(&rules, doc, pr);
    rules
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
