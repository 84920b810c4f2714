//! What a reload changes, in the terms a network engineer reviews: devices
//! added, removed or moved between segments, and segment pairs that gain or
//! lose permitted services.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ispf_common::{FAMILY_V4, IPPROTO_ICMP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use serde::Serialize;

use super::{matrix::decide, Action, Policy, Rule};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PolicyDiff {
    pub devices_added: Vec<String>,
    pub devices_removed: Vec<String>,
    /// `(device, old segment, new segment)`.
    pub devices_moved: Vec<(String, String, String)>,
    /// Devices whose MAC, addresses or VLAN changed.
    pub devices_readdressed: Vec<String>,
    /// Segments' modes, life-critical marks, subnets and VLANs, the
    /// defaults, and life-critical devices' identities that change (see
    /// `diff_settings`), as printed.
    #[serde(default)]
    pub settings: Vec<String>,
    /// `(from, to, services newly allowed)`.
    pub opened: Vec<(String, String, Vec<String>)>,
    /// `(from, to, services no longer allowed)`.
    pub closed: Vec<(String, String, Vec<String>)>,
    /// How the new file changes what runtime decisions do (filled by the
    /// controller, which knows them).
    #[serde(default)]
    pub decisions: Vec<String>,
    /// Threat-feed entries the new file starts or stops skipping (filled
    /// by the controller, which knows the feeds).
    #[serde(default)]
    pub feeds: Vec<String>,
    /// Set when more segment pairs could change than a diff compares one
    /// by one ([`MAX_PAIRS`]): how many at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs_not_compared: Option<usize>,
}

/// The most segment pairs a diff compares. A file that adds thousands of
/// segments, or changes the default action of a thousand, would otherwise
/// keep the controller comparing (and listing) millions of pairs before
/// it applied anything.
pub const MAX_PAIRS: usize = 50_000;

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

/// Rules by the pair of segment names they name (`None`: `*`), so the
/// rules that decide one pair are four lookups away.
struct Index<'a> {
    p: &'a Policy,
    by_pair: HashMap<(Option<&'a str>, Option<&'a str>), Vec<&'a Rule>>,
    /// Each segment's `intra: deny`, by name (a segment's id by name is a
    /// search of the segments).
    intra_deny: HashMap<&'a str, bool>,
}

impl<'a> Index<'a> {
    fn new(p: &'a Policy) -> Self {
        let mut by_pair: HashMap<_, Vec<&Rule>> = HashMap::new();
        for r in &p.rules {
            let name = |id: Option<u16>| id.map(|i| p.segment_name(i));
            by_pair
                .entry((name(r.from), name(r.to)))
                .or_default()
                .push(r);
        }
        let intra_deny = p
            .segments
            .iter()
            .map(|s| (s.name.as_str(), s.intra_deny))
            .collect();
        Self {
            p,
            by_pair,
            intra_deny,
        }
    }

