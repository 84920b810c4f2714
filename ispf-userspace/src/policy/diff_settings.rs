//! What a new file changes besides devices and rules: each segment's
//! mode, life-critical mark, subnets and VLANs, the defaults, and the
//! identity of a life-critical device. These change enforcement as much
//! as a rule does (a pump segment from monitor to enforce starts
//! dropping; a mistyped pump MAC makes the pump's frames spoofed), so a
//! reload lists them; `!` marks what touches a life-critical segment.

use std::collections::HashMap;

use super::{Policy, Segment};

/// The lines a reload prints for what `new` changes of `old`'s settings.
pub fn settings(old: &Policy, new: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    let (os, ns) = (by_segment_name(old), by_segment_name(new));
    // A segment added or removed moves whatever its subnets and VLANs
    // held: one whose subnet lies inside a life-critical segment's takes
    // those devices out of it.
    for (p, q, sign, verb) in [(new, &os, '+', "added"), (old, &ns, '-', "removed")] {
        for s in p
            .segments
            .iter()
            .filter(|s| !q.contains_key(s.name.as_str()))
        {
            let inside: Vec<&str> = p
                .segments
                .iter()
                .filter(|c| c.life_critical && c.name != s.name)
                .filter(|c| overlaps(&s.subnets, &c.subnets))
                .map(|c| c.name.as_str())
                .collect();
            let mark = if s.life_critical || !inside.is_empty() {
                '!'
            } else {
                sign
            };
            let within = if inside.is_empty() {
                String::new()
            } else {
                format!("; its subnets overlap life-critical {}", inside.join(", "))
            };
            out.push(format!(
                "{mark} segment {} {verb} (subnets {}, VLANs {}){within}",
                s.name,
                list(&s.subnets),
                list(&s.vlans)
            ));
        }
    }
    for o in &old.segments {
        let Some(n) = ns.get(o.name.as_str()) else {
            continue;
        };
        let mark = if o.life_critical || n.life_critical {
            '!'
        } else {
            '~'
        };
        let name = &o.name;
        match (o.monitor, n.monitor) {
            (true, false) => out.push(format!(
                "{mark} segment {name}: monitor -> enforce (traffic the rules deny is now dropped)"
            )),
            (false, true) => out.push(format!(
                "{mark} segment {name}: enforce -> monitor (traffic the rules deny now passes, counted as would_drop)"
            )),
            _ => {}
        }
        match (o.life_critical, n.life_critical) {
            (true, false) => out.push(format!(
                "! segment {name} is no longer life-critical: automatic actions may now move its devices, and a datapath fault on its traffic drops"
            )),
            (false, true) => out.push(format!("! segment {name} becomes life-critical")),
            _ => {}
        }
        if sorted(&o.subnets) != sorted(&n.subnets) {
            // Subnets that overlap a life-critical segment's move devices
            // into it or out of it.
            let touches = |p: &Policy, subnets: &[ipnet::IpNet]| {
                p.segments
                    .iter()
                    .any(|c| c.life_critical && c.name != *name && overlaps(subnets, &c.subnets))
            };
            let touches = touches(new, &n.subnets) || touches(old, &o.subnets);
            let mark = if touches { '!' } else { mark };
            out.push(format!(
                "{mark} segment {name}: subnets {} -> {}",
                list(&o.subnets),
                list(&n.subnets)
            ));
        }
        if sorted(&o.vlans) != sorted(&n.vlans) {
            out.push(format!(
                "{mark} segment {name}: VLANs {} -> {}",
                list(&o.vlans),
                list(&n.vlans)
            ));
        }
    }
    let (od, nd) = (&old.doc.defaults, &new.doc.defaults);
    let json = |v: &dyn erased::Json| v.json();
    for (key, a, b) in [
        (
            "unknown_source",
            json(&od.unknown_source),
            json(&nd.unknown_source),
        ),
        (
            "infrastructure",
            json(&od.infrastructure),
            json(&nd.infrastructure),
        ),
        ("fragments", json(&od.fragments), json(&nd.fragments)),
        (
            "routers",
            json(&sorted(&old.routers)),
            json(&sorted(&new.routers)),
        ),
        ("timeouts", json(&od.timeouts), json(&nd.timeouts)),
    ] {
        if a != b {
            out.push(format!("~ defaults.{key}: {a} -> {b}"));
        }
    }
    let by_name: HashMap<&str, &super::Device> =
        old.devices.iter().map(|d| (d.name.as_str(), d)).collect();
    for n in &new.devices {
        let Some(o) = by_name.get(n.name.as_str()) else {
            continue;
        };
        let critical = |p: &Policy, seg: u16| p.segment(seg).is_some_and(|s| s.life_critical);
        if (o.mac, &o.ipv4, &o.ipv6, o.vlan) == (n.mac, &n.ipv4, &n.ipv6, n.vlan)
            || !(critical(old, o.segment) || critical(new, n.segment))
        {
            continue;
        }
        let mac =
            |m: Option<[u8; 6]>| m.map_or("none".to_owned(), |m| crate::decisions::mac_string(&m));
        out.push(format!(
            "! device {} (life-critical) changes its identity: MAC {} -> {}, IPv4 {} -> {}, IPv6 {} -> {}, VLAN {} -> {}. Check them against the device itself: its frames that no longer match its entry are dropped as spoofed",
            n.name,
            mac(o.mac),
            mac(n.mac),
            list(&o.ipv4),
            list(&n.ipv4),
            list(&o.ipv6),
            list(&n.ipv6),
            o.vlan,
            n.vlan
        ));
    }
    out
}

