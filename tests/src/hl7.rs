//! A long-lived HL7 connection from the care unit's pump to its PIS
//! server, driven line by line: PIS -> pump is denied as a new flow, so
//! what the server sends reaches the pump only as replies of this
//! connection — only connection tracking lets it through. For tests that
//! replace or restart what enforces (upgrades, restarts).

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdout, Stdio},
    sync::mpsc::Receiver,
    time::Duration,
};

use crate::programs;

/// Accepts one HL7 connection, then, each time the test writes a line,
/// sends it and prints the client's answer.
const SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.50.0.10", 2575))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
c.settimeout(30)
print("accepted", flush=True)
for line in sys.stdin:
    c.sendall(line.encode())
    print("answer " + c.recv(100).decode().strip(), flush=True)
"#;

/// Connects, then answers every line the server sends.
const CLIENT: &str = r#"
import socket
c = socket.create_connection(("10.50.0.10", 2575), timeout=5)
c.settimeout(60)
print("connected", flush=True)
f = c.makefile("rb")
for line in f:
    c.sendall(b"ack " + line)
"#;

/// The lines a child prints, as they come.
fn lines_of(mut out: BufReader<ChildStdout>) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || loop {
        let mut line = String::new();
        match out.read_line(&mut line) {
            Ok(n) if n > 0 => {
                if tx.send(line.trim().to_owned()).is_err() {
                    return;
                }
            }
            _ => return,
        }
    });
    rx
}

fn python_in(ns: &str, script: &str, stdin: bool) -> (Child, Receiver<String>) {
    let mut c = programs::command("ip")
        .args(["netns", "exec", ns, "python3", "-c", script])
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines_of(BufReader::new(c.stdout.take().unwrap()));
    (c, out)
}

fn expect_line(lines: &Receiver<String>, want: &str, what: &str) {
    let got = lines.recv_timeout(Duration::from_secs(10));
    assert_eq!(got.as_deref(), Ok(want), "{what}");
}

/// An HL7 connection from the pump to the PIS server. PIS -> pump is
/// denied as a new flow, so what the server sends reaches the pump only
/// as replies of this connection: only conntrack lets it through.
pub struct Hl7 {
    server: Child,
    answers: Receiver<String>,
    client: Child,
}

impl Hl7 {
    /// Opens the connection on care unit `tag` (see `controller::unit`).
    pub fn open(tag: &str) -> Hl7 {
        let (server, answers) = python_in(&format!("ispf-{tag}-pis"), SERVER, true);
        expect_line(&answers, "listening", "HL7 server");
        let (client, out) = python_in(&format!("ispf-{tag}-pump"), CLIENT, false);
        expect_line(&out, "connected", "the pump's HL7 connection");
        expect_line(&answers, "accepted", "HL7 server");
        let mut c = Hl7 {
            server,
            answers,
            client,
        };
        c.exchange("opened", Duration::from_secs(5))
            .expect("the connection works");
        c
    }

    /// The server sends `msg`; the pump's answer must come back within
    /// `within`.
    pub fn exchange(&mut self, msg: &str, within: Duration) -> Result<(), String> {
        writeln!(self.server.stdin.as_mut().unwrap(), "{msg}").unwrap();
        match self.answers.recv_timeout(within) {
            Ok(line) if line == format!("answer ack {msg}") => Ok(()),
            Ok(line) => Err(format!("the server printed {line:?}")),
            Err(_) => Err(format!("no answer within {within:?}")),
        }
    }
}

impl Drop for Hl7 {
    fn drop(&mut self) {
        for c in [&mut self.client, &mut self.server] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
