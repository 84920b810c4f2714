//! Network namespaces, veth pairs and a bridge for end-to-end tests, torn
//! down on drop even when a test fails.

use std::process::Output;

pub fn sh(args: &[&str]) -> Output {
    if let [_ip, "netns", "exec", _ns, program, ..] = args {
        assert!(
            crate::programs::is_listed(program),
            "`{program}` is not in xtask/programs.txt"
        );
    }
    crate::programs::command(args[0])
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
        self.links.push(port.into());
        cable(ns, port, bridge, mac, addrs);
    }
}

/// Cables the host in namespace `ns` to `bridge` through a new veth
/// `port` (its end in the namespace is `eth0`), as plugging a device into
/// a switch port does.
pub fn cable(ns: &str, port: &str, bridge: &str, mac: &str, addrs: &[&str]) {
    must(&[
        "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
    ]);
    must(&["ip", "link", "set", port, "master", bridge]);
    must(&["ip", "link", "set", port, "up"]);
    must(&[
        "ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "address", mac,
    ]);
    // No IPv6 autoconfiguration chatter: tests count and trace packets.
    must(&[
        "ip",
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.eth0.disable_ipv6=1",
    ]);
    for a in addrs {
        must(&[
            "ip", "netns", "exec", ns, "ip", "addr", "add", a, "dev", "eth0",
        ]);
    }
    must(&["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"]);
    must(&["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
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

/// While alive, the calling thread is inside network namespace `ns`.
pub struct InNs {
    root: std::fs::File,
}

impl InNs {
    pub fn enter(ns: &str) -> InNs {
        use std::os::fd::AsRawFd;
        let root = std::fs::File::open("/proc/thread-self/ns/net").expect("own netns");
        let target = std::fs::File::open(format!("/var/run/netns/{ns}"))
            .unwrap_or_else(|e| panic!("netns {ns}: {e}"));
        // SAFETY: setns on this thread with a namespace fd we hold open.
        let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
        InNs { root }
    }
}

impl Drop for InNs {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: back to the namespace this thread came from.
        unsafe { libc::setns(self.root.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

/// Makes the host in namespace `ns` sit on an access port of VLAN `vid`:
/// its `eth0` frames leave with an in-band 802.1Q tag and arrive untagged.
/// (No 8021q module or bridge VLAN filtering on this kernel, so the tagging
/// is a TC program, `tests/fixtures`.) Also makes `eth0` accept tagged frames
/// from others. Detached when dropped.
pub struct VlanAccess {
    _ebpf: aya::Ebpf,
}

impl VlanAccess {
    pub fn new(ns: &str, vid: Option<u16>) -> VlanAccess {
        use aya::programs::{tc, SchedClassifier, TcAttachType};
        let _inside = InNs::enter(ns);
        // Segmentation offloads would hand TC frames larger than the MTU.
        let _ = sh(&[
            "ethtool", "-K", "eth0", "tso", "off", "gso", "off", "gro", "off",
        ]);
        let mut ebpf = aya::Ebpf::load(crate::VLAN_TAGGER).expect("load the VLAN tagger fixture");
        let _ = tc::qdisc_add_clsact("eth0");
        if let Some(vid) = vid {
            // if_nametoindex asks the kernel in this thread's namespace; /sys
            // would show the namespace it was mounted in.
            // SAFETY: a NUL-terminated literal.
            let ifindex = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
            assert_ne!(ifindex, 0, "eth0 in {ns}");
            let mut map: aya::maps::HashMap<_, u32, u32> =
                aya::maps::HashMap::try_from(ebpf.map_mut("VLAN_OF").unwrap()).unwrap();
            map.insert(ifindex, vid as u32, 0).unwrap();
            let push: &mut SchedClassifier =
                ebpf.program_mut("vlan_push").unwrap().try_into().unwrap();
            push.load().unwrap();
            push.attach("eth0", TcAttachType::Egress)
                .expect("attach vlan_push");
        }
        let pop: &mut SchedClassifier = ebpf.program_mut("vlan_pop").unwrap().try_into().unwrap();
        pop.load().unwrap();
        pop.attach("eth0", TcAttachType::Ingress)
            .expect("attach vlan_pop");
        VlanAccess { _ebpf: ebpf }
    }
}
