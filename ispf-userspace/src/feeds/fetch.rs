//! Getting a feed's text: a local file (read again when its size or
//! modification time changes) or an http(s) URL, asked with `If-None-Match`
//! and `If-Modified-Since` so an unchanged feed costs a 304, with timeouts.
//! Failures are the caller's to back off from; nothing here retries.

use std::{
    io::Read,
    path::Path,
    time::{Duration, SystemTime},
};

use super::FeedError;

/// The largest feed accepted (a million lines of addresses is ~20 MB).
pub const MAX_FEED_BYTES: u64 = 512 << 20;
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a feed file must be unmodified before it is read.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Whether the file at `source` differs from what `v` last read (false
/// when it cannot be looked at: a retry's backoff covers that).
pub fn file_changed(source: &str, v: &Validators) -> bool {
    std::fs::metadata(source)
        .is_ok_and(|m| Some((m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH))) != v.stamp)
}

/// What is remembered between fetches of one source.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// A file's (length, modification time).
    pub stamp: Option<(u64, SystemTime)>,
}

/// The text, or `None` when the source says it has not changed. An HTTP
/// fetch gives up after `timeout`.
pub fn fetch(
    source: &str,
    v: &mut Validators,
    timeout: Duration,
) -> Result<Option<String>, FeedError> {
    if source.starts_with("http://") || source.starts_with("https://") {
        http(source, v, timeout)
    } else {
        file(Path::new(source), v)
    }
}

fn file(path: &Path, v: &mut Validators) -> Result<Option<String>, FeedError> {
    let err = |message: String| FeedError::File {
        path: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if meta.len() > MAX_FEED_BYTES {
        return Err(err(format!(
            "{} bytes, more than the {MAX_FEED_BYTES} a feed may have",
            meta.len()
        )));
    }
    let stamp = (
        meta.len(),
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    );
    if v.stamp == Some(stamp) {
        return Ok(None);
    }
    // A file modified within the last second may be half written (a line
    // cut off mid-address, a rewrite in place): it is read once it has
    // been still for a second (the caller asks again every second).
    if stamp.1.elapsed().is_ok_and(|age| age < SETTLE) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FEED_BYTES).read_to_end(&mut bytes))
        .map_err(|e| err(e.to_string()))?;
    v.stamp = Some(stamp);
    Ok(Some(text_of(bytes)))
}

fn http(url: &str, v: &mut Validators, timeout: Duration) -> Result<Option<String>, FeedError> {
    let err = |message: String| FeedError::Http {
        url: url.to_owned(),
        message,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout.min(HTTP_TIMEOUT)))
        .http_status_as_error(false)
        .user_agent(concat!("ispf/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(e) = &v.etag {
        req = req.header("If-None-Match", e);
    }
    if let Some(m) = &v.last_modified {
        req = req.header("If-Modified-Since", m);
    }
    let mut resp = req.call().map_err(|e| err(e.to_string()))?;
    let status = resp.status().as_u16();
    if status == 304 {
        return Ok(None);
    }
    if status != 200 {
        return Err(err(format!("the server answered {status}")));
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    };
    let (etag, last_modified) = (header("etag"), header("last-modified"));
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(MAX_FEED_BYTES)
        .read_to_vec()
        .map_err(|e| err(e.to_string()))?;
    v.etag = etag;
    v.last_modified = last_modified;
    Ok(Some(text_of(bytes)))
}

/// A feed's bytes as text. A byte sequence that is not UTF-8 (a Latin-1
/// comment, a cut character) spoils its own line only: it reads as U+FFFD,
/// so that line is skipped and reported with its number instead of the
/// whole feed failing. A leading byte-order mark (Windows tools write one)
/// is not part of the first line or of the JSON.
pub fn text_of(bytes: Vec<u8>) -> String {
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_byte_spoils_its_line_and_a_byte_order_mark_is_dropped() {
        let t = text_of(b"\xef\xbb\xbf10.0.0.1\n# St\xe4dte\n10.0.0.\xff2\n".to_vec());
        assert_eq!(t, "10.0.0.1\n# St\u{fffd}dte\n10.0.0.\u{fffd}2\n");
        let c = crate::feeds::plain::parse(&t);
        assert_eq!(c.entries.len(), 1, "{:?}", c.problems);
        assert_eq!(c.skipped, 1);
        assert!(c.problems[0].starts_with("line 3:"), "{:?}", c.problems);
        assert_eq!(text_of(b"plain".to_vec()), "plain");
    }

    /// A file being written is read once it has been still for a second,
    /// and not again until it changes.
    #[test]
    fn a_file_is_read_once_settled_and_again_when_changed() {
        let path = std::env::temp_dir().join(format!("ispf-feed-settle-{}", std::process::id()));
        std::fs::write(&path, "10.0.0.0/2").unwrap();
        let src = path.to_str().unwrap();
        let mut v = Validators::default();
        assert_eq!(
            fetch(src, &mut v, HTTP_TIMEOUT).unwrap(),
            None,
            "still settling"
        );
        assert!(file_changed(src, &v));
        let settled = SystemTime::now() - Duration::from_secs(5);
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        use std::io::Write;
        (&f).write_all(b"4\n").unwrap();
        f.set_modified(settled).unwrap();
        assert_eq!(
            fetch(src, &mut v, HTTP_TIMEOUT).unwrap().as_deref(),
            Some("10.0.0.0/24\n")
        );
        assert!(!file_changed(src, &v));
        assert_eq!(fetch(src, &mut v, HTTP_TIMEOUT).unwrap(), None, "unchanged");
        let _ = std::fs::remove_file(&path);
    }
}
