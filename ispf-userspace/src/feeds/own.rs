//! The hospital's own address space as the policy file declares it: a
//! feed network that holds the addresses of two or more segments (their
//! declared subnets, or their registered devices' addresses) is skipped
//! when feeds are compiled with the file. [`super::guard`] knows only
//! the blocks every hospital uses; this knows this hospital's, so a `/9`
//! that holds all its `/16`s, or all of a flat network's devices, is
//! caught too. A network that is exactly a segment's declared subnet is
//! enforced whatever it holds, as the spec says (an ISAC may list a
//! compromised server network); so is a single address. An extension
//! where the spec is silent (README, "Networks a feed never enforces").

use std::collections::{HashMap, HashSet};

use ipnet::IpNet;

use super::guard;
use crate::policy::Policy;

/// Addresses of one family, sorted, with the segment each belongs to and,
/// for each, the next position whose segment differs: whether a range
/// holds two segments is one binary search and two reads.
#[derive(Debug, Default)]
struct Points {
    at: Vec<(u128, u16)>,
    next_other: Vec<usize>,
}

impl Points {
    fn new(mut at: Vec<(u128, u16)>) -> Self {
        at.sort_unstable();
        at.dedup();
        let mut next_other = vec![at.len(); at.len()];
        for i in (0..at.len().saturating_sub(1)).rev() {
            next_other[i] = if at[i + 1].1 != at[i].1 {
                i + 1
            } else {
                next_other[i + 1]
            };
        }
        Self { at, next_other }
    }

    /// The position of the first address in `lo..=hi`, if any.
    fn first_in(&self, lo: u128, hi: u128) -> Option<usize> {
        let i = self.at.partition_point(|(a, _)| *a < lo);
        self.at.get(i).filter(|(a, _)| *a <= hi).map(|_| i)
    }

    /// Two addresses in `lo..=hi` of different segments, if there are.
    fn two_in(&self, lo: u128, hi: u128) -> Option<((u128, u16), (u128, u16))> {
        let i = self.first_in(lo, hi)?;
        let second = *self.at.get(self.next_other[i]).filter(|(a, _)| *a <= hi)?;
        Some((self.at[i], second))
    }
}

/// The file's segments' subnets and devices' addresses, indexed so that
/// an entry is checked with a few lookups, not one comparison per
/// subnet or device.
#[derive(Debug, Default)]
pub struct OwnSubnets {
    names: HashMap<u16, String>,
    /// `(subnet, segment)` of every declared subnet.
    subnets: Vec<(IpNet, u16)>,
    exact: HashSet<IpNet>,
    /// Every network holding a declared subnet: the first subnet it
    /// holds and the first it holds of another segment, if any.
    holders: HashMap<IpNet, (usize, Option<usize>)>,
    v4: Points,
    v6: Points,
}

/// A feed entry skipped because it holds several segments: the feed's
/// position in the policy, the network, and what `ispf feeds` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub feed: usize,
    pub net: IpNet,
    pub why: String,
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
        "threat feeds: {} entr{} not enforced: {} the addresses of several segments (`ispf feeds` lists them); first, feed `{name}`: {}",
        skips.len(),
        if skips.len() == 1 { "y is" } else { "ies are" },
        if skips.len() == 1 { "it holds" } else { "they hold" },
        first.why
    ))
}

/// The log line when a generation skips other networks than the one
/// before (not when only their lines moved).
pub fn changed(before: &[Skip], after: &[Skip], policy: &Policy) -> Option<String> {
    let nets =
        |k: &[Skip]| -> std::collections::BTreeSet<IpNet> { k.iter().map(|k| k.net).collect() };
    if nets(before) == nets(after) {
        return None;
    }
    Some(summary(after, policy).unwrap_or_else(|| {
        "threat feeds: every entry is enforced: none holds several segments any more".into()
    }))
}

impl OwnSubnets {
    /// Of the policy file (runtime decisions move devices between
    /// segments, but not out of the hospital's address space).
    pub fn of(file: &Policy) -> Self {
        let mut own = Self::default();
        for (s, id) in file.segments.iter().zip(&file.ids) {
            own.names.insert(*id, s.name.clone());
            own.subnets.extend(s.subnets.iter().map(|n| (*n, *id)));
        }
        for (i, (net, segment)) in own.subnets.iter().enumerate() {
            own.exact.insert(*net);
            for l in 0..=net.prefix_len() {
                let Ok(up) = IpNet::new(net.network(), l) else {
                    continue;
                };
                let h = own.holders.entry(up.trunc()).or_insert((i, None));
                if h.1.is_none() && own.subnets[h.0].1 != *segment {
                    h.1 = Some(i);
                }
            }
        }
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for d in &file.devices {
            v4.extend(d.ipv4.iter().map(|a| (u32::from(*a) as u128, d.segment)));
            v6.extend(d.ipv6.iter().map(|a| (u128::from(*a), d.segment)));
        }
        own.v4 = Points::new(v4);
        own.v6 = Points::new(v6);
        own
    }

    fn name(&self, segment: u16) -> &str {
        self.names.get(&segment).map_or("-", String::as_str)
    }

    /// Why `net` cannot be enforced: it holds the addresses of two or
    /// more segments (and is not exactly a declared subnet).
    pub fn covered_by(&self, net: &IpNet) -> Option<String> {
        if net.prefix_len() == net.max_prefix_len() || self.exact.contains(net) {
            return None;
        }
        // What of which segment `net` holds, at most two of each kind.
        let mut held: Vec<(String, u16)> = Vec::new();
        if let Some((a, b)) = self.holders.get(net) {
            for i in std::iter::once(*a).chain(*b) {
                let (n, s) = self.subnets[i];
                held.push((n.to_string(), s));
            }
        }
        let (lo, hi) = guard::span(net);
        let points = match net {
            IpNet::V4(_) => &self.v4,
            IpNet::V6(_) => &self.v6,
        };
        // One device's segment is enough beside a subnet's.
        let one = || {
            points
                .first_in(lo, hi)
                .map(|i| (points.at[i], points.at[i]))
        };
        if let Some((x, y)) = points.two_in(lo, hi).or_else(one) {
            for (a, s) in [x, y] {
                let addr = match net {
                    IpNet::V4(_) => std::net::Ipv4Addr::from(a as u32).to_string(),
                    IpNet::V6(_) => std::net::Ipv6Addr::from(a).to_string(),
                };
                held.push((addr, s));
            }
        }
        let first = held.first()?.clone();
        let other = held.iter().find(|(_, s)| *s != first.1)?;
        Some(format!(
            "holds the addresses of several segments ({} of `{}`, {} of `{}`): a feed never isolates a share of the hospital (list addresses or narrower networks)",
            first.0,
            self.name(first.1),
            other.0,
            self.name(other.1)
        ))
    }
}

#[cfg(test)]
mod tests;
