//! One controller per pin directory and per run directory.
//!
//! Two controllers over the same pins would each write "their" policy
//! into the same maps and flip the same active slot: the unit would
//! enforce whichever wrote last, and each would report its own policy as
//! enforced. The control socket only catches a second controller with
//! the same run directory, and only once the first is answering; an
//! exclusive `flock` on both directories also catches two starts at the
//! same moment and a second controller (or an offline `ispf detach`)
//! given another run directory. The kernel drops the lock when the
//! holder dies, even by `kill -9`, so a crash never leaves it stale.

use std::{
    fs::{self, File},
    io,
    os::unix::{
        fs::{DirBuilderExt, MetadataExt},
        io::AsRawFd,
    },
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum ExclusiveError {
    #[error("{} is in use by another ispf ({holder}): two controllers on the same {what} would overwrite each other's policy. Stop that one first (`systemctl stop ispf`, or `ispf detach --run-dir` with its run directory), or give this one its own --pin-dir and --run-dir", path.display())]
    Held {
        path: PathBuf,
        what: &'static str,
        holder: String,
    },
    #[error("cannot lock {} ({what}): {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The locks, held until dropped.
pub struct Exclusive {
    _held: Vec<File>,
    /// A pin directory this start made: removed again if it is still
    /// empty when the lock goes (a refused start leaves nothing behind).
    made: Option<PathBuf>,
}

impl Exclusive {
    /// Locks `pin_dir` and `run_dir` for a controller, making them if
    /// they do not exist yet.
    pub fn for_run(pin_dir: &Path, run_dir: &Path) -> Result<Exclusive, ExclusiveError> {
        let made = (!pin_dir.exists()).then(|| pin_dir.to_owned());
        let mut x = Exclusive {
            _held: Vec::new(),
            made,
        };
        for (dir, what) in [(pin_dir, "pin directory"), (run_dir, "run directory")] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| ExclusiveError::Io {
                    path: dir.to_owned(),
                    what,
                    source,
                })?;
            x._held.push(lock(dir, what)?);
        }
        Ok(x)
    }

    /// Locks whichever of the two directories exist, for work done with
    /// no controller running (`ispf detach`).
    pub fn offline(pin_dir: &Path, run_dir: &Path) -> Result<Exclusive, ExclusiveError> {
        let mut x = Exclusive {
            _held: Vec::new(),
            made: None,
        };
        for (dir, what) in [(pin_dir, "pin directory"), (run_dir, "run directory")] {
            if dir.exists() {
                x._held.push(lock(dir, what)?);
            }
        }
        Ok(x)
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        if let Some(dir) = &self.made {
            // Fails, as it should, once anything is pinned there.
            let _ = fs::remove_dir(dir);
        }
    }
}

fn lock(dir: &Path, what: &'static str) -> Result<File, ExclusiveError> {
    let io_err = |source| ExclusiveError::Io {
        path: dir.to_owned(),
        what,
        source,
    };
    // Opened read-only: a directory is locked through any descriptor.
    // std opens with O_CLOEXEC, so no child process inherits the lock.
    let f = File::open(dir).map_err(io_err)?;
    // SAFETY: a valid descriptor we own; flock takes no pointers.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(f);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(io_err(e));
    }
    Err(ExclusiveError::Held {
        path: dir.to_owned(),
        what,
        holder: f
            .metadata()
            .ok()
            .and_then(|m| holder(&m))
            .unwrap_or_else(|| "a process that holds its lock".to_owned()),
    })
}

/// Who holds the `flock` on the inode of `m`, from `/proc/locks`:
/// "pid N: its command line".
fn holder(m: &fs::Metadata) -> Option<String> {
    let locks = fs::read_to_string("/proc/locks").ok()?;
    let pid = holder_pid(&locks, m.dev(), m.ino())?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = String::from_utf8_lossy(&cmdline)
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Some(if cmd.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid}: {cmd}")
    })
}

/// The pid of the `FLOCK` on device `dev`, inode `ino` in the text of
/// `/proc/locks` (`1: FLOCK  ADVISORY  WRITE 1234 00:28:4264402 0 EOF`;
/// the device is `major:minor` in hex).
fn holder_pid(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // A blocked waiter's line starts "1: ->"; only holders count.
        (f.len() >= 6 && f[1] == "FLOCK" && f[5] == want)
            .then(|| f[4].parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_holder_of_an_inode() {
        let dev = libc::makedev(0, 0x28);
        let locks = "1: POSIX  ADVISORY  WRITE 77 00:28:4264402 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 29416 00:28:4264402 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 5 00:29:4264402 0 EOF\n";
        assert_eq!(holder_pid(locks, dev, 4264402), Some(29416));
        assert_eq!(holder_pid(locks, dev, 1), None);
        assert_eq!(holder_pid(locks, libc::makedev(0, 0x2a), 4264402), None);
    }

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let base = std::env::temp_dir().join(format!("ispf-exclusive-{}", std::process::id()));
        let (pins, run) = (base.join("pins"), base.join("run"));
        let first = Exclusive::for_run(&pins, &run).unwrap();
        // A new open file description conflicts even within one process.
        let err = Exclusive::for_run(&pins, &base.join("run2"))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(&pins.display().to_string()), "{err}");
        assert!(err.contains("pin directory"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        let err = Exclusive::offline(&base.join("other"), &run)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("run directory"), "{err}");
        drop(first);
        // Released, and the pin directory this start made (empty) is gone.
        assert!(!pins.exists());
        let again = Exclusive::for_run(&pins, &run).unwrap();
        drop(again);
        let _ = fs::remove_dir_all(&base);
    }
}
