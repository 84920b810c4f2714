//! One benchmark or demo at a time on a machine. They create network
//! namespaces, links and pins under fixed names, and delete whatever they
//! find under those names first: two at once would tear each other down
//! half-way and report figures (or a demo) of neither.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, Write},
    os::fd::AsRawFd,
    path::Path,
};

use anyhow::{bail, Context, Result};

const LOCK: &str = "/run/lock/ispf-bench-demo.lock";

/// Held while the benchmark or demo runs; released when dropped, or by the
/// kernel when the process ends however it ends.
pub struct Exclusive(#[allow(dead_code)] File);

/// Takes the machine's benchmark-and-demo lock for `what`, or says who
/// holds it.
pub fn exclusive(what: &str) -> Result<Exclusive> {
    exclusive_at(Path::new(LOCK), what)
}

fn exclusive_at(path: &Path, what: &str) -> Result<Exclusive> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        bail!(
            "another ispf benchmark or demo is running ({}): they use the same namespace, link and pin names, so {what} cannot start beside it; wait for it to finish, or stop it if it is stuck (the lock is {})",
            holder.trim(),
            path.display()
        );
    }
    // Who holds it, for the message above.
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "pid {}, {what}", std::process::id())?;
    Ok(Exclusive(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = std::env::temp_dir().join(format!("ispf-exclusive-{}", std::process::id()));
        let path = dir.join("lock");
        let first = exclusive_at(&path, "the first").unwrap();
        let e = exclusive_at(&path, "the second")
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains(&format!("pid {}, the first", std::process::id())),
            "{e}"
        );
        drop(first);
        exclusive_at(&path, "the third").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
