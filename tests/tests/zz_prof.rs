use aya::programs::{TestRun, TestRunOptions};
use ispf::{
    datapath::{Datapath, MapSizes},
    policy::{compile::compile, Policy},
};
use ispf_tests::{care_unit::*, frames::*};
fn cost(dp: &Datapath, f: &[u8]) -> u128 {
    let mut o = TestRunOptions::new();
    o.data_in = Some(f);
    o.repeat = 10000;
    dp.program().test_run(o).unwrap().duration.as_nanos()
}
#[test]
fn prof() {
    let p = Policy::from_file(&policy_path()).unwrap();
    for (name, sizes) in [
        ("default", MapSizes::default()),
        (
            "small",
            MapSizes {
                devices: 1024,
                policy: 1024,
                conntrack: 1024,
                fragments: 1024,
            },
        ),
    ] {
        let mut dp = Datapath::load(sizes).unwrap();
        dp.apply(&compile(&p)).unwrap();
        let allowed = eth(
            mac(PIS),
            mac(PUMP1),
            &[],
            ETH_IP,
            &ipv4(
                v4("10.10.0.11"),
                v4("10.50.0.10"),
                6,
                &tcp(1, 2575, TCP_SYN),
                Frag::default(),
                0,
            ),
        );
        let denied = eth(
            mac(PIS),
            mac(PUMP1),
            &[],
            ETH_IP,
            &ipv4(
                v4("10.10.0.11"),
                v4("10.50.0.10"),
                6,
                &tcp(1, 443, TCP_SYN),
                Frag::default(),
                0,
            ),
        );
        let arp_f = eth(
            [0xff; 6],
            mac(PUMP1),
            &[],
            ETH_ARP,
            &arp(mac(PUMP1), v4("10.10.0.11"), v4("10.50.0.10")),
        );
        let mal = eth(mac(PIS), mac(PUMP1), &[10, 20, 30], ETH_IP, &[0u8; 20]);
        let other = eth(mac(PIS), mac(PUMP1), &[], 0x88b5, &[0u8; 30]);
        println!(
            "{name}: allowed {} denied {} arp {} malformed {} other {}",
            cost(&dp, &allowed),
            cost(&dp, &denied),
            cost(&dp, &arp_f),
            cost(&dp, &mal),
            cost(&dp, &other)
        );
    }
}
