//! Random runtime decisions over a generated policy: admits, quarantines
//! and role sessions of the generator's MACs (some registered by the
//! file, some not), a quarantine sometimes carrying an address the device
//! was seen with.

use std::net::IpAddr;

use ispf::{
    decisions::{Decision, Kind},
    policy::PolicyDoc,
};
use rand::{rngs::StdRng, seq::SliceRandom, Rng};

use super::{mac_n, V4_ADDRS, V6_ADDRS};

pub fn decisions(rng: &mut StdRng, doc: &PolicyDoc) -> Vec<Decision> {
    let segments: Vec<&str> = doc.segments.iter().map(|s| s.name.as_str()).collect();
    (0..rng.gen_range(1..=3))
        .map(|_| {
            let m = mac_n(rng.gen_range(1..=8));
            let mac = m
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":");
            let kind = *[Kind::Admit, Kind::Quarantine, Kind::Role]
                .choose(rng)
                .unwrap();
            let segment =
                (kind != Kind::Quarantine).then(|| segments.choose(rng).unwrap().to_string());
            let addresses: Vec<IpAddr> = if kind == Kind::Quarantine && rng.gen_bool(0.5) {
                let pool = if rng.gen_bool(0.6) {
                    V4_ADDRS
                } else {
                    V6_ADDRS
                };
                vec![pool.choose(rng).unwrap().parse().unwrap()]
            } else {
                Vec::new()
            };
            Decision {
                mac,
                kind,
                segment,
                name: None,
                risk: None,
                reason: "generated".into(),
                forced: rng.gen_bool(0.5),
                actor: "differential".into(),
                at: 0,
                expires: None,
                addresses,
            }
        })
        .collect()
}
