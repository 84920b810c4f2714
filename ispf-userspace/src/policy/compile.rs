//! Compiles a validated policy into map entries. The rule matrix is resolved
//! here, per segment pair, so the datapath needs a fixed, small number of
//! O(1) lookups per packet whatever the number of rules.

use ipnet::IpNet;
use ispf_common::{
    DeviceVal, PairKey, PolicyKey, PolicyRow, PolicyVal, SegmentInfo, Settings, ACTION_ALLOW,
    ACTION_DENY, DEV_HAS_IP, DEV_HAS_MAC, DEV_V4_MANY, DEV_V4_ONE, DEV_V6_MANY, DEV_V6_ONE,
    FRAGMENTS_DENY, FRAGMENTS_TRACK, SEG_INTRA_DENY, SEG_LIFE_CRITICAL, SEG_MONITOR, SEG_PRESENT,
};

pub use super::matrix::{allows, serves};
use super::{matrix, Action, Fragments, Policy};

/// Everything the datapath needs for one policy, independent of the
/// generation slot it will be written to (keys carry slot 0 here).
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// SHA-256 of what this was compiled from (see [`Policy::sha256`]);
    /// recorded in the datapath so a restarted controller can tell what it
    /// enforces.
    pub source_sha256: [u8; 32],
    pub settings: Settings,
    pub segments: Vec<(u16, SegmentInfo)>,
    pub dev_mac: Vec<([u8; 6], DeviceVal)>,
    pub dev_v4: Vec<([u8; 4], DeviceVal)>,
    pub dev_v6: Vec<([u8; 16], DeviceVal)>,
    pub subnet_v4: Vec<([u8; 4], u8, u32)>,
    pub subnet_v6: Vec<([u8; 16], u8, u32)>,
    pub vlans: Vec<(u16, u32)>,
    pub routers: Vec<[u8; 6]>,
    /// `(port table, port, class)` for every port some rule names.
    pub port_classes: Vec<(u32, u16, u32)>,
    /// One row per segment pair any rule covers (keys carry slot 0).
    pub rows: Vec<(PairKey, PolicyRow)>,
    /// The entries of pairs whose row overflows.
    pub policy: Vec<(PolicyKey, PolicyVal)>,
    /// Threat-feed entries (the feeds' contents are not in the policy:
    /// the engine adds them, see [`Compiled::with_feeds`]).
    /// Shared: a runtime decision's generation holds the same feed
    /// entries as the one before it, and the writer skips them whole.
    pub feeds: std::sync::Arc<crate::feeds::compile::CompiledFeeds>,
}

impl Compiled {
    pub fn with_feeds(
        mut self,
        feeds: impl Into<std::sync::Arc<crate::feeds::compile::CompiledFeeds>>,
    ) -> Self {
        self.feeds = feeds.into();
        self
    }
}

fn action(a: Action) -> u8 {
    match a {
        Action::Allow => ACTION_ALLOW,
        Action::Deny => ACTION_DENY,
    }
}

