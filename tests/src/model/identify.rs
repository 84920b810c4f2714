//! Who sent a frame and who receives it, read off the policy document in
//! the spec's order: device by MAC, router, device by IP, longest subnet,
//! VLAN, `unknown_source`; and the anti-spoofing checks.

use ipnet::IpNet;
use ispf::policy::{parse_mac, Mode};

use super::{parse::Parsed, Model, WORLD};

impl Model {
    pub(super) fn segment(&self, name: &str) -> Option<&ispf::policy::SegmentDoc> {
        self.doc.segments.iter().find(|s| s.name == name)
    }

    pub(super) fn monitor(&self, name: &str) -> bool {
        self.segment(name).is_some_and(|s| s.mode == Mode::Monitor)
    }

    pub(super) fn routers(&self) -> Vec<[u8; 6]> {
        self.doc
            .defaults
            .routers
            .iter()
            .filter_map(|r| parse_mac(r))
            .collect()
    }

    /// Index of the device whose MAC this is, honouring its VLAN scope.
    pub(super) fn device_by_mac(&self, mac: [u8; 6], vlan: u16) -> Option<usize> {
        self.doc.devices.iter().position(|d| {
            d.mac.as_deref().and_then(parse_mac) == Some(mac) && d.vlan.is_none_or(|v| v == vlan)
        })
    }

    pub(super) fn device_by_ip(&self, ip: std::net::IpAddr) -> Option<usize> {
        self.doc
            .devices
            .iter()
            .position(|d| Self::addresses(d).contains(&ip))
    }

    pub(super) fn addresses(d: &ispf::policy::DeviceDoc) -> Vec<std::net::IpAddr> {
        let mut v: Vec<std::net::IpAddr> = d
            .ipv4
            .as_ref()
            .map(|x| x.to_vec())
            .unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect();
        v.extend(
            d.ipv6
                .as_ref()
                .map(|x| x.to_vec())
                .unwrap_or_default()
                .into_iter()
                .map(std::net::IpAddr::from),
        );
        v
    }

    pub(super) fn longest_subnet(&self, ip: std::net::IpAddr) -> Option<String> {
        let mut best: Option<(u8, &str)> = None;
        for s in &self.doc.segments {
            for c in &s.subnets {
                let net: IpNet = c.parse().expect("validated CIDR");
                if net.contains(&ip) && best.is_none_or(|(l, _)| net.prefix_len() > l) {
                    best = Some((net.prefix_len(), &s.name));
                }
            }
        }
        best.map(|(_, n)| n.to_owned())
    }

    pub(super) fn by_address(&self, ip: std::net::IpAddr) -> Option<String> {
        match self.device_by_ip(ip) {
            Some(d) => Some(self.doc.devices[d].segment.clone()),
            None => self.longest_subnet(ip),
        }
    }

    pub(super) fn vlan_or_unknown(&self, vlan: u16) -> String {
        self.doc
            .segments
            .iter()
            .find(|s| vlan != 0 && s.vlans.contains(&vlan))
            .map_or_else(
                || self.doc.defaults.unknown_source.clone(),
                |s| s.name.clone(),
            )
    }

    /// Source segment, or `Err(segment)` when spoofed.
    pub(super) fn source(&self, p: &Parsed, check_spoof: bool) -> Result<String, String> {
        let src_ip = p.ip.as_ref().map(|i| i.src);
        if let Some(d) = self.device_by_mac(p.src_mac, p.vlan) {
            let dev = &self.doc.devices[d];
            // Link-local and unspecified IPv6 sources: identified by the
            // MAC alone (hosts make these addresses up).
            let self_assigned = matches!(src_ip, Some(std::net::IpAddr::V6(a))
                if a.is_unspecified() || a.segments()[0] & 0xffc0 == 0xfe80);
            if let (true, Some(ip), false) = (check_spoof, src_ip, self_assigned) {
                let own = Self::addresses(dev);
                let spoofed = if own.is_empty() {
                    self.device_by_ip(ip).is_some()
                } else {
                    !own.contains(&ip)
                };
                if spoofed {
                    return Err(dev.segment.clone());
                }
            }
            return Ok(dev.segment.clone());
        }
        if self.routers().contains(&p.src_mac) {
            return Ok(src_ip
                .and_then(|ip| self.by_address(ip))
                .unwrap_or_else(|| WORLD.into()));
        }
        if let Some(ip) = src_ip {
            if let Some(d) = self.device_by_ip(ip) {
                if check_spoof && self.doc.devices[d].mac.is_some() {
                    return Err(self.vlan_or_unknown(p.vlan));
                }
                return Ok(self.doc.devices[d].segment.clone());
            }
            if let Some(s) = self.longest_subnet(ip) {
                return Ok(s);
            }
        }
        Ok(self.vlan_or_unknown(p.vlan))
    }

    /// The spec's six steps, in its order.
    pub(super) fn destination(&self, p: &Parsed) -> String {
        if let Some(s) = p.ip.as_ref().and_then(|i| self.by_address(i.dst)) {
            return s;
        }
        let unicast = p.dst_mac[0] & 1 == 0;
        let router = self.routers().contains(&p.dst_mac);
        if unicast && !router {
            if let Some(d) = self.device_by_mac(p.dst_mac, p.vlan) {
                return self.doc.devices[d].segment.clone();
            }
        }
        if !router && p.vlan != 0 {
            if let Some(s) = self.doc.segments.iter().find(|s| s.vlans.contains(&p.vlan)) {
                return s.name.clone();
            }
        }
        if unicast && !router {
            return self.doc.defaults.unknown_source.clone();
        }
        WORLD.into()
    }
}
