//! Verdict reasons from the policy specification, as the `u8` the datapath
//! stores in counters and the controller turns back into names.

pub const REASON_ALLOWED: u8 = 0;
pub const REASON_REPLY: u8 = 1;
pub const REASON_INTRA_ALLOWED: u8 = 2;
pub const REASON_INFRASTRUCTURE: u8 = 3;
pub const REASON_DENIED_RULE: u8 = 4;
pub const REASON_DENIED_DEFAULT: u8 = 5;
pub const REASON_INTRA_DENIED: u8 = 6;
pub const REASON_SPOOFED: u8 = 7;
pub const REASON_FRAGMENT_UNTRACKED: u8 = 8;
pub const REASON_MALFORMED: u8 = 9;
pub const REASON_WOULD_DROP: u8 = 10;
/// Extension to the spec: an internal datapath fault (a map insert failed)
/// on traffic of a segment that is not life-critical, which fails closed.
pub const REASON_INTERNAL_FAULT: u8 = 11;
/// The source or destination is in a `deny` threat-intelligence feed.
pub const REASON_THREAT_FEED: u8 = 12;
pub const REASON_COUNT: usize = 13;

/// Names as the spec spells them, indexed by reason code.
pub const REASON_NAMES: [&str; REASON_COUNT] = [
    "allowed",
    "reply",
    "intra_allowed",
    "infrastructure",
    "denied_rule",
    "denied_default",
    "intra_denied",
    "spoofed",
    "fragment_untracked",
    "malformed",
    "would_drop",
    "internal_fault",
    "threat_feed",
];

/// The name of a reason code, or `None` for a code the datapath never emits.
pub fn reason_name(code: u8) -> Option<&'static str> {
    REASON_NAMES.get(code as usize).copied()
}

/// The code of a reason name.
pub fn reason_code(name: &str) -> Option<u8> {
    REASON_NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u8)
}

/// Verdicts as stored in maps (kept apart from the XDP action numbers so the
/// map format does not depend on the kernel's UAPI values).
pub const VERDICT_DROP: u8 = 0;
pub const VERDICT_PASS: u8 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for code in 0..REASON_COUNT as u8 {
            let name = reason_name(code).unwrap();
            assert_eq!(reason_code(name), Some(code));
        }
        assert_eq!(reason_name(REASON_COUNT as u8), None);
        assert_eq!(reason_code("nonsense"), None);
    }
}
