//! The threat-feed entries ispf does not enforce, written from the
//! README's rules rather than from the controller's code.

use ipnet::IpNet;
use ispf::policy::PolicyDoc;

/// A feed network ispf does not enforce (README, "Threat feeds"): wider
/// than /8 (IPv4) or /16 (IPv6), or holding a whole private, shared,
/// link-local, loopback or multicast block.
pub(super) fn implausible(n: &IpNet) -> bool {
    let whole = |block: &str| n.contains(&block.parse::<IpNet>().unwrap());
    match n {
        IpNet::V4(v4) => {
            v4.prefix_len() < 8
                || [
                    "10.0.0.0/8",
                    "172.16.0.0/12",
                    "192.168.0.0/16",
                    "100.64.0.0/10",
                    "169.254.0.0/16",
                    "127.0.0.0/8",
                    "224.0.0.0/4",
                ]
                .iter()
                .any(|b| whole(b))
        }
        IpNet::V6(v6) => {
            v6.prefix_len() < 16
                || ["fc00::/7", "fd00::/8", "fe80::/10", "ff00::/8", "::1/128"]
                    .iter()
                    .any(|b| whole(b))
        }
    }
}

/// A feed network holding addresses of two or more segments (a declared
/// subnet whole, or a registered device's address), unless it is a single
/// address or exactly a declared subnet (README, "Networks a feed never
/// enforces").
pub(super) fn spans_segments(doc: &PolicyDoc, n: &IpNet) -> bool {
    let declared = || {
        doc.segments
            .iter()
            .flat_map(|s| s.subnets.iter().filter_map(|x| x.parse::<IpNet>().ok()))
    };
    if n.prefix_len() == n.max_prefix_len() || declared().any(|x| x == *n) {
        return false;
    }
    let mut held: Vec<&str> = doc
        .segments
        .iter()
        .filter(|s| {
            s.subnets
                .iter()
                .filter_map(|x| x.parse::<IpNet>().ok())
                .any(|x| n.contains(&x))
        })
        .map(|s| s.name.as_str())
        .collect();
    for d in &doc.devices {
        let v4 = d
            .ipv4
            .iter()
            .flat_map(|a| a.as_slice())
            .map(|a| std::net::IpAddr::V4(*a));
        let v6 = d
            .ipv6
            .iter()
            .flat_map(|a| a.as_slice())
            .map(|a| std::net::IpAddr::V6(*a));
        if v4.chain(v6).any(|a| n.contains(&a)) {
            held.push(d.segment.as_str());
        }
    }
    held.sort_unstable();
    held.dedup();
    held.len() >= 2
}
