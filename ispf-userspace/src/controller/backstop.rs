//! The decisions' copy beside the inventory database (`decisions.json`),
//! so that a start that finds the database unreadable still enforces them,
//! and reading what was recorded at a start.

use std::path::Path;

use super::engine::{log, Engine};
use crate::{decisions::Decision, inventory::db, inventory::store};

impl Engine {
    /// Records in the inventory what the engine already enforced by itself
    /// (an expiry, a narrowing, the fleet's set, roles ended because the
    /// file makes their device life-critical). Enforcement stands if that
    /// fails; it is said (once, then every five minutes while it fails),
    /// naming the devices, since `ispf device` and the timeline then miss
    /// the change.
    pub(super) fn record_enforced(
        &mut self,
        put: &[Decision],
        removed: &[(String, crate::decisions::Kind)],
        entries: &[store::TimelineEntry],
    ) {
        let r = self
            .db()
            .and_then(|conn| Ok(store::record_decisions(conn, put, removed, entries)?));
        match r {
            Ok(()) => {
                self.quiet.clear(UNRECORDED);
            }
            Err(e) => {
                self.db = None;
                let path = self.inventory_db.display().to_string();
                let macs: Vec<&str> = put
                    .iter()
                    .map(|d| d.mac.as_str())
                    .chain(removed.iter().map(|(m, _)| m.as_str()))
                    .collect();
                let about = super::quiet::about(macs.iter().copied());
                self.quiet.log(UNRECORDED, about, || {
                    crate::clip(
                        &format!(
                            "warning: decision changes enforced for {} could not be recorded in {path} ({}): `ispf device` and the timeline miss them; {BACKSTOP} beside it holds what is enforced",
                            macs.join(", "),
                            crate::describe(&e)
                        ),
                        2048,
                    )
                });
            }
        }
    }

    /// A copy of the decisions beside the database, for a start that finds
    /// the database unreadable.
    pub(super) fn save_backstop(&self) {
        let path = self.inventory_db.with_file_name(BACKSTOP);
        if let Ok(bytes) = serde_json::to_vec_pretty(&*self.decisions) {
            if let Err(e) = super::state::write_atomic(&path, &bytes) {
                log(format!("warning: {e}"));
            }
        }
    }
}

/// The decisions' copy beside the inventory database.
pub const BACKSTOP: &str = "decisions.json";

/// [`super::quiet`]'s cause for changes enforced but not recorded.
const UNRECORDED: &str = "unrecorded";

/// The decisions recorded: from the database, else from its copy beside
/// it, else none; with a warning saying which when not the database. A
/// database that never recorded a decision (new: deleted, or moved away
/// as its error message advises, and maybe made again since by a running
/// controller) is not a record that nothing holds: the copy's decisions
/// are enforced and recorded in it. One that did (all were released) is
/// believed.
pub fn recorded(db_path: &Path) -> (Vec<Decision>, Option<String>) {
    let copy = db_path.with_file_name(BACKSTOP);
    let read_copy = || {
        std::fs::read(&copy)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<Decision>>(&b).ok())
    };
    let from_db = db::open(db_path)
        .map_err(|e| e.to_string())
        .and_then(|c| Ok((store::decisions(&c).map_err(|e| e.to_string())?, c)));
    match from_db {
        Ok((d, mut conn)) if d.is_empty() && !decided_before(&conn) => match read_copy() {
            Some(kept) if !kept.is_empty() => {
                let entries: Vec<store::TimelineEntry> = kept
                    .iter()
                    .map(|d| store::TimelineEntry {
                        mac: d.mac.clone(),
                        at: crate::clock::unix_now(),
                        event: "restored".into(),
                        detail: format!(
                            "{} of {} by {}, from {}",
                            d.kind.as_str(),
                            crate::clock::rfc3339(d.at),
                            d.actor,
                            copy.display()
                        ),
                        actor: None,
                    })
                    .collect();
                let recorded = match store::record_decisions(&mut conn, &kept, &[], &entries) {
                    Ok(()) => "recorded in it".to_owned(),
                    Err(e) => format!("not recorded in it ({e})"),
                };
                let n = kept.len();
                (
                    kept,
                    Some(format!(
                        "the inventory database {} never recorded a decision (made anew after it was deleted or moved away?); the {n} decisions kept in {} are enforced and {recorded}",
                        db_path.display(),
                        copy.display()
                    )),
                )
            }
            _ => (d, None),
        },
        Ok((d, _)) => (d, None),
        Err(e) => match read_copy() {
            Some(d) => (
                d,
                Some(format!(
                    "{e}; using the copy of the decisions in {}",
                    copy.display()
                )),
            ),
            None => (
                Vec::new(),
                Some(format!("{e}; no runtime decisions are known")),
            ),
        },
    }
}

/// Whether the database ever recorded a decision being made or undone.
fn decided_before(conn: &rusqlite::Connection) -> bool {
    conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM timeline WHERE event IN
           ('admitted', 'quarantined', 'released', 'expired', 'session_started',
            'session_ended', 'restored'))",
        [],
        |r| r.get::<_, bool>(0),
    )
    // Unreadable: believed, as the database answered for its decisions.
    .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::Kind;

    /// The database's own error advises moving a damaged one away: the
    /// start after that must not take the new, empty database as "no
    /// decision holds" while the copy beside it lists a quarantine.
    #[test]
    fn a_new_database_takes_the_decisions_kept_beside_it() {
        let dir = std::env::temp_dir().join(format!("ispf-backstop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db_path = dir.join("inventory.db");
        let q = Decision {
            mac: "02:00:00:00:30:01".into(),
            kind: Kind::Quarantine,
            segment: None,
            name: None,
            risk: None,
            reason: "EDR alert".into(),
            forced: false,
            actor: "alice".into(),
            at: 1,
            expires: None,
            addresses: Vec::new(),
        };
        std::fs::write(
            dir.join(BACKSTOP),
            serde_json::to_vec(&vec![q.clone()]).unwrap(),
        )
        .unwrap();
        // Made anew (by a running controller's ingest) after the old one
        // was moved away, and never decided anything: not believed.
        db::open(&db_path).unwrap();
        let (d, warning) = recorded(&db_path);
        assert_eq!(d, vec![q.clone()]);
        assert!(warning.unwrap().contains("never recorded a decision"));
        // Recorded in the new database: the next start reads it there.
        let (d, warning) = recorded(&db_path);
        assert_eq!((d, warning), (vec![q], None));
        // A database that exists and lists nothing is believed: every
        // decision was released (the copy may lag one change behind).
        let conn = db::open(&db_path).unwrap();
        conn.execute("DELETE FROM decisions", []).unwrap();
        assert_eq!(recorded(&db_path), (Vec::new(), None));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
