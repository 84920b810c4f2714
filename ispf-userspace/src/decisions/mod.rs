//! Runtime decisions: admit, quarantine and role sessions, each about one
//! device (by MAC), and the one precedence rule the specification gives
//! (quarantine, then role session, then admit, then the file). The
//! desired state is the policy file with the decisions applied; this module
//! computes it as a policy document, so the compiler, the reference model
//! and `ispf check` all read the same thing.

//!
//! `effective` computes the desired state; `overlay` computes the same on
//! the validated file, for each runtime decision; `plan` works out a
//! request.

mod applied;
mod effective;
mod foreign;
mod guard;
mod overlay;
mod plan;
mod roles;

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::policy::{parse_mac, Policy};

pub use applied::applied;
pub use effective::{effective, enforced_sha256, file_change_effects, leaves_entries_in_place};
pub use foreign::{check_foreign, file_segments, roles_refused_now};
pub use guard::{life_critical, segments_of};
pub use overlay::{overlay, IndexCache};
pub use plan::{plan, validate, with_plan, DecisionRequest, Known, Plan};
#[cfg(test)]
pub(crate) use roles::tests::role as test_role;
pub use roles::{
    nameable_session, names_session, role_actor, role_held_on, session_mark, SessionEnd,
};

#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("`{0}` is not a MAC address; write it as aa:bb:cc:dd:ee:ff")]
    BadMac(String),
    #[error("no segment `{segment}` in the enforced policy; it has: {known}")]
    UnknownSegment { segment: String, known: String },
    #[error("{mac} is in the life-critical segment `{segment}`: a quarantine would isolate it. If that is really wanted, repeat with --force (it is recorded)")]
    LifeCritical { mac: String, segment: String },
    #[error("risk `{0}` is not one of low, medium, high, critical")]
    BadRisk(String),
    #[error("{0} has no decision to release")]
    NothingToRelease(String),
    #[error("{0} has not been seen by this ispf and no policy device has that MAC; the session is bound when an update arrives after the device is seen")]
    Unseen(String),
    #[error("the decision would make the policy invalid: {0}")]
    Invalid(String),
    #[error("the runtime decisions cannot be applied over the policy file: {0}")]
    Unappliable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Highest precedence.
    Quarantine,
    Role,
    Admit,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Quarantine => "quarantine",
            Kind::Role => "role",
            Kind::Admit => "admit",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "quarantine" => Some(Kind::Quarantine),
            "role" => Some(Kind::Role),
            "admit" => Some(Kind::Admit),
            _ => None,
        }
    }
}

/// One decision about one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// aa:bb:cc:dd:ee:ff
    pub mac: String,
    pub kind: Kind,
    /// Admit and role: the segment the device is put in.
    pub segment: Option<String>,
    /// Admit: a name for the device.
    pub name: Option<String>,
    /// Admit: its risk.
    pub risk: Option<String>,
    pub reason: String,
    /// A quarantine of a life-critical device made with --force.
    pub forced: bool,
    /// Who made it.
    pub actor: String,
    /// Unix seconds.
    pub at: i64,
    /// Unix seconds; None: until released.
    pub expires: Option<i64>,
    /// Quarantine: the addresses the device was last seen with, so that
    /// traffic *to* it is judged as to the quarantine segment too (a
    /// destination is identified by its address before its MAC).
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

/// `aa:bb:cc:dd:ee:ff`, whatever spelling it came in.
pub fn canonical_mac(s: &str) -> Result<String, DecisionError> {
    let m = parse_mac(s).ok_or_else(|| DecisionError::BadMac(s.to_owned()))?;
    Ok(mac_string(&m))
}

pub fn mac_string(m: &[u8; 6]) -> String {
    // Listings format a MAC per device: no formatting machinery per byte.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(17);
    for (i, b) in m.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// The decision that holds for each MAC: the one of highest precedence
/// (expired ones excluded as of `now`).
pub fn holding(decisions: &[Decision], now: i64) -> BTreeMap<&str, &Decision> {
    let mut m: BTreeMap<&str, &Decision> = BTreeMap::new();
    for d in decisions
        .iter()
        .filter(|d| d.expires.is_none_or(|e| e > now))
    {
        match m.get(d.mac.as_str()) {
            Some(cur) if cur.kind <= d.kind => {}
            _ => {
                m.insert(&d.mac, d);
            }
        }
    }
    m
}

/// The segment a MAC is in under `policy` (which already has the
/// decisions applied), if the policy places it by MAC.
pub fn segment_of(policy: &Policy, mac: &str) -> Option<String> {
    let m = parse_mac(mac)?;
    let d = policy.devices.iter().find(|d| d.mac == Some(m))?;
    Some(policy.segment_name(d.segment).to_owned())
}

#[cfg(test)]
mod tests;
