//! What the host must offer before ispf attaches anywhere: root, BTF, a
//! mounted bpffs, and interfaces that exist, are up and carry no other XDP
//! program. Every check fails with the fix in its message.

use std::{
    ffi::CString,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error(
        "ispf must run as root (it loads XDP programs and pins them under bpffs); run it with sudo"
    )]
    NotRoot,
    #[error("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing); ispf needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    NoBtf,
    #[error("bpffs is not mounted at {} and mounting it failed: {source}; mount it with: mount -t bpf bpf {}", path.display(), path.display())]
    Bpffs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not on a bpffs mount; pin under /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)", path.display())]
    NotBpffs { path: PathBuf },
    #[error("interface {iface} does not exist; `ip link show` lists the interfaces of this host")]
    NoSuchInterface { iface: String },
    #[error("interface {iface} is down; bring it up with: ip link set {iface} up")]
    InterfaceDown { iface: String },
    #[error("interface {iface} already has an XDP program (id {prog_id}) that ispf did not attach; remove it first (ip link set dev {iface} xdp off), or use `ispf detach` if it is an earlier ispf")]
    OtherXdp { iface: String, prog_id: u64 },
    #[error("interface {iface} already has ispf's TC program (id {prog_id}) attached by another controller (other pins): two ispf datapaths on one port would each claim to enforce while only the first judges packets; stop that controller with `ispf detach --run-dir` and its run directory, or give this one other ports")]
    OtherIspfTc { iface: String, prog_id: u32 },
}

pub fn require_root() -> Result<(), SystemError> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(SystemError::NotRoot);
    }
    Ok(())
}

pub fn require_btf() -> Result<(), SystemError> {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(SystemError::NoBtf);
    }
    Ok(())
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into a zeroed struct we own.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Makes sure the pin directory `dir` lies on bpffs, mounting bpffs at
/// `/sys/fs/bpf` when nothing is mounted there yet.
pub fn ensure_bpffs(dir: &Path) -> Result<(), SystemError> {
    let root = Path::new("/sys/fs/bpf");
    if dir.starts_with(root) && !is_bpffs(root) {
        // Two first starts racing here would both mount bpffs, the second
        // over the first, each then seeing its own empty pin directory and
        // lock. Serialised under a lock on the parent (not on bpffs, so it
        // exists before the mount), checked again under it.
        let _serial = serial_lock(MOUNT_LOCK_WAIT);
        if !is_bpffs(root) {
            mount_bpffs(root)?;
            // systemd mounts bpffs at boot, so a host without one is rare;
            // a mount namespace of our own (`ip netns exec` makes one, and
            // hides whether it is from us) is not: pins there die with it,
            // and a stopped (or killed) controller takes enforcement along.
            if !host_mount_namespace().unwrap_or(false) {
                crate::clock::log(
                    "warning: /sys/fs/bpf was not mounted here, so ispf mounted it; if this is a mount namespace of its own (`ip netns exec` makes one), the pins end with it, and enforcement with this controller. Run ispf in the host's mount namespace: to reach ports in a network namespace, `nsenter --net=/run/netns/NAME ispf run ...` keeps it"
                );
            }
        }
    }
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(root);
    if !is_bpffs(existing) {
        return Err(SystemError::NotBpffs {
            path: dir.to_owned(),
        });
    }
    Ok(())
}

/// Whether this process shares PID 1's mount namespace; `None` when that
/// cannot be told.
fn host_mount_namespace() -> Option<bool> {
    let mine = std::fs::read_link("/proc/self/ns/mnt").ok()?;
    let init = std::fs::read_link("/proc/1/ns/mnt").ok()?;
    Some(mine == init)
}

