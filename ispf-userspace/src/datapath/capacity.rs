//! How big the maps are and whether a policy fits: the one capacity rule
//! that `ispf check`, `ispf run` and every reload apply.

use ispf_common::*;

use super::{access::keys_where, maps::Maps, DatapathError, Result};
use crate::policy::compile::Compiled;

/// Map sizes, for callers that need other than the defaults (large
/// policies, tests that provoke a full map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSizes {
    /// Entries of each device map (by MAC, IPv4, IPv6): both generations.
    pub devices: u32,
    /// Entries of the rule matrix: both generations.
    pub policy: u32,
    /// Conntrack entries, for each address family.
    pub conntrack: u32,
    pub fragments: u32,
    /// Counter slots: distinct (segment pair, reason, verdict, rule) keys
    /// counted at once, for both generations.
    pub counters: u32,
    /// Threat-feed addresses, for each address family: both generations.
    pub feeds: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            devices: DEFAULT_DEVICE_ENTRIES,
            policy: DEFAULT_POLICY_ENTRIES,
            conntrack: DEFAULT_CONNTRACK_ENTRIES,
            fragments: DEFAULT_FRAGMENT_ENTRIES,
            counters: DEFAULT_COUNTER_ENTRIES,
            feeds: DEFAULT_FEED_ENTRIES,
        }
    }
}

/// Map sizes asked for on the command line (`--map-size devices=N`) or in
/// the configuration; what is not asked for is sized from the policy at
/// start: two generations of it with room to grow, never below the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapSizeRequest {
    pub devices: Option<u32>,
    pub policy: Option<u32>,
    pub conntrack: Option<u32>,
    pub fragments: Option<u32>,
    pub counters: Option<u32>,
    pub feeds: Option<u32>,
}

impl MapSizeRequest {
    pub fn resolve(&self, c: &Counts) -> MapSizes {
        let d = MapSizes::default();
        let auto = |n: usize, default: u32| default.max(suggested_size(n));
        MapSizes {
            devices: self
                .devices
                .unwrap_or_else(|| auto(c.dev_mac.max(c.dev_v4).max(c.dev_v6), d.devices)),
            policy: self
                .policy
                .unwrap_or_else(|| auto(c.policy.max(c.rows), d.policy)),
            conntrack: self.conntrack.unwrap_or(d.conntrack),
            fragments: self.fragments.unwrap_or(d.fragments),
            counters: self.counters.unwrap_or(d.counters),
            feeds: self.feeds.unwrap_or(d.feeds),
        }
    }

    /// What was asked for that `have` (the pinned maps' sizes, which an
    /// adopting start keeps) does not give, as `name=asked (the pinned
    /// maps hold n)`.
    pub fn unmet(&self, have: &MapSizes) -> Vec<String> {
        [
            ("devices", self.devices, have.devices),
            ("policy", self.policy, have.policy),
            ("conntrack", self.conntrack, have.conntrack),
            ("fragments", self.fragments, have.fragments),
            ("counters", self.counters, have.counters),
            ("feeds", self.feeds, have.feeds),
        ]
        .into_iter()
        .filter_map(|(name, asked, have)| {
            asked
                .filter(|a| *a != have)
                .map(|a| format!("{name}={a} (the pinned maps hold {have})"))
        })
        .collect()
    }

    /// Takes one `NAME=ENTRIES` (`devices`, `policy`, `conntrack`,
    /// `fragments`, `counters`).
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (name, n) = spec
            .split_once('=')
            .ok_or_else(|| format!("`{spec}`: expected NAME=ENTRIES, e.g. devices=262144"))?;
        let n: u32 = n
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=1 << 28).contains(n))
            .ok_or_else(|| format!("`{spec}`: ENTRIES must be a number from 1 to 268435456"))?;
        let slot = match name.trim() {
            "devices" => &mut self.devices,
            "policy" => &mut self.policy,
            "conntrack" => &mut self.conntrack,
            "fragments" => &mut self.fragments,
            "counters" => &mut self.counters,
            "feeds" => &mut self.feeds,
            other => {
                return Err(format!(
                    "`{other}`: map sizes are devices, policy, conntrack, fragments, counters and feeds"
                ))
            }
        };
        *slot = Some(n);
        Ok(())
    }
}

/// Entries a generation holds in each map that can fill up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub dev_mac: usize,
    pub dev_v4: usize,
    pub dev_v6: usize,
    pub policy: usize,
    pub rows: usize,
    pub subnet_v4: usize,
    pub subnet_v6: usize,
    pub routers: usize,
    /// Feed entries: hosts v4, hosts v6, networks v4, networks v6.
    pub feeds: [usize; 4],
}

impl Counts {
    /// Both generations' entries together.
    pub fn plus(&self, o: &Counts) -> Counts {
        let f = |i: usize| self.feeds[i] + o.feeds[i];
        Counts {
            dev_mac: self.dev_mac + o.dev_mac,
            dev_v4: self.dev_v4 + o.dev_v4,
            dev_v6: self.dev_v6 + o.dev_v6,
            policy: self.policy + o.policy,
            rows: self.rows + o.rows,
            subnet_v4: self.subnet_v4 + o.subnet_v4,
            subnet_v6: self.subnet_v6 + o.subnet_v6,
            routers: self.routers + o.routers,
            feeds: [f(0), f(1), f(2), f(3)],
        }
    }

