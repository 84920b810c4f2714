//! The desired state built on the validated file instead of validated
//! afresh. Every runtime decision (an admit, a quarantine, each RADIUS
//! session) is a generation; at 100,000 devices, validating the whole
//! document again for each one (a MAC parsed and three owner maps filled
//! per device) was most of the time a role took to be enforced. A decision
//! moves devices the file registers and adds MAC-only ones, so only those
//! need checking, against an index of the file made once per file.
//!
//! The result must be exactly what [`effective`](super::effective) and full
//! validation give. Anything those would refuse (a clashing name, MAC or
//! address, an unknown segment) is not reproduced here: [`overlay`]
//! answers `None` and the caller takes the full path, whose messages
//! name the problem. The tests compare the two paths.

use std::{net::IpAddr, sync::Arc};

use foldhash::{HashMap, HashSet};

use super::{
    effective::{
        added_device, added_name, by_family, canonical_bytes, enforced_sha256, moves_entry, target,
    },
    holding, Decision,
};
use crate::policy::{is_device_mac, parse_mac, Device, DeviceIndex, Policy};

/// The index of the last file asked about, kept while it is the same file
/// (the same `Arc`: a reload replaces it).
#[derive(Default)]
pub struct IndexCache {
    last: Option<(Arc<Policy>, Arc<DeviceIndex>)>,
}

impl IndexCache {
    pub fn of(&mut self, file: &Arc<Policy>) -> Arc<DeviceIndex> {
        if let Some((f, x)) = &self.last {
            if Arc::ptr_eq(f, file) {
                return x.clone();
            }
        }
        let x = Arc::new(DeviceIndex::of(file));
        self.last = Some((file.clone(), x.clone()));
        x
    }
}

