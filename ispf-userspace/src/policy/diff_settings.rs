//! What a new file changes besides devices and rules: each segment's
//! mode, life-critical mark, subnets and VLANs, the defaults, and the
//! identity of a life-critical device. These change enforcement as much
//! as a rule does (a pump segment from monitor to enforce starts
//! dropping; a mistyped pump MAC makes the pump's frames spoofed), so a
//! reload lists them; `!` marks what touches a life-critical segment.

use super::Policy;

/// The lines a reload prints for what `new` changes of `old`'s settings.
pub fn settings(old: &Policy, new: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    for o in &old.segments {
        let Some(n) = new.segments.iter().find(|s| s.name == o.name) else {
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
        if o.subnets != n.subnets {
            out.push(format!(
                "{mark} segment {name}: subnets {} -> {}",
                list(&o.subnets),
                list(&n.subnets)
            ));
        }
        if o.vlans != n.vlans {
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
        ("routers", json(&od.routers), json(&nd.routers)),
        ("timeouts", json(&od.timeouts), json(&nd.timeouts)),
    ] {
        if a != b {
            out.push(format!("~ defaults.{key}: {a} -> {b}"));
        }
    }
    for n in &new.devices {
        let Some(o) = old.devices.iter().find(|d| d.name == n.name) else {
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
    }
}
