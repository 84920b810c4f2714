//! The desired state: the policy file with the decisions that hold
//! applied, its hash, and what a new file changes about the decisions.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use foldhash::{fast::RandomState as Fast, HashMap, HashSet};

use super::{holding, mac_string, Decision, Kind};
use crate::policy::{hex, model::DeviceDoc, parse_mac, sha256, Policy, PolicyDoc};

/// The policy file with the decisions applied: a device a decision holds
/// for is put in its segment (a quarantine: `defaults.unknown_source`),
/// keeping the file's entry (name, addresses, metadata) when the file
/// registers the MAC, else added as a MAC-only device. A quarantine also
/// takes the addresses it names: a file entry registering one of them by
/// address alone is the same device and is moved with it, unless that
/// entry is life-critical and the quarantine was not forced (see
/// [`moves_entry`]).
pub fn effective(doc: &PolicyDoc, decisions: &[Decision], now: i64) -> PolicyDoc {
    let mut out = doc.clone();
    let hold = holding(decisions, now);
    if hold.is_empty() {
        return out;
    }
    let unknown = doc.defaults.unknown_source.as_str();
    let target = |d: &Decision, file_segment: &str| target(d, file_segment, unknown);
    // Addresses the file gives a device, by the owner's position (the
    // last entry naming an address owns it, as validation reports it).
    // Indexes, not copies: this runs for every decision over every device.
    let mut owner: HashMap<IpAddr, usize> =
        HashMap::with_capacity_and_hasher(doc.devices.len(), Fast::default());
    for (i, dev) in doc.devices.iter().enumerate() {
        let v4 = dev.ipv4.as_ref().map_or(&[][..], |x| x.as_slice());
        let v6 = dev.ipv6.as_ref().map_or(&[][..], |x| x.as_slice());
        for a in v4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(v6.iter().map(|a| IpAddr::V6(*a)))
        {
            owner.insert(a, i);
        }
    }
    let names: HashSet<&str> = doc.devices.iter().map(|d| d.name.as_str()).collect();
    let critical: HashSet<&str> = doc
        .segments
        .iter()
        .filter(|s| s.life_critical)
        .map(|s| s.name.as_str())
        .collect();
    let mut added: BTreeSet<String> = BTreeSet::new();
    // Decisions by MAC as bytes, so the file's devices are matched without
    // a string per device. A decision names its MAC in canonical form;
    // one that does not matches no device, as a string comparison would.
    let by_mac: HashMap<[u8; 6], &Decision> = hold
        .iter()
        .filter_map(|(m, d)| Some((canonical_bytes(m)?, *d)))
        .collect();
    let mut placed = HashSet::default();
    for dev in &mut out.devices {
        let Some(mac) = dev.mac.as_deref().and_then(parse_mac) else {
            continue;
        };
        if let Some(d) = by_mac.get(&mac) {
            if let Some(seg) = target(d, &dev.segment) {
                dev.segment = seg;
            }
            placed.insert(mac);
        }
    }
    for (mac, d) in &hold {
        if canonical_bytes(mac).is_some_and(|m| placed.contains(&m)) {
            continue;
        }
        let Some(segment) = target(d, "") else {
            continue;
        };
        // File entries that register this device by address alone move
        // with it; addresses another MAC's entry owns are not taken.
        let mut own = Vec::new();
        for a in &d.addresses {
            match owner.get(a) {
                None => own.push(*a),
                Some(&i) => {
                    if !moves_entry(d, critical.contains(doc.devices[i].segment.as_str())) {
                        continue;
                    }
                    let name = &doc.devices[i].name;
                    if let Some(dev) = out
                        .devices
                        .iter_mut()
                        .find(|x| &x.name == name && x.mac.is_none())
                    {
                        dev.segment = segment.clone();
                    }
                }
            }
        }
        let name = added_name(d, mac, |n| names.contains(n) || added.contains(n));
        added.insert(name.clone());
        let dev = added_device(name, mac, segment, &own, d.risk.as_deref());
        out.devices.push(dev);
    }
    out
}

/// The entries of a file for the MACs and addresses some decisions name,
/// found in one pass over its devices (a reload at 100,000 devices with
/// hundreds of quarantines must not scan them for each).
struct Entries<'a> {
    file: &'a Policy,
    by_mac: HashMap<[u8; 6], &'a crate::policy::Device>,
    /// The last entry naming an address owns it, as validation reports it.
    by_ip: HashMap<IpAddr, &'a crate::policy::Device>,
}

