//! RESULTS.md and the cost-vs-size plot, from the measurements.

use std::collections::BTreeMap;

use serde_json::{json, Value};

pub fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.is_finite() => format!("{x:.2}"),
        _ => "n/a".into(),
    }
}

pub fn markdown(
    s: &Value,
    dev: &BTreeMap<usize, f64>,
    rules: &BTreeMap<usize, f64>,
    r: &Value,
) -> String {
    let mut m = String::new();
    m.push_str(&format!(
        "# ispf benchmark results{}\n\nMeasured on kernel `{}`, CPU `{}`, by `cargo xtask bench{}`. Medians of the runs; ratios measured in the same run.\n\n",
        if s["quick"].as_bool() == Some(true) { " (quick run: small sizes, not representative)" } else { "" },
        s["kernel"].as_str().unwrap_or("?"),
        s["cpu"].as_str().unwrap_or("?"),
        if s["quick"].as_bool() == Some(true) { " --quick" } else { "" }
    ));
    m.push_str("## Per-packet cost (BPF_PROG_TEST_RUN, JIT on, stats off)\n\n| program | ns/packet |\n| --- | ---: |\n");
    m.push_str(&format!(
        "| empty XDP (floor) | {} |\n| ispf | {} |\n| xdp-filter (all features) | {} |\n| empty TC classifier (TC floor) | {} |\n| ispf at TC | {} |\n\n",
        f(&s["ns_floor"]),
        f(&s["ns_ispf"]),
        f(&s["ns_xdp_filter"]),
        f(&s["ns_floor_tc"]),
        f(&s["ns_ispf_tc"]),
    ));
    m.push_str(&format!(
        "ispf − floor: **{} ns** (target ≤ 67 ns); ispf / xdp-filter: **{}** (target ≤ 1.0)\n\n",
        f(&json!(
            s["ns_ispf"].as_f64().unwrap_or(f64::NAN) - s["ns_floor"].as_f64().unwrap_or(f64::NAN)
        )),
        f(&s["ratio_vs_xdp_filter"])
    ));
    m.push_str(&format!(
        "These are packets of known flows (each frame warmed once), which the flow caches answer. The first packet of a flow takes the full pipeline (identity, anti-spoofing, rule matrix, conntrack): measured one unwarmed packet per frame, ispf {} ns against the floor's {} ns measured the same way (timer overhead included in both), **{} ns** net (target ≤ 400 ns). One load that misses every cache (a pointer chase over 64 MB, measured in the same run) costs {} ns here, so the first packet costs **{}** such loads.\n\n",
        f(&s["ns_ispf_first_packet"]),
        f(&s["ns_floor_first_packet"]),
        f(&json!(
            s["ns_ispf_first_packet"].as_f64().unwrap_or(f64::NAN)
                - s["ns_floor_first_packet"].as_f64().unwrap_or(f64::NAN)
        )),
        f(&s["ns_dependent_load"]),
        f(&s["first_packet_net_in_dependent_loads"])
    ));
    m.push_str("## Scale\n\n| devices | ns/packet |\n| ---: | ---: |\n");
    for (k, v) in dev {
        m.push_str(&format!("| {k} | {v:.2} |\n"));
    }
    m.push_str(&format!("\nflatness (largest / smallest): **{}** (target ≤ 1.2)\n\n| rules | ns/packet |\n| ---: | ---: |\n", f(&s["flatness_devices"])));
    for (k, v) in rules {
        m.push_str(&format!("| {k} | {v:.2} |\n"));
    }
    m.push_str(&format!(
        "\nflatness: **{}** (target ≤ 1.2)\n\n",
        f(&s["flatness_rules"])
    ));
    m.push_str(&format!(
        "## End to end on veth (live-frames generator, denied frames)\n\n| receiver | Mpps |\n| --- | ---: |\n| XDP_DROP (ceiling) | {} |\n| ispf | {} |\n| ispf at TC (XDP_PASS, then TC) | {} |\n| xdp-filter | {} |\n| XDP_PASS + nftables bridge, set | {} |\n| XDP_PASS + nftables bridge, {} linear rules | {} |\n\nispf / nftables with sets: **{}** (target ≥ 4); ispf / nftables linear: **{}** (target ≥ 20)\n\n",
        f(&s["mpps_ceiling"]),
        f(&s["mpps_ispf"]),
        f(&s["mpps_ispf_tc"]),
        f(&s["mpps_xdp_filter"]),
        f(&s["mpps_nft_sets"]),
        r["end_to_end_veth"]["nft_linear_rules"],
        f(&s["mpps_nft_linear_10k"]),
        f(&s["ratio_vs_nft_sets"]),
        f(&s["ratio_vs_nft_linear_10k"])
    ));
    m.push_str(&format!(
        "## A scan: every frame a new flow (end to end on veth, denied)\n\n| receiver | Mpps |\n| --- | ---: |\n| XDP_DROP (ceiling) | {} |\n| ispf | {} |\n| XDP_PASS + nftables bridge, set | {} |\n\nispf / nftables with sets: **{}** (target ≥ 4). An allowed TCP echo flow through the same port during ispf's runs: {} exchanges, **{}** segments retransmitted.\n\n",
        f(&s["mpps_ceiling_new_flows"]),
        f(&s["mpps_ispf_new_flows"]),
        f(&s["mpps_nft_sets_new_flows"]),
        f(&s["ratio_vs_nft_sets_new_flows"]),
        s["allowed_flow_exchanges_under_scan"],
        s["allowed_flow_retransmits_under_scan"],
    ));
    m.push_str(&format!(
        "## Bulk TCP through an enforced bridge (iperf3, one stream)\n\n| path | Gbit/s |\n| --- | ---: |\n| unfiltered | {} |\n| ispf, default hook (TC on veth) | {} |\n| ispf at native XDP (GRO on) | {} |\n| nftables, stateful rules | {} |\n\nispf / unfiltered: **{}** (target ≥ 0.8)\n\n",
        f(&s["gbps_tcp_unfiltered"]),
        f(&s["gbps_tcp_ispf"]),
        f(&s["gbps_tcp_ispf_xdp"]),
        f(&s["gbps_tcp_nft"]),
        f(&s["ratio_tcp_bulk_vs_unfiltered"]),
    ));
    m.push_str("## Control plane\n\n| devices | compile ms | apply ms | reload ms | map entries | device map size | maps MB |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    if let Some(a) = r["control_plane"]["apply"].as_object() {
        let mut rows: Vec<(&String, &Value)> = a.iter().collect();
        rows.sort_by_key(|(k, _)| k.parse::<u64>().unwrap_or(0));
        for (k, v) in rows {
            m.push_str(&format!(
                "| {k} | {} | {} | {} | {} | {} | {} |\n",
                f(&v["compile_ms"]),
                f(&v["apply_ms"]),
                f(&r["control_plane"]["reload_ms"][k]),
                v["entries"],
                v["device_map_entries"],
                f(&r["control_plane"]["map_memory_mb"][k]),
            ));
        }
    }
    m.push_str(&format!(
        "\napply at 100k devices: **{} ms** (target < 250); at 1M devices: **{} ms** (target < 1000), maps **{} MB**\n\n",
        f(&s["apply_ms_100k_devices"]),
        f(&s["apply_ms_1m_devices"]),
        f(&s["map_memory_mb_1m_devices"]),
    ));
    m.push_str(&format!(
        "## Inventory

sighting ingestion (decode, place, SQLite): **{} sightings/s** (target ≥ 50,000); `ispf devices --json` over 100k devices against a running controller: **{} ms** (target < 300; runs: {})

",
        f(&s["sightings_per_s"]),
        f(&s["ms_devices_list_100k"]),
        r["inventory"]["devices_list_ms"],
    ));
    m.push_str(&format!(
        "## Threat feeds and identity

1M feed entries: load (parse, compile, apply) **{} ms** (target < 2000); per packet with them **{} ns** ({}x the run's ns_ispf); first packet with them **{} ns**. RADIUS Start to enforced: **{} ms** median, {} ms max over the example policy (target < 50); over the headline policy **{} ms** (every decision is a whole generation)

",
        f(&s["ms_feed_load_1m"]),
        f(&s["ns_ispf_feeds_1m"]),
        f(&s["ratio_feeds_1m_vs_ns_ispf"]),
        f(&s["ns_ispf_first_packet_feeds_1m"]),
        f(&s["ms_session_apply"]),
        f(&s["ms_session_apply_max"]),
        f(&s["ms_session_apply_100k"]),
    ));
    m.push_str(&format!(
        "## Fleet

`ispf fleet push` to every host enforcing it (real etcd, controllers on this machine, 1k devices): 10 hosts **{} ms** median (target < 500); 3 hosts at 100k devices **{} ms**; by host count: {}

",
        f(&s["ms_fleet_converge_10_hosts"]),
        f(&s["ms_fleet_converge_3_hosts_100k"]),
        r["fleet"],
    ));
    m.push_str("\nMethod: per-packet figures are the mean BPF_PROG_TEST_RUN duration over the corpus, each frame warmed once so the figure is its flow's steady state (for ispf: answered by the per-CPU flow cache; the first-packet figure above is the full pipeline); the corpus mixes IPv4/IPv6, TCP/UDP/ICMP, 0/1/2 VLAN tags, allowed/denied and known/unknown devices over many addresses. End to end: a live-frames XDP_TX generator in one namespace sends one denied frame through a veth pair; the receiver's XDP counters give the rate; generator and receiver share the VM's two vCPUs. NaN/null: a tool was unavailable (see the run's warnings).\n");
    m.push_str("\n## Every summary figure\n\n| key | value |\n| --- | ---: |\n");
    if let Some(o) = s.as_object() {
        for (k, v) in o {
            let shown = if v.is_number() { f(v) } else { v.to_string() };
            m.push_str(&format!("| `{k}` | {shown} |\n"));
        }
    }
    m
}

pub fn svg(dev: &BTreeMap<usize, f64>, rules: &BTreeMap<usize, f64>, floor: f64) -> String {
    let (w, h, pad) = (640.0, 360.0, 50.0);
    let max = dev
        .values()
        .chain(rules.values())
        .cloned()
        .fold(floor, f64::max)
        .max(1.0)
        * 1.2;
    let x_of = |i: usize, n: usize| {
        pad + (w - 2.0 * pad)
            * if n > 1 {
                i as f64 / (n - 1) as f64
            } else {
                0.5
            }
    };
    let y_of = |v: f64| h - pad - (h - 2.0 * pad) * v / max;
    let line = |m: &BTreeMap<usize, f64>, color: &str, label: &str, dy: f64| {
        let pts: Vec<String> = m
            .values()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x_of(i, m.len()), y_of(*v)))
            .collect();
        let labels: String = m
            .iter()
            .enumerate()
            .map(|(i, (k, v))| format!("<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{color}\">{k}: {v:.0} ns</text>", x_of(i, m.len()), y_of(*v) - 6.0 + dy))
            .collect();
        format!("<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>{labels}<text x=\"{}\" y=\"{}\" fill=\"{color}\" font-size=\"12\">{label}</text>", pts.join(" "), w - 200.0, 20.0 + dy.abs() * 1.5)
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/><text x=\"{pad}\" y=\"24\" font-size=\"14\">ispf ns/packet against table size (log steps)</text><line x1=\"{pad}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"4\"/><text x=\"{pad}\" y=\"{:.1}\" font-size=\"10\" fill=\"#999\">empty XDP floor {floor:.0} ns</text>{}{}</svg>\n",
        y_of(floor),
        w - pad,
        y_of(floor),
        y_of(floor) + 12.0,
        line(dev, "#1f77b4", "devices (10 .. 100k)", 0.0),
        line(rules, "#d62728", "rules (10 .. 10k)", 14.0),
    )
}