    pub fn of(c: &Compiled) -> Self {
        Self {
            dev_mac: c.dev_mac.len(),
            dev_v4: c.dev_v4.len(),
            dev_v6: c.dev_v6.len(),
            policy: c.policy.len(),
            rows: c.rows.len(),
            subnet_v4: c.subnet_v4.len(),
            subnet_v6: c.subnet_v6.len(),
            routers: c.routers.len(),
            feeds: [
                c.feeds.v4.len(),
                c.feeds.v6.len(),
                c.feeds.net4.len(),
                c.feeds.net6.len(),
            ],
        }
    }

    /// What generation `slot` holds, read from the maps.
    pub(super) fn scan(m: &Maps, slot: u8) -> Self {
        let n = |it: &mut dyn Iterator<Item = u8>| it.filter(|s| *s == slot).count();
        Self {
            dev_mac: keys_where(&m.dev_mac, |k| k.slot == slot).len(),
            dev_v4: keys_where(&m.dev_v4, |k| k.slot == slot).len(),
            dev_v6: keys_where(&m.dev_v6, |k| k.slot == slot).len(),
            policy: keys_where(&m.policy, |k| k.slot == slot).len(),
            rows: keys_where(&m.rows, |k| k.slot == slot).len(),
            subnet_v4: n(&mut m
                .subnet_v4
                .keys()
                .filter_map(|k| k.ok())
                .map(|k| k.data()[0])),
            subnet_v6: n(&mut m
                .subnet_v6
                .keys()
                .filter_map(|k| k.ok())
                .map(|k| k.data()[0])),
            routers: keys_where(&m.routers, |k| k.slot == slot).len(),
            feeds: m.feeds.count(slot),
        }
    }

    /// `(map, entries, capacity)` of every map these counts need.
    fn per_map(&self, z: &MapSizes) -> [(&'static str, usize, u32); 12] {
        [
            (MAP_DEV_MAC, self.dev_mac, z.devices),
            (MAP_DEV_V4, self.dev_v4, z.devices),
            (MAP_DEV_V6, self.dev_v6, z.devices),
            (MAP_POLICY, self.policy, z.policy),
            (MAP_POLICY_ROWS, self.rows, z.policy),
            (MAP_SUBNET_V4, self.subnet_v4, DEFAULT_SUBNET_ENTRIES),
            (MAP_SUBNET_V6, self.subnet_v6, DEFAULT_SUBNET_ENTRIES),
            (MAP_ROUTERS, self.routers, DEFAULT_ROUTER_ENTRIES),
            (MAP_FEED_V4, self.feeds[0], z.feeds),
            (MAP_FEED_V6, self.feeds[1], z.feeds),
            (MAP_FEED_NET4, self.feeds[2], DEFAULT_FEED_NET_ENTRIES),
            (MAP_FEED_NET6, self.feeds[3], DEFAULT_FEED_NET_ENTRIES),
        ]
    }
}

/// The `--map-size` name of a map whose size can be chosen.
fn size_name(map: &str) -> Option<&'static str> {
    match map {
        MAP_DEV_MAC | MAP_DEV_V4 | MAP_DEV_V6 => Some("devices"),
        MAP_POLICY | MAP_POLICY_ROWS => Some("policy"),
        MAP_FEED_V4 | MAP_FEED_V6 => Some("feeds"),
        _ => None,
    }
}

/// Whether a new generation `new` fits beside `kept` (the generation that
/// stays enforced while it is written). The same rule serves `ispf check`
/// (with `kept` = `new`: every policy must be replaceable by one as large)
/// and every apply.
pub fn check_fits(sizes: &MapSizes, new: &Counts, kept: &Counts) -> Result<()> {
    for ((name, n, capacity), (_, k, _)) in new.per_map(sizes).into_iter().zip(kept.per_map(sizes))
    {
        if n + k <= capacity as usize {
            continue;
        }
        let fix = match size_name(name) {
            Some(opt) => format!(
                "give ispf larger maps: --map-size {opt}={} (two generations of this policy with room to grow)",
                suggested_size(n.max(k))
            ),
            None => format!("this map's size is fixed at {capacity}; split the policy"),
        };
        return Err(DatapathError::Capacity {
            name,
            needed: n + k,
            new: n,
            kept: k,
            capacity,
            fix,
        });
    }
    Ok(())
}

/// A map size that holds two generations of `entries` with a quarter to
/// spare, rounded up to a multiple of 65,536 (not a power of two: at a
/// million devices that would double the memory for nothing).
pub fn suggested_size(entries: usize) -> u32 {
    let want = (entries * 2 + entries / 2).max(1);
    want.div_ceil(65_536).saturating_mul(65_536).min(1 << 30) as u32
}
