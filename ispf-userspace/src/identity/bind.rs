//! The accounting socket: bound where the enforced policy says, with the
//! secret and clients it names, and a receive buffer for a NAS's replay.

use std::{net::UdpSocket, path::Path};

use ipnet::IpNet;

use super::Facts;
use crate::{
    clock::log,
    policy::{identity::read_secret, IdentityDoc, RadiusDoc},
};

pub(super) struct Bound {
    pub(super) sock: UdpSocket,
    pub(super) doc: RadiusDoc,
    pub(super) secret: Vec<u8>,
    pub(super) clients: Vec<IpNet>,
}

/// The socket `cfg` asks for, or `None` (no identity section, or the
/// bind failed: said in the log and in `ispf status`, retried by the
/// caller).
pub(super) fn rebind(cfg: Option<&IdentityDoc>, facts: &Facts) -> Option<Bound> {
    let set = |v: Option<Result<String, String>>| {
        *facts.listening.lock().unwrap_or_else(|e| e.into_inner()) = v;
    };
    let Some(cfg) = cfg else {
        set(None);
        return None;
    };
    let doc = cfg.radius_accounting.clone();
    let result = (|| {
        let secret = read_secret(Path::new(&doc.secret_file))
            .map_err(|e| super::IdentityError::Secret(e).to_string())?;
        let sock = UdpSocket::bind(&doc.listen).map_err(|source| {
            super::IdentityError::Bind {
                addr: doc.listen.clone(),
                source,
            }
            .to_string()
        })?;
        grow_buffer(&sock);
        Ok::<_, String>(Bound {
            sock,
            clients: doc.client_nets(),
            secret,
            doc: doc.clone(),
        })
    })();
    match result {
        Ok(b) => {
            log(format!("RADIUS accounting on udp {}", b.doc.listen));
            set(Some(Ok(b.doc.listen.clone())));
            Some(b)
        }
        Err(e) => {
            log(format!(
                "identity: {e}; retrying every 5 s (enforcement unaffected)"
            ));
            set(Some(Err(e)));
            None
        }
    }
}

/// A NAS that replays its sessions after a restart sends thousands at
/// once: 8 MiB of socket buffer holds ~30,000 of them while a burst is
/// applied (root may exceed `net.core.rmem_max`; without it, the default).
fn grow_buffer(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    // SAFETY: a valid socket and an int-sized option value.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