impl<'a> Entries<'a> {
    fn of(file: &'a Policy, held: &[&Decision]) -> Self {
        let macs: HashSet<[u8; 6]> = held
            .iter()
            .filter_map(|d| canonical_bytes(&d.mac))
            .collect();
        let ips: HashSet<IpAddr> = held
            .iter()
            .flat_map(|d| d.addresses.iter().copied())
            .collect();
        let mut by_mac = HashMap::default();
        let mut by_ip = HashMap::default();
        for dev in &file.devices {
            if let Some(m) = dev.mac.filter(|m| macs.contains(m)) {
                by_mac.entry(m).or_insert(dev);
            }
            let v4 = dev.ipv4.iter().map(|a| IpAddr::V4(*a));
            for a in v4.chain(dev.ipv6.iter().map(|a| IpAddr::V6(*a))) {
                if ips.contains(&a) {
                    by_ip.insert(a, dev);
                }
            }
        }
        Self {
            file,
            by_mac,
            by_ip,
        }
    }

    /// The name and segment of the entry the file registers `mac` with.
    fn registered(&self, mac: &str) -> Option<(String, String)> {
        let d = self.by_mac.get(&canonical_bytes(mac)?)?;
        Some((d.name.clone(), self.file.segment_name(d.segment).to_owned()))
    }

    /// The entry (name, segment) that registers `a` by address alone in a
    /// life-critical segment, if quarantine `d` leaves it there for not
    /// being forced (see [`moves_entry`]).
    fn left_in_place(&self, d: &Decision, a: &IpAddr) -> Option<(String, String)> {
        let dev = self.by_ip.get(a)?;
        let critical = self
            .file
            .segment(dev.segment)
            .is_some_and(|s| s.life_critical);
        (dev.mac.is_none() && !moves_entry(d, critical)).then(|| {
            (
                dev.name.clone(),
                self.file.segment_name(dev.segment).to_owned(),
            )
        })
    }
}

/// Whether a quarantine holding at `now` leaves an entry of `file` in
/// place for not being forced. An older ispf moved such entries, and the
/// enforced hash (of the file and the decisions) does not tell its
/// generation from this one's: a start that adopts pins enforces again.
pub fn leaves_entries_in_place(file: &Policy, decisions: &[Decision], now: i64) -> bool {
    let held = holding(decisions, now);
    let held: Vec<&Decision> = held.values().copied().collect();
    let entries = Entries::of(file, &held);
    held.iter().any(|d| {
        d.kind == Kind::Quarantine
            && entries.registered(&d.mac).is_none()
            && d.addresses
                .iter()
                .any(|a| entries.left_in_place(d, a).is_some())
    })
}

/// Whether decision `d` moves a file entry that registers one of its
/// addresses by address alone, in a segment `life_critical` or not. An
/// unforced quarantine leaves a life-critical entry where it is: `plan`
/// refuses one that would move it, but the file may make the entry
/// life-critical (or add it) after the quarantine was decided, and no
/// reload may move a pump that no one forced.
pub(super) fn moves_entry(d: &Decision, life_critical: bool) -> bool {
    d.forced || !life_critical
}

/// The bytes of `mac` if it is written in canonical form: the only form
/// that matches a device (as a string comparison would).
pub(super) fn canonical_bytes(mac: &str) -> Option<[u8; 6]> {
    parse_mac(mac).filter(|b| mac_string(b) == mac)
}

/// `own` split into its IPv4 and IPv6 addresses, in order.
pub(super) fn by_family(own: &[IpAddr]) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for a in own {
        match a {
            IpAddr::V4(a) => v4.push(*a),
            IpAddr::V6(a) => v6.push(*a),
        }
    }
    (v4, v6)
}

/// The segment decision `d` puts a device in (`file_segment`: where the
/// file has it, empty if the file does not register it): a quarantine's is
/// `unknown`, the segment it names, else the file's; `None`: nowhere.
pub(super) fn target(d: &Decision, file_segment: &str, unknown: &str) -> Option<String> {
    match d.kind {
        Kind::Quarantine => Some(unknown.to_owned()),
        _ => d
            .segment
            .clone()
            .or_else(|| (!file_segment.is_empty()).then(|| file_segment.to_owned())),
    }
}

