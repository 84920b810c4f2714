//! The rule matrix: for every segment pair any rule covers, the deciding
//! rule per family, protocol and destination-port class, packed into one
//! row per pair. Port classes group the ports every rule treats alike, so
//! the matrix does not grow with the width of port ranges.

use std::collections::HashMap;

use ispf_common::{
    row_selector, PairKey, PolicyKey, PolicyRow, PolicyVal, RowEntry, ACTION_ALLOW, ACTION_DENY,
    FAMILY_ANY, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, PORT_TABLES, ROW_ENTRIES, RULE_NONE,
};

use super::{rules::specificity, Action, Policy, Rule};

/// The rule matrix's map entries (keys carry slot 0).
#[derive(Debug, Default)]
pub(super) struct Matrix {
    /// `(port table, port, class)` for every port some rule names.
    pub port_classes: Vec<(u32, u16, u32)>,
    /// One row per segment pair any rule covers.
    pub rows: Vec<(PairKey, PolicyRow)>,
    /// The entries of pairs whose row overflows.
    pub policy: Vec<(PolicyKey, PolicyVal)>,
}

fn port_table(proto: u8) -> Option<u32> {
    match proto {
        IPPROTO_TCP => Some(0),
        IPPROTO_UDP => Some(1),
        IPPROTO_SCTP => Some(2),
        _ => None,
    }
}

const TABLE_PROTOS: [u8; PORT_TABLES as usize] = [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP];

/// Ports split into classes: ports no rule names are class 0; the rest are
/// grouped into the elementary intervals between range boundaries, so every
/// port of a class is matched by exactly the same rules.
struct PortClasses {
    /// Per table: class of every port.
    class: Vec<Vec<u32>>,
    /// Per table: first port of each class (index = class).
    representative: Vec<Vec<u16>>,
}

impl PortClasses {
    fn new(rules: &[Rule]) -> Self {
        let mut class = Vec::new();
        let mut representative = Vec::new();
        for proto in TABLE_PROTOS {
            let mut bounds = vec![];
            let mut covered = vec![false; 65537];
            for r in rules {
                let (Some(ps), Some(ports)) = (&r.protos, &r.ports) else {
                    continue;
                };
                if !ps.iter().any(|(_, p)| *p == proto) {
                    continue;
                }
                for &(lo, hi) in ports {
                    bounds.push(lo as u32);
                    bounds.push(hi as u32 + 1);
                    covered[lo as usize..=hi as usize].fill(true);
                }
            }
            bounds.push(65536);
            bounds.sort_unstable();
            bounds.dedup();
            let mut table = vec![0u32; 65536];
            let mut reps = vec![0u16];
            let mut start = 0u32;
            for &b in &bounds {
                if b > start && covered[start as usize] {
                    reps.push(start as u16);
                    let id = reps.len() as u32 - 1;
                    for p in start..b {
                        table[p as usize] = id;
                    }
                }
                start = b;
            }
            class.push(table);
            representative.push(reps);
        }
        Self {
            class,
            representative,
        }
    }
}

fn rule_matches(r: &Rule, family: u8, proto: Option<u8>, port: Option<u16>) -> bool {
    match (&r.protos, proto) {
        (None, _) => {}
        (Some(_), None) => return false,
        (Some(ps), Some(p)) => {
            if !ps.contains(&(family, p)) {
                return false;
            }
        }
    }
    match (&r.ports, port) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(ranges), Some(port)) => ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&port)),
    }
}

/// The deciding rule for one pair: levels in specificity order, and within a
/// level ports, then protocol, then neither. `proto == None` stands for a
/// protocol no rule of the pair names; `port == None` for a port no port rule
/// of the pair names.
pub(super) fn decide<'a>(
    levels: &[&'a [&'a Rule]; 4],
    family: u8,
    proto: Option<u8>,
    port: Option<u16>,
) -> Option<&'a Rule> {
    for level in levels {
        for kind in 0..3 {
            let hit = level
                .iter()
                .filter(|r| specificity(r).1 == kind)
                .find(|r| rule_matches(r, family, proto, port));
            if hit.is_some() {
                return hit.copied();
            }
        }
    }
    None
}

fn val(r: Option<&Rule>) -> PolicyVal {
    match r {
        Some(r) => PolicyVal {
            rule: r.index as u32,
            action: if r.allow { ACTION_ALLOW } else { ACTION_DENY },
            _pad: [0; 3],
        },
        None => PolicyVal {
            rule: RULE_NONE,
            action: ACTION_DENY,
            _pad: [0; 3],
        },
    }
}

