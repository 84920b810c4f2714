//! Decision requests worked out against what is enforced: the checks the
//! specification asks for (life-critical devices, segments that exist,
//! devices that are devices) and what to record.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    canonical_mac,
    guard::{file_or_admit, life_critical, session_moves_no_life_critical},
    roles::{role_actor, session_reason},
    Decision, DecisionError, Kind,
};
use crate::policy::{parse_mac, Policy};

/// What a client asks the controller to decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DecisionRequest {
    Admit {
        mac: String,
        segment: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        risk: Option<String>,
        /// Seconds from now; none: until released.
        #[serde(default)]
        expires_in: Option<u64>,
        #[serde(default)]
        reason: Option<String>,
    },
    Quarantine {
        mac: String,
        reason: String,
        #[serde(default)]
        expires_in: Option<u64>,
        /// Required for a device in a life-critical segment.
        #[serde(default)]
        force: bool,
    },
    /// Undoes the quarantine if one holds, else the admit.
    Release { mac: String },
    /// A user's role session binds the device to the role's segment
    /// (identity: RADIUS accounting).
    Session {
        mac: String,
        segment: String,
        role: String,
        user: String,
        nas: String,
        session: String,
        /// In a fleet, the host whose listener holds the session (see
        /// [`role_actor`]).
        #[serde(default)]
        host: Option<String>,
    },
    /// The role session of a device ended; in a fleet, on `host`'s
    /// listener, which ends only a role decision its own sessions made.
    EndSession {
        mac: String,
        why: String,
        #[serde(default)]
        host: Option<String>,
        /// The ending session's mark (`roles::session_mark`), when one
        /// session ends.
        #[serde(default)]
        session: Option<String>,
    },
}

impl DecisionRequest {
    pub fn mac(&self) -> &str {
        match self {
            DecisionRequest::Admit { mac, .. }
            | DecisionRequest::Quarantine { mac, .. }
            | DecisionRequest::Release { mac }
            | DecisionRequest::Session { mac, .. }
            | DecisionRequest::EndSession { mac, .. } => mac,
        }
    }
}

/// What the inventory and the policy file know of the device a request
/// names.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// The policy file registers its MAC: the device's name and segment.
    pub registered: Option<(String, String)>,
    pub vlan: u16,
    pub addresses: Vec<IpAddr>,
    /// The segments it was last placed in (by the datapath, by the policy).
    pub segments: Vec<String>,
    /// The segments of the file's entries that register one of
    /// `addresses` by address alone (see [`super::file_segments`]): a
    /// quarantine of a device the file does not register by MAC moves
    /// each of them with it, and a role would place it out of them.
    pub by_address: Vec<String>,
    /// The inventory has seen it.
    pub seen: bool,
}

/// A decision request worked out against what is enforced: what to record
/// and what to undo, and the timeline entry that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub mac: String,
    pub put: Option<Decision>,
    pub remove: Vec<Kind>,
    /// A session's end: in a fleet its role key is deleted only while it
    /// holds a decision this end would end.
    pub ends: Option<super::SessionEnd>,
    /// `admitted`, `quarantined`, `released`.
    pub event: &'static str,
    pub detail: String,
}

