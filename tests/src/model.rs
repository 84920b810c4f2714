//! Reference model of `shared/spec/policy.md`, written independently of the
//! datapath: it reads the policy *document* (names, not compiled ids or map
//! entries), parses frames with etherparse, and applies the spec's rules
//! literally — linear scans, no precompilation. The generated-case test
//! checks the kernel's verdicts against it.
//!
//! Conventions the spec leaves open are the ones the README documents
//! (time never advances here, so no flow or fragment expires).

use std::collections::HashMap;

use etherparse::{
    Ethernet2HeaderSlice, IpAuthHeaderSlice, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice,
    Ipv6HeaderSlice, Ipv6RawExtHeaderSlice, SingleVlanHeaderSlice, TcpHeaderSlice,
};
use ipnet::IpNet;
use ispf::policy::{parse_mac, Action, Fragments, Mode, PolicyDoc, PortDoc, ProtoDoc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub pass: bool,
    pub reason: &'static str,
    /// Segment names; `-` where none was identified (malformed frames).
    pub src: String,
    pub dst: String,
    pub rule: Option<usize>,
}

/// What the model reads out of a frame.
#[derive(Debug, Clone, Default)]
struct Parsed {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlan: u16,
    infra: bool,
    ip: Option<Ip>,
}

#[derive(Debug, Clone)]
struct Ip {
    v6: bool,
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
    proto: u8,
    /// `Some(true)`: a first fragment; `Some(false)`: a later one.
    first_fragment: Option<bool>,
    more_fragments: bool,
    frag_id: u32,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    icmp_type: u8,
}

impl Default for Ip {
    fn default() -> Self {
        let zero = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        Self {
            v6: false,
            src: zero,
            dst: zero,
            proto: 0,
            first_fragment: None,
            more_fragments: false,
            frag_id: 0,
            sport: 0,
            dport: 0,
            tcp_flags: 0,
            icmp_type: 0,
        }
    }
}

struct Malformed;

fn parse(frame: &[u8]) -> Result<Parsed, Malformed> {
    let eth = Ethernet2HeaderSlice::from_slice(frame).map_err(|_| Malformed)?;
    let mut p = Parsed {
        src_mac: eth.source(),
        dst_mac: eth.destination(),
        ..Parsed::default()
    };
    let mut ethertype = eth.ether_type().0;
    let mut rest = &frame[14..];
    let mut tags = 0;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        if tags == 2 {
            return Err(Malformed);
        }
        let tag = SingleVlanHeaderSlice::from_slice(rest).map_err(|_| Malformed)?;
        p.vlan = tag.vlan_identifier().value();
        ethertype = tag.ether_type().0;
        rest = &rest[4..];
        tags += 1;
    }
    match ethertype {
        0x0800 => p.ip = Some(parse_v4(rest)?),
        0x86dd => p.ip = Some(parse_v6(rest)?),
        0x0806 => {
            if rest.len() < 28 {
                return Err(Malformed);
            }
            p.infra = true;
        }
        0x88cc => p.infra = true,
        t if t <= 1500 => {
            if rest.len() < 3 {
                return Err(Malformed);
            }
            p.infra = rest[0] == 0x42 && rest[1] == 0x42;
        }
        _ => {}
    }
    if let Some(ip) = &p.ip {
        let dhcp = ip.proto == 17
            && ip.first_fragment != Some(false)
            && if ip.v6 {
                matches!((ip.sport, ip.dport), (546, 547) | (547, 546))
            } else {
                matches!((ip.sport, ip.dport), (68, 67) | (67, 68))
            };
        // Neighbour and router discovery, and multicast group membership:
        // MLD (ICMPv6 130-132, 143) and IGMP.
        let icmpv6 = ip.v6
            && ip.proto == 58
            && ip.first_fragment != Some(false)
            && matches!(ip.icmp_type, 130..=137 | 143);
        let igmp = !ip.v6 && ip.proto == 2 && ip.first_fragment != Some(false);
        p.infra = dhcp || icmpv6 || igmp;
    }
    Ok(p)
}

