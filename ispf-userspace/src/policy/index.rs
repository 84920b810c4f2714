//! A validated policy's devices by MAC, address and name, for the callers
//! that look many up: runtime decisions checked against the enforced file
//! (`decisions::overlay`) and the inventory placing every device it knows
//! (`inventory::judge`). Positions index [`Policy::devices`].

use std::{hash::BuildHasher, net::IpAddr, sync::OnceLock};

use foldhash::{fast::RandomState as Fast, HashMap};
use hashbrown::HashTable;

use super::Policy;

/// Where a validated policy's devices are. Names are kept as positions
/// hashed by name: a copy of every name would cost megabytes at 100,000
/// devices, for an index that lives as long as its policy is enforced. They
/// are indexed at the first question about a name: the inventory, which
/// places devices by MAC and address, never asks one.
/// The keys come from the operator's policy, and lookups of keys seen in
/// traffic cannot grow the tables, so a fast hasher is safe here.
pub struct DeviceIndex {
    by_mac: HashMap<[u8; 6], usize>,
    by_ip: HashMap<IpAddr, usize>,
    names: OnceLock<HashTable<u32>>,
    hasher: Fast,
    devices: usize,
}

impl DeviceIndex {
    pub fn of(policy: &Policy) -> DeviceIndex {
        let n = policy.devices.len();
        let mut x = DeviceIndex {
            by_mac: HashMap::with_capacity_and_hasher(n, Fast::default()),
            by_ip: HashMap::with_capacity_and_hasher(n, Fast::default()),
            names: OnceLock::new(),
            hasher: Fast::default(),
            devices: n,
        };
        for (i, d) in policy.devices.iter().enumerate() {
            if let Some(m) = d.mac {
                x.by_mac.insert(m, i);
            }
            let v4 = d.ipv4.iter().map(|a| IpAddr::V4(*a));
            for a in v4.chain(d.ipv6.iter().map(|a| IpAddr::V6(*a))) {
                x.by_ip.insert(a, i);
            }
        }
        x
    }

    /// The device registered with this MAC.
    pub fn by_mac(&self, mac: &[u8; 6]) -> Option<usize> {
        self.by_mac.get(mac).copied()
    }

    /// The device registered with this address.
    pub fn by_ip(&self, a: &IpAddr) -> Option<usize> {
        self.by_ip.get(a).copied()
    }

    /// Whether `policy`, the one this index was made of, names a device `n`.
    pub fn has_name(&self, policy: &Policy, n: &str) -> bool {
        debug_assert_eq!(policy.devices.len(), self.devices, "another policy");
        let names = self.names.get_or_init(|| self.names_of(policy));
        let h = self.hasher.hash_one(n);
        names
            .find(h, |&i| policy.devices[i as usize].name == n)
            .is_some()
    }

    fn names_of(&self, policy: &Policy) -> HashTable<u32> {
        let mut t = HashTable::with_capacity(policy.devices.len());
        for (i, d) in policy.devices.iter().enumerate() {
            // Validation refused duplicate names, so each is inserted once.
            // 2^32 devices would be a document of hundreds of gigabytes.
            let at = u32::try_from(i).expect("fewer than 2^32 devices");
            let h = self.hasher.hash_one(d.name.as_str());
            t.insert_unique(h, at, |&j| {
                self.hasher
                    .hash_one(policy.devices[j as usize].name.as_str())
            });
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_found_by_mac_address_and_name() {
        let p = Policy::from_str(
            r#"{"version": 1, "segments": [{"name": "pumps"}],
                "devices": [
                  {"name": "pump-1", "mac": "02:00:00:00:00:01", "ipv4": "10.0.0.1", "segment": "pumps"},
                  {"name": "pis", "ipv6": "fd00::9", "segment": "pumps"}
                ],
                "rules": []}"#,
            std::path::Path::new("t.json"),
        )
        .unwrap();
        let x = DeviceIndex::of(&p);
        assert_eq!(x.by_mac(&[2, 0, 0, 0, 0, 1]), Some(0));
        assert_eq!(x.by_mac(&[2, 0, 0, 0, 0, 2]), None);
        assert_eq!(x.by_ip(&"10.0.0.1".parse().unwrap()), Some(0));
        assert_eq!(x.by_ip(&"fd00::9".parse().unwrap()), Some(1));
        assert_eq!(x.by_ip(&"10.0.0.2".parse().unwrap()), None);
        assert!(x.has_name(&p, "pump-1") && x.has_name(&p, "pis"));
        assert!(!x.has_name(&p, "pump-2") && !x.has_name(&p, "Pump-1"));
    }
}
