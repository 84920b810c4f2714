use super::*;

fn own() -> OwnSubnets {
    let doc = serde_json::json!({
        "version": 1,
        "segments": [
            { "name": "pumps", "subnets": ["10.100.0.0/16", "fd00:100::/48", "10.102.0.0/16"], "life_critical": true },
            { "name": "ehr", "subnets": ["10.2.0.5/32", "10.2.0.4/32"] },
            { "name": "wards", "subnets": ["10.101.0.0/16", "fd00:101::/48"] },
            { "name": "servers", "subnets": ["10.50.0.0/16"] },
            { "name": "pis", "subnets": ["10.50.9.0/24"] },
            { "name": "laptops", "vlans": [30] },
            { "name": "imaging", "vlans": [31] }
        ],
        "devices": [
            { "name": "lap1", "mac": "02:00:00:00:00:01", "ipv4": "10.99.0.7", "segment": "laptops" },
            { "name": "lap2", "mac": "02:00:00:00:00:02", "ipv4": "10.99.0.8", "segment": "laptops" },
            { "name": "ct", "mac": "02:00:00:00:00:03", "ipv4": "10.99.1.9", "ipv6": "fd00:99::9", "segment": "imaging" },
            { "name": "lap3", "mac": "02:00:00:00:00:04", "ipv4": "10.103.0.1", "ipv6": "fd00:99::1", "segment": "laptops" }
        ]
    });
    let doc = serde_json::from_value(doc).unwrap();
    OwnSubnets::of(&Policy::from_doc(doc).unwrap())
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A network holding two segments' subnets or devices is skipped and
/// names them; one segment's addresses, a declared subnet exactly (with
/// a carve-out inside), and a single address are enforced.
#[test]
fn a_network_holding_several_segments_is_named() {
    let o = own();
    for (broad, names) in [
        ("10.0.0.0/9", ["`pumps`", "`ehr`"]),
        ("10.100.0.0/15", ["`pumps`", "`wards`"]),
        ("10.100.0.0/14", ["`pumps`", "`wards`"]),
        ("fd00::/17", ["`pumps`", "`wards`"]),
        // Devices only: two VLAN-only segments' registered addresses.
        (
            "10.99.0.0/23",
            ["10.99.0.7 of `laptops`", "10.99.1.9 of `imaging`"],
        ),
        ("fd00:99::/120", ["`laptops`", "`imaging`"]),
        // A subnet and a device of another segment.
        (
            "10.102.0.0/15",
            ["10.102.0.0/16 of `pumps`", "10.103.0.1 of `laptops`"],
        ),
        ("10.50.8.0/21", ["10.50.9.0/24 of `pis`", "x"]),
    ] {
        let why = o.covered_by(&net(broad)).unwrap_or_default();
        if broad == "10.50.8.0/21" {
            // Only pis's subnet is whole inside, and no device: enforced.
            assert_eq!(why, "", "{broad}");
            continue;
        }
        assert!(
            why.starts_with("holds the addresses of several segments")
                && names.iter().all(|n| why.contains(n)),
            "{broad}: {why}"
        );
    }
    for one in [
        "10.100.0.0/16",
        "10.100.7.0/24",
        "10.101.0.0/16",
        // Exactly the servers' subnet, the pis carve-out inside.
        "10.50.0.0/16",
        "10.2.0.4/31",
        "10.2.0.5/32",
        "fd00:100::/47",
        "10.103.0.0/16",
        "10.99.0.0/24",
        "10.99.0.7/32",
    ] {
        assert_eq!(o.covered_by(&net(one)), None, "{one}");
    }
}

#[test]
fn points_find_two_segments_in_a_range() {
    let p = Points::new(vec![(5, 1), (1, 1), (9, 2), (7, 1), (12, 3)]);
    assert_eq!(p.two_in(0, 8), None);
    assert_eq!(p.two_in(0, 9), Some(((1, 1), (9, 2))));
    assert_eq!(p.two_in(6, 12), Some(((7, 1), (9, 2))));
    assert_eq!(p.two_in(10, 20), None);
    assert_eq!(p.two_in(13, 20), None);
    assert_eq!(Points::new(vec![]).two_in(0, u128::MAX), None);
}
