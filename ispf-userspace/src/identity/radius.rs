//! The RADIUS accounting codec (RFC 2865 packet format, RFC 2866
//! accounting): parsing that trusts nothing, the Request Authenticator
//! check, Accounting-Response encoding, and an Accounting-Request encoder
//! (for the bench and tests that are not about `radclient`).
//!
//! Written here rather than taken from a crate: `radius-parser` parses but
//! neither verifies nor encodes; `radius-server` is a young one-author
//! framework that owns the socket loop; `radius` (moznion) has not been
//! released since 2022 and brings an async server. Accounting needs a
//! header, a TLV walk, two MD5 sums and the attribute table below.

use md5::{Digest, Md5};

use super::IdentityError;

/// RFC 2865 §3: a packet is at most 4096 octets.
pub const MAX_PACKET: usize = 4096;
pub const HEADER: usize = 20;

pub const ACCOUNTING_REQUEST: u8 = 4;
pub const ACCOUNTING_RESPONSE: u8 = 5;

/// The attributes accounting uses (RFC 2865 §5, RFC 2866 §5, RFC 2869).
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const FILTER_ID: u8 = 11;
    pub const CLASS: u8 = 25;
    pub const CALLED_STATION_ID: u8 = 30;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const EVENT_TIMESTAMP: u8 = 55;
    pub const ACCT_INTERIM_INTERVAL: u8 = 85;
    pub const NAS_IPV6_ADDRESS: u8 = 95;
}

/// `Acct-Status-Type` values (RFC 2866 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Start,
    Stop,
    Interim,
    AccountingOn,
    AccountingOff,
    Other(u32),
}

impl Status {
    fn from_u32(v: u32) -> Self {
        match v {
            1 => Status::Start,
            2 => Status::Stop,
            3 => Status::Interim,
            7 => Status::AccountingOn,
            8 => Status::AccountingOff,
            n => Status::Other(n),
        }
    }

    pub fn to_u32(self) -> u32 {
        match self {
            Status::Start => 1,
            Status::Stop => 2,
            Status::Interim => 3,
            Status::AccountingOn => 7,
            Status::AccountingOff => 8,
            Status::Other(n) => n,
        }
    }
}

/// A packet as it came off the wire, its attributes in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    pub attributes: Vec<(u8, &'a [u8])>,
    /// The octets the authenticator covers (the header's length; octets
    /// beyond it are padding, RFC 2865 §3).
    pub raw: &'a [u8],
}

/// Parses one datagram: a header whose length field fits the datagram, and
/// attributes that tile the rest exactly, each at least 2 octets long.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, IdentityError> {
    let bad = |why: String| IdentityError::Malformed(why);
    if buf.len() < HEADER {
        return Err(bad(format!(
            "{} octets, shorter than a RADIUS header",
            buf.len()
        )));
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    if !(HEADER..=MAX_PACKET).contains(&len) {
        return Err(bad(format!("length field {len} outside 20-4096")));
    }
    if len > buf.len() {
        return Err(bad(format!(
            "length field {len} but only {} octets arrived",
            buf.len()
        )));
    }
    let raw = &buf[..len];
    let mut attributes = Vec::new();
    let mut at = HEADER;
    while at < len {
        if at + 2 > len {
            return Err(bad(format!("attribute at octet {at} is cut short")));
        }
        let (t, l) = (raw[at], raw[at + 1] as usize);
        if l < 2 || at + l > len {
            return Err(bad(format!(
                "attribute {t} at octet {at} has bad length {l}"
            )));
        }
        attributes.push((t, &raw[at + 2..at + l]));
        at += l;
    }
    let mut authenticator = [0; 16];
    authenticator.copy_from_slice(&raw[4..20]);
    Ok(Packet {
        code: raw[0],
        identifier: raw[1],
        authenticator,
        attributes,
        raw,
    })
}

/// RFC 2866 §3: the Request Authenticator of an Accounting-Request is
/// MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret).
pub fn request_authenticator(raw: &[u8], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(&raw[..4]);
    h.update([0u8; 16]);
    h.update(&raw[HEADER..]);
    h.update(secret);
    h.finalize().into()
}

