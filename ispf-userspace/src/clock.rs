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

/// One line on standard error, which systemd's journal keeps.
pub fn log(msg: impl std::fmt::Display) {
    eprintln!("ispf: {msg}");
}
