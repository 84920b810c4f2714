//! How detection reads a flow event: which device opened what, and
//! whether its packet could open a flow at all (`Shape`).

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use ispf_common::{FAMILY_V4, FAMILY_V6, IPPROTO_TCP};

use super::logic::{Flow, Shape};
use crate::{
    events::EventRecord,
    policy::{compile::serves, Policy},
};

/// TCP connections remembered as opened and passed; the oldest go first.
pub const OPENINGS: usize = 65_536;

/// (from address, port, to address, port) of a TCP connection.
type Conn = (String, u16, String, u16);

/// The TCP connections detection saw opened and passed (an allowed
/// east-west flow, or a monitor-mode `would_drop`), so that the other
/// end's packets on them read as replies.
#[derive(Default)]
pub struct Shapes {
    opened: HashMap<Conn, i64>,
    /// Sightings in time order; one is live while `opened` holds its time.
    order: VecDeque<(i64, Conn)>,
}

impl Shapes {
    pub fn flow_of(&mut self, e: &EventRecord, policy: &Policy, now: i64) -> Flow {
        Flow {
            mac: e.src_mac.clone(),
            src_segment: e.src_segment.clone(),
            dst_segment: e.dst_segment.clone(),
            dst_ip: e.dst_ip.clone().unwrap_or_else(|| e.dst_mac.clone()),
            protocol: e.protocol.clone(),
            port: e.dst_port.unwrap_or(0),
            shape: self.shape_of(e, policy, now),
            src_ip: e.src_ip.clone(),
        }
    }

    /// Only a denied packet is read as mid-stream: an allowed one opens a
    /// tracked connection (picked up loose), and the SYN after it would
    /// raise no event; it is judged as an opening. A mid-stream packet is
    /// a reply when it answers a connection seen opened and passed within
    /// the `tcp` timeout (a monitor-mode segment's clients, whose
    /// connections are never tracked, so every server's SYN+ACK is
    /// judged), or, dropped, when a rule opens its source port from its
    /// destination's segment to its source's: a pump's HL7 connection to
    /// the server, which the server speaks on after conntrack forgot it.
    /// Not by the default or a rule naming no port, which would make a
    /// server of every device; and not when it was passed (monitor mode),
    /// where an ACK probe reaches its target and its answer tells a
    /// scanner what is there.
    fn shape_of(&mut self, e: &EventRecord, policy: &Policy, now: i64) -> Shape {
        let ttl = i64::from(policy.doc.defaults.timeouts.tcp);
        self.expire(now - ttl);
        let conn = conn_of(e);
        if !e.midstream || e.event != "denied" {
            if let Some(c) = conn.filter(|_| e.verdict == "pass") {
                self.remember(c, now);
            }
            return Shape::Opening;
        }
        if let Some((from, sport, to, dport)) = conn {
            let reverse = (to, dport, from, sport);
            if self.opened.contains_key(&reverse) {
                self.remember(reverse, now);
                return Shape::Reply;
            }
        }
        if e.verdict == "drop" && served(e, policy) {
            Shape::Reply
        } else {
            Shape::Midstream
        }
    }

    fn remember(&mut self, c: Conn, now: i64) {
        self.opened.insert(c.clone(), now);
        self.order.push_back((now, c));
        while self.opened.len() > OPENINGS {
            self.pop_oldest();
        }
        // Repeats leave dead sightings behind.
        if self.order.len() > 2 * self.opened.len() + 64 {
            let opened = &self.opened;
            self.order.retain(|(t, c)| opened.get(c) == Some(t));
        }
    }

    fn expire(&mut self, before: i64) {
        while self.order.front().is_some_and(|(t, _)| *t <= before) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((t, c)) = self.order.pop_front() {
            if self.opened.get(&c) == Some(&t) {
                self.opened.remove(&c);
            }
        }
    }
}

fn conn_of(e: &EventRecord) -> Option<Conn> {
    if e.protocol != "tcp" {
        return None;
    }
    Some((
        e.src_ip.clone()?,
        e.src_port?,
        e.dst_ip.clone()?,
        e.dst_port?,
    ))
}

