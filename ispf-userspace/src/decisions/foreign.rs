//! Decisions this host did not plan (another host's, read from etcd),
//! checked before they are enforced here.

use std::net::IpAddr;

use super::{
    guard::{life_critical, segments_of, session_moves_no_life_critical},
    plan::{device_mac, validate},
    Decision, DecisionError, Kind,
};
use crate::policy::{DeviceIndex, Policy};

/// The segments the file gives a device: by the entry for its MAC, by
/// every entry that registers one of `addresses` by address alone (IPv4
/// and IPv6 alike: a quarantine moves each of them), and by the subnet
/// holding one that no entry names. An address
/// another MAC's entry names is that device's: the one sending from it
/// is not the device (the datapath drops it as spoofed), so it places
/// nobody here.
pub fn file_segments(
    file: &Policy,
    index: &DeviceIndex,
    mac: Option<&[u8; 6]>,
    addresses: &[IpAddr],
) -> Vec<String> {
    // Built only when an address no entry names needs it.
    let mut subnets: Option<Vec<(ipnet::IpNet, u16)>> = None;
    mac.and_then(|m| index.by_mac(m))
        .into_iter()
        .chain(
            addresses
                .iter()
                .filter_map(|a| index.by_ip(a))
                .filter(|&i| file.devices[i].mac.is_none()),
        )
        .map(|i| file.segment_name(file.devices[i].segment).to_owned())
        // An address no entry names is its subnet's segment's device (a
        // monitor on DHCP), whatever MAC sends from it.
        .chain(
            addresses
                .iter()
                .filter(|a| index.by_ip(a).is_none())
                .filter_map(|a| {
                    let subnets = subnets.get_or_insert_with(|| file.subnets_longest_first());
                    let (_, id) = subnets.iter().find(|(n, _)| n.contains(a))?;
                    Some(file.segment_name(*id).to_owned())
                }),
        )
        .collect()
}

/// Checks a decision this host did not plan before it is enforced here:
/// another host's, read from etcd, where whoever can write the site can
/// put one by hand. What `plan` would have refused is refused: a MAC that
/// is no device's or a router's; an admit of a device the file registers;
/// a quarantine, unforced, of a device in a life-critical segment (by the
/// file's entry for its MAC or its addresses, or by `segments`: where this
/// host has seen it); a segment or risk that does not exist.
pub fn check_foreign(
    d: &Decision,
    file: &Policy,
    index: &DeviceIndex,
    segments: &[String],
) -> Result<(), DecisionError> {
    let (mac, bytes) = device_mac(&d.mac, file)?;
    // Written by ispf, a key's MAC is canonical; another spelling would
    // match no device's entry.
    if mac != d.mac {
        return Err(DecisionError::BadMac(d.mac.clone()));
    }
    // Only a quarantine takes the addresses a device was seen with, and
    // only its check reads them: on another kind they would move a file
    // entry by address alone (a pump's) unchecked.
    if d.kind != Kind::Quarantine && !d.addresses.is_empty() {
        return Err(DecisionError::Invalid(format!(
            "{mac}: an {} names no addresses; only a quarantine takes those a device was seen with",
            d.kind.as_str()
        )));
    }
    let registered = index.by_mac(&bytes);
    let file_segment = |i: usize| file.segment_name(file.devices[i].segment).to_owned();
    match d.kind {
        Kind::Admit | Kind::Role if d.segment.is_none() => {
            return Err(DecisionError::Invalid(format!(
                "{mac}: an {} names the segment it puts the device in",
                d.kind.as_str()
            )));
        }
        Kind::Admit => {
            if let Some(i) = registered {
                return Err(DecisionError::Invalid(format!(
                    "{mac} is `{}`, registered in the policy file in segment {}: admit places unknown devices only",
                    file.devices[i].name,
                    file.segment_name(file.devices[i].segment)
                )));
            }
        }
        Kind::Role => {
            let known = registered.map(file_segment).into_iter();
            let target = d.segment.as_deref().unwrap_or_default();
            session_moves_no_life_critical(
                file,
                &mac,
                known.chain(segments.iter().cloned()).collect(),
                target,
            )?;
        }
        Kind::Quarantine => {
            // `plan` takes the last IPv4 and IPv6 address a device was
            // seen with; a key naming more (a whole subnet's) would give
            // them all to one made-up MAC on every host.
            let (v4, v6) = super::effective::by_family(&d.addresses);
            if v4.len() > 1 || v6.len() > 1 {
                return Err(DecisionError::Invalid(format!(
                    "{mac}: a quarantine takes at most the one IPv4 and one IPv6 address its device was last seen with; this one names {}",
                    d.addresses.len()
                )));
            }
            // As `plan` counts them: every entry the quarantine moves (a
            // device the file registers by MAC takes no address). And,
            // since the host that planned it may never have seen the
            // device: an address in a life-critical segment's subnet is
            // that segment's device (a monitor on DHCP), whatever MAC.
            let addresses = match registered {
                Some(_) => &[][..],
                None => &d.addresses[..],
            };
            let known: Vec<String> = file_segments(file, index, Some(&bytes), addresses)
                .into_iter()
                .chain(segments.iter().cloned())
                .collect();
            if let (Some(segment), false) = (life_critical(file, &known), d.forced) {
                return Err(DecisionError::LifeCritical {
                    mac,
                    segment: segment.to_owned(),
                });
            }
        }
    }
    validate(d, file)
}

