//! What the datapath tells the inventory, decoded from the ring buffer's
//! records: a source seen, a DHCP request's options, an LLDP frame.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime},
};

use ispf_common::{
    Event, FingerprintEvent, EVENT_DHCP, EVENT_KIND_OFFSET, EVENT_LLDP, EVENT_SIGHTING, FAMILY_V4,
    FAMILY_V6, FINGERPRINT_BYTES,
};

use super::fingerprint;

/// One thing the datapath saw of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Unix seconds.
    pub at: i64,
    pub mac: [u8; 6],
    pub vlan: u16,
    pub ifindex: u32,
    /// The segment the datapath placed the source in.
    pub segment: u16,
    pub what: Seen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A frame from the source, with its source address when it had one
    /// worth naming (not `0.0.0.0`, `::` or link-local).
    Source(Option<IpAddr>),
    Dhcp(fingerprint::Dhcp),
    /// An LLDP system name.
    Lldp(String),
}

/// What kind of record a ring-buffer item is.
pub fn kind(item: &[u8]) -> Option<u8> {
    item.get(EVENT_KIND_OFFSET).copied()
}

/// Whether a ring-buffer item is for the inventory (not a flow event).
pub fn is_observation(item: &[u8]) -> bool {
    matches!(kind(item), Some(EVENT_SIGHTING | EVENT_DHCP | EVENT_LLDP))
}

/// Unix seconds of a datapath timestamp (CLOCK_MONOTONIC, ns).
fn unix_of(ts_ns: u64) -> i64 {
    let age = Duration::from_nanos(crate::system::monotonic_ns().saturating_sub(ts_ns));
    SystemTime::now()
        .checked_sub(age)
        .unwrap_or_else(SystemTime::now)
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn worth_naming(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(a) if a.is_unspecified() => None,
        IpAddr::V6(a) if a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80 => None,
        ip => Some(ip),
    }
}

/// Decodes an inventory record; `None` for anything else or a record too
/// short for its kind.
pub fn decode(item: &[u8]) -> Option<Observation> {
    match kind(item)? {
        EVENT_SIGHTING if item.len() >= size_of::<Event>() => {
            // SAFETY: long enough for an `Event`, which any bytes are; read
            // unaligned.
            let e: Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            let ip = match e.family {
                FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(
                    e.src_ip[0],
                    e.src_ip[1],
                    e.src_ip[2],
                    e.src_ip[3],
                ))),
                FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(e.src_ip))),
                _ => None,
            }
            .and_then(worth_naming);
            Some(Observation {
                at: unix_of(e.ts_ns),
                mac: e.src_mac,
                vlan: e.vlan,
                ifindex: e.ifindex,
                segment: e.src,
                what: Seen::Source(ip),
            })
        }
        k @ (EVENT_DHCP | EVENT_LLDP) if item.len() >= size_of::<FingerprintEvent>() => {
            // SAFETY: as above, for a `FingerprintEvent`.
            let e: FingerprintEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            let data = &e.data[..(e.len as usize).min(FINGERPRINT_BYTES)];
            let what = if k == EVENT_DHCP {
                Seen::Dhcp(fingerprint::dhcp(data))
            } else {
                Seen::Lldp(fingerprint::lldp_system_name(data)?)
            };
            Some(Observation {
                at: unix_of(e.ts_ns),
                mac: e.src_mac,
                vlan: e.vlan,
                ifindex: e.ifindex,
                segment: e.src,
                what,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: reads the value's own bytes.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn decodes_sightings_and_fingerprints() {
        let mut e = Event {
            kind: EVENT_SIGHTING,
            family: FAMILY_V4,
            vlan: 20,
            ifindex: 7,
            src: 3,
            src_mac: [2, 0, 0, 0, 0, 9],
            ..Default::default()
        };
        e.src_ip[..4].copy_from_slice(&[10, 0, 0, 9]);
        let o = decode(&bytes(&e)).unwrap();
        assert_eq!(o.mac, [2, 0, 0, 0, 0, 9]);
        assert_eq!((o.vlan, o.ifindex, o.segment), (20, 7, 3));
        assert_eq!(o.what, Seen::Source(Some("10.0.0.9".parse().unwrap())));
        // A DHCP client before it has an address names none.
        e.src_ip = [0; 16];
        assert_eq!(decode(&bytes(&e)).unwrap().what, Seen::Source(None));
        assert!(
            decode(&bytes(&e)[..40]).is_none(),
            "short records are dropped"
        );
        e.kind = ispf_common::EVENT_DENIED;
        assert!(decode(&bytes(&e)).is_none() && !is_observation(&bytes(&e)));

        let mut f = FingerprintEvent {
            ts_ns: 0,
            _pad: 0,
            ifindex: 7,
            src: 3,
            len: 0,
            vlan: 0,
            kind: EVENT_DHCP,
            _pad2: 0,
            src_mac: [2, 0, 0, 0, 0, 9],
            _pad3: [0; 2],
            data: [0; FINGERPRINT_BYTES],
        };
        let opts = [12u8, 4, b'l', b'a', b'p', b'1', 255];
        f.data[..opts.len()].copy_from_slice(&opts);
        // A length beyond the payload is clamped, never trusted.
        f.len = u16::MAX;
        let Seen::Dhcp(d) = decode(&bytes(&f)).unwrap().what else {
            panic!("not DHCP")
        };
        assert_eq!(d.hostname.as_deref(), Some("lap1"));
    }
}
