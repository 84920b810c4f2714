//! Emptying a generation slot: of what this process wrote into it, or,
//! for a slot written by another process, of whatever carries its number.

use ispf_common::*;

use super::{
    access::{
        fd, keys_where, lpm_keys_of, mac_key, port_index, segment_index, v4_key, v4_lpm, v6_key,
        v6_lpm, vlan_index,
    },
    batch::{drop_keys, zero},
    capacity::Counts,
    Datapath, DatapathError, Result,
};
use crate::{bpfsys, policy::compile::Compiled};

impl Datapath {
    /// What each generation slot holds, read from the maps: (active,
    /// inactive). For checking that the writer leaves exactly a policy's
    /// entries behind.
    pub fn slot_counts(&self) -> Result<(Counts, Counts)> {
        let active = self.active_slot()? as u8;
        Ok((
            Counts::scan(&self.maps, active),
            Counts::scan(&self.maps, 1 - active),
        ))
    }

    /// Removes everything of `c` from slot `s`. Hash entries that are not
    /// there are fine (a failed write stopped before them); a failure to
    /// reset an array entry is returned, since the entry would stay.
    pub(super) fn clear_slot(&mut self, c: &Compiled, s: u8) -> Result<()> {
        let m = &mut self.maps;
        let ids: Vec<u32> = c
            .segments
            .iter()
            .map(|(id, _)| segment_index(s, *id))
            .collect();
        zero(fd(&m.segments), MAP_SEGMENTS, &ids, SegmentInfo::default())?;
        let k: Vec<_> = c.dev_mac.iter().map(|(a, _)| mac_key(s, *a)).collect();
        drop_keys(fd(&m.dev_mac), MAP_DEV_MAC, &k)?;
        let k: Vec<_> = c.dev_v4.iter().map(|(a, _)| v4_key(s, *a)).collect();
        drop_keys(fd(&m.dev_v4), MAP_DEV_V4, &k)?;
        let k: Vec<_> = c.dev_v6.iter().map(|(a, _)| v6_key(s, *a)).collect();
        drop_keys(fd(&m.dev_v6), MAP_DEV_V6, &k)?;
        for (addr, plen, _) in &c.subnet_v4 {
            let _ = m.subnet_v4.remove(&v4_lpm(s, addr, *plen));
        }
        for (addr, plen, _) in &c.subnet_v6 {
            let _ = m.subnet_v6.remove(&v6_lpm(s, addr, *plen));
        }
        let k: Vec<_> = c.vlans.iter().map(|(v, _)| vlan_index(s, *v)).collect();
        zero(fd(&m.vlan), MAP_VLAN, &k, 0u32)?;
        let k: Vec<_> = c.routers.iter().map(|a| mac_key(s, *a)).collect();
        drop_keys(fd(&m.routers), MAP_ROUTERS, &k)?;
        let k: Vec<_> = c
            .port_classes
            .iter()
            .map(|(t, port, _)| port_index(s, *t, *port))
            .collect();
        zero(fd(&m.port_class), MAP_PORT_CLASS, &k, 0u32)?;
        let k: Vec<_> = c
            .policy
            .iter()
            .map(|(k, _)| PolicyKey { slot: s, ..*k })
            .collect();
        drop_keys(fd(&m.policy), MAP_POLICY, &k)?;
        let k: Vec<_> = c
            .rows
            .iter()
            .map(|(k, _)| PairKey { slot: s, ..*k })
            .collect();
        drop_keys(fd(&m.rows), MAP_POLICY_ROWS, &k)?;
        m.feeds.clear(&c.feeds, s)
    }

    /// Clears a slot whose contents this process did not write: every key
    /// carrying the slot, every array entry of it.
    pub(super) fn clear_slot_by_scan(&mut self, s: u8) -> Result<()> {
        let m = &mut self.maps;
        let k = keys_where(&m.dev_mac, |k| k.slot == s);
        drop_keys(fd(&m.dev_mac), MAP_DEV_MAC, &k)?;
        let k = keys_where(&m.dev_v4, |k| k.slot == s);
        drop_keys(fd(&m.dev_v4), MAP_DEV_V4, &k)?;
        let k = keys_where(&m.dev_v6, |k| k.slot == s);
        drop_keys(fd(&m.dev_v6), MAP_DEV_V6, &k)?;
        let k = keys_where(&m.routers, |k| k.slot == s);
        drop_keys(fd(&m.routers), MAP_ROUTERS, &k)?;
        let k = keys_where(&m.policy, |k| k.slot == s);
        drop_keys(fd(&m.policy), MAP_POLICY, &k)?;
        let k = keys_where(&m.rows, |k| k.slot == s);
        drop_keys(fd(&m.rows), MAP_POLICY_ROWS, &k)?;
        m.feeds.clear_by_scan(s)?;
        for k in lpm_keys_of(&m.subnet_v4, s) {
            let _ = m.subnet_v4.remove(&k);
        }
        for k in lpm_keys_of(&m.subnet_v6, s) {
            let _ = m.subnet_v6.remove(&k);
        }
        let in_slot = |i: u32, per_slot: u32| i / per_slot == s as u32;
        let used = |name, f| -> Result<Vec<u32>> {
            Ok(bpfsys::lookup_all::<u32, u32>(f)
                .map_err(|source| DatapathError::Batch { name, source })?
                .into_iter()
                .filter(|(i, v)| {
                    *v != 0
                        && in_slot(
                            *i,
                            if name == MAP_VLAN {
                                VLAN_SLOTS
                            } else {
                                PORT_TABLES * 65536
                            },
                        )
                })
                .map(|(i, _)| i)
                .collect())
        };
        let k = used(MAP_VLAN, fd(&m.vlan))?;
        zero(fd(&m.vlan), MAP_VLAN, &k, 0u32)?;
        let k = used(MAP_PORT_CLASS, fd(&m.port_class))?;
        zero(fd(&m.port_class), MAP_PORT_CLASS, &k, 0u32)?;
        let k: Vec<u32> = bpfsys::lookup_all::<u32, SegmentInfo>(fd(&m.segments))
            .map_err(|source| DatapathError::Batch {
                name: MAP_SEGMENTS,
                source,
            })?
            .into_iter()
            .filter(|(i, v)| *v != SegmentInfo::default() && in_slot(*i, MAX_SEGMENTS))
            .map(|(i, _)| i)
            .collect();
        zero(fd(&m.segments), MAP_SEGMENTS, &k, SegmentInfo::default())
    }
}