/// The rule matrix of `p`: port classes, then each covered pair's
/// entries, packed into rows.
pub(super) fn rule_matrix(p: &Policy) -> Matrix {
    let mut m = Matrix::default();
    let c = &mut m;
    let classes = PortClasses::new(&p.rules);
    for (t, table) in classes.class.iter().enumerate() {
        for (port, &class) in table.iter().enumerate() {
            if class != 0 {
                c.port_classes.push((t as u32, port as u16, class));
            }
        }
    }

    let mut by_pair: HashMap<(Option<u16>, Option<u16>), Vec<&Rule>> = HashMap::new();
    for r in &p.rules {
        by_pair.entry((r.from, r.to)).or_default().push(r);
    }
    let empty: Vec<&Rule> = Vec::new();
    let get = |k| by_pair.get(&k).unwrap_or(&empty).as_slice();
    for (src, dsts) in candidates(p, &by_pair) {
        for dst in dsts {
            let levels = [
                get((Some(src), Some(dst))),
                get((Some(src), None)),
                get((None, Some(dst))),
                get((None, None)),
            ];
            if levels.iter().all(|l| l.is_empty()) {
                continue;
            }
            compile_pair(c, &classes, src, dst, &levels);
        }
    }
    pack_rows(c);
    m
}

/// For each source segment (in `p.ids` order), the destinations (in the
/// same order) that some rule may cover. A source with a rule of its own
/// to `*`, or a rule `*` → `*`, may pair with every segment; otherwise only
/// with the segments some rule names as destination (from it or from `*`).
/// Not every pair: a file of thousands of segments and rules between a
/// few of them would otherwise cost millions of map lookups to find none.
fn candidates<'a>(
    p: &'a Policy,
    by_pair: &HashMap<(Option<u16>, Option<u16>), Vec<&Rule>>,
) -> impl Iterator<Item = (u16, Vec<u16>)> + 'a {
    let position: HashMap<u16, usize> = p.ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let every = by_pair.contains_key(&(None, None));
    let mut from_any = vec![false; p.ids.len()];
    let mut to_any = vec![false; p.ids.len()];
    let mut named: HashMap<u16, Vec<usize>> = HashMap::new();
    // `None` is `*`; a segment id outside `p.ids` (none, in a validated
    // policy) pairs with nothing.
    let at = |id: u16| position.get(&id).copied();
    for &(from, to) in by_pair.keys() {
        match (from, to) {
            (None, Some(d)) => {
                if let Some(d) = at(d) {
                    to_any[d] = true;
                }
            }
            (Some(s), Some(d)) => {
                if let Some(d) = at(d) {
                    named.entry(s).or_default().push(d);
                }
            }
            (Some(s), None) => {
                if let Some(s) = at(s) {
                    from_any[s] = true;
                }
            }
            (None, None) => {}
        }
    }
    let common: Vec<usize> = (0..p.ids.len()).filter(|&d| to_any[d]).collect();
    p.ids.iter().enumerate().map(move |(i, &src)| {
        let dsts: Vec<u16> = if every || from_any[i] {
            p.ids.clone()
        } else {
            let mut at = common.clone();
            at.extend(named.get(&src).into_iter().flatten());
            at.sort_unstable();
            at.dedup();
            at.into_iter().map(|d| p.ids[d]).collect()
        };
        (src, dsts)
    })
}

/// Moves each pair's entries into its row; a pair with more entries than a
/// row holds keeps them in the entry map and says so in its row.
fn pack_rows(c: &mut Matrix) {
    let entries = std::mem::take(&mut c.policy);
    let mut i = 0;
    while i < entries.len() {
        let (src, dst) = (entries[i].0.src, entries[i].0.dst);
        let end = entries[i..]
            .iter()
            .position(|(k, _)| (k.src, k.dst) != (src, dst))
            .map_or(entries.len(), |n| i + n);
        let pair = &entries[i..end];
        let mut row = PolicyRow::default();
        let specific: Vec<&(PolicyKey, PolicyVal)> = pair
            .iter()
            .filter(|(k, _)| k.family != FAMILY_ANY)
            .collect();
        if let Some((_, v)) = pair.iter().find(|(k, _)| k.family == FAMILY_ANY) {
            row.any = *v;
            row.has_any = 1;
        }
        if specific.len() <= ROW_ENTRIES {
            for (slot, (k, v)) in row.entries.iter_mut().zip(&specific) {
                *slot = RowEntry {
                    selector: row_selector(k.family, k.proto, k.port_class),
                    val: *v,
                };
            }
            row.n = specific.len() as u8;
        } else {
            row.overflow = 1;
            c.policy.extend(specific.into_iter().copied());
        }
        let key = PairKey {
            src,
            dst,
            slot: 0,
            _pad: [0; 3],
        };
        c.rows.push((key, row));
        i = end;
    }
}

