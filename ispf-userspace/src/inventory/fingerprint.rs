//! Passive fingerprints: what a DHCP client says of itself (host name,
//! vendor class, the options it asks for) and what an LLDP frame names its
//! system. The datapath hands over the raw bytes; nothing here trusts them.

/// What a DHCP request tells about its client.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dhcp {
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 60.
    pub vendor_class: Option<String>,
    /// Option 55, comma-separated option numbers.
    pub params: Option<String>,
}

/// Printable text of an option's bytes (control characters dropped).
fn text(b: &[u8]) -> Option<String> {
    let s: String = String::from_utf8_lossy(b)
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    (!s.trim().is_empty()).then(|| s.trim().to_owned())
}

/// Parses DHCP options (what follows the magic cookie), stopping at the
/// end option, a truncated option or the end of the bytes.
pub fn dhcp(options: &[u8]) -> Dhcp {
    let mut d = Dhcp::default();
    let mut i = 0;
    while i < options.len() {
        let code = options[i];
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let Some(&len) = options.get(i + 1) else {
            break;
        };
        let Some(value) = options.get(i + 2..i + 2 + len as usize) else {
            break;
        };
        match code {
            12 => d.hostname = text(value),
            60 => d.vendor_class = text(value),
            55 => {
                d.params = Some(
                    value
                        .iter()
                        .map(|o| o.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                )
            }
            _ => {}
        }
        i += 2 + len as usize;
    }
    d
}

/// The system name (TLV type 5) of an LLDP PDU.
pub fn lldp_system_name(pdu: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 2 <= pdu.len() {
        let head = u16::from_be_bytes([pdu[i], pdu[i + 1]]);
        let (kind, len) = (head >> 9, (head & 0x1ff) as usize);
        if kind == 0 {
            return None;
        }
        let value = pdu.get(i + 2..i + 2 + len)?;
        if kind == 5 {
            return text(value);
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_options_and_their_abuse() {
        let mut o = vec![53, 1, 3];
        o.extend_from_slice(&[12, 6]);
        o.extend_from_slice(b"pump-7");
        o.extend_from_slice(&[60, 8]);
        o.extend_from_slice(b"udhcp 1.");
        o.extend_from_slice(&[55, 3, 1, 3, 6, 255, 0, 0]);
        let d = dhcp(&o);
        assert_eq!(d.hostname.as_deref(), Some("pump-7"));
        assert_eq!(d.vendor_class.as_deref(), Some("udhcp 1."));
        assert_eq!(d.params.as_deref(), Some("1,3,6"));
        // Truncated, empty, control characters: never a panic, never junk.
        assert_eq!(dhcp(&[12, 200, b'x']), Dhcp::default());
        assert_eq!(dhcp(&[12]), Dhcp::default());
        assert_eq!(dhcp(&[]), Dhcp::default());
        assert_eq!(dhcp(&[12, 3, 7, 8, 9]).hostname, None);
    }

    #[test]
    fn lldp_system_name_tlv() {
        let mut pdu = vec![0x02, 0x07, 4, 0, 0, 0, 0, 0, 1];
        pdu.extend_from_slice(&[0x0a, 0x06]);
        pdu.extend_from_slice(b"mon-12");
        pdu.extend_from_slice(&[0, 0]);
        assert_eq!(lldp_system_name(&pdu).as_deref(), Some("mon-12"));
        assert_eq!(lldp_system_name(&[0x0a, 0xff, 1]), None);
        assert_eq!(lldp_system_name(&[]), None);
    }
}
