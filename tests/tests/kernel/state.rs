//! Connection state at its limits: a full conntrack table, and the flow
//! cache following every conntrack change.

use super::*;

#[test]
fn full_map_fails_open_only_for_life_critical() {
    require_root();
    let p = care_unit();
    let mut dp = load(
        &p,
        MapSizes {
            fragments: 1,
            ..MapSizes::default()
        },
    );
    let frag = |src_mac, vlans: &[u16], src, id| {
        eth(
            mac(PIS),
            mac(src_mac),
            vlans,
            ETH_IP,
            &ipv4(
                v4(src),
                v4("10.50.0.10"),
                6,
                &tcp(1, if src_mac == WS { 443 } else { 2575 }, TCP_SYN),
                Frag {
                    offset: 0,
                    more: true,
                    id,
                },
                0,
            ),
        )
    };
    check(
        &mut dp,
        &p,
        "fills the one-entry fragment map",
        &frag(PUMP1, &[], "10.10.0.11", 1),
        true,
        "allowed",
        "infusion-pumps",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "workstation: fails closed",
        &frag(WS, &[130], "10.30.0.31", 2),
        false,
        "internal_fault",
        "clinical-workstations",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "pump (life-critical): fails open",
        &frag(PUMP2, &[], "10.10.0.12", 3),
        true,
        "allowed",
        "infusion-pumps",
        "pis-servers",
    );
}

/// The flow cache answers repeated packets of a flow; everything that
/// changes conntrack must reach packets of both directions at once.
#[test]
fn cached_flows_follow_conntrack() {
    require_root();
    let p = care_unit();
    let mut dp = load(&p, MapSizes::default());
    let pump = |flags: u8| pump_hl7(41000, flags);
    let answer = |flags: u8| reply_of(&pump(flags)).unwrap();
    let (fwd, back) = (
        ("infusion-pumps", "pis-servers"),
        ("pis-servers", "infusion-pumps"),
    );
    // Open, then enough packets both ways that both are cached.
    for i in 0..3 {
        let name = format!("pump packet {i}");
        check(
            &mut dp,
            &p,
            &name,
            &pump(TCP_ACK),
            true,
            "allowed",
            fwd.0,
            fwd.1,
        );
        let name = format!("server answer {i}");
        check(
            &mut dp,
            &p,
            &name,
            &answer(TCP_ACK),
            true,
            "reply",
            back.0,
            back.1,
        );
    }
    // The pump resets the connection: the server's cached answers go with it.
    check(
        &mut dp,
        &p,
        "pump RST",
        &pump(TCP_RST),
        true,
        "allowed",
        fwd.0,
        fwd.1,
    );
    check(
        &mut dp,
        &p,
        "answer after RST",
        &answer(TCP_ACK),
        false,
        "denied_default",
        back.0,
        back.1,
    );
    check(
        &mut dp,
        &p,
        "answer after RST, again (cached denial)",
        &answer(TCP_ACK),
        false,
        "denied_default",
        back.0,
        back.1,
    );
    // The pump opens the flow again: the cached denial of the server's
    // direction must not outlive it.
    check(
        &mut dp,
        &p,
        "pump reopens",
        &pump(TCP_SYN),
        true,
        "allowed",
        fwd.0,
        fwd.1,
    );
    check(
        &mut dp,
        &p,
        "answer to the reopened flow",
        &answer(TCP_ACK),
        true,
        "reply",
        back.0,
        back.1,
    );
    // A spoofed copy of a cached packet is judged on its own.
    let mut spoofed = answer(TCP_ACK);
    spoofed[6..12].copy_from_slice(&mac(WS));
    let o = dp.run(&spoofed).unwrap();
    assert_eq!(
        (o.pass, reason_name(o.reason).unwrap()),
        (false, "spoofed"),
        "another MAC with the server's address"
    );
    // Forgetting state (a fresh replay) forgets cached outcomes too.
    dp.reset_state().unwrap();
    check(
        &mut dp,
        &p,
        "answer after reset",
        &answer(TCP_ACK),
        false,
        "denied_default",
        back.0,
        back.1,
    );
}
