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
        fs::{DirBuilderExt, MetadataExt, PermissionsExt},
        io::AsRawFd,
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
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
    /// A pin directory this start made and locked, by path and inode:
    /// removed again if it is still that directory, and empty, when the
    /// lock goes (a refused start leaves nothing behind). Never another
    /// process's directory that took its place.
    made: Option<(PathBuf, (u64, u64))>,
}

/// How often a lock is tried again when the directory was replaced
/// between opening and locking it.
const ATTEMPTS: usize = 5;

impl Exclusive {
    /// Locks `pin_dir` and `run_dir` for a controller, making them (mode
    /// 0700) if they do not exist yet.
    pub fn for_run(pin_dir: &Path, run_dir: &Path) -> Result<Exclusive, ExclusiveError> {
        let mut x = Exclusive {
            _held: Vec::new(),
            made: None,
        };
        for (dir, what) in [(pin_dir, "pin directory"), (run_dir, "run directory")] {
            let (f, id, created) = make_and_lock(dir, what)?;
            if created && dir == pin_dir {
                x.made = Some((dir.to_owned(), id));
            }
            x._held.push(f);
        }
        Ok(x)
    }

    /// Locks whichever of the two directories exist, for work done with
    /// no controller running (`ispf detach`). Returns whether the pin
    /// directory existed: one that did not must not be removed, even if a
    /// starting controller makes it meanwhile.
    pub fn offline(pin_dir: &Path, run_dir: &Path) -> Result<(Exclusive, bool), ExclusiveError> {
        let mut x = Exclusive {
            _held: Vec::new(),
            made: None,
        };
        let mut pins = false;
        for (dir, what) in [(pin_dir, "pin directory"), (run_dir, "run directory")] {
            match lock(dir, what) {
                Ok((f, _)) => {
                    pins |= dir == pin_dir;
                    x._held.push(f);
                }
                Err(ExclusiveError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok((x, pins))
    }

    /// The pid holding `dir`'s lock, if any.
    pub fn holder_pid(dir: &Path) -> Option<u32> {
        let m = fs::metadata(dir).ok()?;
        let locks = fs::read_to_string("/proc/locks").ok()?;
        holder_pid(&locks, m.dev(), m.ino())
    }

    /// Waits up to `within` for `pid` (as [`Self::holder_pid`] named it;
    /// `None`: whoever holds `run_dir`) to let go of it: a controller that
    /// answered a detach is still shutting down. Whether it did; a new
    /// controller that took the directory meanwhile does not make this
    /// wait.
    pub fn released(run_dir: &Path, pid: Option<u32>, within: Duration) -> bool {
        let until = Instant::now() + within;
        if let Some(p) = pid {
            // Watched in /proc/locks, never by taking the lock: a start
            // that came at the moment of a probe would be refused. Gone in
            // two reads running: /proc/locks can tear across reads.
            let mut gone = 0;
            loop {
                gone = if Self::holder_pid(run_dir) == Some(p) {
                    0
                } else {
                    gone + 1
                };
                if gone >= 2 {
                    return true;
                }
                if Instant::now() >= until {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        loop {
            match lock(run_dir, "run directory") {
                Ok(_) => return true,
                Err(ExclusiveError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    return true
                }
                Err(ExclusiveError::Held { .. }) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(ExclusiveError::Held { .. }) => return false,
                // Nothing to wait for that could be seen.
                Err(_) => return true,
            }
        }
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        if let Some((dir, id)) = &self.made {
            // Only the directory this start made and locked; fails, as it
            // should, once anything is pinned there.
            if fs::metadata(dir).is_ok_and(|m| (m.dev(), m.ino()) == *id) {
                let _ = fs::remove_dir(dir);
            }
        }
    }
}

/// Makes `dir` if missing and locks it; a directory removed between the
/// two (a refused start cleaning up, a detach) is made again.
fn make_and_lock(
    dir: &Path,
    what: &'static str,
) -> Result<(File, (u64, u64), bool), ExclusiveError> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let created = make(dir, what)?;
        match lock(dir, what) {
            Ok((f, id)) => {
                // Anyone who can open the directory can hold a lock on it:
                // one made 0755 by an earlier version is closed to other
                // users, by the holder only, and as far as it is allowed.
                if !created {
                    let _ = f.set_permissions(fs::Permissions::from_mode(0o700));
                }
                return Ok((f, id, created));
            }
            Err(ExclusiveError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                last = Some(source)
            }
            Err(e) => return Err(e),
        }
    }
    Err(ExclusiveError::Io {
        path: dir.to_owned(),
        what,
        source: last.unwrap_or_else(|| io::Error::other("it kept disappearing")),
    })
}

/// Makes `dir` (and its parents, mode 0700) if missing; whether this call
/// made it. Something other than a directory there is refused.
fn make(dir: &Path, what: &'static str) -> Result<bool, ExclusiveError> {
    let err = |source| ExclusiveError::Io {
        path: dir.to_owned(),
        what,
        source,
    };
    if let Some(parent) = dir.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(err)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(false),
            Ok(_) => Err(err(io::Error::other(
                "it exists and is not a directory; remove it or choose another path",
            ))),
            Err(e) => Err(err(e)),
        },
        Err(e) => Err(err(e)),
    }
}

/// An exclusive lock on `dir`, and the directory's (device, inode).
fn lock(dir: &Path, what: &'static str) -> Result<(File, (u64, u64)), ExclusiveError> {
    let io_err = |source| ExclusiveError::Io {
        path: dir.to_owned(),
        what,
        source,
    };
    for _ in 0..ATTEMPTS {
        // Opened read-only: a directory is locked through any descriptor.
        // std opens with O_CLOEXEC, so no child process inherits the lock.
        let f = File::open(dir).map_err(io_err)?;
        // SAFETY: a valid descriptor we own; flock takes no pointers.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io_err(e));
            }
            return Err(ExclusiveError::Held {
                path: dir.to_owned(),
                what,
                holder: f
                    .metadata()
                    .ok()
                    .and_then(|m| holder(&m))
                    .unwrap_or_else(|| "a process that holds its lock".to_owned()),
            });
        }
        let held = f.metadata().map_err(io_err)?;
        let id = (held.dev(), held.ino());
        // The path must still name the directory locked: one removed and
        // made again meanwhile (a detach, another start) is locked anew.
        match fs::metadata(dir) {
            Ok(now) if (now.dev(), now.ino()) == id => return Ok((f, id)),
            Ok(_) => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
    Err(io_err(io::Error::other(
        "it was replaced again and again while being locked",
    )))
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
        // A refused start (it made nothing) leaves the holder's empty
        // directory alone.
        drop(Exclusive::for_run(&pins, &base.join("run3")).err());
        assert!(pins.exists());
        assert!(!Exclusive::released(&run, None, Duration::from_millis(50)));
        let me = Exclusive::holder_pid(&run);
        assert_eq!(me, Some(std::process::id()));
        // Held by this process, not by the one it waits for.
        assert!(Exclusive::released(
            &run,
            Some(1),
            Duration::from_millis(50)
        ));
        assert!(!Exclusive::released(&run, me, Duration::from_millis(50)));
        drop(first);
        assert!(Exclusive::released(&run, None, Duration::from_secs(1)));
        // Released, and the pin directory this start made (empty) is gone.
        assert!(!pins.exists());
        let again = Exclusive::for_run(&pins, &run).unwrap();
        // Removed and made again by someone else: not ours to remove.
        fs::remove_dir(&pins).unwrap();
        fs::create_dir(&pins).unwrap();
        drop(again);
        assert!(pins.exists());
        let file = base.join("file");
        fs::write(&file, "").unwrap();
        let err = Exclusive::for_run(&file, &base.join("run4"))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("not a directory"), "{err}");
        let (offline, had_pins) = Exclusive::offline(&base.join("gone"), &run).unwrap();
        assert!(!had_pins);
        drop(offline);
        let _ = fs::remove_dir_all(&base);
    }
}
