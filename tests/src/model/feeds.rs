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

/// A feed network holding the declared subnets of two or more segments
/// (README, "Networks a feed never enforces"); one segment's subnets are
/// enforced as the spec says.
pub(super) fn spans_segments(doc: &PolicyDoc, n: &IpNet) -> bool {
    doc.segments
        .iter()
        .filter(|s| {
            s.subnets
                .iter()
                .filter_map(|sub| sub.parse::<IpNet>().ok())
                .any(|sub| n.contains(&sub))
        })
        .count()
        >= 2
}
