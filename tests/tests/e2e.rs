//! Tier 3: real traffic between network namespaces through a Linux bridge
//! whose ports run the ispf XDP program. The care unit is the README's
//! example: a pump, the PIS server, an unknown laptop.

use std::{
    process::{Child, Command, Stdio},
    thread::sleep,
    time::Duration,
};

use aya::programs::XdpMode;
use ispf::{
    datapath::{Datapath, MapSizes},
    policy::{compile::compile, Policy},
};
use ispf_common::reason_name;
use ispf_tests::{care_unit::*, netns::*, require_root};

const SERVER: &str = r#"
import socket, sys, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(8)
    while True:
        c, _ = s.accept(); c.sendall(b"ok\n"); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        d, a = s.recvfrom(100); s.sendto(d, a)
for p in (2575, 443):
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
threading.Thread(target=udp, args=(123,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

const TCP_CLIENT: &str = "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); assert s.recv(3)==b'ok\\n'";
const UDP_CLIENT: &str = "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.sendto(b'tick', (sys.argv[1], int(sys.argv[2]))); assert s.recvfrom(100)[0]==b'tick'";

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ok(ns: &str, args: &[&str]) -> bool {
    in_ns(ns, args).status.success()
}

fn ping(ns: &str, ip: &str) -> bool {
    ok(ns, &["ping", "-c", "2", "-i", "0.2", "-W", "1", ip])
}

#[test]
fn real_traffic_through_a_bridge() {
    if !require_root() {
        return;
    }
    let mut topo = Topology::default();
    topo.bridge("ispfbr0");
    topo.host(
        "ispf-e2e-pump",
        "ispf-pump",
        "ispfbr0",
        PUMP1,
        &["10.10.0.11/8"],
    );
    topo.host(
        "ispf-e2e-pis",
        "ispf-pis",
        "ispfbr0",
        PIS,
        &["10.50.0.10/8"],
    );
    topo.host(
        "ispf-e2e-lap",
        "ispf-lap",
        "ispfbr0",
        LAPTOP,
        &["10.99.0.7/8"],
    );

    let policy = Policy::from_file(&policy_path()).unwrap();
    let mut dp = Datapath::load(MapSizes::default()).unwrap();
    dp.apply(&compile(&policy)).unwrap();
    let mut modes = vec![];
    for port in ["ispf-pump", "ispf-pis", "ispf-lap"] {
        let native = dp.program_mut().attach(port, XdpMode::Driver);
        if native.is_err() {
            dp.program_mut()
                .attach(port, XdpMode::Skb)
                .expect("attach in generic mode");
            modes.push("generic");
        } else {
            modes.push("native");
        }
    }
    eprintln!("attached: {modes:?}");

    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            "ispf-e2e-pis",
            "python3",
            "-u",
            "-c",
            SERVER,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::{BufRead, BufReader};
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
    }
    let _server = Server(server);

    // Allowed flows connect and get their replies through conntrack.
    assert!(
        ping("ispf-e2e-pump", "10.50.0.10"),
        "pump -> PIS ping (rule ping-pis) must work"
    );
    assert!(
        ok(
            "ispf-e2e-pump",
            &["python3", "-c", TCP_CLIENT, "10.50.0.10", "2575"]
        ),
        "pump -> PIS HL7 must connect"
    );
    assert!(
        ok(
            "ispf-e2e-pump",
            &["python3", "-c", UDP_CLIENT, "10.50.0.10", "123"]
        ),
        "pump -> PIS NTP must get its answer"
    );
    // Denied flows do not.
    assert!(
        !ok(
            "ispf-e2e-pump",
            &["python3", "-c", TCP_CLIENT, "10.50.0.10", "443"]
        ),
        "pump -> PIS HTTPS is not allowed"
    );
    assert!(
        !ping("ispf-e2e-pis", "10.10.0.11"),
        "PIS -> pump ping is not allowed"
    );
    assert!(
        !ok(
            "ispf-e2e-lap",
            &["python3", "-c", TCP_CLIENT, "10.50.0.10", "2575"]
        ),
        "a quarantined laptop reaches no HL7"
    );
    // The laptop takes the pump's address: spoofed.
    must(&[
        "ip",
        "netns",
        "exec",
        "ispf-e2e-lap",
        "ip",
        "addr",
        "add",
        "10.10.0.11/8",
        "dev",
        "eth0",
    ]);
    assert!(!ok("ispf-e2e-lap", &["python3", "-c", "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.10.0.11', 0)); s.settimeout(1); s.sendto(b'x', ('10.50.0.10', 123)); s.recvfrom(10)"]));

    sleep(Duration::from_millis(200));
    let counters = dp.counters();
    let count = |src: &str, dst: &str, reason: &str| -> u64 {
        counters
            .iter()
            .filter(|(k, _)| {
                policy.segment_name(k.src) == src
                    && policy.segment_name(k.dst) == dst
                    && reason_name(k.reason) == Some(reason)
            })
            .map(|(_, v)| v.packets)
            .sum()
    };
    assert!(
        count("infusion-pumps", "pis-servers", "allowed") >= 4,
        "{counters:?}"
    );
    assert!(
        count("pis-servers", "infusion-pumps", "reply") >= 4,
        "{counters:?}"
    );
    assert!(
        count("infusion-pumps", "pis-servers", "denied_default") >= 1,
        "HTTPS SYNs: {counters:?}"
    );
    assert!(
        count("pis-servers", "infusion-pumps", "denied_default") >= 2,
        "PIS pings: {counters:?}"
    );
    assert!(
        count("quarantine", "pis-servers", "denied_default") >= 1,
        "{counters:?}"
    );
    assert!(
        count("quarantine", "pis-servers", "spoofed") >= 1,
        "{counters:?}"
    );
    assert!(
        counters
            .iter()
            .any(|(k, _)| reason_name(k.reason) == Some("infrastructure")),
        "ARP is counted: {counters:?}"
    );
    drop(dp);
    // Dropping the datapath detaches the program from every port.
    let links = sh(&["ip", "-d", "link", "show"]);
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("prog/xdp"),
        "XDP left attached"
    );
}