pub fn compile(p: &Policy) -> Compiled {
    let d = &p.doc.defaults;
    let settings = Settings {
        epoch: 0,
        world_segment: p.world,
        unknown_segment: p.unknown,
        default_action: action(d.default_action),
        infrastructure: action(d.infrastructure),
        fragments: match d.fragments {
            Fragments::Track => FRAGMENTS_TRACK,
            Fragments::Deny => FRAGMENTS_DENY,
        },
        feeds: 0,
        tcp_timeout_s: d.timeouts.tcp,
        tcp_closing_timeout_s: d.timeouts.tcp_closing,
        udp_timeout_s: d.timeouts.udp,
        icmp_timeout_s: d.timeouts.icmp,
        fragment_timeout_s: d.timeouts.fragment,
    };
    let mut c = Compiled {
        source_sha256: p.sha256,
        settings,
        ..Compiled::default()
    };
    for (s, &id) in p.segments.iter().zip(&p.ids) {
        let mut flags = SEG_PRESENT;
        if s.monitor {
            flags |= SEG_MONITOR;
        }
        if s.intra_deny {
            flags |= SEG_INTRA_DENY;
        }
        if s.life_critical {
            flags |= SEG_LIFE_CRITICAL;
        }
        c.segments.push((
            id,
            SegmentInfo {
                flags,
                _pad: [0; 3],
            },
        ));
        c.vlans.extend(s.vlans.iter().map(|v| (*v, id as u32)));
        for net in &s.subnets {
            match net {
                IpNet::V4(n) => c
                    .subnet_v4
                    .push((n.addr().octets(), n.prefix_len(), id as u32)),
                IpNet::V6(n) => c
                    .subnet_v6
                    .push((n.addr().octets(), n.prefix_len(), id as u32)),
            }
        }
    }
    for (i, dev) in p.devices.iter().enumerate() {
        let mut flags = 0;
        if dev.mac.is_some() {
            flags |= DEV_HAS_MAC;
        }
        if !dev.ipv4.is_empty() || !dev.ipv6.is_empty() {
            flags |= DEV_HAS_IP;
        }
        flags |= match dev.ipv4.len() {
            0 => 0,
            1 => DEV_V4_ONE,
            _ => DEV_V4_MANY,
        };
        flags |= match dev.ipv6.len() {
            0 => 0,
            1 => DEV_V6_ONE,
            _ => DEV_V6_MANY,
        };
        let v = DeviceVal {
            device: i as u32 + 1,
            segment: dev.segment,
            vlan: dev.vlan,
            flags,
            _pad: [0; 3],
            v4: dev.ipv4.first().map_or([0; 4], |a| a.octets()),
            v6: dev.ipv6.first().map_or([0; 16], |a| a.octets()),
        };
        if let Some(mac) = dev.mac {
            c.dev_mac.push((mac, v));
        }
        // A device may list an address twice (no clash with itself); the
        // map holds it once, and so does the count of what a slot holds.
        c.dev_v4.extend(firsts(&dev.ipv4).map(|a| (a.octets(), v)));
        c.dev_v6.extend(firsts(&dev.ipv6).map(|a| (a.octets(), v)));
    }
    c.routers = p.routers.clone();

    let m = matrix::rule_matrix(p);
    c.port_classes = m.port_classes;
    c.rows = m.rows;
    c.policy = m.policy;
    c
}

/// Each value of `l` once, at its first place.
fn firsts<T: PartialEq>(l: &[T]) -> impl Iterator<Item = &T> {
    l.iter()
        .enumerate()
        .filter(|(i, a)| !l[..*i].contains(a))
        .map(|(_, a)| a)
}

impl Compiled {
    /// Entries per map, for capacity checks and `ispf check`.
    pub fn entry_count(&self) -> usize {
        self.dev_mac.len()
            + self.dev_v4.len()
            + self.dev_v6.len()
            + self.subnet_v4.len()
            + self.subnet_v6.len()
            + self.vlans.len()
            + self.routers.len()
            + self.port_classes.len()
            + self.rows.len()
            + self.policy.len()
            + self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn an_address_listed_twice_is_one_entry() {
        let p = Policy::from_str(
            r#"{"version":1,"segments":[{"name":"a"}],"devices":[
              {"name":"d0","ipv4":["10.0.0.1","10.0.0.2","10.0.0.1"],
               "ipv6":["fd00::1","fd00::1"],"segment":"a"}]}"#,
            Path::new("t.json"),
        )
        .unwrap();
        let c = compile(&p);
        let v4: Vec<[u8; 4]> = c.dev_v4.iter().map(|(a, _)| *a).collect();
        assert_eq!(v4, vec![[10, 0, 0, 1], [10, 0, 0, 2]]);
        assert_eq!(c.dev_v6.len(), 1);
        // The device still has several addresses as far as its flags say.
        assert_ne!(c.dev_v4[0].1.flags & DEV_V4_MANY, 0);
    }
}
