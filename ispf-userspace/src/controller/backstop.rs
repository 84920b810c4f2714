//! The decisions' copy beside the inventory database (`decisions.json`),
//! so that a start that finds the database unreadable still enforces them,
//! and reading what was recorded at a start.

use std::path::Path;

use super::engine::{log, Engine};
use crate::{decisions::Decision, inventory::db, inventory::store};

impl Engine {
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

/// The decisions recorded: from the database, else from its copy beside
/// it, else none; with a warning saying which when not the database.
pub fn recorded(db_path: &Path) -> (Vec<Decision>, Option<String>) {
    let from_db = db::open(db_path)
        .map_err(|e| e.to_string())
        .and_then(|c| store::decisions(&c).map_err(|e| e.to_string()));
    match from_db {
        Ok(d) => (d, None),
        Err(e) => {
            let copy = db_path.with_file_name(BACKSTOP);
            match std::fs::read(&copy)
                .ok()
                .and_then(|b| serde_json::from_slice::<Vec<Decision>>(&b).ok())
            {
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
            }
        }
    }
}
