//! A MAC flood from one port: counted, not stored beyond the cap, the
//! controller's memory bounded, and an established flow untouched.

use super::*;

#[test]
fn a_mac_flood_is_counted_not_stored_and_never_touches_an_established_flow() {
    require_root();
    let (_topo, ports) = unit("mf");
    let metrics_addr = "127.0.0.1:19472";
    let cap = 5000;
    let ctl = Ctl::start_with(
        paths("mf"),
        &policy_path(),
        &[&ports[0], &ports[1], &ports[2]],
        &[
            "--max-unknown-devices",
            &cap.to_string(),
            "--metrics-addr",
            metrics_addr,
        ],
    );
    let pid = ctl.child.as_ref().unwrap().id();
    let rss = || -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let _echo = Echo::start("ispf-mf-pis", 2575);
    let stream = Stream::start("ispf-mf-pump", "10.50.0.10", 2575);
    stream.wait_state(true, 5, Duration::from_secs(5));
    let rss_before = rss();

    // 100,000 frames, each from a new random unicast MAC and address, to
    // the PIS, from the laptop's port.
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let frames: Vec<Vec<u8>> = (0..100_000)
        .map(|_| {
            let mut src: [u8; 6] = rng.gen();
            src[0] = (src[0] & 0xfc) | 0x02;
            let ip = [10, 99, rng.gen(), rng.gen()];
            let udp = udp(40000, 9, b"flood");
            eth(
                mac(PIS),
                src,
                &[],
                0x0800,
                &ipv4(ip, v4("10.50.0.10"), 17, &udp, Frag::default(), 0),
            )
        })
        .collect();
    let flood_start = Instant::now();
    let sender = std::thread::spawn(move || raw::send("ispf-mf-lap", "eth0", frames));
    // The controller answers while the flood runs.
    let mut slowest = Duration::ZERO;
    while !sender.is_finished() {
        let t = Instant::now();
        let s = ctl.status();
        slowest = slowest.max(t.elapsed());
        assert!(s.inventory.is_some());
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = sender.join().unwrap();
    eprintln!(
        "flood of {sent} frames took {:?}; slowest status answer {slowest:?}",
        flood_start.elapsed()
    );
    assert_eq!(sent, 100_000);
    assert!(
        slowest < Duration::from_secs(2),
        "status took {slowest:?} during the flood"
    );
    std::thread::sleep(Duration::from_secs(1));

    // Bounded: at most the cap of unknown devices, the rest counted.
    let list = devices(&ctl);
    let unknown = list.iter().filter(|d| d["state"] == "unknown").count();
    assert!(
        unknown <= cap,
        "{unknown} unknown devices recorded, cap {cap}"
    );
    let m = scrape(metrics_addr);
    let lost = |cause| metric(&m, "ispf_inventory_lost_total", &[("cause", cause)]);
    let (capped, limited, behind) = (
        lost("unknown_device_cap"),
        lost("rate_limited"),
        lost("ingest_behind"),
    );
    eprintln!("recorded {unknown} unknown; over the cap {capped}, rate-limited in the datapath {limited}, ingest behind {behind}");
    assert!(
        capped + limited > 0.0,
        "the flood must be counted somewhere"
    );
    assert!(
        unknown as f64 + capped + limited + behind >= 99_000.0,
        "every flooded MAC is recorded or counted"
    );
    let st = ctl.status();
    assert_eq!(st.inventory.as_ref().unwrap().overflow as f64, capped);
    let rss_after = rss();
    eprintln!("controller RSS {rss_before} kB before, {rss_after} kB after");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "the controller grew by {} kB",
        rss_after - rss_before
    );

    // The established, allowed flow lost nothing.
    let (ok, stalled) = stream.since(flood_start);
    assert!(
        ok > 10 && stalled == 0,
        "pump -> PIS during the flood: {ok} answered, {stalled} stalled"
    );
    // Still responsive, still enforcing.
    assert!(!ispf_tests::services::tcp_ok(
        "ispf-mf-lap",
        "10.50.0.10",
        2575,
        1.0,
        None
    ));
}