/// Whether a rule opens the packet's source port from its destination's
/// segment to its source's. Segment rules only: a feed or a decision that
/// denies the other way still leaves a client that opened the connection
/// before it.
fn served(e: &EventRecord, policy: &Policy) -> bool {
    let family = match e.src_ip.as_deref().map(str::parse::<IpAddr>) {
        Some(Ok(IpAddr::V4(_))) => FAMILY_V4,
        Some(Ok(IpAddr::V6(_))) => FAMILY_V6,
        _ => return false,
    };
    match (
        policy.segment_id(&e.dst_segment),
        policy.segment_id(&e.src_segment),
        e.src_port,
    ) {
        (Some(client), Some(server), Some(port)) => {
            serves(policy, client, server, family, IPPROTO_TCP, port)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_with(default_action: &str) -> Policy {
        let mut doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../examples/care-unit.json")).unwrap();
        doc["defaults"]["default_action"] = default_action.into();
        Policy::from_str(&doc.to_string(), std::path::Path::new("care-unit.json")).unwrap()
    }

    /// The server of the example sending to a pump from `sport`.
    fn event(sport: u16, midstream: bool, event: &str, verdict: &str) -> EventRecord {
        serde_json::from_value(serde_json::json!({
            "time": "2026-12-07T22:00:00.000Z", "event": event, "interface": "br0",
            "vlan": 0, "src_mac": "02:00:00:00:50:01", "dst_mac": "02:00:00:00:10:01",
            "src_ip": "10.50.0.10", "dst_ip": "10.10.0.11", "protocol": "tcp",
            "src_port": sport, "dst_port": 41000, "src_segment": "pis-servers",
            "dst_segment": "infusion-pumps", "verdict": verdict, "reason": "denied_default",
            "rule": null, "midstream": midstream
        }))
        .unwrap()
    }

    fn dropped(sport: u16) -> EventRecord {
        event(sport, true, "denied", "drop")
    }

    /// The pumps open HL7 (tcp/2575) to the server: the server's dropped
    /// packet from 2575 on a forgotten connection is a reply; from any
    /// other port, passed, or as an opening, it is not.
    #[test]
    fn a_servers_packet_from_the_port_its_clients_open_is_a_reply() {
        let p = policy_with("deny");
        let mut s = Shapes::default();
        let mut shape = |e: &EventRecord| s.flow_of(e, &p, 0).shape;
        assert_eq!(shape(&dropped(2575)), Shape::Reply);
        assert_eq!(shape(&dropped(2576)), Shape::Midstream);
        assert_eq!(shape(&event(2575, false, "denied", "drop")), Shape::Opening);
        assert_eq!(
            shape(&event(2575, true, "new_flow", "pass")),
            Shape::Opening
        );
        // Passed (monitor mode), the probe reached the pump.
        assert_eq!(
            shape(&event(2575, true, "denied", "pass")),
            Shape::Midstream
        );
        // The pumps may not open 443 to the server (the workstations may).
        assert_eq!(shape(&dropped(443)), Shape::Midstream);
        let mut ws = dropped(443);
        ws.dst_segment = "clinical-workstations".into();
        assert_eq!(shape(&ws), Shape::Reply);
        ws.src_ip = Some("fd00::50:10".into());
        ws.dst_ip = Some("fd00::10:11".into());
        assert_eq!(shape(&ws), Shape::Reply, "IPv6 alike");
        // A segment the policy does not know (a policy reloaded since).
        ws.dst_segment = "gone".into();
        assert_eq!(shape(&ws), Shape::Midstream);
        ws.src_ip = None;
        assert_eq!(shape(&ws), Shape::Midstream);
    }

    /// Under a default `allow`, the one-way `guest → *` deny leaves every
    /// reverse pair to the default: that must not make a server of every
    /// device, nor does a rule naming no port (`guest → world`).
    #[test]
    fn the_default_and_portless_rules_make_no_server() {
        let p = policy_with("allow");
        let mut s = Shapes::default();
        for port in [2576, 80, 22] {
            assert_eq!(s.flow_of(&dropped(port), &p, 0).shape, Shape::Midstream);
        }
        let mut from_world = dropped(80);
        from_world.src_segment = "world".into();
        from_world.dst_segment = "guest".into();
        assert_eq!(s.flow_of(&from_world, &p, 0).shape, Shape::Midstream);
        assert_eq!(s.flow_of(&dropped(2575), &p, 0).shape, Shape::Reply);
    }

    /// A monitor-mode segment's connections are never tracked: its
    /// clients' openings pass as `would_drop`, and the server's SYN+ACK is
    /// judged and denied. Answering a connection seen opened, it is a
    /// reply, within the `tcp` timeout; another connection's is not.
    #[test]
    fn an_answer_to_a_connection_seen_opened_is_a_reply() {
        let p = policy_with("deny");
        let mut s = Shapes::default();
        // pump 10.10.0.11:41000 → server 10.50.0.10:8080, passed.
        let mut open = event(41000, false, "denied", "pass");
        open.src_ip = Some("10.10.0.11".into());
        open.dst_ip = Some("10.50.0.10".into());
        open.dst_port = Some(8080);
        assert_eq!(s.flow_of(&open, &p, 100).shape, Shape::Opening);
        let mut answer = event(8080, true, "denied", "pass");
        assert_eq!(s.flow_of(&answer, &p, 101).shape, Shape::Reply);
        answer.dst_port = Some(41001);
        assert_eq!(s.flow_of(&answer, &p, 101).shape, Shape::Midstream);
        answer.dst_port = Some(41000);
        // Each answer keeps it; silent past the timeout, it is forgotten.
        let tcp = i64::from(p.doc.defaults.timeouts.tcp);
        assert_eq!(s.flow_of(&answer, &p, 100 + tcp).shape, Shape::Reply);
        assert_eq!(
            s.flow_of(&answer, &p, 101 + 2 * tcp).shape,
            Shape::Midstream
        );
        // A dropped opening is no connection.
        open.verdict = "drop".into();
        s.flow_of(&open, &p, 8000);
        assert_eq!(s.flow_of(&answer, &p, 8000).shape, Shape::Midstream);
    }

    #[test]
    fn the_connections_kept_are_bounded() {
        let p = policy_with("deny");
        let mut s = Shapes::default();
        let mut open = event(0, false, "new_flow", "pass");
        for n in 0..=OPENINGS {
            open.src_port = Some(n as u16);
            open.src_ip = Some(format!("10.10.{}.1", n >> 16));
            s.flow_of(&open, &p, 0);
        }
        assert_eq!(s.opened.len(), OPENINGS);
        assert!(s.order.len() <= 2 * OPENINGS + 64);
    }
}