/// Whether the packet was sent by someone who knows the secret. Compared
/// in constant time: the authenticator is a MAC.
pub fn verify(p: &Packet, secret: &[u8]) -> bool {
    let want = request_authenticator(p.raw, secret);
    want.iter()
        .zip(p.authenticator.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// An Accounting-Response without attributes: Response Authenticator =
/// MD5(Code + Identifier + Length + Request Authenticator + Secret).
pub fn response(identifier: u8, request_auth: &[u8; 16], secret: &[u8]) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[0] = ACCOUNTING_RESPONSE;
    out[1] = identifier;
    out[2..4].copy_from_slice(&20u16.to_be_bytes());
    let mut h = Md5::new();
    h.update(&out[..4]);
    h.update(request_auth);
    h.update(secret);
    out[4..].copy_from_slice(&h.finalize());
    out
}

/// An Accounting-Request with `attrs`, signed with `secret`.
pub fn request(identifier: u8, attrs: &[(u8, Vec<u8>)], secret: &[u8]) -> Vec<u8> {
    let mut out = vec![ACCOUNTING_REQUEST, identifier, 0, 0];
    out.extend_from_slice(&[0; 16]);
    for (t, v) in attrs {
        let v = &v[..v.len().min(253)];
        out.push(*t);
        out.push(v.len() as u8 + 2);
        out.extend_from_slice(v);
    }
    let len = out.len() as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    let auth = request_authenticator(&out, secret);
    out[4..20].copy_from_slice(&auth);
    out
}

/// What an Accounting-Request says, as ispf reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounting {
    pub status: Option<Status>,
    pub session_id: Option<String>,
    pub user: Option<String>,
    pub calling_station: Option<String>,
    pub classes: Vec<String>,
    pub filter_ids: Vec<String>,
    pub nas_ip: Option<std::net::Ipv4Addr>,
    pub nas_id: Option<String>,
    pub nas_ipv6: Option<std::net::Ipv6Addr>,
    pub interim_s: Option<u32>,
    /// `Event-Timestamp`: Unix seconds at the NAS when the event happened.
    pub event_time: Option<u32>,
    /// The Request Authenticator: a replay repeats it, a new packet of
    /// the same second does not.
    pub authenticator: [u8; 16],
}

/// An attribute's text with control characters escaped: a supplicant
/// chooses its User-Name, and one with an escape sequence or a newline
/// must not recolour an operator's terminal or forge a log line.
fn text(v: &[u8]) -> String {
    crate::printable(String::from_utf8_lossy(v).trim_end_matches('\0'))
}

fn int(v: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(v).ok().map(u32::from_be_bytes)
}