fn compile_pair(c: &mut Matrix, classes: &PortClasses, src: u16, dst: u16, levels: &[&[&Rule]; 4]) {
    let key = |family, proto, port_class| PolicyKey {
        src,
        dst,
        slot: 0,
        family,
        proto,
        _pad: 0,
        port_class,
    };
    let any = decide(levels, FAMILY_ANY, None, None);
    if any.is_some() {
        c.policy.push((key(FAMILY_ANY, 0, 0), val(any)));
    }
    let mut protos: Vec<(u8, u8)> = levels
        .iter()
        .flat_map(|l| l.iter())
        .filter_map(|r| r.protos.clone())
        .flatten()
        .collect();
    protos.sort_unstable();
    protos.dedup();
    for (family, proto) in protos {
        let base = decide(levels, family, Some(proto), None);
        if base.map(|r| r.index) != any.map(|r| r.index) {
            c.policy.push((key(family, proto, 0), val(base)));
        }
        let Some(t) = port_table(proto) else { continue };
        let reps = &classes.representative[t as usize];
        // Only classes some port rule of this pair covers can differ from `base`.
        let mut pair_classes: Vec<u32> = levels
            .iter()
            .flat_map(|l| l.iter())
            .filter(|r| {
                r.protos
                    .as_ref()
                    .is_some_and(|ps| ps.contains(&(family, proto)))
            })
            .filter_map(|r| r.ports.as_ref())
            .flatten()
            .flat_map(|&(lo, hi)| {
                let table = &classes.class[t as usize];
                let (a, b) = (table[lo as usize], table[hi as usize]);
                a..=b
            })
            .collect();
        pair_classes.sort_unstable();
        pair_classes.dedup();
        for class in pair_classes {
            let rule = decide(levels, family, Some(proto), Some(reps[class as usize]));
            if rule.map(|r| r.index) != base.map(|r| r.index) {
                c.policy.push((key(family, proto, class), val(rule)));
            }
        }
    }
}

/// Whether `p` passes traffic from segment `src` to `dst` of `family`,
/// protocol `proto` (`None`: one no rule names) to `port` (`None`: one no
/// rule names), by rules, `intra` or the default — monitor mode aside.
pub fn allows(
    p: &Policy,
    src: u16,
    dst: u16,
    family: u8,
    proto: Option<u8>,
    port: Option<u16>,
) -> bool {
    match deciding(p, src, dst, family, proto, port) {
        Some(r) => r.allow,
        None if src == dst => !p.segment(src).is_some_and(|s| s.intra_deny),
        None => p.doc.defaults.default_action == Action::Allow,
    }
}

/// Whether a rule of `p` allows `port` of `proto` from segment `client`
/// to `server`, and names that port or both segments: `server` offers
/// that service to `client`. Unlike [`allows`], neither the default nor a
/// rule of `*` that names no port counts, which would make a server of
/// every device.
pub fn serves(p: &Policy, client: u16, server: u16, family: u8, proto: u8, port: u16) -> bool {
    deciding(p, client, server, family, Some(proto), Some(port))
        .is_some_and(|r| r.allow && (r.ports.is_some() || (r.from.is_some() && r.to.is_some())))
}

/// The rule that decides traffic from `src` to `dst` (None: `intra` or
/// the default does).
fn deciding(
    p: &Policy,
    src: u16,
    dst: u16,
    family: u8,
    proto: Option<u8>,
    port: Option<u16>,
) -> Option<&Rule> {
    let pick = |f: Option<u16>, t: Option<u16>| {
        p.rules
            .iter()
            .filter(move |r| r.from == f && r.to == t)
            .collect::<Vec<_>>()
    };
    let levels = [
        pick(Some(src), Some(dst)),
        pick(Some(src), None),
        pick(None, Some(dst)),
        pick(None, None),
    ];
    let levels = [
        levels[0].as_slice(),
        levels[1].as_slice(),
        levels[2].as_slice(),
        levels[3].as_slice(),
    ];
    // `decide` ties its answer to the borrowed levels; the rule itself
    // lives in `p`.
    let index = decide(&levels, family, proto, port)?.index;
    p.rules.iter().find(|r| r.index == index)
}

#[cfg(test)]
mod tests;