/// Works out a request. `policy` is what is enforced now (the file with
/// the decisions applied), `current` the decisions recorded.
pub fn plan(
    req: &DecisionRequest,
    actor: &str,
    now: i64,
    policy: &Policy,
    current: &[Decision],
    known: &Known,
) -> Result<Plan, DecisionError> {
    let mac_of = |m: &str| device_mac(m, policy).map(|(mac, _)| mac);
    let until = |e: &Option<u64>| e.map(|s| now.saturating_add(s.min(i64::MAX as u64 / 2) as i64));
    let expiry_text = |e: Option<i64>| match e {
        Some(t) => format!(", until {}", crate::clock::rfc3339(t)),
        None => String::new(),
    };
    match req {
        DecisionRequest::Admit {
            mac,
            segment,
            name,
            risk,
            expires_in,
            reason,
        } => {
            let mac = mac_of(mac)?;
            // The specification's admit is for unknown devices. Moving a
            // registered one (a pump, a monitor) is the file's to say: a
            // mistyped MAC must not cut a pump off from its server.
            if let Some((name, seg)) = &known.registered {
                return Err(DecisionError::Invalid(format!(
                    "{mac} is `{name}`, registered in the policy file in segment {seg}: admit places unknown devices only; to move a registered device, change its entry in the file and reload"
                )));
            }
            let d = Decision {
                mac: mac.clone(),
                kind: Kind::Admit,
                segment: Some(segment.clone()),
                name: name.clone(),
                risk: risk.clone(),
                reason: reason.clone().unwrap_or_else(|| "admitted by hand".into()),
                forced: false,
                actor: actor.to_owned(),
                at: now,
                expires: until(expires_in),
                addresses: Vec::new(),
            };
            validate(&d, policy)?;
            Ok(Plan {
                detail: format!(
                    "to segment {segment}{}: {}",
                    expiry_text(d.expires),
                    d.reason
                ),
                mac,
                put: Some(d),
                remove: Vec::new(),
                ends: None,
                event: "admitted",
            })
        }
        DecisionRequest::Quarantine {
            mac,
            reason,
            expires_in,
            force,
        } => {
            let mac = mac_of(mac)?;
            if reason.trim().is_empty() {
                return Err(DecisionError::Invalid(
                    "a quarantine needs a --reason".into(),
                ));
            }
            let mut segments = known.segments.clone();
            segments.extend(file_or_admit(policy, current, &mac));
            segments.extend(known.registered.as_ref().map(|r| r.1.clone()));
            // A device the file registers by MAC keeps its entry and
            // takes no address (see `effective`): entries by address
            // alone move only with an unregistered one.
            if known.registered.is_none() {
                segments.extend(known.by_address.iter().cloned());
            }
            let critical = life_critical(policy, &segments);
            if let (Some(seg), false) = (critical, *force) {
                return Err(DecisionError::LifeCritical {
                    mac,
                    segment: seg.to_owned(),
                });
            }
            let d = Decision {
                mac: mac.clone(),
                kind: Kind::Quarantine,
                segment: None,
                name: None,
                risk: None,
                reason: reason.clone(),
                forced: critical.is_some(),
                actor: actor.to_owned(),
                at: now,
                expires: until(expires_in),
                addresses: known.addresses.clone(),
            };
            let forced = match critical {
                Some(seg) => format!(" (forced: life-critical segment {seg})"),
                None => String::new(),
            };
            Ok(Plan {
                detail: format!("{reason}{}{forced}", expiry_text(d.expires)),
                mac,
                put: Some(d),
                remove: Vec::new(),
                ends: None,
                event: "quarantined",
            })
        }
        DecisionRequest::Session {
            mac,
            segment,
            role,
            user,
            nas,
            session,
            host,
        } => {
            let mac = mac_of(mac)?;
            let registered =
                parse_mac(&mac).is_some_and(|m| policy.devices.iter().any(|d| d.mac == Some(m)));
            if !known.seen && !registered {
                return Err(DecisionError::Unseen(mac));
            }
            // A session is an automatic action: a NAS reporting a pump's
            // MAC (mistyped, or MAC authentication of the pump itself)
            // must not move it out of its segment. Into one is no move: a
            // role may put carts in a life-critical segment, and a cart
            // it put there is found there by its next session.
            let mut segments = known.segments.clone();
            segments.extend(file_or_admit(policy, current, &mac));
            segments.extend(known.registered.as_ref().map(|r| r.1.clone()));
            // As the sweep of held roles counts them (`roles_refused_now`).
            segments.extend(known.by_address.iter().cloned());
            session_moves_no_life_critical(policy, &mac, segments, segment)?;
            let d = Decision {
                mac: mac.clone(),
                kind: Kind::Role,
                segment: Some(segment.clone()),
                name: None,
                risk: None,
                reason: session_reason(role, user, nas, session),
                forced: false,
                actor: role_actor(nas, host.as_deref()),
                at: now,
                expires: None,
                addresses: Vec::new(),
            };
            validate(&d, policy)?;
            Ok(Plan {
                detail: format!("to segment {segment}: {}", d.reason),
                mac,
                put: Some(d),
                remove: Vec::new(),
                ends: None,
                event: "session_started",
            })
        }
        DecisionRequest::EndSession {
            mac,
            why,
            host,
            session,
        } => {
            let mac = canonical_mac(mac)?;
            let held = current
                .iter()
                .find(|d| d.mac == mac && d.kind == Kind::Role)
                .ok_or_else(|| DecisionError::NothingToRelease(mac.clone()))?;
            let end = super::SessionEnd {
                host: host.clone(),
                session: session.clone(),
            };
            if let Some(why) = end.refused(held) {
                return Err(DecisionError::Invalid(why));
            }
            // In a fleet the copy may show an older session's role than
            // the one ending (etcd judges which it ends): named by the end.
            let detail = match &session {
                Some(mark) if !end.ends(held) => format!("role of session {mark}: {why}"),
                _ => format!("{}: {why}", held.reason),
            };
            Ok(Plan {
                detail,
                remove: vec![Kind::Role],
                mac,
                put: None,
                ends: Some(end),
                event: "session_ended",
            })
        }
        DecisionRequest::Release { mac } => {
            let mac = canonical_mac(mac)?;
            let mine = |k: Kind| current.iter().find(|d| d.mac == mac && d.kind == k);
            let undone = mine(Kind::Quarantine)
                .or_else(|| mine(Kind::Admit))
                .ok_or_else(|| DecisionError::NothingToRelease(mac.clone()))?;
            Ok(Plan {
                detail: format!(
                    "{} of {} by {} undone",
                    undone.kind.as_str(),
                    crate::clock::rfc3339(undone.at),
                    undone.actor
                ),
                remove: vec![undone.kind],
                mac,
                put: None,
                ends: None,
                event: "released",
            })
        }
    }
}

