//! Which NAS reported an accounting packet: the key its sessions, its
//! Accounting-On and its clock live under.

use std::net::IpAddr;

use super::radius::Accounting;

/// The NAS of accounting packet `a` received from `from`: the address or
/// name the packet gives for it (`NAS-IP-Address`, `NAS-IPv6-Address`,
/// then `NAS-Identifier`; RFC 2866 makes a session id unique per NAS,
/// which they name) at its sender (`NAME@SENDER`; the sender alone when
/// the two are the same or the packet names none). Behind a RADIUS proxy (a local
/// FreeRADIUS, ISE or NPS forwarding accounting) every switch is one
/// sender: keyed by it, two switches' session `00000042` were one
/// session, one switch's Accounting-On ended every switch's sessions, and
/// one switch's unset clock made the others' updates stale.
///
/// A `NAS-Identifier` is taken only as a host name (letters, digits,
/// `.`, `-`, `_`, `:`, at most 64), since the NAS is written into a role
/// decision's reason and actor, which are read back by their shape; any
/// other is passed over for the sender.
pub fn nas_of(a: &Accounting, from: IpAddr) -> String {
    let given = a
        .nas_ip
        .filter(|ip| !ip.is_unspecified())
        .map(IpAddr::from)
        .or(a
            .nas_ipv6
            .filter(|ip| !ip.is_unspecified())
            .map(|ip| IpAddr::V6(ip).to_canonical()));
    let sender = from.to_canonical().to_string();
    let named = match (given, a.nas_id.as_deref()) {
        (Some(ip), _) => ip.to_string(),
        (None, Some(id)) if host_name(id) => id.to_owned(),
        _ => return sender,
    };
    // With its sender: NASes that send directly but name themselves alike
    // (hostapd access points left at `own_ip_addr` 127.0.0.1, switches
    // with a default NAS-Identifier) stay apart, as a proxy's switches do.
    if named == sender {
        sender
    } else {
        format!("{named}@{sender}")
    }
}

fn host_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nas_is_the_one_the_packet_names_else_its_sender() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let mut a = Accounting::default();
        assert_eq!(nas_of(&a, proxy), "127.0.0.1");
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        assert_eq!(nas_of(&a, mapped), "10.0.0.9");
        a.nas_id = Some("sw-icu-3.hospital.example".into());
        assert_eq!(nas_of(&a, proxy), "sw-icu-3.hospital.example@127.0.0.1");
        a.nas_ipv6 = Some("fd00::3".parse().unwrap());
        assert_eq!(nas_of(&a, proxy), "fd00::3@127.0.0.1");
        a.nas_ip = Some("10.20.0.3".parse().unwrap());
        assert_eq!(
            nas_of(&a, proxy),
            "10.20.0.3@127.0.0.1",
            "the address first"
        );
        // A NAS that names its own address: keyed as before it named one.
        let own: IpAddr = "10.20.0.3".parse().unwrap();
        assert_eq!(nas_of(&a, own), "10.20.0.3");
        // Access points that all name 127.0.0.1 stay apart.
        a.nas_ip = Some("127.0.0.1".parse().unwrap());
        assert_ne!(nas_of(&a, own), nas_of(&a, mapped));
        a.nas_ip = Some("0.0.0.0".parse().unwrap());
        assert_eq!(nas_of(&a, proxy), "fd00::3@127.0.0.1");
        // A name that could be read as part of a reason is not taken.
        a.nas_ipv6 = None;
        a.nas_ip = None;
        for id in ["sw 1, session S2)", "", "(NAS x", &"a".repeat(65)] {
            a.nas_id = Some(id.into());
            assert_eq!(nas_of(&a, proxy), "127.0.0.1", "{id:?}");
        }
    }
}