/// Whether a subnet of `a` and one of `b` share an address.
fn overlaps(a: &[ipnet::IpNet], b: &[ipnet::IpNet]) -> bool {
    a.iter().any(|n| {
        b.iter()
            .any(|m| m.contains(&n.network()) || n.contains(&m.network()))
    })
}

fn by_segment_name(p: &Policy) -> HashMap<&str, &Segment> {
    p.segments.iter().map(|s| (s.name.as_str(), s)).collect()
}

fn sorted<T: Clone + Ord>(xs: &[T]) -> Vec<T> {
    let mut v = xs.to_vec();
    v.sort();
    v
}

fn list<T: std::fmt::Display>(xs: &[T]) -> String {
    if xs.is_empty() {
        return "none".to_owned();
    }
    xs.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
}

/// Defaults compared and printed as the file writes them.
mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pumps: &str, defaults: &str, pump: &str) -> Policy {
        Policy::from_str(
            &format!(
                r#"{{"version":1,"defaults":{{{defaults}}},
                "segments":[{{"name":"pumps",{pumps}}},{{"name":"ws"}}],
                "devices":[{{"name":"p1",{pump},"segment":"pumps"}}]}}"#
            ),
            std::path::Path::new("t.json"),
        )
        .unwrap()
    }

    #[test]
    fn lists_what_changes_enforcement_besides_rules_and_devices() {
        let old = policy(
            r#""life_critical":true,"mode":"monitor","vlans":[20]"#,
            "",
            r#""mac":"02:00:00:00:10:01""#,
        );
        assert!(settings(&old, &old).is_empty());
        let new = policy(
            r#""vlans":[21]"#,
            r#""infrastructure":"deny""#,
            r#""mac":"02:00:00:00:10:0b""#,
        );
        let lines = settings(&old, &new);
        let has = |s: &str| lines.iter().any(|l| l.contains(s));
        assert!(has("! segment pumps: monitor -> enforce"), "{lines:#?}");
        assert!(
            has("! segment pumps is no longer life-critical"),
            "{lines:#?}"
        );
        assert!(has("! segment pumps: VLANs 20 -> 21"), "{lines:#?}");
        assert!(
            has(r#"~ defaults.infrastructure: "allow" -> "deny""#),
            "{lines:#?}"
        );
        assert!(
            has("! device p1 (life-critical) changes its identity: MAC 02:00:00:00:10:01 -> 02:00:00:00:10:0b"),
            "{lines:#?}"
        );
        // A new segment carved out of the pumps' subnet takes devices out.
        let with_subnet = |extra: &str| {
            Policy::from_str(
                &format!(
                    r#"{{"version":1,"segments":[
                    {{"name":"pumps","life_critical":true,"subnets":["10.10.0.0/24"]}}{extra}]}}"#
                ),
                std::path::Path::new("t.json"),
            )
            .unwrap()
        };
        let (a, b) = (
            with_subnet(""),
            with_subnet(r#",{"name":"carved","subnets":["10.10.0.16/28"]}"#),
        );
        let lines = settings(&a, &b);
        assert!(
            lines.iter().any(|l| l.starts_with("! segment carved added")
                && l.contains("overlap life-critical pumps")),
            "{lines:#?}"
        );
        assert!(settings(&b, &a)
            .iter()
            .any(|l| l.starts_with("! segment carved removed")));
    }
}
