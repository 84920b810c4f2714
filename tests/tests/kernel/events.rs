//! Denied-flow events under a scan: the scanner spends only its own
//! budget, every frame is reported or counted, and other senders are
//! still heard. (That an exhausted sender's frames skip the denied-flow
//! lookup is a cost, not an outcome: the scan benchmark measures it.)

use ispf_common::{SOURCE_EVENT_BURST, SOURCE_EVENT_RATE_PER_SEC};

use super::*;

/// Flow events sent, and those not sent (rate-limited or the ring full).
fn flow_events(dp: &Datapath) -> (u64, u64) {
    let t = dp.event_totals();
    (t.emitted - t.sightings, t.rate_limited + t.ringbuf_full)
}

/// The workstation's TCP packet to the pump's SSH port, from `sport`.
fn ws_to_pump_ssh(sport: u16, flags: u8) -> Vec<u8> {
    eth(
        mac(PUMP1),
        mac(WS),
        &[130],
        ETH_IP,
        &ipv4(
            v4("10.30.0.31"),
            v4("10.10.0.11"),
            6,
            &tcp(sport, 22, flags),
            Frag::default(),
            0,
        ),
    )
}

#[test]
fn a_scanner_spends_its_own_budget_and_no_more() {
    require_root();
    let p = care_unit();
    let mut dp = load(&p, MapSizes::default());
    let start = std::time::Instant::now();
    let (e0, l0) = flow_events(&dp);
    let scan = 3 * SOURCE_EVENT_BURST as u16;
    for port in 0..scan {
        let o = dp.run(&pis_ssh_to_pump(1000 + port)).expect("test run");
        assert!(!o.pass, "the scan frame from port {} passed", 1000 + port);
    }
    let secs = start.elapsed().as_secs_f64();
    let (e1, l1) = flow_events(&dp);
    let budget = SOURCE_EVENT_BURST as f64 + SOURCE_EVENT_RATE_PER_SEC as f64 * secs;
    assert!(
        // At HZ=100 a tick adds two tokens at once.
        (e1 - e0) as f64 <= budget + 2.0,
        "{} events for one scanner in {secs:.2}s: over its budget of {budget:.0}",
        e1 - e0
    );
    assert_eq!(
        (e1 - e0) + (l1 - l0),
        scan as u64,
        "every new denied flow of the scan is either reported or counted as lost"
    );

    // A repeat of a flow already reported: no event. (Whether it counts
    // as rate-limited depends on whether a token fell due meanwhile.)
    for port in 1000..1020 {
        assert!(!dp.run(&pis_ssh_to_pump(port)).expect("test run").pass);
    }
    let (e2, _) = flow_events(&dp);
    assert_eq!(e2, e1, "repeats of reported flows were reported again");

    // Another sender's denied flow is still reported: the scan did not
    // spend the budget everyone shares.
    let o = dp.run(&ws_to_pump_ssh(40000, TCP_SYN)).expect("test run");
    assert!(!o.pass, "workstation → pump on SSH passed");
    let (e3, _) = flow_events(&dp);
    assert_eq!(e3 - e2, 1, "the workstation's denied flow was not reported");
}

/// A TCP packet that cannot open a connection (no SYN, or SYN with ACK)
/// is marked in its event: detection does not take a server speaking
/// first on a connection idle past conntrack's timeout for it opening a
/// flow to the pumps (a critical anomaly would quarantine it).
#[test]
fn a_tcp_packet_that_cannot_open_a_connection_is_marked_midstream() {
    require_root();
    let p = care_unit();
    let mut dp = load(&p, MapSizes::default());
    let sent = [
        (40001, TCP_SYN, false),
        (40002, TCP_ACK, true),
        (40003, TCP_SYN | TCP_ACK, true),
        (40004, TCP_ACK | TCP_PSH, true),
    ];
    for (sport, flags, _) in sent {
        assert!(
            !dp.run(&ws_to_pump_ssh(sport, flags))
                .expect("test run")
                .pass
        );
    }
    let mut ring = dp.take_events().expect("the ring buffer");
    let mut seen = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() == std::mem::size_of::<ispf_common::Event>() {
            // SAFETY: the datapath writes whole `Event`s; read unaligned.
            let e = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<ispf_common::Event>()) };
            if e.kind == ispf_common::EVENT_DENIED {
                let midstream = e.flags & ispf_common::EVENT_TCP_MIDSTREAM != 0;
                seen.push((u16::from_be_bytes(e.sport), midstream));
            }
        }
    }
    let want: Vec<(u16, bool)> = sent.iter().map(|(p, _, m)| (*p, *m)).collect();
    assert_eq!(seen, want);
}
