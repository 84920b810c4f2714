//! The text an `Acct-Session-Id` is kept and compared as.

/// An `Acct-Session-Id` as text that tells every id apart: printable
/// characters as they are, a backslash doubled, and every other byte
/// (control characters, bytes that are not UTF-8) as `\xNN`. Escaped like
/// other attributes' text, a newline and a literal `\n`, or two ids
/// differing only in bytes that are not UTF-8, were one session, so one's
/// Start moved the other's role away. Empty (or only NULs, as some NASes
/// pad): none.
pub(super) fn session_text(v: &[u8]) -> Option<String> {
    let v = &v[..v.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)];
    let mut out = String::with_capacity(v.len());
    for chunk in v.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut b = [0u8; 4];
                    for byte in c.encode_utf8(&mut b).bytes() {
                        out.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct ids stay distinct; an empty or NUL-padded-empty one is
    /// none.
    #[test]
    fn session_ids_are_told_apart() {
        let ids: [&[u8]; 6] = [b"S\n1", b"S\\n1", b"S\xff1", b"S\xfe1", b"S\\xff1", b"S1"];
        let texts: std::collections::HashSet<String> =
            ids.iter().map(|i| session_text(i).unwrap()).collect();
        assert_eq!(texts.len(), ids.len(), "{texts:?}");
        assert_eq!(session_text(b"00000042\0").as_deref(), Some("00000042"));
        assert_eq!(session_text(b"z\xc3\xab").as_deref(), Some("zë"));
        assert_eq!(session_text(b""), None);
        assert_eq!(session_text(b"\0\0\0"), None);
    }
}
