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
use aya::programs::{links::FdLink, links::PinnedLink, TcAttachType, XdpMode};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{link::LinkAttribute, RouteNetlinkMessage};

use crate::{
    bpfsys::{self, BPF_LINK_TYPE_TCX, BPF_LINK_TYPE_XDP},
    clock::log,
    control::InterfaceStatus,
    datapath::Datapath,
    system,
};

pub fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join("links").join(iface)
}

/// Where the pipeline is attached on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// XDP: native where the driver can, else generic (skb) mode.
    Xdp,
    /// TC clsact ingress (a TCX link): keeps GRO's aggregation on virtual
    /// ports.
    Tc,
    /// Native XDP on a physical NIC, TC on veth, tap, virtio and other
    /// virtual ports.
    Auto,
}

/// What `run` was asked for, applied to every port it attaches (again).
#[derive(Debug, Clone, Copy)]
pub struct AttachOptions {
    pub hook: Hook,
    /// Leave GRO off on virtual ports given native XDP.
    pub keep_gro_off: bool,
}

/// `InterfaceStatus::mode` of each way of attaching.
pub const MODE_NATIVE: &str = "native";
pub const MODE_GENERIC: &str = "generic";
pub const MODE_TC: &str = "tc";

/// Attaches to one interface as `opts` says, pins the link (replacing a
/// stale pin of a link whose interface went away).
pub fn attach(
    dp: &mut Datapath,
    iface: &str,
    pin_dir: &Path,
    opts: AttachOptions,
) -> Result<InterfaceStatus> {
    let virtual_port = system::is_virtual_port(iface);
    // Before attaching too: a port another ispf holds would otherwise be
    // attached and detached again on every tick (a NIC may reset its rings
    // at each).
    let ours = dp.tc_program().info().map(|i| i.id()).unwrap_or(0);
    system::other_ispf_tc(iface, ours)?;
    let (fd_link, mode) = match opts.hook {
        Hook::Tc => (attach_tc(dp, iface)?, MODE_TC),
        Hook::Auto if virtual_port => (attach_tc(dp, iface)?, MODE_TC),
        Hook::Auto => match attach_xdp(dp, iface, false) {
            Ok(r) => r,
            // A NIC without native XDP: TC, never the slow generic mode.
            Err(_) => (attach_tc(dp, iface)?, MODE_TC),
        },
        Hook::Xdp => attach_xdp(dp, iface, true)?,
    };
    // Checked again now that ours is attached: another controller may have
    // attached in between (two started at once). Dropping the unpinned link
    // detaches ours again. Without our own id, ours would look foreign.
    if ours != 0 {
        system::other_ispf_tc(iface, ours)?;
    }
    let path = link_pin(pin_dir, iface);
    fs::create_dir_all(pin_dir.join("links"))?;
    let _ = fs::remove_file(&path);
    fd_link
        .pin(&path)
        .with_context(|| format!("pinning the link of {iface} at {}", path.display()))?;
    if mode != MODE_TC && system::strips_vlan_tags(iface) {
        log(format!(
            "warning: {iface} strips 802.1Q tags before XDP (rx-vlan-offload on), so VLAN-scoped identity cannot work there; turn it off with: ethtool -K {iface} rxvlan off, or enforce at TC (--hook tc), which reads the tags the NIC took out"
        ));
    }
    if mode == MODE_NATIVE && virtual_port && !opts.keep_gro_off && !system::gro(iface) {
        match system::set_gro(iface, true) {
            Ok(()) => log(format!(
                "{iface}: turned GRO on (a virtual port with native XDP loses TSO/GRO aggregation otherwise; --keep-gro-off leaves it off)"
            )),
            Err(e) => log(format!("warning: {iface}: cannot turn GRO on: {e}")),
        }
    }
    Ok(InterfaceStatus {
        name: iface.to_owned(),
        mode: mode.to_owned(),
        attached: true,
        ifindex: bpfsys::ifindex(iface),
    })
}

/// XDP, natively where the driver can, else (if `generic_ok`) in generic
/// (skb) mode with a warning that says so.
fn attach_xdp(dp: &mut Datapath, iface: &str, generic_ok: bool) -> Result<(FdLink, &'static str)> {
    let prog = dp.program_mut();
    let (id, mode) = match prog.attach(iface, XdpMode::Driver) {
        Ok(id) => (id, MODE_NATIVE),
        Err(native) if generic_ok => {
            let id = prog.attach(iface, XdpMode::Skb).with_context(|| {
                format!("attaching to {iface} failed natively ({native}) and in generic mode")
            })?;
            log(format!(
                "warning: {iface}'s driver has no native XDP; attached in generic (skb) mode, which is slower (--hook tc is faster there)"
            ));
            (id, MODE_GENERIC)
        }
        Err(native) => return Err(native).with_context(|| format!("native XDP on {iface}")),
    };
    let link = prog.take_link(id)?;
    let fd = FdLink::try_from(link).context("XDP link is not a bpf_link (kernel < 5.9?)")?;
    Ok((fd, mode))
}

/// TC clsact ingress through a TCX link (kernel 6.6 or later), which can
/// be pinned like an XDP link.
fn attach_tc(dp: &mut Datapath, iface: &str) -> Result<FdLink> {
    let prog = dp.tc_program_mut();
    let id = prog
        .attach(iface, TcAttachType::Ingress)
        .with_context(|| format!("attaching to {iface} at TC ingress"))?;
    let link = prog.take_link(id)?;
    FdLink::try_from(link)
        .context("the TC link is not a TCX link: ispf needs Linux 6.6 or later for TC ports")
}

/// Kernel ids of the two entry points.
#[derive(Debug, Clone, Copy)]
pub struct ProgramIds {
    pub xdp: u32,
    pub tc: u32,
}

impl ProgramIds {
    pub fn of(dp: &Datapath) -> Self {
        Self {
            xdp: dp.program().info().map(|i| i.id()).unwrap_or(0),
            tc: dp.tc_program().info().map(|i| i.id()).unwrap_or(0),
        }
    }
}

/// Whether the kernel has our program attached to `iface` through the
/// link pinned for it: the link exists, is an XDP link of the XDP entry or
/// a TCX link of the TC entry, and its interface is the one that now
/// carries the name.
pub fn attached(pin_dir: &Path, iface: &str, ids: ProgramIds) -> bool {
    attached_at(pin_dir, iface, ids).is_some()
}

/// [`attached`], with the hook the kernel has it at: `Some(true)` at TC,
/// `Some(false)` at XDP.
pub fn attached_at(pin_dir: &Path, iface: &str, ids: ProgramIds) -> Option<bool> {
    let index = bpfsys::ifindex(iface);
    if index == 0 {
        return None;
    }
    let f = bpfsys::pinned_link_facts(&link_pin(pin_dir, iface)).ok()?;
    if f.ifindex != index {
        return None;
    }
    if f.link_type == BPF_LINK_TYPE_XDP && f.prog_id == ids.xdp {
        Some(false)
    } else if f.link_type == BPF_LINK_TYPE_TCX && f.prog_id == ids.tc {
        Some(true)
    } else {
        None
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
