//! What the inventory knows of a device a decision names: where it was
//! seen and with which addresses, for the checks of `plan`.

use super::engine::{log, unix_now, Engine};
use std::net::IpAddr;

use crate::{
    decisions::{file_segments, life_critical, segments_of, Decision, Kind, Known},
    inventory::{history, judge::Judge, store},
};

/// The largest burst whose known devices are placed by scanning the
/// policy: at most three scans per device, against 8 ms to index 100,000.
const SCANNED_BURST: usize = 4;

impl Engine {
    /// What the inventory knows of `mac` (nothing when it cannot say).
    /// `judge` places it in the enforced policy: made at the first device
    /// the inventory knows and kept for the rest of a burst of `burst`
    /// requests. A few are placed by scanning the policy's devices, since
    /// indexing them cost 8 ms of every decision at 100,000 devices; a
    /// larger burst pays for the index once instead of scanning for each.
    pub(super) fn known(&mut self, mac: &str, judge: &mut Option<Judge>, burst: usize) -> Known {
        let Some(m) = crate::policy::parse_mac(mac) else {
            return Known::default();
        };
        let index = self.file_index.of(&self.file);
        let registered = index.by_mac(&m).map(|i| {
            let d = &self.file.devices[i];
            (d.name.clone(), self.file.segment_name(d.segment).to_owned())
        });
        let unseen = Known {
            registered: registered.clone(),
            ..Known::default()
        };
        let Ok(conn) = self.db() else {
            return unseen;
        };
        let Ok(Some(d)) = store::device(conn, &m) else {
            return unseen;
        };
        let seen = d.last_addresses();
        // Where the file placed it in a life-critical segment over the
        // last day, and addresses another device used too (see
        // `history`): the last sighting is whatever the last frame said.
        // A MAC the file registers is found by its entry on its VLAN,
        // whatever its frames say.
        let since = unix_now() - history::RECENT_S;
        let seen_life_critical = match registered {
            Some(_) => Ok(Vec::new()),
            None => history::life_critical_since(conn, &m, since),
        };
        // An address another device used is not this one's alone: a
        // quarantine that took it would judge traffic to that device (a
        // monitor whose DHCP address an attacker sent from) as to the
        // quarantine. One that cannot be checked is not taken either.
        let mut addresses = seen.clone();
        addresses.retain(|a| matches!(history::shared_since(conn, &m, a, since), Ok(false)));
        let judge = judge.get_or_insert_with(|| {
            if burst > SCANNED_BURST {
                Judge::new(self.policy.clone())
            } else {
                Judge::once(self.policy.clone())
            }
        });
        let placed = judge.place(&m, d.vlan, d.ipv4, d.ipv6);
        let mut segments = vec![self.policy.segment_name(placed.segment).to_owned()];
        if !d.segment.is_empty() {
            segments.push(d.segment.clone());
        }
        // Where a role put it is not where it is (see
        // `decisions::guard`): the enforced placement and the last
        // sighting of a device a role holds name the role's segment, so
        // they are replaced by where the file places it (by its VLAN, a
        // subnet, an entry by address) and where an admit does, judged
        // with the file's kept index (a NAS's replay of thousands of
        // sessions must not scan the file for each).
        let mac_text = crate::decisions::mac_string(&m);
        if segments_of(&self.decisions, &mac_text, Kind::Role)
            .next()
            .is_some()
        {
            let by_file =
                Judge::indexed(self.file.clone(), index.clone()).place(&m, d.vlan, d.ipv4, d.ipv6);
            segments = vec![self.file.segment_name(by_file.segment).to_owned()];
            segments.extend(segments_of(&self.decisions, &mac_text, Kind::Admit));
        }
        match seen_life_critical {
            Ok(seen) => segments.extend(seen),
            Err(e) => log(format!(
                "warning: the inventory's history of {mac} cannot be read ({e}): only its last sighting counts"
            )),
        }
        // `place` names the first owner of the addresses (IPv4 before
        // IPv6), but a quarantine moves every entry that registers one of
        // them by address alone: a pump's IPv6 entry behind a
        // workstation's IPv4 one is as life-critical as the first. Every
        // address seen counts, taken or not, as the sweep of roles counts
        // them.
        let by_address = file_segments(&self.file, &index, None, &seen);
        Known {
            registered,
            seen: true,
            vlan: d.vlan,
            addresses,
            segments,
            by_address,
        }
    }

    /// The MAC of quarantine `d` when only the inventory can say whether a
    /// life-critical device used its addresses: `None` for a decision that
    /// takes none, and for a MAC the file registers (whose quarantine takes
    /// no address) or that does not parse.
    pub(super) fn needs_inventory(&mut self, d: &Decision) -> Option<[u8; 6]> {
        if d.kind != Kind::Quarantine || d.addresses.is_empty() {
            return None;
        }
        let mac = crate::policy::parse_mac(&d.mac)?;
        let index = self.file_index.of(&self.file);
        index.by_mac(&mac).is_none().then_some(mac)
    }

    /// The addresses a quarantine must not take here: used within the
    /// day, as this host saw, by another device that is life-critical
    /// (registered there by the file, or placed there by it). The host
    /// that planned it may never have seen that device, and an address
    /// changes hands (a lease); the quarantine would judge traffic to it as
    /// to the quarantine segment, and its own frames as spoofed. A device
    /// the file registers takes no address, so none is taken from its
    /// quarantine. An error when the inventory cannot say: the caller
    /// keeps what it enforced.
    pub(super) fn life_critical_used(&mut self, d: &Decision) -> anyhow::Result<Vec<IpAddr>> {
        let Some(mac) = self.needs_inventory(d) else {
            return Ok(Vec::new());
        };
        let since = unix_now() - history::RECENT_S;
        let index = self.file_index.of(&self.file);
        let file = self.file.clone();
        let conn = self.db()?;
        let mut used = Vec::new();
        // Two queries an address, however many MACs used it.
        for a in &d.addresses {
            let registered = history::others_since(conn, &mac, a, since)?
                .into_iter()
                .filter_map(|other| index.by_mac(&other))
                .map(|i| file.segment_name(file.devices[i].segment).to_owned());
            let seen = history::life_critical_of_others_since(conn, &mac, a, since)?;
            let segments: Vec<String> = registered.chain(seen).collect();
            if life_critical(&file, &segments).is_some() {
                used.push(*a);
            }
        }
        Ok(used)
    }
}
