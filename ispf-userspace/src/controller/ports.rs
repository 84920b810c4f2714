//! The ports ispf enforces on: attaching, pinning each link, asking the
//! kernel (not the pin files) whether the program is really attached, and
//! following link events so that a port that is deleted is reported at
//! once and one that comes back is enforced again.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::mpsc::Sender,
};

use anyhow::{Context, Result};
use aya::programs::{links::FdLink, links::PinnedLink, XdpMode};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{link::LinkAttribute, RouteNetlinkMessage};

use crate::{
    bpfsys::{self, BPF_LINK_TYPE_XDP},
    control::InterfaceStatus,
    datapath::Datapath,
    system,
};

fn log(msg: impl std::fmt::Display) {
    eprintln!("ispf: {msg}");
}

pub fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join("links").join(iface)
}

/// Attaches to one interface, natively where the driver can, generically
/// (with a warning that says so) where it cannot; pins the link, replacing
/// a stale pin of a link whose interface went away.
pub fn attach(dp: &mut Datapath, iface: &str, pin_dir: &Path) -> Result<InterfaceStatus> {
    let prog = dp.program_mut();
    let (id, mode) = match prog.attach(iface, XdpMode::Driver) {
        Ok(id) => (id, "native"),
        Err(native) => {
            let id = prog.attach(iface, XdpMode::Skb).with_context(|| {
                format!("attaching to {iface} failed natively ({native}) and in generic mode")
            })?;
            log(format!(
                "warning: {iface}'s driver has no native XDP; attached in generic (skb) mode, which is slower"
            ));
            (id, "generic")
        }
    };
    let link = prog.take_link(id)?;
    let fd_link = FdLink::try_from(link).context("XDP link is not a bpf_link (kernel < 5.9?)")?;
    let path = link_pin(pin_dir, iface);
    fs::create_dir_all(pin_dir.join("links"))?;
    let _ = fs::remove_file(&path);
    fd_link
        .pin(&path)
        .with_context(|| format!("pinning the link of {iface} at {}", path.display()))?;
    if system::strips_vlan_tags(iface) {
        log(format!(
            "warning: {iface} strips 802.1Q tags before XDP (rx-vlan-offload on), so VLAN-scoped identity cannot work there; turn it off with: ethtool -K {iface} rxvlan off"
        ));
    }
    Ok(InterfaceStatus {
        name: iface.to_owned(),
        mode: mode.to_owned(),
        attached: true,
        ifindex: bpfsys::ifindex(iface),
    })
}

/// Whether the kernel has `prog_id` attached to `iface` through the link
/// pinned for it: the link exists, is an XDP link of our program, and its
/// interface is the one that now carries the name.
pub fn attached(pin_dir: &Path, iface: &str, prog_id: u32) -> bool {
    let index = bpfsys::ifindex(iface);
    if index == 0 {
        return false;
    }
    match bpfsys::pinned_link_facts(&link_pin(pin_dir, iface)) {
        Ok(f) => f.link_type == BPF_LINK_TYPE_XDP && f.prog_id == prog_id && f.ifindex == index,
        Err(_) => false,
    }
}

/// Interfaces with a pinned ispf link.
pub fn pinned_links(pin_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(pin_dir.join("links"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Unpins every link (detaching the program where it is still attached).
pub fn unpin_all(pin_dir: &Path) -> Result<Vec<String>> {
    let ifaces = pinned_links(pin_dir);
    for iface in &ifaces {
        let path = link_pin(pin_dir, iface);
        match PinnedLink::from_pin(&path) {
            Ok(link) => drop(
                link.unpin()
                    .with_context(|| format!("removing {}", path.display()))?,
            ),
            Err(_) => {
                fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?
            }
        }
    }
    Ok(ifaces)
}

/// A change of some interface, as netlink reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The interface exists (new, or changed).
    Present { name: String, ifindex: u32 },
    /// The interface is gone.
    Gone { name: String },
}

/// Follows RTM_NEWLINK/RTM_DELLINK on a thread of its own and sends what
/// it sees. A lost netlink message (ENOBUFS) costs nothing: the controller
/// also checks every port every second.
pub fn watch_links(tx: Sender<LinkEvent>) -> Result<()> {
    use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
    const RTMGRP_LINK: u32 = 1;
    let mut sock = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
    sock.bind(&SocketAddr::new(0, RTMGRP_LINK))
        .context("subscribing to link events")?;
    std::thread::Builder::new()
        .name("ispf-links".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match sock.recv(&mut &mut buf[..], 0) {
                    Ok(n) => n,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                    Err(_) => return,
                };
                let mut off = 0;
                while off < n {
                    let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..n])
                    else {
                        break;
                    };
                    let len = msg.header.length as usize;
                    if let Some(ev) = link_event(msg) {
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                    if len == 0 {
                        break;
                    }
                    off += (len + 3) & !3;
                }
            }
        })?;
    Ok(())
}

fn link_event(msg: NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
    let NetlinkPayload::InnerMessage(inner) = msg.payload else {
        return None;
    };
    let (link, gone) = match inner {
        RouteNetlinkMessage::NewLink(l) => (l, false),
        RouteNetlinkMessage::DelLink(l) => (l, true),
        _ => return None,
    };
    let name = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    Some(if gone {
        LinkEvent::Gone { name }
    } else {
        LinkEvent::Present {
            name,
            ifindex: link.header.index,
        }
    })
}
