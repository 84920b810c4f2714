//! The sessions open now, in the inventory database (table `sessions`), so
//! that a restarted controller still knows which role decisions a session
//! holds and when each times out; and those that ended within the day
//! (`sessions_ended`), against replays.

use rusqlite::{params, Connection};

use super::session::{Gone, How, Key, Session, REMEMBER_S};
use crate::inventory::db::DbError;

pub fn sessions(conn: &Connection) -> Result<Vec<Session>, DbError> {
    let mut st = conn.prepare(
        "SELECT nas, id, mac, user, role, segment, since, last_update, timeout_s, last_event \
         FROM sessions",
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
            last_event: r.get(9)?,
            seen_auth: Vec::new(),
            enforced: false,
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
            "INSERT INTO sessions (nas, id, mac, user, role, segment, since, last_update, timeout_s, last_event)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
                s.timeout_s,
                s.last_event
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The sessions that ended within the day before `now`.
pub fn ended(conn: &Connection, now: i64) -> Result<Vec<(Key, Gone)>, DbError> {
    let mut st =
        conn.prepare("SELECT nas, id, how, at, last_event FROM sessions_ended WHERE at > ?1")?;
    let rows = st.query_map([now - REMEMBER_S], |r| {
        let how: String = r.get(2)?;
        Ok((
            (r.get(0)?, r.get(1)?),
            Gone {
                // Unknown (written by hand): the stricter of the two.
                how: How::parse(&how).unwrap_or(How::Stopped),
                at: r.get(3)?,
                last_event: r.get(4)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Writes what changed of the ended sessions (`rewrite`: the whole
/// table), and forgets rows older than a day, in one transaction.
pub fn save_ended(
    conn: &mut Connection,
    rewrite: bool,
    rows: &[(Key, Option<Gone>)],
    now: i64,
) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    if rewrite {
        tx.execute("DELETE FROM sessions_ended", [])?;
    }
    {
        let mut put = tx.prepare_cached(
            "INSERT OR REPLACE INTO sessions_ended (nas, id, how, at, last_event)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut del = tx.prepare_cached("DELETE FROM sessions_ended WHERE nas = ?1 AND id = ?2")?;
        for ((nas, id), g) in rows {
            match g {
                Some(g) => put.execute(params![nas, id, g.how.as_str(), g.at, g.last_event])?,
                None => del.execute(params![nas, id])?,
            };
        }
    }
    tx.execute(
        "DELETE FROM sessions_ended WHERE at <= ?1",
        [now - REMEMBER_S],
    )?;
    tx.commit()?;
    Ok(())
}
