//! The ispf controller library: policy model, validation and compilation,
//! the datapath loader, and replay of captures through the real program.

pub mod bpfsys;
pub mod clock;
pub mod config;
pub mod control;
pub mod controller;
pub mod datapath;
pub mod decisions;
pub mod detect;
pub mod events;
pub mod feeds;
pub mod fleet;
pub mod identity;
pub mod inventory;
pub mod metrics;
pub mod policy;
pub mod replay;
pub mod system;

/// The XDP object, built from `ispf-ebpf` by `build.rs`.
pub const ISPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ispf-xdp"));

/// An error and its causes on one line, leaving out a cause whose text an
/// outer message already quotes: most of our error types name their cause
/// inline, so `{:#}` would say it twice ("cannot read policy p.json: No
/// such file or directory (os error 2): No such file or directory").
pub fn describe(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

/// `s` with control characters escaped (`\n`, `\u{1b}`): text from the
/// network or from etcd must not recolour a terminal or forge a log line.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped = c.is_control().then(|| c.escape_default());
            escaped
                .into_iter()
                .flatten()
                .chain((!c.is_control()).then_some(c))
        })
        .collect()
}

/// `s` cut to at most `max` bytes (on a character boundary), saying how
/// much was left out: error messages quote what they refuse, and what
/// they refuse can be megabytes long.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes more)", &s[..end], s.len() - end)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_an_outer_message_quotes_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(crate::policy::PolicyError::Read {
            file: "p.json".into(),
            source: io,
        })
        .context("reload refused");
        assert_eq!(
            super::describe(&e),
            "reload refused: cannot read policy p.json: gone"
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::describe(&e), "outer: inner");
    }

    #[test]
    fn clipped_on_a_character_boundary() {
        assert_eq!(super::clip("short", 10), "short");
        assert_eq!(super::clip("ééé", 3), "é… (4 bytes more)");
    }
}
