//! The one way a policy file is read, for `check`, `run`, `reload` and
//! `replay` alike: only a regular file, of bounded size, valid UTF-8, then
//! parsed and validated, and (for commands that enforce) checked against
//! the maps' capacity by the same rule.

use std::{
    fs::File,
    io::Read,
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use super::{Policy, PolicyError};

/// The largest policy file read: a million devices take about 120 MB.
pub const MAX_POLICY_BYTES: u64 = 512 << 20;

/// Reads and validates the policy at `path`; returns it with the file's
/// bytes (kept verbatim as the enforced copy).
pub fn read_policy(path: &Path) -> Result<(Policy, Vec<u8>), PolicyError> {
    let bytes = read_bounded(path, MAX_POLICY_BYTES)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let (line, column) = position(&bytes, e.valid_up_to());
        PolicyError::Syntax {
            file: path.to_owned(),
            path: format!("line {line}, column {column}"),
            message: "the file is not valid UTF-8 (JSON must be); re-save it as UTF-8".into(),
        }
    })?;
    let policy = Policy::from_str(text, path)?;
    let problems = super::section_checks::check_secret(&policy.doc);
    if !problems.is_empty() {
        return Err(PolicyError::Invalid {
            file: path.to_owned(),
            problems,
        });
    }
    Ok((policy, bytes))
}

/// 1-based line and column of byte `offset`.
fn position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = offset
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, column)
}

/// The bytes of `path` if it is a regular file of at most `limit` bytes.
/// Opened without blocking, so a FIFO or a device cannot stall the caller.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, PolicyError> {
    let err = |message: String| PolicyError::Read {
        file: path.to_owned(),
        source: std::io::Error::other(message),
    };
    let io = |source| PolicyError::Read {
        file: path.to_owned(),
        source,
    };
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(err(format!(
            "it is {what}; a policy must be a regular file"
        )));
    }
    if meta.len() > limit {
        return Err(err(format!(
            "it is {} bytes, over the limit of {limit}",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file that grows while read stops at the limit all the same.
    f.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(err(format!("it grew past the limit of {limit} bytes")));
    }
    Ok(bytes)
}

/// Absolute form of a path given on the command line, resolved against the
/// caller's directory (the controller's is another).
pub fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_small_regular_file() {
        let dir = std::env::temp_dir().join(format!("ispf-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = read_bounded(&dir, 100).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t = std::time::Instant::now();
        let e = read_bounded(&fifo, 100).unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
        assert!(t.elapsed().as_secs() < 2, "a FIFO must not block");
        let big = dir.join("big.json");
        std::fs::write(&big, vec![b' '; 101]).unwrap();
        let e = read_bounded(&big, 100).unwrap_err().to_string();
        assert!(e.contains("over the limit"), "{e}");
        let bad = dir.join("bad.json");
        std::fs::write(&bad, b"{\n  \"version\": 1,\n  \"x\": \"\xff\"\n}").unwrap();
        let e = read_policy(&bad).unwrap_err().to_string();
        assert!(e.contains("line 3, column 9") && e.contains("UTF-8"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