fn parse_v4(rest: &[u8]) -> Result<Ip, Malformed> {
    let h = Ipv4HeaderSlice::from_slice(rest).map_err(|_| Malformed)?;
    let hlen = h.ihl() as usize * 4;
    let total = h.total_len() as usize;
    if total < hlen || total > rest.len() {
        return Err(Malformed);
    }
    let offset = h.fragments_offset().value();
    let mut ip = Ip {
        v6: false,
        src: h.source_addr().into(),
        dst: h.destination_addr().into(),
        proto: h.protocol().0,
        more_fragments: h.more_fragments(),
        frag_id: h.identification() as u32,
        ..Ip::default()
    };
    ip.first_fragment = fragment_kind(offset, h.more_fragments());
    if ip.first_fragment != Some(false) {
        transport(&mut ip, &rest[hlen..total])?;
    }
    Ok(ip)
}

fn fragment_kind(offset: u16, more: bool) -> Option<bool> {
    if offset != 0 {
        Some(false)
    } else if more {
        Some(true)
    } else {
        None
    }
}

/// The datapath walks at most this many IPv6 extension headers.
const MAX_EXT: usize = 6;

fn parse_v6(rest: &[u8]) -> Result<Ip, Malformed> {
    let h = Ipv6HeaderSlice::from_slice(rest).map_err(|_| Malformed)?;
    let end = 40 + h.payload_length() as usize;
    if end > rest.len() {
        return Err(Malformed);
    }
    let mut ip = Ip {
        v6: true,
        src: h.source_addr().into(),
        dst: h.destination_addr().into(),
        ..Ip::default()
    };
    let mut next = h.next_header().0;
    let mut payload = &rest[40..end];
    let mut count = 0;
    loop {
        let len = match next {
            0 | 43 | 60 => {
                let e = Ipv6RawExtHeaderSlice::from_slice(payload).map_err(|_| Malformed)?;
                next = e.next_header().0;
                e.slice().len()
            }
            51 => {
                let e = IpAuthHeaderSlice::from_slice(payload).map_err(|_| Malformed)?;
                next = e.next_header().0;
                e.slice().len()
            }
            44 => {
                let f = Ipv6FragmentHeaderSlice::from_slice(payload).map_err(|_| Malformed)?;
                next = f.next_header().0;
                ip.frag_id = f.identification();
                ip.more_fragments = f.more_fragments();
                ip.first_fragment = fragment_kind(f.fragment_offset().value(), f.more_fragments());
                8
            }
            _ => break,
        };
        count += 1;
        if count > MAX_EXT {
            return Err(Malformed);
        }
        payload = &payload[len..];
        if ip.first_fragment == Some(false) {
            break;
        }
    }
    ip.proto = next;
    if ip.first_fragment != Some(false) {
        transport(&mut ip, payload)?;
    }
    Ok(ip)
}

fn transport(ip: &mut Ip, l4: &[u8]) -> Result<(), Malformed> {
    let be = |a: u8, b: u8| u16::from_be_bytes([a, b]);
    match (ip.proto, ip.v6) {
        (6, _) => {
            let t = TcpHeaderSlice::from_slice(l4).map_err(|_| Malformed)?;
            ip.sport = t.source_port();
            ip.dport = t.destination_port();
            ip.tcp_flags = l4[13];
        }
        (17, _) | (132, _) => {
            let need = if ip.proto == 17 { 8 } else { 12 };
            if l4.len() < need {
                return Err(Malformed);
            }
            ip.sport = be(l4[0], l4[1]);
            ip.dport = be(l4[2], l4[3]);
        }
        (1, false) | (58, true) => {
            if l4.len() < 8 {
                return Err(Malformed);
            }
            ip.icmp_type = l4[0];
            ip.sport = be(l4[4], l4[5]);
            ip.dport = ip.sport;
        }
        _ => {}
    }
    Ok(())
}

/// Flow key: protocol and the two endpoints, smaller endpoint first.
type FlowKey = (u8, (std::net::IpAddr, u16), (std::net::IpAddr, u16));

#[derive(Debug, Clone)]
struct Flow {
    /// Originator endpoint.
    orig: (std::net::IpAddr, u16),
    orig_src: String,
    orig_dst: String,
    reason: &'static str,
    rule: Option<usize>,
    epoch: u32,
}