/// The decisions with a plan carried out.
pub fn with_plan(current: &[Decision], p: &Plan) -> Vec<Decision> {
    let mut out: Vec<Decision> = current
        .iter()
        .filter(|d| {
            !(d.mac == p.mac
                && (p.remove.contains(&d.kind) || p.put.as_ref().is_some_and(|n| n.kind == d.kind)))
        })
        .cloned()
        .collect();
    out.extend(p.put.clone());
    out
}

/// Checks a new decision against the enforced policy.
pub fn validate(d: &Decision, policy: &Policy) -> Result<(), DecisionError> {
    if let Some(s) = &d.segment {
        if policy.segment_id(s).is_none() {
            return Err(DecisionError::UnknownSegment {
                segment: s.clone(),
                known: policy
                    .segments
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    if let Some(r) = &d.risk {
        if !matches!(r.as_str(), "low" | "medium" | "high" | "critical") {
            return Err(DecisionError::BadRisk(r.clone()));
        }
    }
    Ok(())
}

/// `m` in canonical form, and its bytes, if it names one device: not a
/// multicast or zero MAC, not a router's.
pub(super) fn device_mac(m: &str, policy: &Policy) -> Result<(String, [u8; 6]), DecisionError> {
    let mac = canonical_mac(m)?;
    let bytes = parse_mac(&mac).ok_or_else(|| DecisionError::BadMac(m.to_owned()))?;
    if bytes[0] & 1 == 1 || bytes == [0; 6] {
        return Err(DecisionError::BadMac(format!(
            "{m} (a multicast or zero MAC is no device)"
        )));
    }
    if policy.routers.contains(&bytes) {
        return Err(DecisionError::Invalid(format!(
            "{mac} is a router (defaults.routers): it forwards for others and is not one device"
        )));
    }
    Ok((mac, bytes))
}
