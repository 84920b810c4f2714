//! Frames written straight onto a host's link, as a MAC flood or a
//! misbehaving device would: an AF_PACKET socket on `eth0` inside the
//! host's namespace.

use crate::netns::InNs;

/// Sends every frame out of `iface` in namespace `ns`; returns how many the
/// kernel took. A full queue is waited out, not counted as sent.
pub fn send(ns: &str, iface: &str, frames: impl IntoIterator<Item = Vec<u8>>) -> usize {
    let _inside = InNs::enter(ns);
    let name = std::ffi::CString::new(iface).expect("interface name");
    // SAFETY: a NUL-terminated name; asks the kernel in this namespace.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(ifindex, 0, "{iface} in {ns}");
    // SAFETY: plain socket creation; the fd is closed below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        )
    };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a zeroed sockaddr_ll is valid; the fields set are its own.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    let mut sent = 0;
    for f in frames {
        loop {
            // SAFETY: `f` and `addr` outlive the call; lengths are theirs.
            let n = unsafe {
                libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if n >= 0 {
                sent += 1;
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) || e.kind() == std::io::ErrorKind::WouldBlock
            {
                std::thread::sleep(std::time::Duration::from_micros(200));
                continue;
            }
            panic!("sending on {iface} in {ns}: {e}");
        }
    }
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    sent
}
