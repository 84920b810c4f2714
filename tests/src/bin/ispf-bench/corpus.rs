//! The synthetic hospital the benchmark measures: a policy of N devices
//! over segments with rules between them, and a corpus of distinct frames.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use ispf::policy::{Policy, PolicyDoc};
use ispf_tests::frames::*;
use serde_json::json;

/// A synthetic hospital: `devices` devices over `segments` segments, and
/// `rules` rules between segment pairs with destination ports.
pub fn synthetic_policy(devices: usize, segments: usize, rules: usize) -> Result<Policy> {
    let mut segs = Vec::new();
    for s in 0..segments {
        segs.push(json!({ "name": format!("seg-{s}"), "vlans": [100 + s], "subnets": [format!("10.{}.0.0/16", 100 + s % 100)] }));
    }
    // Subnets must be unique: keep one per segment only when it is unique.
    for seg in segs.iter_mut().skip(100) {
        seg.as_object_mut().expect("object").remove("subnets");
    }
    let mut devs = Vec::with_capacity(devices);
    for i in 0..devices {
        let seg = i % segments;
        devs.push(json!({
            "name": format!("d{i}"),
            "mac": mac_of(i),
            "ipv4": v4_of(i).to_string(),
            "ipv6": v6_of(i).to_string(),
            "segment": format!("seg-{seg}"),
        }));
    }
    let mut rs = Vec::with_capacity(rules);
    'outer: for p in 0.. {
        for a in 0..segments {
            for b in 0..segments {
                if rs.len() >= rules {
                    break 'outer;
                }
                let port = 1000 + (p * 7 + a + b) % 60000;
                rs.push(json!({
                    "from": format!("seg-{a}"), "to": format!("seg-{b}"),
                    "proto": if (a + b + p) % 2 == 0 { "tcp" } else { "udp" },
                    "ports": [port as u16], "action": if (a * 31 + b + p) % 3 == 0 { "deny" } else { "allow" },
                }));
            }
        }
    }
    // Make the benchmark's own traffic meet rules: tcp/udp 2575 and icmp
    // between every pair of the first segments are allowed.
    rs.push(json!({ "from": "*", "to": "*", "proto": "tcp", "ports": [2575], "action": "allow" }));
    rs.push(json!({ "from": "*", "to": "*", "proto": "icmp", "action": "allow" }));
    let doc = json!({ "version": 1, "defaults": { "default_action": "deny" }, "segments": segs, "devices": devs, "rules": rs });
    let doc: PolicyDoc = serde_json::from_value(doc)?;
    Policy::from_doc(doc).map_err(|p| anyhow::anyhow!("synthetic policy invalid: {}", p[0]))
}

pub fn mac_of(i: usize) -> String {
    format!(
        "02:10:{:02x}:{:02x}:{:02x}:{:02x}",
        (i >> 24) & 0xff,
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}
pub fn mac_bytes(i: usize) -> Mac {
    [
        0x02,
        0x10,
        (i >> 24) as u8,
        (i >> 16) as u8,
        (i >> 8) as u8,
        i as u8,
    ]
}
pub fn v4_of(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 100 + ((i >> 16) % 100) as u8, (i >> 8) as u8, i as u8)
}
pub fn v6_of(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, (i >> 16) as u16, i as u16)
}

/// `n` distinct frames: IPv4/IPv6 x TCP/UDP/ICMP x 0/1/2 VLAN tags x
/// allowed/denied x known/unknown devices, over many addresses so the
/// maps are not always hot.
pub fn corpus(devices: usize, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    let mut k = 0usize;
    while out.len() < n {
        let i = (k * 7919) % devices;
        let j = (k * 104_729 + 1) % devices;
        let known = k % 8 != 7; // one in eight misses every device map
        let (src, dst) = if known {
            (i, j)
        } else {
            (devices + k, devices + k + 1)
        };
        let vlans: &[u16] = match k % 3 {
            0 => &[],
            1 => &[100 + (src % 50) as u16],
            _ => &[300, 100 + (src % 50) as u16],
        };
        let allowed = k.is_multiple_of(2);
        let dport = if allowed { 2575 } else { 9 };
        let l4 = |proto: u8| match proto {
            6 => tcp(40000 + (k % 1000) as u16, dport, TCP_SYN),
            17 => udp(40000 + (k % 1000) as u16, dport, b"bench"),
            _ => icmp(if proto == 1 { 8 } else { 128 }, k as u16),
        };
        let frame = match k % 6 {
            0..=2 => {
                let proto = [6u8, 17, 1][k % 3];
                let (s, d) = if known {
                    (v4_of(src), v4_of(dst))
                } else {
                    (
                        Ipv4Addr::new(172, 16, (k >> 8) as u8, k as u8),
                        Ipv4Addr::new(172, 17, 0, 1),
                    )
                };
                eth(
                    mac_bytes(dst),
                    mac_bytes(src),
                    vlans,
                    ETH_IP,
                    &ipv4(
                        s.octets(),
                        d.octets(),
                        proto,
                        &l4(proto),
                        Frag::default(),
                        0,
                    ),
                )
            }
            _ => {
                let proto = [6u8, 17, 58][k % 3];
                let (s, d) = if known {
                    (v6_of(src), v6_of(dst))
                } else {
                    (
                        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, k as u16),
                        Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
                    )
                };
                eth(
                    mac_bytes(dst),
                    mac_bytes(src),
                    vlans,
                    ETH_IPV6,
                    &ipv6(s.octets(), d.octets(), &[], proto, &l4(proto)),
                )
            }
        };
        out.push(frame);
        k += 1;
    }
    out
}
