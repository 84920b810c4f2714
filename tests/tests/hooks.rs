//! Bulk TCP through an enforced bridge, at each hook (TC and XDP): an
//! allowed iperf3 stream carries data, a denied one never connects, and a
//! reload, a `kill -9` and the adoption that follows, all during one
//! running stream, lose no connection.

use std::{
    process::{Child, Stdio},
    thread::sleep,
    time::Duration,
};

use ispf_tests::{controller::*, programs, require_root};

/// An iperf3 server in `ns` on port 2575 (the pumps' HL7 port, which the
/// example policy opens from the pumps to the PIS).
fn server(ns: &str) -> Child {
    let c = programs::command("ip")
        .args(["netns", "exec", ns, "iperf3", "-s", "-p", "2575"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(300));
    c
}

/// `iperf3 -c` from `ns` for `secs` seconds: (exit status ok, bytes the
/// server received, the tool's output).
fn client(ns: &str, secs: u32) -> Child {
    programs::command("ip")
        .args([
            "netns",
            "exec",
            ns,
            "iperf3",
            "-c",
            "10.50.0.10",
            "-p",
            "2575",
            "-t",
            &secs.to_string(),
            "--connect-timeout",
            "2000",
            "-J",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(c: Child) -> (bool, f64, String) {
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let bytes = v["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0);
    // iperf3 3.12 with -J exits 0 even when it could not connect: the
    // report's `error` says so.
    let ok = out.status.success() && v.get("error").is_none();
    (ok, bytes, text)
}

fn bulk_tcp_through(hook: &str, tag: &str) {
    require_root();
    let (_topo, ports) = unit(tag);
    let (a, b) = policies();
    let hook_args = ["--hook", hook];
    let ifaces = [ports[0].as_str(), ports[1].as_str(), ports[2].as_str()];
    let mut ctl = Ctl::start_with(paths(tag), &a, &ifaces, &hook_args);
    let mode = if hook == "tc" { "tc" } else { "native" };
    assert!(ctl.status().interfaces.iter().all(|i| i.mode == mode));
    let (pump, pis, lap) = (
        format!("ispf-{tag}-pump"),
        format!("ispf-{tag}-pis"),
        format!("ispf-{tag}-lap"),
    );
    let mut srv = server(&pis);

    // Allowed: the pump's stream carries data.
    let (ok, bytes, out) = finish(client(&pump, 2));
    assert!(
        ok && bytes > 1e6,
        "allowed stream at {hook}: {bytes} bytes\n{out}"
    );

    // Denied: the quarantined laptop never connects.
    let (ok, bytes, _) = finish(client(&lap, 1));
    assert!(
        !ok && bytes == 0.0,
        "a denied stream carried {bytes} bytes at {hook}"
    );

    // One stream across a reload, a kill -9 and the restart's adoption.
    let stream = client(&pump, 6);
    sleep(Duration::from_millis(800));
    let out = ctl.cli(&["reload", b.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sleep(Duration::from_millis(800));
    ctl.kill9();
    sleep(Duration::from_millis(800));
    let p = Paths {
        pin: ctl.paths.pin.clone(),
        run: ctl.paths.run.clone(),
        state: ctl.paths.state.clone(),
    };
    std::mem::forget(ctl);
    let ctl = Ctl::start_with(p, &a, &ifaces, &hook_args);
    assert!(ctl.status().adopted);
    let (ok, bytes, out) = finish(stream);
    assert!(
        ok && bytes > 1e6,
        "the stream across reload, kill -9 and adoption at {hook} broke: {bytes} bytes\n{out}"
    );
    let _ = srv.kill();
    let _ = srv.wait();
}

#[test]
fn bulk_tcp_at_tc() {
    bulk_tcp_through("tc", "t");
}

#[test]
fn bulk_tcp_at_xdp() {
    bulk_tcp_through("xdp", "u");
}
