//! The device a `Calling-Station-Id` names.

/// A MAC in one of the spellings NASes use — `AA-BB-CC-DD-EE-FF`,
/// `aa:bb:cc:dd:ee:ff`, `aabb.ccdd.eeff`, `aabb-ccdd-eeff`,
/// `aabbcc-ddeeff`, `AABBCCDDEEFF` — possibly followed by `:SSID` (RFC
/// 3580 §3.21 for wireless). Only those shapes: a VPN concentrator's
/// client address (`100.100.100.100`) or an EUI-64 has twelve hex digits
/// too, and read as a MAC it would bind some other device.
pub fn station_mac(s: &str) -> Option<[u8; 6]> {
    // (length, separator positions) of each spelling.
    const SHAPES: [(usize, &[usize]); 4] = [
        (17, &[2, 5, 8, 11, 14]),
        (14, &[4, 9]),
        (13, &[6]),
        (12, &[]),
    ];
    let b = s.as_bytes();
    for (len, seps) in SHAPES.iter() {
        let Some(head) = b.get(..*len) else {
            continue;
        };
        // The rest is nothing or an SSID after a colon.
        let rest = &b[*len..];
        if !(rest.is_empty() || rest[0] == b':') {
            continue;
        }
        let sep = seps.first().map(|&i| head[i]);
        if !matches!(sep, None | Some(b':' | b'-' | b'.')) {
            continue;
        }
        // One separator throughout, where the shape has them; a colon
        // spelling only in six groups.
        let same = seps.iter().all(|&i| Some(head[i]) == sep);
        let fits = match sep {
            Some(b':') => seps.len() == 5,
            Some(b'.') => seps.len() == 2,
            _ => true,
        };
        let hex: Vec<u8> = head
            .iter()
            .enumerate()
            .filter(|(i, _)| !seps.contains(i))
            .map(|(_, c)| *c)
            .collect();
        if !same || !fits || hex.len() != 12 || !hex.iter().all(u8::is_ascii_hexdigit) {
            continue;
        }
        // `aa:bb:cc:dd:ee:ff:00:11` is an EUI-64, not a MAC and an SSID:
        // a seventh group of two hex digits is read as one, so an SSID
        // like `BE` is refused rather than some other device bound.
        let more_groups = sep == Some(b':')
            && rest.len() >= 3
            && rest[1..3].iter().all(u8::is_ascii_hexdigit)
            && rest.get(3).is_none_or(|c| *c == b':');
        if more_groups {
            return None;
        }
        let mut m = [0u8; 6];
        for (i, byte) in m.iter_mut().enumerate() {
            let pair = std::str::from_utf8(&hex[2 * i..2 * i + 2]).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        return Some(m);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_usual_mac_spelling_and_nothing_else() {
        let want = Some([0xaa, 0xbb, 0xcc, 0x0d, 0xee, 0xff]);
        for s in [
            "AA-BB-CC-0D-EE-FF",
            "aa:bb:cc:0d:ee:ff",
            "aabb.cc0d.eeff",
            "aabb-cc0d-eeff",
            "aabbcc-0deeff",
            "AABBCC0DEEFF",
            "AA-BB-CC-0D-EE-FF:Hospital-Staff",
            "aa:bb:cc:0d:ee:ff:Hospital-Staff",
            "AABBCC0DEEFF:Hospital-Staff",
        ] {
            assert_eq!(station_mac(s), want, "{s}");
        }
        for s in [
            "",
            "AA-BB-CC",
            "not a mac",
            "AA-BB-CC-0D-EE-FF-00",
            "100.100.100.100",
            "aa:bb:cc:0d:ee:ff:00:11",
            "aa:bb:cc:0d:ee:ff:00:11:ward",
            "aa:bb:cc:0d:ee:ff:BE",
            "aa-bb:cc-0d:ee-ff",
            "aabb:cc0d:eeff",
            "AA-BB-CC-0D-EE-FG",
            "AABBCC0DEEFF00",
            "+4912345678901",
            "zz:bb:cc:0d:ee:ff",
        ] {
            assert_eq!(station_mac(s), None, "{s}");
        }
    }
}
