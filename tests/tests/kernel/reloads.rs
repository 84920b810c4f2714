//! Reloads under live flows: flows the new policy forbids end, segment
//! ids survive, and large segment pairs keep every port's rule.

use super::*;

#[test]
fn reload_ends_flows_the_new_policy_forbids() {
    require_root();
    let p = care_unit();
    let mut dp = load(&p, MapSizes::default());
    let open = pump_hl7(41000, TCP_SYN);
    let ws = eth(
        mac(PIS),
        mac(WS),
        &[130],
        ETH_IP,
        &ipv4(
            v4("10.30.0.31"),
            v4("10.50.0.10"),
            6,
            &tcp(41001, 443, TCP_SYN),
            Frag::default(),
            0,
        ),
    );
    check(
        &mut dp,
        &p,
        "pump flow",
        &open,
        true,
        "allowed",
        "infusion-pumps",
        "pis-servers",
    );
    check(
        &mut dp,
        &p,
        "workstation flow",
        &ws,
        true,
        "allowed",
        "clinical-workstations",
        "pis-servers",
    );
    // New policy: the pump rule is gone, the workstation rule stays.
    let text = std::fs::read_to_string(policy_path()).unwrap().replace(
        r#""ports": [2575], "action": "allow" },
    { "id": "monitor-hl7""#,
        r#""ports": [2575], "action": "deny" },
    { "id": "monitor-hl7""#,
    );
    let p2 = Policy::from_str(&text, "p2.json".as_ref()).unwrap();
    let epoch = dp.apply(&compile(&p2)).unwrap();
    assert_eq!(epoch, 2);
    check(
        &mut dp,
        &p2,
        "reply on a flow the new policy denies",
        &reply_of(&open).unwrap(),
        false,
        "denied_default",
        "pis-servers",
        "infusion-pumps",
    );
    check(
        &mut dp,
        &p2,
        "pump flow continues",
        &open,
        false,
        "denied_rule",
        "infusion-pumps",
        "pis-servers",
    );
    check(
        &mut dp,
        &p2,
        "reply on a flow still allowed",
        &reply_of(&ws).unwrap(),
        true,
        "reply",
        "pis-servers",
        "clinical-workstations",
    );
}

/// Segment ids survive reloads: a segment added at the top of the file does
/// not renumber the others under live flows, and removing a segment ends
/// its flows rather than handing them to whatever takes its id later.
#[test]
fn reloads_keep_segment_ids_under_live_flows() {
    require_root();
    let p = care_unit();
    let mut dp = load(&p, MapSizes::default());
    let pump = pump_hl7(41000, TCP_SYN);
    let answer = reply_of(&pump).unwrap();
    let pumps = ("infusion-pumps", "pis-servers");
    check(
        &mut dp, &p, "open", &pump, true, "allowed", pumps.0, pumps.1,
    );
    let text = std::fs::read_to_string(policy_path()).unwrap();
    let added = text.replace(
        r#""segments": ["#,
        r#""segments": [
    { "name": "imaging" },"#,
    );
    let mut p2 = Policy::from_str(&added, "p2.json".as_ref()).unwrap();
    assert_eq!(
        p2.segment_id("imaging"),
        Some(1),
        "positions before keep_ids"
    );
    dp.replace_policy(&p, &mut p2).unwrap();
    assert_eq!(
        p2.segment_id("infusion-pumps"),
        p.segment_id("infusion-pumps")
    );
    let imaging = p2.segment_id("imaging").unwrap();
    assert!(
        !p.segment_ids().values().any(|id| *id == imaging),
        "a new segment takes an id no segment had"
    );
    check(
        &mut dp,
        &p2,
        "answer after a segment was added",
        &answer,
        true,
        "reply",
        pumps.1,
        pumps.0,
    );
    check(
        &mut dp,
        &p2,
        "flow continues",
        &pump,
        true,
        "allowed",
        pumps.0,
        pumps.1,
    );

    // The pumps' segment goes (the pump is unregistered now: quarantine).
    let removed = added
        .replace(
            r#"    { "name": "infusion-pumps", "life_critical": true },"#,
            "",
        )
        .replace(r#""segment": "infusion-pumps""#, r#""segment": "guest""#)
        .replace(r#""from": "infusion-pumps""#, r#""from": "guest""#)
        .replace(r#""to": "infusion-pumps""#, r#""to": "guest""#);
    let pumps_id = p2.segment_id("infusion-pumps").unwrap();
    assert!(dp.counters().keys().any(|k| k.src == pumps_id));
    let mut p3 = Policy::from_str(&removed, "p3.json".as_ref()).unwrap();
    dp.replace_policy(&p2, &mut p3).unwrap();
    assert_eq!(p3.segment_id("infusion-pumps"), None);
    assert!(
        !dp.counters()
            .keys()
            .any(|k| k.src == pumps_id || k.dst == pumps_id),
        "a removed segment's counters go with it"
    );
    check(
        &mut dp,
        &p3,
        "the server's answer once the pumps' segment is gone",
        &answer,
        false,
        "denied_default",
        "pis-servers",
        "guest",
    );
}

/// A segment pair with more compiled entries than a row holds keeps them
/// in the entry map: every port still gets its rule.
#[test]
fn a_pair_with_more_entries_than_a_row_holds() {
    require_root();
    let ports: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"from":"a","to":"b","proto":"tcp","ports":[{}],"action":"allow"}}"#,
                1001 + i
            )
        })
        .collect();
    let text = format!(
        r#"{{"version":1,"segments":[{{"name":"a"}},{{"name":"b"}}],
        "devices":[{{"name":"x","mac":"{PUMP1}","ipv4":"10.0.0.1","segment":"a"}},
                   {{"name":"y","mac":"{PIS}","ipv4":"10.0.0.2","segment":"b"}}],
        "rules":[{},{{"from":"a","to":"b","proto":"udp","action":"deny"}},
                 {{"from":"a","to":"b","action":"allow"}}]}}"#,
        ports.join(",")
    );
    let p = Policy::from_str(&text, "rows.json".as_ref()).unwrap();
    let c = compile(&p);
    let (a, b) = (p.segment_id("a").unwrap(), p.segment_id("b").unwrap());
    let row = c
        .rows
        .iter()
        .find(|(k, _)| (k.src, k.dst) == (a, b))
        .unwrap();
    assert_eq!(
        row.1.overflow, 1,
        "the pair's entries must overflow its row"
    );
    let mut dp = load(&p, MapSizes::default());
    let frame = |proto: u8, l4: Vec<u8>| {
        eth(
            mac(PIS),
            mac(PUMP1),
            &[],
            ETH_IP,
            &ipv4(
                v4("10.0.0.1"),
                v4("10.0.0.2"),
                proto,
                &l4,
                Frag::default(),
                0,
            ),
        )
    };
    for i in 0..10u16 {
        let o = dp.run(&frame(6, tcp(2000 + i, 1001 + i, TCP_SYN))).unwrap();
        assert_eq!((o.pass, o.rule), (true, Some(i as u32)), "tcp/{}", 1001 + i);
    }
    let o = dp.run(&frame(6, tcp(3000, 999, TCP_SYN))).unwrap();
    assert_eq!(
        (o.pass, o.rule),
        (true, Some(11)),
        "any other port: the any rule"
    );
    let o = dp.run(&frame(17, udp(3000, 1001, b"x"))).unwrap();
    assert_eq!(
        (o.pass, o.rule, reason_name(o.reason)),
        (false, Some(10), Some("denied_rule"))
    );
    let o = dp.run(&frame(47, vec![0; 8])).unwrap();
    assert_eq!((o.pass, o.rule), (true, Some(11)));
}
