//! How the enforced policy places a device that sends: the source rules of
//! the specification ("Who is the source"), evaluated on what the
//! inventory knows of the device (MAC, VLAN, last addresses), so that
//! `ispf devices` can say where a device is and why. The datapath's own
//! placement arrives with every sighting; this answers for the devices
//! between sightings, at once after a reload or a decision.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use ipnet::IpNet;

use crate::policy::{DeviceIndex, Policy};

/// Why a device is in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// Its MAC (or, behind a router or with no MAC registered, its
    /// address) is a device of the policy file.
    Registered,
    /// Its MAC is an entry a runtime decision added (an admit, a
    /// quarantine or a role session for a MAC the file does not register).
    Decision,
    /// A gateway listed in `defaults.routers`.
    Router,
    /// Its address is in a segment's subnet.
    Subnet,
    /// Its frames carry a VLAN a segment owns.
    Vlan,
    /// None of these: `defaults.unknown_source`.
    Unknown,
}

impl Judged {
    pub fn as_str(&self) -> &'static str {
        match self {
            Judged::Registered => "registered",
            Judged::Decision => "decision",
            Judged::Router => "router",
            Judged::Subnet => "subnet",
            Judged::Vlan => "vlan",
            Judged::Unknown => "unknown",
        }
    }

    /// Whether the enforced policy names the device itself (the file or a
    /// decision), rather than placing it by where it is.
    pub fn names_device(&self) -> bool {
        matches!(self, Judged::Registered | Judged::Router | Judged::Decision)
    }
}

/// A placement: the segment id, how, and the policy device's index when a
/// device of the policy was matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub segment: u16,
    pub judged: Judged,
    pub device: Option<usize>,
}

/// The policy, ready to place devices: indexed for many (`new`), or
/// scanned for a few (`once`).
pub struct Judge {
    policy: Arc<Policy>,
    /// `None` for a judge of a few devices: a scan of the devices costs far
    /// less than indexing them (8 ms at 100,000, on every decision).
    devices: Option<Arc<DeviceIndex>>,
    routers: HashSet<[u8; 6]>,
    /// Longest prefix first.
    subnets: Vec<(IpNet, u16)>,
    vlans: HashMap<u16, u16>,
}

impl Judge {
    pub fn new(policy: Arc<Policy>) -> Self {
        Self::with(policy, true)
    }

    /// A judge for placing one device or a few (a decision's, a single
    /// listing's): it finds the policy's devices by scanning them (at most
    /// three scans per placement) instead of indexing them.
    pub fn once(policy: Arc<Policy>) -> Self {
        Self::with(policy, false)
    }

    /// A judge over `policy` with its devices' `index` made already (the
    /// engine keeps the file's).
    pub fn indexed(policy: Arc<Policy>, index: Arc<DeviceIndex>) -> Self {
        let mut j = Self::with(policy, false);
        j.devices = Some(index);
        j
    }