/// `file` (validated) with the decisions that hold at `now` applied, as
/// validating [`effective`](super::effective)'s document would give it
/// with `file`'s segment ids; `None` where that validation could find a
/// problem.
pub fn overlay(
    file: &Policy,
    index: &DeviceIndex,
    decisions: &[Decision],
    now: i64,
) -> Option<Policy> {
    let hold = holding(decisions, now);
    let mut doc = file.doc.clone();
    let mut devices = file.devices.clone();
    let unknown = file.doc.defaults.unknown_source.as_str();
    let mut added_names: HashSet<String> = HashSet::default();
    let mut added_macs: HashSet<[u8; 6]> = HashSet::default();
    let mut added_ips: HashMap<IpAddr, usize> = HashMap::default();
    for (mac, d) in &hold {
        let registered = canonical_bytes(mac).and_then(|b| index.by_mac(&b));
        if let Some(i) = registered {
            if let Some(seg) = target(d, &doc.devices[i].segment, unknown) {
                devices[i].segment = file.segment_id(&seg)?;
                doc.devices[i].segment = seg;
            }
            continue;
        }
        let Some(segment) = target(d, "", unknown) else {
            continue;
        };
        let segment_id = file.segment_id(&segment)?;
        let mut own = Vec::new();
        for a in &d.addresses {
            match index.by_ip(a) {
                None => own.push(*a),
                // A file entry by address alone is this device: it moves.
                Some(i)
                    if file.devices[i].mac.is_none()
                        && moves_entry(
                            d,
                            file.segment(file.devices[i].segment)
                                .is_some_and(|s| s.life_critical),
                        ) =>
                {
                    devices[i].segment = segment_id;
                    doc.devices[i].segment = segment.clone();
                }
                Some(_) => {}
            }
        }
        let name = added_name(d, mac, |n| {
            index.has_name(file, n) || added_names.contains(n)
        });
        let bytes = parse_mac(mac)?;
        let fresh_name = !index.has_name(file, &name) && added_names.insert(name.clone());
        let fresh_mac = index.by_mac(&bytes).is_none() && added_macs.insert(bytes);
        if !fresh_name || !fresh_mac || !is_device_mac(&bytes) {
            return None;
        }
        let position = devices.len();
        for a in &own {
            if *added_ips.entry(*a).or_insert(position) != position {
                return None;
            }
        }
        let (ipv4, ipv6) = by_family(&own);
        devices.push(Device {
            name: name.clone(),
            mac: Some(bytes),
            ipv4,
            ipv6,
            vlan: 0,
            segment: segment_id,
        });
        doc.devices
            .push(added_device(name, mac, segment, &own, d.risk.as_deref()));
    }
    Some(Policy {
        doc,
        sha256: enforced_sha256(&file.sha256, decisions, now),
        ids: file.ids.clone(),
        segments: file.segments.clone(),
        world: file.world,
        unknown: file.unknown,
        devices,
        file_devices: file.devices.len(),
        routers: file.routers.clone(),
        rules: file.rules.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::decisions::{effective, Kind};

    /// A file with every kind of entry a decision can meet: devices by MAC
    /// (one written in capitals), by address alone, by both; names that
    /// the names made for added devices clash with; segment ids that are
    /// not positions (kept across a reload).
    fn file() -> Arc<Policy> {
        let text = r#"{"version":1,
          "segments":[{"name":"pumps","life_critical":true},{"name":"guest"},{"name":"ws"}],
          "devices":[
            {"name":"p1","mac":"02:00:00:00:10:01","ipv4":"10.0.0.1","segment":"pumps","risk":"high"},
            {"name":"p2","mac":"02:00:00:00:10:0A","ipv4":["10.0.0.2","10.0.0.3"],"segment":"pumps"},
            {"name":"pis","ipv4":"10.0.0.9","ipv6":"fd00::9","segment":"ws"},
            {"name":"cam","ipv6":"fd00::7","segment":"guest","kind":"camera"},
            {"name":"p3","ipv4":"10.0.0.4","segment":"pumps"},
            {"name":"admit-020000000099","mac":"02:00:00:00:20:01","segment":"guest"},
            {"name":"role-020000000098","mac":"02:00:00:00:20:02","segment":"ws"},
            {"name":"role-020000000098-020000000098","ipv4":"10.0.1.1","segment":"ws"},
            {"name":"ws1","mac":"02:00:00:00:30:01","vlan":20,"segment":"ws"}
          ]}"#;
        let mut p = Policy::from_str(text, std::path::Path::new("t.json")).unwrap();
        let keep: BTreeMap<String, u16> = [("ws", 1), ("pumps", 7), ("quarantine", 3)]
            .into_iter()
            .map(|(n, id)| (n.to_owned(), id))
            .collect();
        p.keep_ids(&keep);
        Arc::new(p)
    }

    /// What the controller did before the overlay: the whole document
    /// with the decisions, validated, given the file's segment ids.
    fn full(file: &Policy, ds: &[Decision], now: i64) -> Option<Policy> {
        let mut p = Policy::from_doc_unhashed(effective(&file.doc, ds, now)).ok()?;
        p.keep_ids(&file.segment_ids());
        p.sha256 = enforced_sha256(&file.sha256, ds, now);
        p.file_devices = file.devices.len();
        Some(p)
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
            &xs[self.below(xs.len())]
        }
    }

    fn decision(r: &mut Rng) -> Decision {
        let macs = [
            "02:00:00:00:10:01",
            "02:00:00:00:10:0a",
            "02:00:00:00:10:0A",
            "02:00:00:00:20:02",
            "02:00:00:00:30:01",
            "02:00:00:00:00:99",
            "02:00:00:00:00:98",
            "02:00:00:00:00:97",
            "02-00-00-00-00-97",
            "03:00:00:00:00:01",
            "00:00:00:00:00:00",
            "not-a-mac",
        ];
        let kinds = [Kind::Quarantine, Kind::Role, Kind::Admit];
        let segments = [
            None,
            Some("guest"),
            Some("ws"),
            Some("pumps"),
            Some("world"),
            Some("quarantine"),
            Some("gone"),
        ];
        let names = [None, Some("p1"), Some("new"), Some("admit-020000000099")];
        let pool: [IpAddr; 9] = [
            "10.0.0.1",
            "10.0.0.4",
            "10.0.0.9",
            "fd00::7",
            "10.0.1.1",
            "10.0.5.5",
            "fd00::55",
            "10.0.5.6",
            "::ffff:10.0.0.1",
        ]
        .map(|a| a.parse().unwrap());
        let addresses = (0..r.below(4)).map(|_| *r.pick(&pool)).collect();
        Decision {
            mac: r.pick(&macs).to_string(),
            kind: *r.pick(&kinds),
            segment: r.pick(&segments).map(Into::into),
            name: r.pick(&names).map(Into::into),
            risk: r
                .pick(&[None, Some("low"), Some("nonsense")])
                .map(Into::into),
            reason: "test".into(),
            forced: r.below(2) == 0,
            actor: "t".into(),
            at: 0,
            expires: *r.pick(&[None, Some(5), Some(50)]),
            addresses,
        }
    }

    #[test]
    fn the_overlay_is_what_full_validation_gives() {
        let file = file();
        let index = DeviceIndex::of(&file);
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut fast, mut refused, mut fell_back) = (0, 0, 0);
        for case in 0..20_000 {
            let ds: Vec<Decision> = (0..1 + r.below(5)).map(|_| decision(&mut r)).collect();
            let want = full(&file, &ds, 10);
            match overlay(&file, &index, &ds, 10) {
                Some(got) => {
                    let want = want.unwrap_or_else(|| {
                        panic!("case {case}: the overlay accepted what validation refuses: {ds:#?}")
                    });
                    assert_eq!(
                        format!("{got:?}"),
                        format!("{want:?}"),
                        "case {case}: {ds:#?}"
                    );
                    fast += 1;
                }
                None if want.is_none() => refused += 1,
                None => fell_back += 1,
            }
        }
        // Both outcomes were met often (a random set of up to five
        // decisions is refused about half the time), and the full path was
        // never needed for a set it accepts.
        assert!(
            fast > 5_000,
            "{fast} fast, {refused} refused, {fell_back} fell back"
        );
        assert!(
            refused > 5_000,
            "{fast} fast, {refused} refused, {fell_back} fell back"
        );
        assert_eq!(fell_back, 0);
    }

    #[test]
    fn the_index_is_kept_while_the_file_is() {
        let (a, b) = (file(), file());
        let mut cache = IndexCache::default();
        let x = cache.of(&a);
        assert!(Arc::ptr_eq(&x, &cache.of(&a)));
        assert!(!Arc::ptr_eq(&x, &cache.of(&b)));
    }
}
