//! How detection reads a flow event: which device opened what, and
//! whether its packet could open a flow at all (`Shape`).

use std::net::IpAddr;

use ispf_common::{FAMILY_V4, FAMILY_V6, IPPROTO_TCP};

use super::logic::{Flow, Shape};
use crate::{
    events::EventRecord,
    policy::{compile::allows, Policy},
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
    }
}

/// Only a denied packet is read as mid-stream: an allowed one opens a
/// tracked connection (picked up loose), and the SYN after it would raise
/// no event; it is judged as an opening. A mid-stream packet is a reply
/// when the policy passes its destination's segment to its source's on its
/// source port as an opening: a pump's HL7 connection to the server, which
/// the server speaks on after conntrack forgot it. Segment rules only: a
/// feed or a decision that denies the other way still leaves a client that
/// opened the connection before it.
fn shape_of(e: &EventRecord, policy: &Policy) -> Shape {
    if !e.midstream || e.event != "denied" {
        return Shape::Opening;
    }
    let family = match e.src_ip.as_deref().map(str::parse::<IpAddr>) {
        Some(Ok(IpAddr::V4(_))) => FAMILY_V4,
        Some(Ok(IpAddr::V6(_))) => FAMILY_V6,
        _ => return Shape::Midstream,
    };
    let ids = (
        policy.segment_id(&e.dst_segment),
        policy.segment_id(&e.src_segment),
        e.src_port,
    );
    match ids {
        (Some(client), Some(server), Some(port))
            if allows(
                policy,
                client,
                server,
                family,
                Some(IPPROTO_TCP),
                Some(port),
            ) =>
        {
            Shape::Reply
        }
        _ => Shape::Midstream,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let text = include_str!("../../../examples/care-unit.json");
        Policy::from_str(text, std::path::Path::new("care-unit.json")).expect("the example")
    }

    /// The server of the example speaking to a pump, from `sport`.
    fn event(sport: u16, midstream: bool, event: &str) -> EventRecord {
        serde_json::from_value(serde_json::json!({
            "time": "2026-12-07T22:00:00.000Z", "event": event, "interface": "br0",
            "vlan": 0, "src_mac": "02:00:00:00:50:01", "dst_mac": "02:00:00:00:10:01",
            "src_ip": "10.50.0.10", "dst_ip": "10.10.0.11", "protocol": "tcp",
            "src_port": sport, "dst_port": 41000, "src_segment": "pis-servers",
            "dst_segment": "infusion-pumps", "verdict": "drop", "reason": "denied_default",
            "rule": null, "midstream": midstream
        }))
        .expect("an event")
    }

    /// The pumps open HL7 (tcp/2575) to the server: the server's packet
    /// from 2575 on a forgotten connection is a reply; from any other
    /// port, or as an allowed packet, it is not.
    #[test]
    fn a_servers_packet_from_the_port_its_clients_open_is_a_reply() {
        let p = policy();
        assert_eq!(shape_of(&event(2575, true, "denied"), &p), Shape::Reply);
        assert_eq!(shape_of(&event(2576, true, "denied"), &p), Shape::Midstream);
        assert_eq!(shape_of(&event(2575, false, "denied"), &p), Shape::Opening);
        assert_eq!(shape_of(&event(2575, true, "new_flow"), &p), Shape::Opening);
        // The pumps may not open 443 to the server (the workstations may):
        // not a reply to a pump.
        assert_eq!(shape_of(&event(443, true, "denied"), &p), Shape::Midstream);
        let mut ws = event(443, true, "denied");
        ws.dst_segment = "clinical-workstations".into();
        assert_eq!(shape_of(&ws, &p), Shape::Reply);
        // A segment the policy does not know (a policy reloaded since).
        ws.dst_segment = "gone".into();
        assert_eq!(shape_of(&ws, &p), Shape::Midstream);
        assert_eq!(flow_of(&event(2575, true, "denied"), &p).port, 41000);
    }
}