impl Accounting {
    pub fn of(p: &Packet) -> Accounting {
        let mut a = Accounting {
            authenticator: p.authenticator,
            ..Default::default()
        };
        for (t, v) in &p.attributes {
            match *t {
                attr::ACCT_STATUS_TYPE => a.status = int(v).map(Status::from_u32),
                // One no role decision could name unambiguously is taken
                // as none (counted `no_session`): real NASes use hex
                // counters and the like.
                attr::ACCT_SESSION_ID => {
                    a.session_id = super::session_id::session_text(v)
                        .filter(|id| crate::decisions::nameable_session(id))
                }
                attr::USER_NAME => a.user = Some(text(v)),
                attr::CALLING_STATION_ID => a.calling_station = Some(text(v)),
                attr::CLASS => a.classes.push(text(v)),
                attr::FILTER_ID => a.filter_ids.push(text(v)),
                attr::NAS_IP_ADDRESS => a.nas_ip = <[u8; 4]>::try_from(*v).ok().map(Into::into),
                attr::NAS_IDENTIFIER => a.nas_id = Some(text(v)),
                attr::NAS_IPV6_ADDRESS => {
                    a.nas_ipv6 = <[u8; 16]>::try_from(*v).ok().map(Into::into)
                }
                attr::ACCT_INTERIM_INTERVAL => a.interim_s = int(v),
                attr::EVENT_TIMESTAMP => a.event_time = int(v),
                _ => {}
            }
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"testing123";

    fn start() -> Vec<u8> {
        request(
            7,
            &[
                (attr::ACCT_STATUS_TYPE, 1u32.to_be_bytes().to_vec()),
                (attr::ACCT_SESSION_ID, b"S1".to_vec()),
                (attr::USER_NAME, b"alice".to_vec()),
                (attr::CALLING_STATION_ID, b"02-00-00-00-30-01".to_vec()),
                (attr::CLASS, b"biomed".to_vec()),
                (attr::ACCT_INTERIM_INTERVAL, 60u32.to_be_bytes().to_vec()),
            ],
            SECRET,
        )
    }

    #[test]
    fn a_session_id_no_reason_could_name_is_taken_as_none() {
        let sly = request(
            7,
            &[
                (attr::ACCT_STATUS_TYPE, 2u32.to_be_bytes().to_vec()),
                (
                    attr::ACCT_SESSION_ID,
                    b"x (NAS 10.0.0.8, session S2".to_vec(),
                ),
            ],
            SECRET,
        );
        let a = Accounting::of(&parse(&sly).unwrap());
        assert_eq!(a.status, Some(Status::Stop));
        assert_eq!(a.session_id, None);
        assert_eq!(
            Accounting::of(&parse(&start()).unwrap())
                .session_id
                .as_deref(),
            Some("S1")
        );
    }

    #[test]
    fn round_trip_and_authenticators() {
        let raw = start();
        let p = parse(&raw).unwrap();
        assert!(verify(&p, SECRET));
        assert!(!verify(&p, b"wrong"));
        let a = Accounting::of(&p);
        assert_eq!(a.status, Some(Status::Start));
        assert_eq!(a.classes, vec!["biomed"]);
        assert_eq!(a.interim_s, Some(60));
        // Padding beyond the length field is ignored (RFC 2865 §3).
        let mut padded = raw.clone();
        padded.extend_from_slice(&[0; 7]);
        assert!(verify(&parse(&padded).unwrap(), SECRET));
        // One flipped bit anywhere breaks the authenticator.
        for i in [0, 1, 5, 25, raw.len() - 1] {
            let mut t = raw.clone();
            t[i] ^= 1;
            if let Ok(p) = parse(&t) {
                assert!(!verify(&p, SECRET), "bit flipped at {i}");
            }
        }
        // The response authenticator, RFC 2866 §3.
        let r = response(7, &p.authenticator, SECRET);
        let mut h = Md5::new();
        h.update([5, 7, 0, 20]);
        h.update(p.authenticator);
        h.update(SECRET);
        assert_eq!(&r[4..], &h.finalize()[..]);
    }

    #[test]
    fn malformed_packets_are_errors_never_panics() {
        let raw = start();
        assert!(parse(&raw[..19]).is_err(), "short");
        assert!(
            parse(&raw[..raw.len() - 1]).is_err(),
            "length field beyond the datagram"
        );
        let mut big = raw.clone();
        big[2..4].copy_from_slice(&5000u16.to_be_bytes());
        assert!(parse(&big).is_err(), "oversized");
        let mut zero = raw.clone();
        zero[HEADER + 1] = 0;
        assert!(parse(&zero).is_err(), "attribute length 0");
        let mut long = raw.clone();
        long[HEADER + 1] = 250;
        assert!(parse(&long).is_err(), "attribute past the end");
        // Every prefix and every single-octet corruption: an answer, never
        // a panic.
        for n in 0..raw.len() {
            let _ = parse(&raw[..n]);
        }
        for i in 0..raw.len() {
            for v in [0u8, 1, 2, 0x7f, 0xff] {
                let mut t = raw.clone();
                t[i] = v;
                if let Ok(p) = parse(&t) {
                    let _ = Accounting::of(&p);
                }
            }
        }
    }
}

#[cfg(test)]
mod text_tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::text(b"eve\n\x1b[31mRED\0"), "eve\\n\\u{1b}[31mRED");
        assert_eq!(super::text("zoë".as_bytes()), "zoë");
    }
}
