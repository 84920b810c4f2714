//! A quarantine takes the addresses its device was last seen with when no
//! other device used them within the day. That is checked when it is
//! planned; an address can change hands later (the quarantined laptop's
//! DHCP lease ends, and a monitor is given the address). Traffic to the
//! monitor would then be judged as traffic to the quarantine, and its own
//! frames from the address as spoofed. So the held quarantines' addresses
//! are checked again every ten seconds, as a fleet host checks a key it is
//! delivered ([`Engine::life_critical_used`]), and a quarantine is
//! narrowed to the addresses no life-critical device used. The quarantined
//! MAC stays quarantined: its frames from an address taken away are
//! dropped as spoofed. A fleet host narrows its own copy of the key.

use super::{
    engine::{log, unix_now, Engine},
    quiet,
};
use crate::{
    decisions::{Decision, Kind},
    inventory::store,
};

impl Engine {
    pub(super) fn narrow_quarantines(&mut self) {
        // A fleet host too: its own copy of a key then differs from the
        // site's, and the next delivery checks that key again from it.
        let decisions = self.decisions.clone();
        let asks: Vec<String> = decisions
            .iter()
            .filter(|d| self.needs_inventory(d).is_some())
            .map(|d| d.mac.clone())
            .collect();
        if asks.is_empty() {
            self.quiet.clear(UNNARROWED);
            self.quiet.clear(UNCHECKED);
            return;
        }
        let now = unix_now();
        let mut next: Vec<Decision> = decisions.to_vec();
        // An inventory that cannot be opened is tried once a check, not
        // once a quarantine (each try may scan the database).
        if let Err(e) = self.db() {
            let why = crate::describe(&e);
            let all: Vec<(String, String)> =
                asks.into_iter().map(|mac| (mac, why.clone())).collect();
            self.say_unknown(&all);
            return;
        }
        let mut narrowed = Vec::new();
        let mut unknown = Vec::new();
        for d in next.iter_mut().filter(|d| with_addresses(d)) {
            // The inventory cannot say who used an address: what is
            // enforced for this quarantine stays, and the others are
            // still checked.
            let taken = match self.life_critical_used(d) {
                Ok(taken) => taken,
                Err(e) => {
                    unknown.push((d.mac.clone(), crate::describe(&e)));
                    continue;
                }
            };
            if !taken.is_empty() {
                d.addresses.retain(|a| !taken.contains(a));
                narrowed.push((d.clone(), taken));
            }
        }
        self.say_unknown(&unknown);
        if narrowed.is_empty() {
            // Unless the one that could not be narrowed could not be
            // checked this time either.
            if unknown.is_empty() {
                self.quiet.clear(UNNARROWED);
            }
            return;
        }
        let g = match self.enforce_decisions(next, now) {
            Ok(g) => g,
            Err(e) => {
                let about = quiet::about(narrowed.iter().map(|(d, _)| d.mac.as_str()));
                self.quiet.log(UNNARROWED, about, || {
                    let macs: Vec<&str> = narrowed.iter().map(|(d, _)| d.mac.as_str()).collect();
                    crate::clip(
                        &format!(
                            "warning: the quarantine of {} holds an address a life-critical device used, and could not be narrowed yet (retried every ten seconds): {}",
                            macs.join(", "),
                            crate::describe(&e)
                        ),
                        2048,
                    )
                });
                return;
            }
        };
        self.quiet.clear(UNNARROWED);
        let mut entries = Vec::new();
        for (d, taken) in &narrowed {
            let list: Vec<String> = taken.iter().map(|a| a.to_string()).collect();
            let detail = format!(
                "the quarantine no longer takes {}: a device in a life-critical segment used it since (the MAC stays quarantined)",
                list.join(", ")
            );
            log(format!("{}: {detail}; generation {g}", d.mac));
            self.device_event(&d.mac, "quarantine_narrowed", &detail, "ispf");
            entries.push(store::TimelineEntry {
                mac: d.mac.clone(),
                at: now,
                event: "quarantine_narrowed".into(),
                detail,
                actor: None,
            });
        }
        let put: Vec<Decision> = narrowed.into_iter().map(|(d, _)| d).collect();
        self.record_enforced(&put, &[], &entries);
        self.save_backstop();
        self.publish();
        // A delivery says how each key is enforced here (in `fleet status`);
        // a narrowing between deliveries would otherwise not show until
        // the site's set next changed.
        if let (Some(_), Some(s)) = (&self.fleet, &self.shared) {
            s.fleet_reapply
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Says which quarantines' addresses the inventory could not check
    /// (MAC and why): at once, then every five minutes while the same ones
    /// cannot be checked.
    fn say_unknown(&mut self, unknown: &[(String, String)]) {
        if unknown.is_empty() {
            self.quiet.clear(UNCHECKED);
            return;
        }
        let about = quiet::about(unknown.iter().map(|(mac, _)| mac.as_str()));
        self.quiet.log(UNCHECKED, about, || {
            let macs: Vec<&str> = unknown.iter().map(|(m, _)| m.as_str()).collect();
            let why: std::collections::BTreeSet<&str> =
                unknown.iter().map(|(_, w)| w.as_str()).collect();
            let why: Vec<&str> = why.into_iter().collect();
            crate::clip(
                &format!(
                    "warning: the inventory cannot say whether a life-critical device used the addresses of the quarantine of {} ({}): each keeps its addresses until it can (checked every ten seconds)",
                    macs.join(", "),
                    why.join("; ")
                ),
                2048,
            )
        });
    }
}

/// [`super::quiet`]'s causes: a narrowing not enforced yet, and
/// quarantines whose addresses could not be checked.
const UNNARROWED: &str = "unnarrowed";
const UNCHECKED: &str = "unchecked";

fn with_addresses(d: &Decision) -> bool {
    d.kind == Kind::Quarantine && !d.addresses.is_empty()
}