pub struct Model {
    doc: PolicyDoc,
    /// Networks a `deny` feed lists (alert feeds change no verdict).
    deny_feeds: Vec<ipnet::IpNet>,
    epoch: u32,
    flows: HashMap<FlowKey, Flow>,
    fragments: HashMap<FragmentKey, Judged>,
}

/// IPv6?, source, destination, identification, protocol.
type FragmentKey = (bool, std::net::IpAddr, std::net::IpAddr, u32, u8);
/// Pass?, reason, deciding rule.
type Judged = (bool, &'static str, Option<usize>);

const WORLD: &str = "world";

impl Model {
    pub fn new(doc: PolicyDoc) -> Self {
        Self {
            doc,
            deny_feeds: Vec::new(),
            epoch: 1,
            flows: HashMap::new(),
            fragments: HashMap::new(),
        }
    }

    /// Feed contents: each feed's addresses and networks as the `plain`
    /// format writes them, and whether it denies. A change is a new
    /// generation (flows are judged again), as in the controller.
    pub fn set_feeds(&mut self, feeds: &[(String, bool)]) {
        self.deny_feeds = feeds
            .iter()
            .filter(|(_, deny)| *deny)
            .flat_map(|(text, _)| text.lines())
            .filter_map(|l| {
                let l = l.trim();
                l.parse::<ipnet::IpNet>()
                    .map(|n| n.trunc())
                    .ok()
                    .or_else(|| l.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
            })
            .collect();
    }

    fn life_critical(&self, seg: &str) -> bool {
        self.doc
            .segments
            .iter()
            .any(|s| s.name == seg && s.life_critical)
    }

    /// A policy reload: flows stay, but are re-judged before they are
    /// trusted; flows of a segment the new policy does not have end.
    pub fn reload(&mut self, doc: PolicyDoc) {
        self.doc = doc;
        self.epoch += 1;
        let exists = |name: &str| {
            name == WORLD
                || name == self.doc.defaults.unknown_source
                || self.doc.segments.iter().any(|s| s.name == name)
        };
        let ended: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| !exists(&f.orig_src) || !exists(&f.orig_dst))
            .map(|(k, _)| *k)
            .collect();
        for k in ended {
            self.flows.remove(&k);
        }
    }

    fn segment(&self, name: &str) -> Option<&ispf::policy::SegmentDoc> {
        self.doc.segments.iter().find(|s| s.name == name)
    }

    fn monitor(&self, name: &str) -> bool {
        self.segment(name).is_some_and(|s| s.mode == Mode::Monitor)
    }

    fn routers(&self) -> Vec<[u8; 6]> {
        self.doc
            .defaults
            .routers
            .iter()
            .filter_map(|r| parse_mac(r))
            .collect()
    }

    /// Index of the device whose MAC this is, honouring its VLAN scope.
    fn device_by_mac(&self, mac: [u8; 6], vlan: u16) -> Option<usize> {
        self.doc.devices.iter().position(|d| {
            d.mac.as_deref().and_then(parse_mac) == Some(mac) && d.vlan.is_none_or(|v| v == vlan)
        })
    }

    fn device_by_ip(&self, ip: std::net::IpAddr) -> Option<usize> {
        self.doc
            .devices
            .iter()
            .position(|d| Self::addresses(d).contains(&ip))
    }

    fn addresses(d: &ispf::policy::DeviceDoc) -> Vec<std::net::IpAddr> {
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

    fn longest_subnet(&self, ip: std::net::IpAddr) -> Option<String> {
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

    fn by_address(&self, ip: std::net::IpAddr) -> Option<String> {
        match self.device_by_ip(ip) {
            Some(d) => Some(self.doc.devices[d].segment.clone()),
            None => self.longest_subnet(ip),
        }
    }

    fn vlan_or_unknown(&self, vlan: u16) -> String {
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
    fn source(&self, p: &Parsed, check_spoof: bool) -> Result<String, String> {
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
    fn destination(&self, p: &Parsed) -> String {
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

    fn rule_matches(r: &ispf::policy::RuleDoc, src: &str, dst: &str, ip: &Ip) -> bool {
        if !(r.from == "*" || r.from == src) || !(r.to == "*" || r.to == dst) {
            return false;
        }
        let proto_ok = match &r.proto {
            None => true,
            Some(ProtoDoc::Number(n)) => *n == ip.proto,
            Some(ProtoDoc::Name(n)) => match n.as_str() {
                "tcp" => ip.proto == 6,
                "udp" => ip.proto == 17,
                "sctp" => ip.proto == 132,
                "icmp" => (!ip.v6 && ip.proto == 1) || (ip.v6 && ip.proto == 58),
                _ => false,
            },
        };
        let port_ok = match &r.ports {
            None => true,
            Some(ports) => ports.iter().any(|p| match p {
                PortDoc::Port(n) => *n == ip.dport,
                PortDoc::Range(s) => {
                    let (lo, hi) = s.split_once('-').expect("validated range");
                    (lo.trim().parse::<u16>().unwrap()..=hi.trim().parse::<u16>().unwrap())
                        .contains(&ip.dport)
                }
            }),
        };
        proto_ok && port_ok
    }

    /// Policy judgement of a packet as a new flow, as the spec orders it.
    fn judge_policy(&self, src: &str, dst: &str, ip: &Ip) -> (bool, &'static str, Option<usize>) {
        let rank = |r: &ispf::policy::RuleDoc| {
            let pair = match (r.from != "*", r.to != "*") {
                (true, true) => 0,
                (true, false) => 1,
                (false, true) => 2,
                (false, false) => 3,
            };
            let kind = if r.ports.is_some() {
                0
            } else if r.proto.is_some() {
                1
            } else {
                2
            };
            pair * 3 + kind
        };
        let best = self
            .doc
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| Self::rule_matches(r, src, dst, ip))
            .min_by_key(|(i, r)| (rank(r), *i));
        let (pass, reason, rule) = match best {
            Some((i, r)) if r.action == Action::Allow => (true, "allowed", Some(i)),
            Some((i, _)) => (false, "denied_rule", Some(i)),
            None if src == dst => {
                if self.segment(src).is_some_and(|s| s.intra == Action::Deny) {
                    (false, "intra_denied", None)
                } else {
                    (true, "intra_allowed", None)
                }
            }
            None if self.doc.defaults.default_action == Action::Allow => (true, "allowed", None),
            None => (false, "denied_default", None),
        };
        if !pass && (self.monitor(src) || self.monitor(dst)) {
            return (true, "would_drop", rule);
        }
        (pass, reason, rule)
    }

    /// Judges one frame and updates flow and fragment state.
    pub fn judge(&mut self, frame: &[u8]) -> Verdict {
        let v = |pass, reason, src: &str, dst: &str, rule| Verdict {
            pass,
            reason,
            src: src.into(),
            dst: dst.into(),
            rule,
        };
        let Ok(p) = parse(frame) else {
            return v(false, "malformed", "-", "-", None);
        };
        let dst = self.destination(&p);
        if p.infra {
            let src = self.source(&p, false).unwrap_or_else(|s| s);
            return v(
                self.doc.defaults.infrastructure == Action::Allow,
                "infrastructure",
                &src,
                &dst,
                None,
            );
        }
        let src = match self.source(&p, true) {
            Ok(s) => s,
            Err(s) => return v(false, "spoofed", &s, &dst, None),
        };
        let Some(ip) = p.ip.clone() else {
            let allow = self.doc.defaults.default_action == Action::Allow;
            if allow {
                return v(true, "allowed", &src, &dst, None);
            }
            let monitored = self.monitor(&src) || self.monitor(&dst);
            return v(
                monitored,
                if monitored {
                    "would_drop"
                } else {
                    "denied_default"
                },
                &src,
                &dst,
                None,
            );
        };
        // A deny feed: before fragments, flows and rules; never for a
        // life-critical segment; `would_drop` in monitor mode.
        let listed = |a: &std::net::IpAddr| self.deny_feeds.iter().any(|n| n.contains(a));
        if (listed(&ip.src) || listed(&ip.dst))
            && !self.life_critical(&src)
            && !self.life_critical(&dst)
        {
            let monitored = self.monitor(&src) || self.monitor(&dst);
            return v(
                monitored,
                if monitored {
                    "would_drop"
                } else {
                    "threat_feed"
                },
                &src,
                &dst,
                None,
            );
        }
        if ip.first_fragment.is_some() && self.doc.defaults.fragments == Fragments::Deny {
            return v(false, "fragment_untracked", &src, &dst, None);
        }
        let fkey = (ip.v6, ip.src, ip.dst, ip.frag_id, ip.proto);
        if ip.first_fragment == Some(false) {
            let Some(&(pass, reason, rule)) = self.fragments.get(&fkey) else {
                return v(false, "fragment_untracked", &src, &dst, None);
            };
            if !ip.more_fragments {
                self.fragments.remove(&fkey);
            }
            return v(pass, reason, &src, &dst, rule);
        }
        let (pass, reason, rule, reply_to) = self.judge_flow(&src, &dst, &ip);
        if ip.first_fragment == Some(true) {
            self.fragments.insert(fkey, (pass, reason, rule));
        }
        v(
            pass,
            reason,
            &src,
            reply_to.as_deref().unwrap_or(&dst),
            rule,
        )
    }

    /// Pass?, reason, rule, and the destination segment to report when it
    /// is not the packet's own (replies).
    fn judge_flow(
        &mut self,
        src: &str,
        dst: &str,
        ip: &Ip,
    ) -> (bool, &'static str, Option<usize>, Option<String>) {
        // Which packets take part in flows: TCP/UDP both ways; ICMP echo
        // requests open, echo replies answer.
        let (opens, answers_only) = match (ip.proto, ip.v6) {
            (6, _) | (17, _) => (true, false),
            (1, false) => (ip.icmp_type == 8, ip.icmp_type == 0),
            (58, true) => (ip.icmp_type == 128, ip.icmp_type == 129),
            _ => (false, false),
        };
        let rst = ip.proto == 6 && ip.tcp_flags & 0x04 != 0;
        if opens || answers_only {
            let me = (ip.src, ip.sport);
            let peer = (ip.dst, ip.dport);
            let key: FlowKey = if me <= peer {
                (ip.proto, me, peer)
            } else {
                (ip.proto, peer, me)
            };
            // The flow key ignores the address family: IPv4 and IPv6 endpoints never compare equal.
            if let Some(flow) = self.flows.get(&key).cloned() {
                let forward = flow.orig == me;
                // The sender must be in the segment recorded for its end.
                let segments_fit = if forward {
                    flow.orig_src == src
                } else {
                    flow.orig_dst == src
                };
                let direction_fits = matches!(ip.proto, 6 | 17) || forward == opens;
                if segments_fit && direction_fits {
                    let current = if flow.epoch == self.epoch {
                        Some((flow.reason, flow.rule))
                    } else {
                        let orig_ip = Ip {
                            dport: if forward { ip.dport } else { ip.sport },
                            ..ip.clone()
                        };
                        let (p, r, rule) =
                            self.judge_policy(&flow.orig_src, &flow.orig_dst, &orig_ip);
                        (p && r != "would_drop").then_some((r, rule))
                    };
                    if let Some((reason, rule)) = current {
                        let f = self.flows.get_mut(&key).expect("present");
                        f.epoch = self.epoch;
                        f.reason = reason;
                        f.rule = rule;
                        if rst {
                            self.flows.remove(&key);
                        }
                        return if forward {
                            (true, reason, rule, None)
                        } else {
                            // A reply counts towards the flow's originator.
                            (true, "reply", None, Some(flow.orig_src.clone()))
                        };
                    }
                    self.flows.remove(&key);
                }
            }
            let (pass, reason, rule) = self.judge_policy(src, dst, ip);
            if opens && pass && reason != "would_drop" && !rst {
                self.flows.insert(
                    key,
                    Flow {
                        orig: me,
                        orig_src: src.into(),
                        orig_dst: dst.into(),
                        reason,
                        rule,
                        epoch: self.epoch,
                    },
                );
            }
            return (pass, reason, rule, None);
        }
        let (pass, reason, rule) = self.judge_policy(src, dst, ip);
        (pass, reason, rule, None)
    }
}
