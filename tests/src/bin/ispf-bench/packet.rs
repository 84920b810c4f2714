//! The end-to-end generator where the kernel refuses XDP live frames
//! (`BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` answers EPERM on
//! some hardened kernels): the same frames sent from userspace through an
//! AF_PACKET socket that bypasses the qdisc, in batches of `sendmmsg`. It
//! is slower than live frames, so where it is used the receivers' rates
//! are capped by the sender; the results say which generator ran.

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

/// Frames per `sendmmsg`.
const BATCH: usize = 64;

/// How long the device may take no frame before the run fails.
const STALL: Duration = Duration::from_secs(10);

/// Whether `e` (or an error it wraps) is the kernel refusing the live
/// frames mode with EPERM.
pub fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(libc::EPERM) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// An AF_PACKET socket bound to `ifindex` (in the caller's namespace).
struct Socket(i32);

impl Socket {
    fn bound(ifindex: u32) -> Result<Self> {
        // Protocol 0: a socket that only sends. ETH_P_ALL would also hook
        // every frame arriving on the device, and binding and closing such
        // a socket each wait for an RCU grace period inside the timing.
        let proto = 0;
        // SAFETY: plain socket(2); the descriptor is owned by `Socket`.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        let s = Socket(fd);
        // SAFETY: an all-zero sockaddr_ll is valid; the fields set below
        // are the ones bind(2) reads for AF_PACKET.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto as u16;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` lives across the call and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd,
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            bail!(
                "binding AF_PACKET to ifindex {ifindex}: {}",
                std::io::Error::last_os_error()
            );
        }
        let one: i32 = 1;
        // SAFETY: an int option, its size passed. Without the qdisc the
        // send goes straight to the veth's xmit; failing that, it still
        // works, more slowly.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                &one as *const i32 as *const libc::c_void,
                size_of::<i32>() as u32,
            )
        };
        Ok(s)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.0) };
    }
}

/// Sends `n` copies of `frame` out of `ifindex`. With `scan`, every frame
/// leaves with another source port and destination address, as the
/// `xdp_scan` generator rewrites them (`scan` carries its sequence across
/// calls).
pub fn send(ifindex: u32, frame: &[u8], n: u32, scan: Option<&Cell<u32>>) -> Result<()> {
    let s = Socket::bound(ifindex)?;
    let mut frames: Vec<Vec<u8>> = vec![frame.to_vec(); BATCH];
    let mut left = n as usize;
    // When the last frame was taken: a device that takes none for this
    // long (down, or its namespace gone) fails the run instead of hanging.
    let mut progress = Instant::now();
    while left > 0 {
        let batch = left.min(BATCH);
        if let Some(seq) = scan {
            for f in frames.iter_mut().take(batch) {
                if f.len() >= 38 {
                    let k = seq.get();
                    seq.set(k.wrapping_add(1));
                    f[32] = (k >> 8) as u8;
                    f[33] = k as u8;
                    f[34] = (k >> 16) as u8 | 0x80;
                    f[35] = (k >> 24) as u8 ^ k as u8;
                }
            }
        }
        let mut iov: Vec<libc::iovec> = frames
            .iter_mut()
            .take(batch)
            .map(|f| libc::iovec {
                iov_base: f.as_mut_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        // SAFETY: all-zero mmsghdrs are valid; each is pointed at one iovec
        // of `iov`, which outlives the call.
        let mut msgs: Vec<libc::mmsghdr> = (0..batch)
            .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
            .collect();
        for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
            m.msg_hdr.msg_iov = v as *mut libc::iovec;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `msgs` holds `batch` initialised headers whose buffers
        // stay alive for the call.
        let sent = unsafe { libc::sendmmsg(s.0, msgs.as_mut_ptr(), batch as u32, 0) };
        if sent < 0 {
            let e = std::io::Error::last_os_error();
            // The veth dropped the frame (its ring full until the
            // receiver's NAPI runs): try again, for a while.
            let transient = matches!(
                e.raw_os_error(),
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR)
            );
            if transient && progress.elapsed() < STALL {
                std::thread::yield_now();
                continue;
            }
            bail!(
                "sendmmsg on ifindex {ifindex}: {e} (no frame taken for {:?}): is the receiver's side of the veth up?",
                progress.elapsed()
            );
        }
        progress = Instant::now();
        left -= sent as usize;
    }
    Ok(())
}