/// The name of the entry decision `d` adds for `mac`: its own, else one
/// made of its kind and the MAC; a name `taken` gets the MAC appended.
pub(super) fn added_name(d: &Decision, mac: &str, taken: impl Fn(&str) -> bool) -> String {
    let base = d
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", d.kind.as_str(), mac.replace(':', "")));
    if taken(&base) {
        format!("{base}-{}", mac.replace(':', ""))
    } else {
        base
    }
}

/// The entry a decision adds for a device the file does not register by
/// MAC: its MAC, segment, the addresses it owns and, for an admit, risk.
pub(super) fn added_device(
    name: String,
    mac: &str,
    segment: String,
    own: &[IpAddr],
    risk: Option<&str>,
) -> DeviceDoc {
    let (v4, v6) = by_family(own);
    let mut dev: DeviceDoc = serde_json::from_value(serde_json::json!({
        "name": name,
        "mac": mac,
        "segment": segment,
    }))
    .expect("a device document");
    if !v4.is_empty() {
        dev.ipv4 = serde_json::from_value(serde_json::json!(v4)).ok();
    }
    if !v6.is_empty() {
        dev.ipv6 = serde_json::from_value(serde_json::json!(v6)).ok();
    }
    dev.risk = risk.and_then(|r| serde_json::from_value(serde_json::json!(r)).ok());
    dev
}

/// SHA-256 of what is enforced: the policy file's bytes and the decisions
/// that hold. A restarted controller compares it with the datapath's.
pub fn enforced_sha256(policy_sha: &[u8; 32], decisions: &[Decision], now: i64) -> [u8; 32] {
    let hold = holding(decisions, now);
    if hold.is_empty() {
        return *policy_sha;
    }
    let mut text = hex(policy_sha);
    for d in hold.values() {
        text.push('|');
        text.push_str(&serde_json::to_string(d).unwrap_or_default());
    }
    sha256(text.as_bytes())
}

/// What a new policy file changes about the decisions that hold: for
/// `ispf reload --dry-run` and the reload's refusal. `Err` lists decisions
/// the new file leaves without their segment (the reload is refused).
pub fn file_change_effects(
    old: &Policy,
    new: &Policy,
    decisions: &[Decision],
    now: i64,
) -> Result<Vec<String>, Vec<String>> {
    let held = holding(decisions, now);
    let held: Vec<&Decision> = held.values().copied().collect();
    let (was, is) = (Entries::of(old, &held), Entries::of(new, &held));
    let mut notes = Vec::new();
    let mut broken = Vec::new();
    for d in held {
        if let Some(seg) = &d.segment {
            if new.segment_id(seg).is_none() {
                broken.push(format!(
                    "the {} of {} places it in segment `{seg}`, which the new file removes: keep the segment, or release the decision first (ispf release {})",
                    d.kind.as_str(),
                    d.mac,
                    d.mac
                ));
                continue;
            }
        }
        let holds = match d.kind {
            Kind::Quarantine => "the quarantine still holds".to_owned(),
            _ => format!(
                "the {} still places it in {} until released (ispf release {})",
                d.kind.as_str(),
                d.segment.as_deref().unwrap_or("-"),
                d.mac
            ),
        };
        let (before, after) = (was.registered(&d.mac), is.registered(&d.mac));
        if d.kind == Kind::Quarantine && after.is_none() {
            notes.extend(
                d.addresses
                    .iter()
                    .filter_map(|a| {
                        let kept = is.left_in_place(d, a)?;
                        (was.left_in_place(d, a).as_ref() != Some(&kept)).then_some((a, kept))
                    })
                    .map(|(a, (name, seg))| {
                        let mac = &d.mac;
                        format!(
                            "the quarantine of {mac} was not forced, so device {name} ({a}), registered by that address alone in the life-critical segment {seg}, stays there: {mac} stays quarantined without the address (its frames from it are dropped as spoofed). If {mac} is {name}, release it (ispf release {mac}); to quarantine {name} as well, quarantine {mac} again with --force"
                        )
                    }),
            );
        }
        match (before, after) {
            (None, Some((name, seg))) => notes.push(format!(
                "the file now registers {} as device {name} in {seg}; {holds}",
                d.mac
            )),
            (Some((name, _)), None) => notes.push(format!(
                "the file no longer registers {} (device {name}); {holds}",
                d.mac
            )),
            (Some((_, a)), Some((name, b))) if a != b => notes.push(format!(
                "the file moves device {name} ({}) from {a} to {b}; {holds}",
                d.mac
            )),
            _ => {}
        }
    }
    if broken.is_empty() {
        Ok(notes)
    } else {
        Err(broken)
    }
}