fn mount_bpffs(root: &Path) -> Result<(), SystemError> {
    let src = CString::new("bpf").expect("static");
    let target = CString::new(root.as_os_str().as_encoded_bytes()).expect("no NUL in a path");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(SystemError::Bpffs {
            path: root.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// How long a start waits for another to finish mounting bpffs.
const MOUNT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// The lock that serialises mounting bpffs, waited for up to `within`.
/// `/sys/fs` is readable by anyone, so anyone can hold it: past `within`
/// (or where it cannot be opened) the start goes on without it rather than
/// wait on a stranger; the mount race it guards against is the rare case.
fn serial_lock(within: Duration) -> Option<std::fs::File> {
    let f = std::fs::File::open("/sys/fs").ok()?;
    let until = Instant::now() + within;
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Some(f);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Id of the XDP program attached to `iface`, if any (via iproute2).
pub fn attached_xdp(iface: &str) -> Option<u64> {
    let out = Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", iface])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let xdp = &v.get(0)?["xdp"];
    xdp.get("prog").and_then(|p| p["id"].as_u64()).or_else(|| {
        xdp["attached"]
            .get(0)
            .and_then(|a| a["prog"]["id"].as_u64())
    })
}

/// Checks that `iface` can take the ispf program.
pub fn check_interface(iface: &str) -> Result<(), SystemError> {
    let base = Path::new("/sys/class/net").join(iface);
    if iface.is_empty() || iface.contains('/') || !base.exists() {
        return Err(SystemError::NoSuchInterface {
            iface: iface.to_owned(),
        });
    }
    let flags = std::fs::read_to_string(base.join("flags")).unwrap_or_default();
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
    if flags & libc::IFF_UP as u32 == 0 {
        return Err(SystemError::InterfaceDown {
            iface: iface.to_owned(),
        });
    }
    if let Some(prog_id) = attached_xdp(iface) {
        return Err(SystemError::OtherXdp {
            iface: iface.to_owned(),
            prog_id,
        });
    }
    // Not ours (this controller checks only ports it has not pinned): at
    // TC another ispf's verdict ends the chain before this one's program.
    other_ispf_tc(iface, 0)
}

/// Refuses `iface` if an ispf TC program other than `ours` (a program id;
/// 0: none yet) is attached at its TCX ingress (found by its name: any
/// ispf's).
pub fn other_ispf_tc(iface: &str, ours: u32) -> Result<(), SystemError> {
    use aya::programs::{tc::TcAttachType, SchedClassifier};
    let Ok((_, progs)) = SchedClassifier::query_tcx(iface, TcAttachType::Ingress) else {
        return Ok(());
    };
    match progs
        .iter()
        .find(|p| p.name_as_str() == Some(ispf_common::TC_PROGRAM_NAME) && p.id() != ours)
    {
        Some(p) => Err(SystemError::OtherIspfTc {
            iface: iface.to_owned(),
            prog_id: p.id(),
        }),
        None => Ok(()),
    }
}

/// `SIOCETHTOOL` with a `struct ethtool_value` (`{cmd, data}`) on `iface`.
fn ethtool_value(iface: &str, cmd: u32, data: u32) -> std::io::Result<u32> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue { cmd, data };
    ethtool(iface, (&mut value as *mut EthtoolValue).cast())?;
    Ok(value.data)
}

/// `SIOCETHTOOL` on `iface` with the command structure at `data`.
fn ethtool(iface: &str, data: *mut libc::c_void) -> std::io::Result<()> {
    // SAFETY: a zeroed ifreq with the name copied in (bounded), pointing at
    // a command structure the caller owns for the duration of the ioctl;
    // the socket is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in iface.bytes().take(libc::IFNAMSIZ - 1).enumerate() {
            ifr.ifr_name[i] = b as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = data.cast();
        let rc = libc::ioctl(fd, libc::SIOCETHTOOL as _, &mut ifr);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// The kernel driver behind `iface` (`veth`, `virtio_net`, `ixgbe`, ...).
pub fn driver(iface: &str) -> Option<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    // struct ethtool_drvinfo: cmd, then driver[32], version[32],
    // fw_version[32], bus_info[32], erom_version[32], reserved2[12] and
    // five u32 counts.
    let mut info = [0u8; 4 + 32 * 5 + 12 + 5 * 4];
    info[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    ethtool(iface, info.as_mut_ptr().cast()).ok()?;
    let name = &info[4..36];
    let end = name.iter().position(|b| *b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// Virtual ports (veth, tap, virtio and other paravirtual NICs, bridges,
/// tunnels): their XDP is either generic or gives up TSO/GRO aggregation,
/// so TC is the faster place for ispf there.
pub fn is_virtual_port(iface: &str) -> bool {
    const VIRTUAL: &[&str] = &[
        "veth",
        "tun",
        "virtio_net",
        "hv_netvsc",
        "xen-netfront",
        "vif",
        "bridge",
        "bonding",
        "team",
        "macvlan",
        "ipvlan",
        "vxlan",
        "geneve",
        "dummy",
        "netkit",
        "vrf",
    ];
    let no_device = !Path::new("/sys/class/net")
        .join(iface)
        .join("device")
        .exists();
    no_device || driver(iface).is_some_and(|d| VIRTUAL.contains(&d.as_str()))
}

/// Whether generic receive offload is on for `iface`.
pub fn gro(iface: &str) -> bool {
    const ETHTOOL_GGRO: u32 = 0x2b;
    ethtool_value(iface, ETHTOOL_GGRO, 0).is_ok_and(|v| v != 0)
}

/// Turns generic receive offload on or off for `iface`.
pub fn set_gro(iface: &str, on: bool) -> std::io::Result<()> {
    const ETHTOOL_SGRO: u32 = 0x2c;
    ethtool_value(iface, ETHTOOL_SGRO, on as u32).map(drop)
}

/// Whether the NIC strips 802.1Q tags before XDP sees them
/// (rx-vlan-offload). Then VLAN-scoped identity cannot work on that port.
///
/// Only hardware NICs strip tags before XDP; virtual devices (veth, which
/// report the flag too) hand XDP the frame as sent, so they are not flagged.
pub fn strips_vlan_tags(iface: &str) -> bool {
    if !Path::new("/sys/class/net")
        .join(iface)
        .join("device")
        .exists()
    {
        return false;
    }
    const ETHTOOL_GFLAGS: u32 = 0x25;
    const ETH_FLAG_RXVLAN: u32 = 1 << 8;
    ethtool_value(iface, ETHTOOL_GFLAGS, 0).is_ok_and(|v| v & ETH_FLAG_RXVLAN != 0)
}

/// Now on the clock `bpf_ktime_get_ns` reads (CLOCK_MONOTONIC), in ns:
/// what datapath timestamps are compared with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The name of user `uid` from the password database, else `uid N`.
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `pwd` and `buf`, both ours and sized
    // as passed; `out` is set to `&pwd` on success.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return format!("uid {uid}");
    }
    // SAFETY: on success pw_name points at a NUL-terminated name in `buf`.
    unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpffs_is_mounted_one_start_at_a_time_and_a_stranger_cannot_hold_it_up() {
        let held = std::fs::File::open("/sys/fs").unwrap();
        // SAFETY: flock on a descriptor this test owns.
        assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
        // Someone else holds it for too long: given up, not waited forever.
        let t = Instant::now();
        assert!(serial_lock(Duration::from_millis(100)).is_none());
        assert!(t.elapsed() >= Duration::from_millis(100));
        // Released meanwhile: taken.
        let other = std::thread::spawn(|| serial_lock(Duration::from_secs(30)).is_some());
        std::thread::sleep(Duration::from_millis(200));
        assert!(!other.is_finished(), "taken while held");
        drop(held);
        assert!(other.join().unwrap());
    }

    #[test]
    fn users_are_named_by_the_password_database() {
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(4_000_000_000), "uid 4000000000");
    }
}