/// The role decisions among `decisions` that a session could not make
/// under `file` (indexed by `index`), each with why: they move a device
/// out of a life-critical segment, by the file's entry for its MAC or for
/// an address it was seen with (`seen_at`), or by an admit among
/// `decisions`. Such a binding was made before the device
/// was life-critical (a reload that registers it there or marks its
/// segment life-critical; a controller older than this check), and ends:
/// no automatic action moves a life-critical device. So does one whose
/// segment `file` no longer has.
pub fn roles_refused_now(
    file: &Policy,
    index: &DeviceIndex,
    decisions: &[Decision],
    seen_at: impl Fn(&str) -> Vec<IpAddr>,
) -> Vec<(Decision, String)> {
    decisions
        .iter()
        .filter(|d| d.kind == Kind::Role)
        .filter_map(|d| {
            let mac = crate::policy::parse_mac(&d.mac);
            let registered = file_segments(file, index, mac.as_ref(), &seen_at(&d.mac)).into_iter();
            let admitted = segments_of(decisions, &d.mac, Kind::Admit);
            let target = d.segment.as_deref().unwrap_or_default();
            // Its role gone with its segment (or the segment renamed): the
            // session's role ends with the file, as a role removed alone
            // does, rather than the file being refused for it.
            if file.segment_id(target).is_none() {
                return Some((
                    d.clone(),
                    format!("the policy file has no segment `{target}` any more"),
                ));
            }
            session_moves_no_life_critical(
                file,
                &d.mac,
                registered.chain(admitted).collect(),
                target,
            )
            .err()
            .map(|e| match e {
                DecisionError::Invalid(why) => (d.clone(), why),
                e => (d.clone(), e.to_string()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(mac: &str, kind: Kind, segment: Option<&str>) -> Decision {
        super::super::tests::dec(mac, kind, segment, None)
    }

    /// A decision written into etcd by hand (or by a compromised host)
    /// meets the checks a request to this host would have met.
    #[test]
    fn foreign_decisions_meet_the_checks_of_a_request() {
        let file = Policy::from_str(
            r#"{"version":1,"segments":[{"name":"pumps","life_critical":true},{"name":"guest"},{"name":"ws"},
              {"name":"monitors","life_critical":true,"subnets":["10.20.0.0/24"]}],
            "devices":[{"name":"p1","mac":"02:00:00:00:10:01","ipv4":"10.0.0.1","segment":"pumps"},
                       {"name":"p2","ipv4":"10.0.0.2","segment":"pumps"},
                       {"name":"w1","mac":"02:00:00:00:30:01","ipv4":"10.0.0.3","segment":"ws"}]}"#,
            std::path::Path::new("t.json"),
        )
        .unwrap();
        let index = crate::policy::DeviceIndex::of(&file);
        let check = |d: &Decision| check_foreign(d, &file, &index, &[]);
        // A workstation the file registers by MAC, seen with the address
        // of a pump registered by address alone: the quarantine keeps the
        // workstation's entry and takes no address, so the pump stays.
        let mut ws = dec("02:00:00:00:30:01", Kind::Quarantine, None);
        ws.addresses = vec!["10.0.0.2".parse().unwrap()];
        assert!(check(&ws).is_ok());
        let pump = "02:00:00:00:10:01";
        let mut q = dec(pump, Kind::Quarantine, None);
        assert!(matches!(check(&q), Err(DecisionError::LifeCritical { .. })));
        q.forced = true;
        assert!(check(&q).is_ok());
        // Unregistered, but seen with the address of a pump the file
        // registers by address alone: it is that pump.
        let mut by_addr = dec("02:00:00:00:99:01", Kind::Quarantine, None);
        by_addr.addresses = vec!["10.0.0.2".parse().unwrap()];
        assert!(matches!(
            check(&by_addr),
            Err(DecisionError::LifeCritical { .. })
        ));
        // Seen with the address of a pump registered by MAC: a device
        // spoofing the pump, which a quarantine may isolate (the pump's
        // entry stays where it is).
        by_addr.addresses = vec!["10.0.0.1".parse().unwrap()];
        assert!(check(&by_addr).is_ok());
        // An admit or a role naming the pump's address: refused, it would
        // move an entry by address alone with no check.
        for kind in [Kind::Admit, Kind::Role] {
            let mut d = dec("02:00:00:00:99:01", kind, Some("guest"));
            d.addresses = vec!["10.0.0.1".parse().unwrap()];
            assert!(
                matches!(check(&d), Err(DecisionError::Invalid(m)) if m.contains("names no addresses")),
                "{kind:?}"
            );
        }
        // A made-up MAC given a monitor's DHCP address (no entry names
        // it, the life-critical segment's subnet holds it), or a subnet's
        // worth of addresses: refused.
        let mut borrowed = dec("02:00:00:00:99:05", Kind::Quarantine, None);
        borrowed.addresses = vec!["10.20.0.99".parse().unwrap()];
        assert!(matches!(
            check(&borrowed),
            Err(DecisionError::LifeCritical { .. })
        ));
        borrowed.addresses = vec!["10.9.0.1".parse().unwrap(), "10.9.0.2".parse().unwrap()];
        assert!(matches!(
            check(&borrowed),
            Err(DecisionError::Invalid(m)) if m.contains("at most the one IPv4")
        ));
        borrowed.addresses = vec!["10.9.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
        assert!(check(&borrowed).is_ok());
        // Where this host saw it counts too.
        let laptop = dec("02:00:00:00:99:02", Kind::Quarantine, None);
        assert!(check(&laptop).is_ok());
        assert!(check_foreign(&laptop, &file, &index, &["pumps".into()]).is_err());
        assert!(matches!(
            check(&dec(pump, Kind::Admit, Some("guest"))),
            Err(DecisionError::Invalid(m)) if m.contains("`p1`")
        ));
        assert!(matches!(
            check(&dec("02:00:00:00:99:02", Kind::Admit, Some("nope"))),
            Err(DecisionError::UnknownSegment { .. })
        ));
        assert!(check(&dec("02:00:00:00:99:02", Kind::Admit, None)).is_err());
        assert!(check(&dec("02:00:00:00:99:02", Kind::Admit, Some("guest"))).is_ok());
        assert!(check(&dec(pump, Kind::Role, Some("ws"))).is_err());
        assert!(check(&dec("02:00:00:00:99:02", Kind::Role, Some("ws"))).is_ok());
        for bad in [
            "02:00:00:00:99:0A",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
        ] {
            assert!(
                matches!(
                    check(&dec(bad, Kind::Role, Some("ws"))),
                    Err(DecisionError::BadMac(_))
                ),
                "{bad}"
            );
        }
    }

    /// A binding the file did not forbid when it was made ends when a
    /// reload (or a start) finds it moving a life-critical device.
    #[test]
    fn a_role_decision_on_a_device_now_life_critical_is_refused_now() {
        let file = Policy::from_str(
            r#"{"version":1,"segments":[{"name":"pumps","life_critical":true},{"name":"ws"},{"name":"carts"}],
            "devices":[{"name":"p1","mac":"02:00:00:00:10:01","ipv4":"10.0.0.1","segment":"pumps"},
                       {"name":"w1","mac":"02:00:00:00:10:02","segment":"ws"},
                       {"name":"p2","ipv4":"10.0.0.2","segment":"pumps"}]}"#,
            std::path::Path::new("t.json"),
        )
        .unwrap();
        let index = crate::policy::DeviceIndex::of(&file);
        let pump = dec("02:00:00:00:10:01", Kind::Role, Some("ws"));
        let ws = dec("02:00:00:00:10:02", Kind::Role, Some("carts"));
        // Admitted into the life-critical segment, then moved by a role.
        let admitted = dec("02:00:00:00:99:01", Kind::Admit, Some("pumps"));
        let moved = dec("02:00:00:00:99:01", Kind::Role, Some("ws"));
        // Into a life-critical segment is no move out of one.
        let into = dec("02:00:00:00:10:02", Kind::Role, Some("pumps"));
        let all = vec![pump.clone(), ws, admitted, moved.clone(), into.clone()];
        // Registered by address only, and seen with it.
        let by_address = dec("02:00:00:00:99:02", Kind::Role, Some("ws"));
        // Seen with the address of a pump registered by MAC: spoofing it,
        // not the pump; its role stands.
        let spoofer = dec("02:00:00:00:99:03", Kind::Role, Some("ws"));
        let seen_at = |mac: &str| match mac {
            "02:00:00:00:99:02" => vec!["10.0.0.2".parse().unwrap()],
            "02:00:00:00:99:03" => vec!["10.0.0.1".parse().unwrap()],
            _ => vec![],
        };
        let all = [all, vec![by_address.clone(), spoofer]].concat();
        let refused = roles_refused_now(&file, &index, &all, seen_at);
        let macs: Vec<&str> = refused.iter().map(|(d, _)| d.mac.as_str()).collect();
        assert_eq!(
            macs,
            [
                pump.mac.as_str(),
                moved.mac.as_str(),
                by_address.mac.as_str()
            ]
        );
        assert!(
            refused[0].1.contains("life-critical segment `pumps`"),
            "{}",
            refused[0].1
        );
        assert!(roles_refused_now(&file, &index, &[into], seen_at).is_empty());
        // A role whose segment the file no longer has ends with it.
        let gone = dec("02:00:00:00:10:02", Kind::Role, Some("biomed-ws"));
        let refused = roles_refused_now(&file, &index, &[gone], seen_at);
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].1.contains("no segment `biomed-ws`"),
            "{}",
            refused[0].1
        );
    }
}
