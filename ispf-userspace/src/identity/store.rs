//! The sessions open now, in the inventory database (table `sessions`), so
//! that a restarted controller still knows which role decisions a session
//! holds and when each times out.

use rusqlite::{params, Connection};

use super::session::Session;
use crate::inventory::db::DbError;

pub fn sessions(conn: &Connection) -> Result<Vec<Session>, DbError> {
    let mut st = conn.prepare(
        "SELECT nas, id, mac, user, role, segment, since, last_update, timeout_s FROM sessions",
    )?;
    let rows = st.query_map([], |r| {
        Ok(Session {
            nas: r.get(0)?,
            id: r.get(1)?,
            mac: r.get(2)?,
            user: r.get(3)?,
            role: r.get(4)?,
            segment: r.get(5)?,
            since: r.get(6)?,
            last_update: r.get(7)?,
            timeout_s: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces the table with `all` in one transaction (at most once a
/// second: the session table is small next to what SQLite writes).
pub fn save(conn: &mut Connection, all: &[Session]) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM sessions", [])?;
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO sessions (nas, id, mac, user, role, segment, since, last_update, timeout_s)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for s in all {
            st.execute(params![
                s.nas,
                s.id,
                s.mac,
                s.user,
                s.role,
                s.segment,
                s.since,
                s.last_update,
                s.timeout_s
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}
