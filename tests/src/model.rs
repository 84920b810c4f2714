//! Reference model of `shared/spec/policy.md`, written independently of the
//! datapath: it reads the policy *document* (names, not compiled ids or map
//! entries), parses frames with etherparse, and applies the spec's rules
//! literally — linear scans, no precompilation. The generated-case test
//! checks the kernel's verdicts against it.
//!
//! Conventions the spec leaves open are the ones the README documents
//! (time never advances here, so no flow or fragment expires).

pub mod decisions;
mod feeds;
mod identify;
mod parse;

use std::collections::HashMap;

use ispf::policy::{Action, Fragments, PolicyDoc, PortDoc, ProtoDoc};
use parse::{parse, Ip};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub pass: bool,
    pub reason: &'static str,
    /// Segment names; `-` where none was identified (malformed frames).
    pub src: String,
    pub dst: String,
    pub rule: Option<usize>,
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
    /// The policy file: `doc` without the runtime decisions. Feeds are
    /// judged against the file's segments (the README: the file decides,
    /// not the decisions).
    file: PolicyDoc,
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
            file: doc.clone(),
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
            .filter(|n| !feeds::implausible(n))
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
        self.file = doc.clone();
        self.decide(doc);
    }

    /// Runtime decisions over the file: `doc` is the file with them
    /// applied, a new generation like a reload.
    pub fn decide(&mut self, doc: PolicyDoc) {
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
        let listed = |a: &std::net::IpAddr| {
            self.deny_feeds
                .iter()
                .any(|n| n.contains(a) && !feeds::spans_segments(&self.file, n))
        };
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
