//! Fragments: denied outright by policy, reassembled in and out of order,
//! and never cached under another packet's probe.

use super::*;

#[test]
fn fragments_deny_drops_every_fragment() {
    require_root();
    let text = std::fs::read_to_string(policy_path())
        .unwrap()
        .replace(r#""fragments": "track""#, r#""fragments": "deny""#);
    let p = Policy::from_str(&text, "f.json".as_ref()).unwrap();
    let mut dp = load(&p, MapSizes::default());
    let first = eth(
        mac(PIS),
        mac(PUMP1),
        &[],
        ETH_IP,
        &ipv4(
            v4("10.10.0.11"),
            v4("10.50.0.10"),
            6,
            &tcp(1, 2575, TCP_SYN),
            Frag {
                offset: 0,
                more: true,
                id: 5,
            },
            0,
        ),
    );
    check(
        &mut dp,
        &p,
        "first fragment",
        &first,
        false,
        "fragment_untracked",
        "infusion-pumps",
        "pis-servers",
    );
    let v6frag = eth(
        mac(PIS),
        mac(MON1),
        &[],
        ETH_IPV6,
        &ipv6(
            v6("fd00:20::21"),
            v6("fd00:50::10"),
            &[Ext::Fragment(Frag {
                offset: 0,
                more: true,
                id: 9,
            })],
            6,
            &tcp(1, 2575, TCP_SYN),
        ),
    );
    check(
        &mut dp,
        &p,
        "IPv6 first fragment",
        &v6frag,
        false,
        "fragment_untracked",
        "patient-monitors",
        "pis-servers",
    );
}

#[test]
fn ipv6_fragments_in_and_out_of_order() {
    require_root();
    let p = care_unit();
    let mut dp = load(&p, MapSizes::default());
    let f = |off, more, payload: &[u8]| {
        eth(
            mac(PIS),
            mac(MON1),
            &[],
            ETH_IPV6,
            &ipv6(
                v6("fd00:20::21"),
                v6("fd00:50::10"),
                &[
                    Ext::HopByHop,
                    Ext::Fragment(Frag {
                        offset: off,
                        more,
                        id: 0xabcdef,
                    }),
                ],
                6,
                payload,
            ),
        )
    };
    check(
        &mut dp,
        &p,
        "later first",
        &f(4, false, &[0u8; 16]),
        false,
        "fragment_untracked",
        "patient-monitors",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "first",
        &f(0, true, &tcp(1, 2575, TCP_SYN)),
        true,
        "allowed",
        "patient-monitors",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "last",
        &f(4, false, &[0u8; 16]),
        true,
        "allowed",
        "patient-monitors",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "after the last, the datagram is closed",
        &f(2, true, &[0u8; 16]),
        false,
        "fragment_untracked",
        "patient-monitors",
        "pis-servers",
    );
}

/// A first fragment continuing an established flow is judged without the
/// flow cache's probe (fragments are not probed): its outcome must not be
/// cached under the key of the packet probed before it. The long
/// differential run found this after four thousand policies.
#[test]
fn a_fragment_never_enters_the_flow_cache() {
    require_root();
    let p = care_unit();
    let mut dp = load(&p, MapSizes::default());
    let pump_to_pis = |sport: u16, dport: u16, flags: u8, frag: Frag| {
        eth(
            mac(PIS),
            mac(PUMP1),
            &[],
            ETH_IP,
            &ipv4(
                v4("10.10.0.11"),
                v4("10.50.0.10"),
                6,
                &tcp(sport, dport, flags),
                frag,
                0,
            ),
        )
    };
    let hl7 = pump_to_pis(40000, 2575, TCP_SYN, Frag::default());
    check(
        &mut dp,
        &p,
        "open",
        &hl7,
        true,
        "allowed",
        "infusion-pumps",
        "pis-servers",
    );
    // Same MACs, another direction key: denied, and cached as such.
    let https = pump_to_pis(40001, 443, TCP_SYN, Frag::default());
    check(
        &mut dp,
        &p,
        "https",
        &https,
        false,
        "denied_default",
        "infusion-pumps",
        "pis-servers",
    );
    let first_fragment = pump_to_pis(
        40000,
        2575,
        TCP_ACK,
        Frag {
            offset: 0,
            more: true,
            id: 7,
        },
    );
    check(
        &mut dp,
        &p,
        "fragment of the flow",
        &first_fragment,
        true,
        "allowed",
        "infusion-pumps",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "https again",
        &https,
        false,
        "denied_default",
        "infusion-pumps",
        "pis-servers",
    );
}