    /// The rules that can decide `src -> dst`, most specific level first.
    fn levels(&self, src: &'a str, dst: &'a str) -> [&[&'a Rule]; 4] {
        let get = |k| self.by_pair.get(&k).map_or(&[][..], |v| v.as_slice());
        [
            get((Some(src), Some(dst))),
            get((Some(src), None)),
            get((None, Some(dst))),
            get((None, None)),
        ]
    }

    fn allows(&self, src: &'a str, dst: &'a str, pr: &Probe) -> bool {
        let (Some(intra_deny), Some(_)) = (self.intra_deny.get(src), self.intra_deny.get(dst))
        else {
            return false;
        };
        match decide(&self.levels(src, dst), FAMILY_V4, pr.proto, pr.port) {
            Some(r) => r.allow,
            None if src == dst => !intra_deny,
            None => self.p.doc.defaults.default_action == Action::Allow,
        }
    }
}

/// The kinds of traffic worth comparing for one pair: every protocol and
/// port a rule of the pair names (in either policy), and "anything else".
fn probes(levels: &[[&[&Rule]; 4]]) -> BTreeSet<Probe> {
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
    for r in levels.iter().flatten().flat_map(|l| l.iter()) {
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
    out
}

/// A rule as it reads, names instead of ids and without its position, so
/// rules that merely moved in the file compare equal.
type RuleSig = (Option<String>, Option<String>, String, String, bool);

fn signatures(p: &Policy) -> BTreeMap<RuleSig, usize> {
    let mut m = BTreeMap::new();
    for r in &p.rules {
        let name = |id: Option<u16>| id.map(|i| p.segment_name(i).to_owned());
        let sig = (
            name(r.from),
            name(r.to),
            format!("{:?}", r.protos),
            format!("{:?}", r.ports),
            r.allow,
        );
        *m.entry(sig).or_default() += 1;
    }
    m
}

/// The segment pairs whose permitted traffic can differ between `old` and
/// `new`: those a changed rule names (a `*` stands for every segment),
/// those of segments added, removed or with another `intra`, and every
/// pair when the default action changed. The work of a diff is then
/// proportional to what changed, not to the square of the segments.
/// `Err` with an upper bound of their number when there are more than
/// [`MAX_PAIRS`].
fn affected_pairs(old: &Policy, new: &Policy) -> Result<BTreeSet<(String, String)>, usize> {
    let names: BTreeSet<&str> = old
        .segments
        .iter()
        .chain(&new.segments)
        .map(|s| s.name.as_str())
        .collect();
    let mut pairs = BTreeSet::new();
    let mut over = 0;
    let mut add = |from: Option<&str>, to: Option<&str>| {
        let froms: Vec<&str> = from.map_or_else(|| names.iter().copied().collect(), |f| vec![f]);
        let tos: Vec<&str> = to.map_or_else(|| names.iter().copied().collect(), |t| vec![t]);
        if over > 0 || pairs.len() + froms.len() * tos.len() > MAX_PAIRS {
            over = over.max(pairs.len()) + froms.len() * tos.len();
            return;
        }
        for f in &froms {
            for t in &tos {
                pairs.insert((f.to_string(), t.to_string()));
            }
        }
    };
    if old.doc.defaults.default_action != new.doc.defaults.default_action {
        add(None, None);
    }
    let (so, sn) = (signatures(old), signatures(new));
    for (sig, n) in so.iter().chain(&sn) {
        let other = if so.get(sig) == Some(n) { &sn } else { &so };
        if other.get(sig) != Some(n) {
            add(sig.0.as_deref(), sig.1.as_deref());
        }
    }
    for name in &names {
        let (o, n) = (old.segment_id(name), new.segment_id(name));
        let intra =
            |p: &Policy, id: Option<u16>| id.and_then(|i| p.segment(i)).map(|s| s.intra_deny);
        if o.is_none() || n.is_none() {
            add(Some(name), None);
            add(None, Some(name));
        } else if intra(old, o) != intra(new, n) {
            add(Some(name), Some(name));
        }
    }
    if over > 0 {
        return Err(over);
    }
    Ok(pairs)
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

    d.settings = super::diff_settings::settings(old, new);
    let (io, in_) = (Index::new(old), Index::new(new));
    let pairs = affected_pairs(old, new).unwrap_or_else(|n| {
        d.pairs_not_compared = Some(n);
        BTreeSet::new()
    });
    for (src, dst) in pairs {
        let probes = probes(&[io.levels(&src, &dst), in_.levels(&src, &dst)]);
        let allowed = |ix: &Index, pr: &Probe| ix.allows(&src, &dst, pr);
        let before: BTreeSet<Probe> = probes.iter().copied().filter(|p| allowed(&io, p)).collect();
        let after: BTreeSet<Probe> = probes
            .iter()
            .copied()
            .filter(|p| allowed(&in_, p))
            .collect();
        let opened: Vec<String> = after.difference(&before).map(Probe::label).collect();
        let closed: Vec<String> = before.difference(&after).map(Probe::label).collect();
        if !opened.is_empty() {
            d.opened.push((src.clone(), dst.clone(), opened));
        }
        if !closed.is_empty() {
            d.closed.push((src, dst, closed));
        }
    }
    d
}

impl std::fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no change in devices, settings or permitted traffic");
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
        for line in &self.settings {
            writeln!(f, "{line}")?;
        }
        for (a, b, s) in &self.opened {
            writeln!(f, "+ opens {a} -> {b}: {}", s.join(", "))?;
        }
        for (a, b, s) in &self.closed {
            writeln!(f, "- closes {a} -> {b}: {}", s.join(", "))?;
        }
        if let Some(n) = self.pairs_not_compared {
            writeln!(
                f,
                "~ the permitted traffic of more than {MAX_PAIRS} segment pairs (up to {n}) may change (segments added or removed, or the default action changed): too many to compare one by one; review the rules"
            )?;
        }
        for d in self.decisions.iter().chain(&self.feeds) {
            writeln!(f, "! {d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
