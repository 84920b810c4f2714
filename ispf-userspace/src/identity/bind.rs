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
    /// Why the secret file cannot be read now, said once.
    pub(super) secret_error: Option<String>,
}

/// The socket `cfg` asks for, or `None` (no identity section, or the
/// bind failed: said in the log and in `ispf status`, retried by the
/// caller). `old`'s socket is kept when the address is the same (a reload
/// that changes only the clients or the secret: binding the address again
/// beside it would fail, and its queued datagrams would be lost) and
/// closed before a new one is bound otherwise.
pub(super) fn rebind(
    cfg: Option<&IdentityDoc>,
    facts: &Facts,
    old: Option<Bound>,
) -> Option<Bound> {
    let set = |v| facts.set_listening(v);
    let Some(cfg) = cfg else {
        set(None);
        return None;
    };
    let doc = cfg.radius_accounting.clone();
    let kept = old.filter(|b| b.doc.listen == doc.listen).map(|b| b.sock);
    let result = (|| {
        let secret = read_secret(Path::new(&doc.secret_file))
            .map_err(|e| super::IdentityError::Secret(e).to_string())?;
        let sock = match kept {
            Some(sock) => sock,
            None => {
                let sock = UdpSocket::bind(&doc.listen).map_err(|source| {
                    super::IdentityError::Bind {
                        addr: doc.listen.clone(),
                        source,
                    }
                    .to_string()
                })?;
                grow_buffer(&sock);
                sock
            }
        };
        Ok::<_, String>(Bound {
            sock,
            clients: doc.client_nets(),
            secret,
            doc: doc.clone(),
            secret_error: None,
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

impl Bound {
    /// Reads the secret file again: a secret rotated in the same file (a
    /// leaked one) is taken within seconds, with or without a reload,
    /// which would not rebind since the section names only the path. A
    /// file that cannot be read now (half written, removed, made
    /// world-readable) keeps the secret in use, said once until it
    /// changes.
    pub(super) fn reread_secret(&mut self, facts: &Facts) {
        match read_secret(Path::new(&self.doc.secret_file)) {
            Ok(s) => {
                if s != self.secret {
                    log(format!(
                        "identity: the RADIUS secret in {} changed: accounting is now checked with it",
                        self.doc.secret_file
                    ));
                    self.secret = s;
                }
                if self.secret_error.take().is_some() {
                    facts.set_listening(Some(Ok(self.doc.listen.clone())));
                }
            }
            Err(e) => {
                let e = super::IdentityError::Secret(e).to_string();
                if self.secret_error.as_ref() != Some(&e) {
                    log(format!(
                        "identity: {e}; the secret read before stays in use (enforcement unaffected)"
                    ));
                    facts.set_listening(Some(Ok(format!(
                        "{} (with the secret read before: {e})",
                        self.doc.listen
                    ))));
                    self.secret_error = Some(e);
                }
            }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn doc(listen: &str, client: &str, secret_file: &Path) -> IdentityDoc {
        IdentityDoc {
            radius_accounting: RadiusDoc {
                listen: listen.into(),
                clients: vec![client.into()],
                secret_file: secret_file.display().to_string(),
            },
            roles: vec![],
        }
    }

    fn free_port() -> String {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().to_string()
    }

    /// A reload that changes only the clients keeps the socket (and what
    /// it has queued); a moved address gets a new one; no identity section
    /// closes it.
    #[test]
    fn a_reload_keeps_the_socket_unless_the_address_moves() {
        let dir = std::env::temp_dir().join(format!("ispf-bind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let facts = Facts::default();
        let here = free_port();

        let first = rebind(Some(&doc(&here, "127.0.0.1", &secret)), &facts, None).unwrap();
        let queued = UdpSocket::bind("127.0.0.1:0").unwrap();
        queued.send_to(b"queued", &here).unwrap();

        let same = rebind(
            Some(&doc(&here, "10.0.0.0/8", &secret)),
            &facts,
            Some(first),
        )
        .expect("same address: the socket is kept, not bound again");
        assert_eq!(same.sock.local_addr().unwrap().to_string(), here);
        assert_eq!(
            same.clients,
            doc(&here, "10.0.0.0/8", &secret)
                .radius_accounting
                .client_nets()
        );
        let mut buf = [0u8; 16];
        same.sock
            .set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        let (n, _) = same.sock.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"queued");

        let there = free_port();
        let moved = rebind(Some(&doc(&there, "127.0.0.1", &secret)), &facts, Some(same)).unwrap();
        assert_eq!(moved.sock.local_addr().unwrap().to_string(), there);
        // The old address was released.
        UdpSocket::bind(&here).expect("the old address is free again");

        assert!(rebind(None, &facts, Some(moved)).is_none());
        assert!(facts.listening.lock().unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A secret rotated in the same file is taken; a file that cannot be
    /// read keeps the secret in use and says so until it can.
    #[test]
    fn a_rotated_secret_is_taken_and_an_unreadable_file_keeps_the_old() {
        let dir = std::env::temp_dir().join(format!("ispf-rotate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        let write = |text: &str, mode: u32| {
            std::fs::write(&secret, text).unwrap();
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("leaked\n", 0o600);
        let facts = Facts::default();
        let mut b = rebind(Some(&doc(&free_port(), "127.0.0.1", &secret)), &facts, None).unwrap();
        assert_eq!(b.secret, b"leaked");
        write("rotated\n", 0o600);
        b.reread_secret(&facts);
        assert_eq!(b.secret, b"rotated");
        let listening = || facts.listening.lock().unwrap().clone().unwrap().unwrap();
        write("readable by all\n", 0o644);
        b.reread_secret(&facts);
        assert_eq!(b.secret, b"rotated", "kept");
        assert!(
            listening().contains("with the secret read before"),
            "{}",
            listening()
        );
        write("rotated\n", 0o600);
        b.reread_secret(&facts);
        assert_eq!(listening(), b.doc.listen);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
