//! How detection reads a flow event: which device opened what, and
//! whether its packet could open a flow at all (`Shape`).

use std::net::IpAddr;

use ispf_common::{FAMILY_V4, FAMILY_V6, IPPROTO_TCP};

use super::logic::{Flow, Shape};
use crate::{
    events::EventRecord,
    policy::{compile::serves, Policy},
};

pub fn flow_of(e: &EventRecord, policy: &Policy) -> Flow {
    Flow {
        mac: e.src_mac.clone(),
        src_segment: e.src_segment.clone(),
        dst_segment: e.dst_segment.clone(),
        dst_ip: e.dst_ip.clone().unwrap_or_else(|| e.dst_mac.clone()),
        protocol: e.protocol.clone(),
        port: e.dst_port.unwrap_or(0),
        shape: shape_of(e, policy),
        src_ip: e.src_ip.clone(),
    }
}

/// A denied TCP packet that cannot open a connection (no SYN, or SYN
/// with ACK) is a reply, counting for nothing:
/// - when monitor mode passed it (`would_drop`): such connections are
///   never tracked, so both ends' packets on every one of them are judged,
///   and reported once a minute, for as long as it lasts; the server of
///   twenty of them would be a scanner;
/// - when it was dropped, and a rule allowing its destination's segment
///   to open its source port towards its source's decides that reverse
///   flow (a rule that names the port, or names both segments): a server
///   speaking on a connection its client opened, idle past conntrack's
///   `tcp` timeout. Not the default, nor a rule of `*` naming no port,
///   which would make a server of every device.
///
/// Otherwise it is `Midstream` (a scan's target: an ACK scan is a scan).
/// An allowed one is always an opening, reply-shaped or not: it opens a
/// tracked connection (picked up loose), and the SYN after it would raise
/// no event, so it must be judged as the new service it may reach.
fn shape_of(e: &EventRecord, policy: &Policy) -> Shape {
    if !e.midstream || e.event != "denied" {
        return Shape::Opening;
    }
    if e.verdict == "pass" || served(e, policy) {
        Shape::Reply
    } else {
        Shape::Midstream
    }
}

/// Whether a rule opens the packet's source port from its destination's
/// segment to its source's (see [`serves`]). Segment rules only: a feed or
/// a decision that denies the other way still leaves a client that opened
/// the connection before it.
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

    fn policy_with(default_action: &str, extra_rule: Option<serde_json::Value>) -> Policy {
        let mut doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../examples/care-unit.json")).unwrap();
        doc["defaults"]["default_action"] = default_action.into();
        if let Some(r) = extra_rule {
            doc["rules"].as_array_mut().unwrap().push(r);
        }
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

    fn shape(e: &EventRecord, p: &Policy) -> Shape {
        flow_of(e, p).shape
    }

    /// The pumps open HL7 (tcp/2575) to the server: the server's dropped
    /// packet from 2575 on a forgotten connection is a reply; from any
    /// other port, or as an opening, it is not.
    #[test]
    fn a_servers_packet_from_the_port_its_clients_open_is_a_reply() {
        let p = policy_with("deny", None);
        assert_eq!(shape(&dropped(2575), &p), Shape::Reply);
        assert_eq!(shape(&dropped(2576), &p), Shape::Midstream);
        assert_eq!(
            shape(&event(2575, false, "denied", "drop"), &p),
            Shape::Opening
        );
        assert_eq!(
            shape(&event(2576, true, "new_flow", "pass"), &p),
            Shape::Opening
        );
        // Allowed, even from the served port: it may reach a new service.
        assert_eq!(
            shape(&event(2575, true, "new_flow", "pass"), &p),
            Shape::Opening
        );
        // The pumps may not open 443 to the server (the workstations may).
        assert_eq!(shape(&dropped(443), &p), Shape::Midstream);
        let mut ws = dropped(443);
        ws.dst_segment = "clinical-workstations".into();
        assert_eq!(shape(&ws, &p), Shape::Reply);
        ws.src_ip = Some("fd00::50:10".into());
        ws.dst_ip = Some("fd00::10:11".into());
        assert_eq!(shape(&ws, &p), Shape::Reply, "IPv6 alike");
        // A segment the policy does not know (a policy reloaded since).
        ws.dst_segment = "gone".into();
        assert_eq!(shape(&ws, &p), Shape::Midstream);
        ws.dst_segment = "clinical-workstations".into();
        ws.src_ip = None;
        assert_eq!(shape(&ws, &p), Shape::Midstream);
    }

    /// Under a default `allow`, the one-way `guest → *` deny leaves every
    /// reverse pair to the default: that makes no server of every device.
    /// A rule naming both segments and no port does (`guest → world`: the
    /// world answers the guests).
    #[test]
    fn the_default_and_wildcard_rules_make_no_server() {
        let p = policy_with("allow", None);
        for port in [2576, 80, 22] {
            assert_eq!(shape(&dropped(port), &p), Shape::Midstream, "{port}");
        }
        let mut from_world = dropped(80);
        from_world.src_segment = "world".into();
        from_world.dst_segment = "guest".into();
        assert_eq!(shape(&from_world, &p), Shape::Reply);
        from_world.src_segment = "pis-servers".into();
        assert_eq!(shape(&from_world, &p), Shape::Midstream, "guest → * denies");
        assert_eq!(shape(&dropped(2575), &p), Shape::Reply);
        let pair = serde_json::json!({"from": "infusion-pumps", "to": "pis-servers",
                                      "proto": "udp", "action": "allow"});
        let p = policy_with("deny", Some(pair));
        assert_eq!(shape(&dropped(2576), &p), Shape::Midstream, "udp only");
        let pair = serde_json::json!({"from": "infusion-pumps", "to": "pis-servers",
                                      "proto": "tcp", "action": "allow"});
        let p = policy_with("deny", Some(pair));
        assert_eq!(shape(&dropped(2576), &p), Shape::Reply, "any tcp port");
    }

    /// Monitor mode passes the probe (`would_drop`) and tracks no
    /// connection: every server's packet on its clients' connections is
    /// judged, so none of them counts; a SYN still opens.
    #[test]
    fn what_monitor_mode_passes_mid_stream_is_a_reply() {
        let p = policy_with("deny", None);
        assert_eq!(
            shape(&event(8080, true, "denied", "pass"), &p),
            Shape::Reply
        );
        assert_eq!(
            shape(&event(8080, false, "denied", "pass"), &p),
            Shape::Opening
        );
    }
}