    fn with(policy: Arc<Policy>, indexed: bool) -> Self {
        let subnets = policy.subnets_longest_first();
        let mut vlans = HashMap::new();
        for (s, id) in policy.segments.iter().zip(&policy.ids) {
            for v in &s.vlans {
                vlans.insert(*v, *id);
            }
        }
        Self {
            routers: policy.routers.iter().copied().collect(),
            devices: indexed.then(|| Arc::new(DeviceIndex::of(&policy))),
            policy,
            subnets,
            vlans,
        }
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    // A validated policy registers a MAC or an address at most once; the
    // scans take the last, as the index's maps keep the last inserted.
    fn by_mac(&self, mac: &[u8; 6]) -> Option<usize> {
        match &self.devices {
            Some(x) => x.by_mac(mac),
            None => self
                .policy
                .devices
                .iter()
                .rposition(|d| d.mac == Some(*mac)),
        }
    }

    fn by_ip(&self, a: &IpAddr) -> Option<usize> {
        match &self.devices {
            Some(x) => x.by_ip(a),
            None => self.policy.devices.iter().rposition(|d| match a {
                IpAddr::V4(a) => d.ipv4.contains(a),
                IpAddr::V6(a) => d.ipv6.contains(a),
            }),
        }
    }

    /// The placement of the policy's device `i`: registered by the file,
    /// or added by a decision.
    fn device(&self, i: usize) -> Placement {
        Placement {
            segment: self.policy.devices[i].segment,
            judged: if i < self.policy.file_devices {
                Judged::Registered
            } else {
                Judged::Decision
            },
            device: Some(i),
        }
    }

    /// Places a device never seen (a decision names it, or the file
    /// registers it): by its MAC's registration on whatever VLAN it has,
    /// else as nothing more is known.
    pub fn place_unseen(&self, mac: &[u8; 6]) -> Placement {
        match self.by_mac(mac) {
            Some(i) => self.device(i),
            None => self.place(mac, 0, None, None),
        }
    }

    /// Places a device that sends from `mac` on `vlan` with these source
    /// addresses (the most specific first: IPv4, then IPv6).
    pub fn place(
        &self,
        mac: &[u8; 6],
        vlan: u16,
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
    ) -> Placement {
        let p = &*self.policy;
        if let Some(i) = self.by_mac(mac) {
            let d = &p.devices[i];
            if d.vlan == 0 || d.vlan == vlan {
                return self.device(i);
            }
        }
        let router = self.routers.contains(mac);
        // Link-local and unspecified IPv6 sources name no one.
        let v6 = v6.filter(|a| !a.is_unspecified() && (a.segments()[0] & 0xffc0) != 0xfe80);
        // An address of a device registered with a MAC, sent from another
        // MAC, is spoofed (the datapath drops it): it places nobody. Each
        // address is looked up once (for `once`, a scan each).
        let addrs = [v4.map(IpAddr::V4), v6.map(IpAddr::V6)]
            .map(|a| a.map(|a| (a, self.by_ip(&a))))
            .map(|a| {
                a.filter(|(_, owner)| router || owner.is_none_or(|i| p.devices[i].mac.is_none()))
            });
        for (_, owner) in addrs.iter().flatten() {
            if let Some(i) = *owner {
                return self.device(i);
            }
        }
        for (a, _) in addrs.iter().flatten() {
            if let Some((_, id)) = self.subnets.iter().find(|(n, _)| n.contains(a)) {
                return Placement {
                    segment: *id,
                    judged: Judged::Subnet,
                    device: None,
                };
            }
        }
        if router {
            return Placement {
                segment: p.world,
                judged: Judged::Router,
                device: None,
            };
        }
        match self.vlans.get(&vlan) {
            Some(id) if vlan != 0 => Placement {
                segment: *id,
                judged: Judged::Vlan,
                device: None,
            },
            _ => Placement {
                segment: p.unknown,
                judged: Judged::Unknown,
                device: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::from_str(
            r#"{"version":1,
            "defaults":{"routers":["02:00:00:00:00:fe"]},
            "segments":[
              {"name":"pumps","vlans":[20],"life_critical":true},
              {"name":"ws","subnets":["10.1.0.0/16"]},
              {"name":"servers","subnets":["10.1.2.0/24"]}],
            "devices":[
              {"name":"p1","mac":"02:00:00:00:10:01","ipv4":"10.9.0.1","segment":"pumps","vlan":20},
              {"name":"ehr","ipv4":"10.1.2.10","segment":"servers"}]}"#,
            std::path::Path::new("t.json"),
        )
        .unwrap()
    }

    #[test]
    fn places_as_the_specification_says() {
        let p = Arc::new(policy());
        for j in [Judge::new(p.clone()), Judge::once(p.clone())] {
            the_specification(&p, &j);
        }
    }

    #[test]
    fn a_judge_of_one_device_places_as_the_indexed_one() {
        let p = Arc::new(
            Policy::from_str(
                r#"{"version":1,
                "defaults":{"routers":["02:00:00:00:00:fe"]},
                "segments":[
                  {"name":"pumps","vlans":[20],"subnets":["fd20::/64"]},
                  {"name":"ws","subnets":["10.1.0.0/16"]},
                  {"name":"servers","subnets":["10.1.2.0/24"]}],
                "devices":[
                  {"name":"p1","mac":"02:00:00:00:10:01","ipv4":["10.9.0.1","10.9.0.2"],
                   "ipv6":["fd00::1","fd00::2"],"segment":"pumps","vlan":20},
                  {"name":"p2","mac":"02:00:00:00:10:02","ipv6":"fd20::7","segment":"pumps"},
                  {"name":"ehr","ipv4":"10.1.2.10","ipv6":"fd00::10","segment":"servers"}]}"#,
                std::path::Path::new("t.json"),
            )
            .unwrap(),
        );
        let (many, one) = (Judge::new(p.clone()), Judge::once(p.clone()));
        let macs = [
            [2, 0, 0, 0, 0x10, 1],
            [2, 0, 0, 0, 0x10, 2],
            [2, 0, 0, 0, 0x99, 1],
            [2, 0, 0, 0, 0, 0xfe],
        ];
        let v4s = [
            "10.1.2.10",
            "10.1.2.77",
            "10.1.7.7",
            "10.9.0.1",
            "10.9.0.2",
            "8.8.8.8",
        ];
        let v6s = [
            "fe80::1",
            "::",
            "fd00::1",
            "fd00::2",
            "fd00::10",
            "fd20::7",
            "fd20::8",
            "::ffff:10.1.2.10",
        ];
        let v4s = v4s.iter().map(|a| Some(a.parse().unwrap())).chain([None]);
        let v4s: Vec<Option<Ipv4Addr>> = v4s.collect();
        let v6s = v6s.iter().map(|a| Some(a.parse().unwrap())).chain([None]);
        let v6s: Vec<Option<Ipv6Addr>> = v6s.collect();
        for mac in &macs {
            for vlan in [0, 20, 30] {
                for v4 in &v4s {
                    for v6 in &v6s {
                        assert_eq!(
                            many.place(mac, vlan, *v4, *v6),
                            one.place(mac, vlan, *v4, *v6),
                            "{mac:?} VLAN {vlan} {v4:?} {v6:?}"
                        );
                    }
                }
            }
        }
    }

    fn the_specification(p: &Policy, j: &Judge) {
        let seg = |pl: Placement| p.segment_name(pl.segment).to_owned();
        let p1 = [2, 0, 0, 0, 0x10, 1];
        let pl = j.place(&p1, 20, None, None);
        assert_eq!((seg(pl), pl.judged), ("pumps".into(), Judged::Registered));
        // The MAC identity holds on its VLAN only; elsewhere VLAN 20's
        // owner does not apply either, so it is unknown.
        let pl = j.place(&p1, 30, None, None);
        assert_eq!((seg(pl), pl.judged), ("quarantine".into(), Judged::Unknown));
        let other = [2, 0, 0, 0, 0x99, 1];
        let pl = j.place(&other, 0, Some("10.1.2.10".parse().unwrap()), None);
        assert_eq!((seg(pl), pl.judged), ("servers".into(), Judged::Registered));
        let pl = j.place(&other, 0, Some("10.1.2.77".parse().unwrap()), None);
        assert_eq!(
            (seg(pl), pl.judged),
            ("servers".into(), Judged::Subnet),
            "longest subnet"
        );
        let pl = j.place(&other, 0, Some("10.1.7.7".parse().unwrap()), None);
        assert_eq!((seg(pl), pl.judged), ("ws".into(), Judged::Subnet));
        let pl = j.place(&other, 20, Some("192.168.0.9".parse().unwrap()), None);
        assert_eq!((seg(pl), pl.judged), ("pumps".into(), Judged::Vlan));
        let pl = j.place(&other, 0, None, Some("fe80::1".parse().unwrap()));
        assert_eq!((seg(pl), pl.judged), ("quarantine".into(), Judged::Unknown));
        // A laptop sending from a registered pump's address is not the pump.
        let pl = j.place(&other, 0, Some("10.9.0.1".parse().unwrap()), None);
        assert_eq!((seg(pl), pl.judged), ("quarantine".into(), Judged::Unknown));
        let router = [2, 0, 0, 0, 0, 0xfe];
        let pl = j.place(&router, 20, Some("8.8.8.8".parse().unwrap()), None);
        assert_eq!((seg(pl), pl.judged), ("world".into(), Judged::Router));
    }
}
