//! What the end-to-end tests read over HTTP (a controller's `/metrics`,
//! Prometheus's query API), and waiting until what they read comes true.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

/// The body of `GET path` from `addr`. A controller that does not answer
/// within ten seconds fails the test instead of hanging it.
pub fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("reading {path} from {addr}: {e}"));
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// A controller's metrics, as Prometheus would scrape them.
pub fn scrape(addr: &str) -> String {
    http_get(addr, "/metrics")
}

/// The value of the sample of metric `name` (exactly that name) whose
/// labels include `labels`, in `/metrics` text.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .find_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let all = labels
                .iter()
                .all(|(k, v)| head.contains(&format!("{k}=\"{v}\"")));
            (head.split('{').next() == Some(name) && all).then(|| value.parse().ok())?
        })
}

/// Polls `ok` until it holds and returns how long that took; fails the
/// test, naming `what`, if it does not hold within `within`.
pub fn wait(what: &str, within: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn a_sample_is_found_by_its_exact_name_and_labels() {
        let text = "# HELP ispf_x x\n\
                    ispf_x_total 9\n\
                    ispf_x{segment=\"pumps\",reason=\"rule\"} 3\n\
                    ispf_x{segment=\"monitors\",reason=\"rule\"} 4\n\
                    ispf_y 5\n";
        assert_eq!(
            sample(text, "ispf_x", &[("segment", "monitors")]),
            Some(4.0)
        );
        assert_eq!(sample(text, "ispf_x", &[]), Some(3.0));
        assert_eq!(sample(text, "ispf_x_total", &[]), Some(9.0));
        assert_eq!(sample(text, "ispf_y", &[]), Some(5.0));
        assert_eq!(sample(text, "ispf_x", &[("segment", "guests")]), None);
        assert_eq!(sample(text, "ispf_z", &[]), None);
    }
}
