//! What test hosts run and do: a server answering TCP connects with `ok`
//! and echoing UDP on port 123, and one-shot TCP/UDP clients. Python is
//! used because it is on every machine of this kind and keeps the hosts'
//! own kernel stack doing the TCP, which is what ispf must let through.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
};

use crate::netns::in_ns;

const SERVER: &str = r#"
import socket, sys, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"ok\n"); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        d, a = s.recvfrom(100); s.sendto(d, a)
for p in [int(x) for x in sys.argv[1].split(",") if x]:
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
threading.Thread(target=udp, args=(123,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;
const TCP_CLIENT: &str = "import socket,sys; s=socket.socket(); s.settimeout(float(sys.argv[3])); (len(sys.argv) > 4 and s.bind((sys.argv[4], 0))); s.connect((sys.argv[1], int(sys.argv[2]))); assert s.recv(3)==b'ok\\n'";
const UDP_CLIENT: &str = "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[3])); (len(sys.argv) > 4 and s.bind((sys.argv[4], 0))); s.sendto(b'tick', (sys.argv[1], int(sys.argv[2]))); assert s.recvfrom(100)[0]==b'tick'";

/// A server in namespace `ns`, killed when dropped (also when a test fails).
pub struct Server(Child);

impl Server {
    /// Listens on each TCP port of `tcp_ports` and echoes UDP on 123.
    pub fn start(ns: &str, tcp_ports: &[u16]) -> Server {
        let ports: Vec<String> = tcp_ports.iter().map(u16::to_string).collect();
        let mut child = crate::programs::command("ip")
            .args([
                "netns",
                "exec",
                ns,
                "python3",
                "-u",
                "-c",
                SERVER,
                &ports.join(","),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("server in {ns}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("server output");
        assert_eq!(line.trim(), "ready", "server in {ns} did not start");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether a TCP connect from `ns` to `ip:port` gets the server's answer
/// within `timeout_s`; `from` binds a source address (for spoofing tests).
pub fn tcp_ok(ns: &str, ip: &str, port: u16, timeout_s: f32, from: Option<&str>) -> bool {
    let (port, timeout) = (port.to_string(), timeout_s.to_string());
    let mut args = vec!["python3", "-c", TCP_CLIENT, ip, &port, &timeout];
    args.extend(from);
    in_ns(ns, &args).status.success()
}

/// Whether a UDP datagram from `ns` to `ip:port` is echoed back.
pub fn udp_ok(ns: &str, ip: &str, port: u16, timeout_s: f32, from: Option<&str>) -> bool {
    let (port, timeout) = (port.to_string(), timeout_s.to_string());
    let mut args = vec!["python3", "-c", UDP_CLIENT, ip, &port, &timeout];
    args.extend(from);
    in_ns(ns, &args).status.success()
}

/// FreeRADIUS's `radclient` as a NAS: one Accounting-Request (`attrs` in
/// radclient's syntax) to the listener on loopback `port`, one try of 2 s;
/// true when it was answered.
pub fn radclient(port: u16, attrs: &str, secret: &str) -> bool {
    use std::io::Write;
    let mut c = crate::programs::command("radclient")
        .args([
            "-r",
            "1",
            "-t",
            "2",
            &format!("127.0.0.1:{port}"),
            "acct",
            secret,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(attrs.as_bytes()).unwrap();
    c.wait().unwrap().success()
}
