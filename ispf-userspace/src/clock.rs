//! Wall-clock time as the controller records it: unix seconds in the
//! database and decisions, RFC 3339 in everything people read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

pub fn rfc3339(unix: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
        .to_string()
}

/// Whether standard error is the journal's stream: `JOURNAL_STREAM` is
/// `device:inode` of it, and a child that inherited the variable with
/// its standard error redirected elsewhere must not trust it
/// (systemd.exec(5)).
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(m) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino())
}

/// One line on standard error. The journal stamps each line itself
/// (systemd sets `JOURNAL_STREAM` for a service whose output it keeps);
/// anywhere else (a terminal, a file, a supervisor that is not systemd)
/// the line carries its own UTC time, or a log read after an incident
/// cannot be lined up with `ispf device`'s timeline.
pub fn log(msg: impl std::fmt::Display) {
    static JOURNAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *JOURNAL.get_or_init(stderr_is_journal) {
        eprintln!("ispf: {msg}");
    } else {
        eprintln!("{} ispf: {msg}", now_rfc3339());
    }
}
