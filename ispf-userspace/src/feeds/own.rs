//! The policy's own subnets: a feed entry that holds the declared subnets
//! of two or more segments is skipped when feeds are compiled with the
//! policy. [`super::guard`] knows only the blocks every hospital uses;
//! this knows this hospital's, so a `/9` that holds all its `/16`s is
//! caught too. One segment's subnet listed whole stays enforced, as the
//! spec says (an ISAC may list a compromised server network); an entry
//! spanning several segments is a share of the hospital, not an
//! indicator. An extension where the spec is silent (README, "Networks a
//! feed never enforces").

use std::collections::HashMap;

use ipnet::IpNet;

use crate::policy::Policy;

/// Every segment's declared subnets, indexed so that an entry is checked
/// with one hash lookup, not one comparison per subnet.
#[derive(Debug, Clone, Default)]
pub struct OwnSubnets {
    /// `(subnet, segment)`, in the policy's order.
    subnets: Vec<(IpNet, String)>,
    /// Every network holding a declared subnet: the first subnet it holds
    /// and the first it holds of another segment, if any.
    holders: HashMap<IpNet, (usize, Option<usize>)>,
}

/// A feed entry skipped because of the policy's subnets: the feed's
/// position in the policy, and what `ispf feeds` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub feed: usize,
    pub why: String,
}

/// Every segment's declared subnets with the segment's name, in the
/// policy's order: what [`OwnSubnets`] is built from, cheap to compare.
pub fn declared(policy: &Policy) -> Vec<(IpNet, String)> {
    policy
        .segments
        .iter()
        .flat_map(|s| s.subnets.iter().map(|n| (*n, s.name.clone())))
        .collect()
}

/// The log line for `skips` made with `policy`'s feeds, if any.
pub fn summary(skips: &[Skip], policy: &Policy) -> Option<String> {
    let first = skips.first()?;
    let name = policy
        .doc
        .feeds
        .get(first.feed)
        .map_or("?", |d| d.name.as_str());
    Some(format!(
        "threat feeds: {} entr{} not enforced: {} the subnets of several segments (`ispf feeds` lists them); first, feed `{name}`: {}",
        skips.len(),
        if skips.len() == 1 { "y is" } else { "ies are" },
        if skips.len() == 1 { "it holds" } else { "they hold" },
        first.why
    ))
}

impl OwnSubnets {
    pub fn of(policy: &Policy) -> Self {
        Self::from_declared(declared(policy))
    }

    pub fn from_declared(subnets: Vec<(IpNet, String)>) -> Self {
        let mut holders: HashMap<IpNet, (usize, Option<usize>)> = HashMap::new();
        for (i, (net, segment)) in subnets.iter().enumerate() {
            for l in 0..=net.prefix_len() {
                let Ok(up) = IpNet::new(net.network(), l) else {
                    continue;
                };
                let h = holders.entry(up.trunc()).or_insert((i, None));
                if h.1.is_none() && subnets[h.0].1 != *segment {
                    h.1 = Some(i);
                }
            }
        }
        Self { subnets, holders }
    }

    /// Why `net` cannot be enforced: it holds the declared subnets of two
    /// or more segments.
    pub fn covered_by(&self, net: &IpNet) -> Option<String> {
        let (a, b) = self.holders.get(net)?;
        let ((na, sa), (nb, sb)) = (&self.subnets[*a], &self.subnets[(*b)?]);
        Some(format!(
            "holds the subnets of several segments ({na} of `{sa}`, {nb} of `{sb}`): a feed never isolates a share of the hospital (list addresses or narrower networks)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> OwnSubnets {
        let doc = serde_json::json!({
            "version": 1,
            "segments": [
                { "name": "pumps", "subnets": ["10.100.0.0/16", "fd00:100::/48", "10.102.0.0/16"], "life_critical": true },
                { "name": "ehr", "subnets": ["10.2.0.5/32", "10.2.0.4/32"] },
                { "name": "wards", "subnets": ["10.101.0.0/16", "fd00:101::/48"] }
            ]
        });
        let doc = serde_json::from_value(doc).unwrap();
        OwnSubnets::of(&Policy::from_doc(doc).unwrap())
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// A network holding two segments' subnets is skipped and names them;
    /// one segment's subnets (one or several), a network inside one, and
    /// a single address are enforced.
    #[test]
    fn a_network_holding_several_segments_is_named() {
        let o = own();
        for broad in [
            "10.0.0.0/9",
            "10.100.0.0/15",
            "10.96.0.0/11",
            "fd00::/17",
            "10.100.0.0/14",
        ] {
            let why = o.covered_by(&net(broad)).unwrap_or_default();
            assert!(
                why.starts_with("holds the subnets of several segments")
                    && why.contains("of `pumps`"),
                "{broad}: {why}"
            );
        }
        for one in [
            "10.100.0.0/16",
            "10.100.7.0/24",
            "10.101.0.0/16",
            "10.2.0.4/31",
            "10.2.0.5/32",
            "fd00:100::/47",
            "10.103.0.0/16",
        ] {
            assert_eq!(o.covered_by(&net(one)), None, "{one}");
        }
    }
}
