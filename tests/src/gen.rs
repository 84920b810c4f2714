//! Random policies and frames for the generated-case test. Addresses come
//! from small pools so that devices, subnets, routers, VLANs, rules, flows
//! and fragments actually meet; a share of frames are broken on purpose.

use rand::{rngs::StdRng, seq::SliceRandom, Rng};
use serde_json::{json, Value};

use crate::frames::*;

mod decisions;
pub use decisions::decisions;

/// The generated tests' seed: `ISPF_SEED` to replay a failure, else a
/// fresh one. Printed, so every failure can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("ISPF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("ISPF_SEED={seed}");
    seed
}

const V4_SUBNETS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.2.0.0/16",
    "192.168.7.0/24",
];
const V6_SUBNETS: &[&str] = &["fd00::/16", "fd00:1::/32", "fd00:1:2::/48", "fd00:9::/64"];
const V4_ADDRS: &[&str] = &[
    "10.1.2.3",
    "10.1.2.4",
    "10.1.9.9",
    "10.2.0.5",
    "10.9.9.9",
    "192.168.7.1",
    "172.16.0.1",
    "8.8.4.4",
];
const V6_ADDRS: &[&str] = &[
    "fd00:1:2::3",
    "fd00:1:2::4",
    "fd00:1:9::9",
    "fd00:9::5",
    "fd00:7::1",
    "2001:db8::1",
    "fe80::1",
    "::",
];
const VLANS: &[u16] = &[10, 11, 12, 13, 20];
const PORTS: &[u16] = &[22, 80, 443, 1500, 2575, 11112, 67, 68, 546, 547, 5000];

pub fn mac_n(n: u8) -> Mac {
    [0x02, 0, 0, 0, 0x10, n]
}

/// A random policy document (valid per `ispf check`: the caller retries
/// when conflicts slip in).
pub fn policy(rng: &mut StdRng) -> Value {
    let nseg = rng.gen_range(2..=5);
    let names: Vec<String> = (0..nseg).map(|i| format!("s{i}")).collect();
    let mut vlans = VLANS.to_vec();
    vlans.shuffle(rng);
    let mut subnets: Vec<&str> = V4_SUBNETS.iter().chain(V6_SUBNETS).copied().collect();
    subnets.shuffle(rng);
    let mut segments = vec![];
    for n in &names {
        let mut s = json!({ "name": n });
        if rng.gen_bool(0.4) {
            s["vlans"] = json!([vlans.pop().unwrap()]);
        }
        let k = rng.gen_range(0..=2).min(subnets.len());
        if k > 0 {
            s["subnets"] = json!(subnets.drain(..k).collect::<Vec<_>>());
        }
        if rng.gen_bool(0.2) {
            s["mode"] = json!("monitor");
        }
        if rng.gen_bool(0.3) {
            s["intra"] = json!("deny");
        }
        if rng.gen_bool(0.2) {
            s["life_critical"] = json!(true);
        }
        segments.push(s);
    }
    if rng.gen_bool(0.5) {
        segments.push(json!({ "name": "quarantine", "intra": if rng.gen_bool(0.5) { "deny" } else { "allow" } }));
    }
    let mut macs: Vec<u8> = (1..=8).collect();
    macs.shuffle(rng);
    let mut v4s = V4_ADDRS.to_vec();
    v4s.shuffle(rng);
    let mut v6s = V6_ADDRS.to_vec();
    v6s.shuffle(rng);
    let mut devices = vec![];
    for i in 0..rng.gen_range(0..=5) {
        let mut d = json!({ "name": format!("d{i}"), "segment": names.choose(rng).unwrap() });
        let with_mac = rng.gen_bool(0.75);
        if with_mac {
            let m = mac_n(macs.pop().unwrap());
            d["mac"] = json!(format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ));
            if rng.gen_bool(0.25) {
                d["vlan"] = json!(VLANS.choose(rng).unwrap());
            }
        }
        // One address, or a list of two (the datapath keeps the first
        // with the device, so the second takes its other path).
        if (rng.gen_bool(0.6) || !with_mac) && !v4s.is_empty() {
            d["ipv4"] = if rng.gen_bool(0.3) && v4s.len() >= 2 {
                json!([v4s.pop().unwrap(), v4s.pop().unwrap()])
            } else {
                json!(v4s.pop().unwrap())
            };
        }
        if rng.gen_bool(0.35) && !v6s.is_empty() {
            d["ipv6"] = if rng.gen_bool(0.3) && v6s.len() >= 2 {
                json!([v6s.pop().unwrap(), v6s.pop().unwrap()])
            } else {
                json!([v6s.pop().unwrap()])
            };
        }
        devices.push(d);
    }
    let mut routers = vec![];
    if rng.gen_bool(0.4) {
        routers.push(json!("02:00:00:00:00:fe"));
    }
    let mut ends: Vec<String> = names.clone();
    ends.extend(["world".into(), "quarantine".into(), "*".into(), "*".into()]);
    let mut rules = vec![];
    for _ in 0..rng.gen_range(0..=8) {
        let mut r = json!({
            "from": ends.choose(rng).unwrap(),
            "to": ends.choose(rng).unwrap(),
            "action": if rng.gen_bool(0.5) { "allow" } else { "deny" },
        });
        let proto = [
            None,
            Some(json!("tcp")),
            Some(json!("udp")),
            Some(json!("icmp")),
            Some(json!("sctp")),
            Some(json!(47)),
            Some(json!(6)),
        ]
        .choose(rng)
        .unwrap()
        .clone();
        if let Some(p) = proto {
            let port_proto =
                p == json!("tcp") || p == json!("udp") || p == json!("sctp") || p == json!(6);
            r["proto"] = p;
            if port_proto && rng.gen_bool(0.6) {
                let mut ports = vec![];
                for _ in 0..rng.gen_range(1..=2) {
                    if rng.gen_bool(0.3) {
                        ports.push(json!("1000-2600"));
                    } else {
                        ports.push(json!(PORTS.choose(rng).unwrap()));
                    }
                }
                r["ports"] = json!(ports);
            }
        }
        rules.push(r);
    }
    json!({
        "version": 1,
        "defaults": {
            "default_action": if rng.gen_bool(0.5) { "allow" } else { "deny" },
            "infrastructure": if rng.gen_bool(0.8) { "allow" } else { "deny" },
            "fragments": if rng.gen_bool(0.8) { "track" } else { "deny" },
            "routers": routers,
        },
        "segments": segments,
        "devices": devices,
        "rules": rules,
    })
}

