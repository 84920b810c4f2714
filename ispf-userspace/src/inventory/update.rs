//! What one sighting changes in a device already known: its address and
//! its passive fingerprint. Pure, so the rules are tested here; the ingest
//! thread notes and stores what these return.

use std::net::IpAddr;

use super::{observe::Seen, store::Device};

/// Takes `a` as the device's address of its family. Returns the address it
/// replaces when that was a different one (the timeline's `ip_changed`).
pub fn address(d: &mut Device, a: IpAddr) -> Option<IpAddr> {
    let old = match a {
        IpAddr::V4(a4) => d.ipv4.replace(a4).map(IpAddr::V4),
        IpAddr::V6(a6) => d.ipv6.replace(a6).map(IpAddr::V6),
    };
    old.filter(|old| *old != a)
}

/// Merges a DHCP or LLDP fingerprint into the device's. Returns the
/// timeline's detail when something changed. A DHCP field the client did
/// not send keeps what was known (a renewal often sends fewer options), and
/// an LLDP system name never replaces a host name the device gave itself.
pub fn fingerprint(d: &mut Device, what: Seen) -> Option<String> {
    match what {
        Seen::Dhcp(f) => {
            let changed = (f.hostname.is_some() && f.hostname != d.hostname)
                || (f.vendor_class.is_some() && f.vendor_class != d.vendor_class)
                || (f.params.is_some() && f.params != d.dhcp_params);
            if !changed {
                return None;
            }
            d.hostname = f.hostname.or(d.hostname.take());
            d.vendor_class = f.vendor_class.or(d.vendor_class.take());
            d.dhcp_params = f.params.or(d.dhcp_params.take());
            Some(format!(
                "DHCP: host name {}, vendor class {}",
                d.hostname.as_deref().unwrap_or("-"),
                d.vendor_class.as_deref().unwrap_or("-")
            ))
        }
        Seen::Lldp(name) if d.hostname.is_none() => {
            let detail = format!("LLDP: system name {name}");
            d.hostname = Some(name);
            Some(detail)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::fingerprint::Dhcp;

    fn device() -> Device {
        Device {
            interface: "veth0".into(),
            ..crate::inventory::store::tests::seen_device(
                [2, 0, 0, 0, 0, 1],
                110,
                "pumps",
                "registered",
            )
        }
    }

    fn dhcp(host: Option<&str>, class: Option<&str>, params: Option<&str>) -> Seen {
        Seen::Dhcp(Dhcp {
            hostname: host.map(str::to_owned),
            vendor_class: class.map(str::to_owned),
            params: params.map(str::to_owned),
        })
    }

    #[test]
    fn an_address_change_is_reported_per_family_and_only_when_it_changes() {
        let mut d = device();
        let a: IpAddr = "10.0.0.5".parse().unwrap();
        let b: IpAddr = "10.0.0.6".parse().unwrap();
        let v6: IpAddr = "fd00::5".parse().unwrap();
        assert_eq!(address(&mut d, a), None, "the first address replaces none");
        assert_eq!(address(&mut d, a), None, "the same address again");
        assert_eq!(address(&mut d, v6), None, "IPv6 does not replace IPv4");
        assert_eq!(address(&mut d, b), Some(a));
        assert_eq!(d.ipv4, Some("10.0.0.6".parse().unwrap()));
        assert_eq!(d.ipv6, Some("fd00::5".parse().unwrap()));
    }

    #[test]
    fn a_renewal_with_fewer_options_keeps_what_was_known() {
        let mut d = device();
        let first = fingerprint(
            &mut d,
            dhcp(Some("pump-7"), Some("BD Alaris"), Some("1,3,6")),
        );
        assert_eq!(
            first.as_deref(),
            Some("DHCP: host name pump-7, vendor class BD Alaris")
        );
        assert_eq!(fingerprint(&mut d, dhcp(Some("pump-7"), None, None)), None);
        assert_eq!(d.vendor_class.as_deref(), Some("BD Alaris"));
        assert_eq!(d.dhcp_params.as_deref(), Some("1,3,6"));
        let renamed = fingerprint(&mut d, dhcp(Some("pump-8"), None, None));
        assert_eq!(
            renamed.as_deref(),
            Some("DHCP: host name pump-8, vendor class BD Alaris")
        );
        assert_eq!(
            fingerprint(&mut d, dhcp(None, None, Some("1,3"))).as_deref(),
            Some("DHCP: host name pump-8, vendor class BD Alaris")
        );
        assert_eq!(d.dhcp_params.as_deref(), Some("1,3"));
    }

    #[test]
    fn lldp_names_only_a_device_without_a_host_name() {
        let mut d = device();
        assert_eq!(
            fingerprint(&mut d, Seen::Lldp("switch-3".into())).as_deref(),
            Some("LLDP: system name switch-3")
        );
        assert_eq!(d.hostname.as_deref(), Some("switch-3"));
        assert_eq!(fingerprint(&mut d, Seen::Lldp("other".into())), None);
        assert_eq!(d.hostname.as_deref(), Some("switch-3"));
        assert_eq!(fingerprint(&mut d, Seen::Source(None)), None);
    }
}
