//! Network namespaces, veth pairs and a bridge for end-to-end tests, torn
//! down on drop even when a test fails.

use std::process::{Command, Output};

pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

pub fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs a command inside namespace `ns`.
pub fn in_ns(ns: &str, args: &[&str]) -> Output {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    sh(&full)
}

/// Removes namespaces and links it created, in reverse order.
#[derive(Default)]
pub struct Topology {
    namespaces: Vec<String>,
    links: Vec<String>,
}

impl Topology {
    pub fn bridge(&mut self, name: &str) {
        let _ = sh(&["ip", "link", "del", name]);
        must(&["ip", "link", "add", name, "type", "bridge"]);
        must(&["ip", "link", "set", name, "up"]);
        self.links.push(name.into());
    }

    /// A host in its own namespace, cabled to `bridge` through `port`.
    pub fn host(&mut self, ns: &str, port: &str, bridge: &str, mac: &str, addrs: &[&str]) {
        let _ = sh(&["ip", "netns", "del", ns]);
        let _ = sh(&["ip", "link", "del", port]);
        must(&["ip", "netns", "add", ns]);
        self.namespaces.push(ns.into());
        must(&[
            "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ]);
        self.links.push(port.into());
        must(&["ip", "link", "set", port, "master", bridge]);
        must(&["ip", "link", "set", port, "up"]);
        must(&[
            "ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "address", mac,
        ]);
        for a in addrs {
            must(&[
                "ip", "netns", "exec", ns, "ip", "addr", "add", a, "dev", "eth0",
            ]);
        }
        must(&["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"]);
        must(&["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for l in self.links.iter().rev() {
            let _ = sh(&["ip", "link", "del", l]);
        }
        for n in self.namespaces.iter().rev() {
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }
}