fn pick_mac(rng: &mut StdRng) -> Mac {
    match rng.gen_range(0..10) {
        0 => [0xff; 6],
        1 => [0x01, 0x00, 0x5e, 0, 0, 1],
        2 => [0x02, 0, 0, 0, 0, 0xfe],
        3 => [0x02, 0, 0, 0, 0x99, rng.gen()],
        _ => mac_n(rng.gen_range(1..=8)),
    }
}

/// `frame` with another source MAC, destination MAC or VLAN id.
fn l2_variant(rng: &mut StdRng, frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    if f.len() < 14 {
        return f;
    }
    let tagged = f.len() >= 18 && matches!(u16::from_be_bytes([f[12], f[13]]), 0x8100 | 0x88a8);
    match rng.gen_range(0..3) {
        0 => f[6..12].copy_from_slice(&pick_mac(rng)),
        1 => f[0..6].copy_from_slice(&pick_mac(rng)),
        _ if tagged => {
            let vlan = *VLANS.choose(rng).unwrap();
            f[14..16].copy_from_slice(&vlan.to_be_bytes());
        }
        _ => f[6..12].copy_from_slice(&pick_mac(rng)),
    }
    f
}

/// A random frame. `flows` holds earlier frames that replies can answer.
pub fn frame(rng: &mut StdRng, earlier: &[Vec<u8>]) -> Vec<u8> {
    if !earlier.is_empty() && rng.gen_bool(0.25) {
        if let Some(r) = reply_of(earlier.choose(rng).unwrap()) {
            return r;
        }
    }
    // Later packets of earlier flows, as they are and from another sender
    // (MAC or VLAN) or to another MAC: what the datapath's flow caches must
    // get right.
    if !earlier.is_empty() && rng.gen_bool(0.15) {
        return earlier.choose(rng).unwrap().clone();
    }
    if !earlier.is_empty() && rng.gen_bool(0.1) {
        let base = earlier.choose(rng).unwrap().clone();
        return l2_variant(rng, &base);
    }
    let src = pick_mac(rng);
    let dst = pick_mac(rng);
    let vlans: Vec<u16> = match rng.gen_range(0..100) {
        0..=59 => vec![],
        60..=89 => vec![*VLANS.choose(rng).unwrap()],
        90..=97 => vec![*VLANS.choose(rng).unwrap(), *VLANS.choose(rng).unwrap()],
        _ => vec![10, 11, 12],
    };
    let frag = match rng.gen_range(0..100) {
        0..=84 => Frag::default(),
        85..=92 => Frag {
            offset: 0,
            more: true,
            id: rng.gen_range(1..4),
        },
        _ => Frag {
            offset: rng.gen_range(1..4),
            more: rng.gen_bool(0.5),
            id: rng.gen_range(1..4),
        },
    };
    let l4 = |rng: &mut StdRng, v6: bool| -> (u8, Vec<u8>) {
        let sport = if rng.gen_bool(0.5) {
            *PORTS.choose(rng).unwrap()
        } else {
            rng.gen_range(30000..30004)
        };
        let dport = if rng.gen_bool(0.8) {
            *PORTS.choose(rng).unwrap()
        } else {
            rng.gen()
        };
        match rng.gen_range(0..7) {
            0 | 1 => {
                let flags = *[
                    TCP_SYN,
                    TCP_ACK,
                    TCP_SYN | TCP_ACK,
                    TCP_FIN | TCP_ACK,
                    TCP_RST,
                ]
                .choose(rng)
                .unwrap();
                (6, tcp(sport, dport, flags))
            }
            2 => (17, udp(sport, dport, b"x")),
            3 => {
                // Echo, errors, neighbour discovery, MLD (130-132, 143).
                let kinds: &[u8] = if v6 {
                    &[128, 129, 1, 135, 134, 130, 131, 143, 144]
                } else {
                    &[8, 0, 3]
                };
                (
                    if v6 { 58 } else { 1 },
                    icmp(*kinds.choose(rng).unwrap(), rng.gen_range(1..3)),
                )
            }
            4 => (132, sctp(sport, dport)),
            5 if !v6 => (2, vec![0x16, 0, 0, 0, 224, 0, 0, 22]), // IGMP
            _ => (47, vec![0u8; 8]),
        }
    };
    let mut f = match rng.gen_range(0..100) {
        0..=49 => {
            let (proto, payload) = l4(rng, false);
            let s = v4(V4_ADDRS.choose(rng).unwrap());
            let d = v4(V4_ADDRS.choose(rng).unwrap());
            let payload = if frag.offset > 0 {
                vec![0u8; 16]
            } else {
                payload
            };
            let mut ip = ipv4(s, d, proto, &payload, frag, rng.gen_range(0..3));
            match rng.gen_range(0..40) {
                0 => ip[0] = 0x44,                                    // IHL below 5
                1 => ip[2..4].copy_from_slice(&900u16.to_be_bytes()), // longer than the frame
                2 => ip[0] = 0x65,                                    // wrong version
                _ => {}
            }
            eth(dst, src, &vlans, ETH_IP, &ip)
        }
        50..=84 => {
            let (proto, payload) = l4(rng, true);
            let s = v6(V6_ADDRS.choose(rng).unwrap());
            let d = v6(V6_ADDRS.choose(rng).unwrap());
            let mut exts = vec![];
            for _ in 0..rng.gen_range(0..=7usize).saturating_sub(3) {
                exts.push(
                    *[Ext::HopByHop, Ext::Routing, Ext::DestOpts, Ext::Auth]
                        .choose(rng)
                        .unwrap(),
                );
            }
            if frag != Frag::default() {
                exts.push(Ext::Fragment(frag));
            }
            let payload = if frag.offset > 0 {
                vec![0u8; 16]
            } else {
                payload
            };
            eth(
                dst,
                src,
                &vlans,
                ETH_IPV6,
                &ipv6(s, d, &exts, proto, &payload),
            )
        }
        85..=89 => eth(
            [0xff; 6],
            src,
            &vlans,
            ETH_ARP,
            &arp(src, v4(V4_ADDRS.choose(rng).unwrap()), v4("10.1.2.3")),
        ),
        90..=91 => eth(
            [0x01, 0x80, 0xc2, 0, 0, 0x0e],
            src,
            &vlans,
            ETH_LLDP,
            &[0u8; 16],
        ),
        92..=93 => {
            let b = stp_bpdu();
            eth([0x01, 0x80, 0xc2, 0, 0, 0], src, &vlans, b.len() as u16, &b)
        }
        _ => eth(dst, src, &vlans, 0x88b5, &[0u8; 30]),
    };
    if rng.gen_bool(0.04) {
        let cut = rng.gen_range(0..f.len());
        f.truncate(cut);
    }
    f
}

impl PartialEq for Frag {
    fn eq(&self, o: &Self) -> bool {
        (self.offset, self.more, self.id) == (o.offset, o.more, o.id)
    }
}

/// A random threat-feed set over the generator's own addresses and
/// subnets (and neighbours of them), as `(plain-format text, deny?)` per
/// feed; none in half the policies.
pub fn feeds(rng: &mut StdRng) -> Vec<(String, bool)> {
    if rng.gen_bool(0.5) {
        return Vec::new();
    }
    let pool: Vec<String> = V4_ADDRS
        .iter()
        .chain(V6_ADDRS)
        .map(|a| a.to_string())
        .chain(V4_SUBNETS.iter().chain(V6_SUBNETS).map(|s| s.to_string()))
        .chain(["10.0.0.0/8", "fd00::/8", "192.0.2.0/24", "10.1.0.0/16"].map(String::from))
        .collect();
    (0..rng.gen_range(1..=3))
        .map(|_| {
            let n = rng.gen_range(1..=4);
            let text: Vec<String> = (0..n).map(|_| pool.choose(rng).unwrap().clone()).collect();
            (text.join("\n"), rng.gen_bool(0.6))
        })
        .collect()
}
