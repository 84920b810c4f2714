//! What a reload would do to the devices the datapath last placed in a
//! life-critical segment. The file's own diff cannot see it: a monitor
//! placed by its VLAN alone leaves its segment when a new, broad subnet
//! of another segment covers its address (subnets come before VLANs), or
//! when the entry that named it goes. Said with `!` by the reload and its
//! dry run, before anything is applied.

use std::sync::Arc;

use super::engine::Engine;
use crate::{
    inventory::{
        store::{self, Device},
        Judge,
    },
    policy::Policy,
};

impl Engine {
    /// [`leaving_life_critical`] for the devices the inventory holds in the
    /// enforced policy's life-critical segments; `Err` with a warning when
    /// it cannot be read.
    pub(super) fn leaving_life_critical(
        &mut self,
        new: &Arc<Policy>,
    ) -> Result<Option<String>, String> {
        let old = self.policy.clone();
        let names: Vec<&str> = old
            .segments
            .iter()
            .filter(|s| s.life_critical)
            .map(|s| s.name.as_str())
            .collect();
        if names.is_empty() {
            return Ok(None);
        }
        let why = |e: String| {
            format!(
                "warning: the inventory could not be read to check which devices would leave life-critical segments: {e}"
            )
        };
        let conn = self.db().map_err(|e| why(crate::describe(&e)))?;
        let seen = store::devices_in(conn, &names).map_err(|e| why(e.to_string()))?;
        Ok(leaving_life_critical(&old, new, &seen))
    }
}

/// At most this many devices are named; the count says the rest.
const NAMED: usize = 10;

/// The devices among `seen` (each where the datapath last placed it)
/// that `old` places in a life-critical segment and `new` (the file and
/// the decisions that would hold) places outside every one.
pub(super) fn leaving_life_critical(
    old: &Arc<Policy>,
    new: &Arc<Policy>,
    seen: &[Device],
) -> Option<String> {
    let critical = |p: &Policy, id: u16| p.segment(id).is_some_and(|s| s.life_critical);
    // Indexing a file of many devices pays off only over many placements.
    let judge = |p: &Arc<Policy>| {
        if seen.len() > 64 {
            Judge::new(p.clone())
        } else {
            Judge::once(p.clone())
        }
    };
    let (before, after) = (judge(old), judge(new));
    let moved: Vec<String> = seen
        .iter()
        .filter_map(|d| {
            // The datapath places each packet by its own family: a
            // dual-stack device leaves when either of its addresses does.
            let families = match (d.ipv4, d.ipv6) {
                (Some(v4), Some(v6)) => vec![(Some(v4), None), (None, Some(v6))],
                both => vec![both],
            };
            let (was, is) = families.into_iter().find_map(|(v4, v6)| {
                let was = before.place(&d.mac, d.vlan, v4, v6);
                let is = after.place(&d.mac, d.vlan, v4, v6);
                (critical(old, was.segment) && !critical(new, is.segment)).then_some((was, is))
            })?;
            Some({
                let at: Vec<String> = d.last_addresses().iter().map(|a| a.to_string()).collect();
                format!(
                    "{} (VLAN {}, {}): {} -> {} ({})",
                    crate::decisions::mac_string(&d.mac),
                    d.vlan,
                    if at.is_empty() {
                        "no address".to_owned()
                    } else {
                        at.join(", ")
                    },
                    old.segment_name(was.segment),
                    new.segment_name(is.segment),
                    is.judged.as_str()
                )
            })
        })
        .collect();
    if moved.is_empty() {
        return None;
    }
    let mut line = format!(
        "! {} device(s) the datapath last placed in a life-critical segment would leave it: {}",
        moved.len(),
        moved[..moved.len().min(NAMED)].join("; ")
    );
    if moved.len() > NAMED {
        line.push_str(&format!("; and {} more", moved.len() - NAMED));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra_subnet: &str) -> Arc<Policy> {
        let text = format!(
            r#"{{"version":1,"segments":[
                {{"name":"monitors","life_critical":true,"vlans":[30]}},
                {{"name":"guest","subnets":["{extra_subnet}"]}}],
              "devices":[{{"name":"m1","mac":"02:00:00:00:10:01","segment":"monitors"}}]}}"#
        );
        Arc::new(Policy::from_str(&text, std::path::Path::new("t.json")).unwrap())
    }

    fn seen(mac: [u8; 6], vlan: u16, ip: &str) -> Device {
        Device {
            interface: "p1".into(),
            ipv4: Some(ip.parse().unwrap()),
            ..crate::inventory::store::tests::seen_device(mac, vlan, "monitors", "vlan")
        }
    }

    #[test]
    fn a_broad_subnet_over_a_vlan_placed_monitor_is_said() {
        let (old, new) = (policy("192.168.0.0/16"), policy("10.0.0.0/8"));
        // Placed by VLAN 30 alone, at an address the new subnet covers;
        // the monitor registered by its MAC stays; one elsewhere is not
        // touched.
        let devices = [
            seen([2, 0, 0, 0, 0x30, 1], 30, "10.30.0.5"),
            seen([2, 0, 0, 0, 0x10, 1], 30, "10.30.0.6"),
            seen([2, 0, 0, 0, 0x30, 2], 30, "172.16.0.9"),
        ];
        let line = leaving_life_critical(&old, &new, &devices).expect("said");
        assert_eq!(
            line,
            "! 1 device(s) the datapath last placed in a life-critical segment would leave it: 02:00:00:00:30:01 (VLAN 30, 10.30.0.5): monitors -> guest (subnet)"
        );
        assert_eq!(leaving_life_critical(&old, &old, &devices), None);
        let many: Vec<Device> = (0..12u8)
            .map(|i| seen([2, 0, 0, 0, 0x31, i], 30, &format!("10.31.0.{i}")))
            .collect();
        let line = leaving_life_critical(&old, &new, &many).unwrap();
        assert!(
            line.starts_with("! 12 device(s)") && line.ends_with("; and 2 more"),
            "{line}"
        );
    }

    /// The datapath places an IPv6 packet by its IPv6 source: a monitor
    /// whose IPv4 stays inside its segment but whose IPv6 a new subnet
    /// takes leaves it for those packets.
    #[test]
    fn a_dual_stack_device_leaves_when_either_address_does() {
        let (old, new) = (policy("fd00:1::/64"), policy("fd00:30::/64"));
        let mut m = seen([2, 0, 0, 0, 0x30, 1], 30, "10.30.0.5");
        m.ipv6 = Some("fd00:30::5".parse().unwrap());
        let line = leaving_life_critical(&old, &new, &[m]).expect("said");
        assert!(line.contains("monitors -> guest (subnet)"), "{line}");
    }
}
