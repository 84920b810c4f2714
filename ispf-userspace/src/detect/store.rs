//! Detection's rows in the inventory database: baselines and alerts.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use super::logic::{History, Service};
use crate::{clock::rfc3339, inventory::db::DbError};

/// One alert as `ispf alerts` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: i64,
    /// RFC 3339.
    pub time: String,
    pub mac: String,
    /// `scan`, `anomaly`.
    pub kind: String,
    /// `warning`, `critical`.
    pub severity: String,
    /// The device's segment when it was raised.
    pub segment: String,
    pub detail: String,
    /// What ispf did.
    pub response: String,
}

/// One device's kept state: its learned baseline (`learned_at` > 0) and
/// the services it already alerted for (kept as rows with `learned_at` 0,
/// which `ispf baseline` does not list: parsing them back from alerts'
/// details would be fragile). Read when detection first meets the device
/// (at a start, or after it was evicted), by the table's primary key.
pub fn history(conn: &Connection, mac: &str) -> Result<History, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT dst_segment, protocol, port, learned_at FROM baseline WHERE mac = ?1",
    )?;
    let rows = st.query_map([mac], |r| {
        Ok((
            (r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u16),
            r.get::<_, i64>(3)?,
        ))
    })?;
    let (mut baseline, mut alerted, mut first) = (Vec::new(), Vec::new(), None::<i64>);
    for row in rows {
        let (svc, at): (Service, i64) = row?;
        if at > 0 {
            baseline.push(svc);
            first = Some(first.map_or(at, |f| f.min(at)));
        } else {
            alerted.push(svc);
        }
    }
    Ok((baseline, alerted, first))
}

/// Records learned services (`at` > 0) or alerted ones (`at` = 0).
pub fn remember(conn: &mut Connection, rows: &[(String, Service)], at: i64) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    {
        let mut st = tx.prepare_cached(
            "INSERT OR IGNORE INTO baseline (mac, dst_segment, protocol, port, learned_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (mac, (seg, proto, port)) in rows {
            st.execute(params![mac, seg, proto, *port as i64, at])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub fn baseline_of(conn: &Connection, mac: &str) -> Result<Vec<(Service, i64)>, DbError> {
    let mut st = conn.prepare(
        "SELECT dst_segment, protocol, port, learned_at FROM baseline WHERE mac = ?1 AND learned_at > 0 ORDER BY dst_segment, protocol, port",
    )?;
    let rows = st.query_map([mac], |r| {
        Ok((
            (r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u16),
            r.get(3)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn insert_alert(conn: &Connection, a: &Alert, at: i64) -> Result<i64, DbError> {
    conn.execute(
        "INSERT INTO alerts (at, mac, kind, severity, segment, detail, response) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![at, a.mac, a.kind, a.severity, a.segment, a.detail, a.response],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn set_response(conn: &Connection, id: i64, response: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE alerts SET response = ?2 WHERE id = ?1",
        params![id, response],
    )?;
    Ok(())
}

/// Alerts at or after `since` (unix seconds), newest first, at most `limit`.
pub fn alerts(conn: &Connection, since: i64, limit: usize) -> Result<Vec<Alert>, DbError> {
    let mut st = conn.prepare(
        "SELECT id, at, mac, kind, severity, segment, detail, response FROM alerts WHERE at >= ?1 ORDER BY at DESC, id DESC LIMIT ?2",
    )?;
    let rows = st.query_map(params![since, limit as i64], |r| {
        Ok(Alert {
            id: r.get(0)?,
            time: rfc3339(r.get(1)?),
            mac: r.get(2)?,
            kind: r.get(3)?,
            severity: r.get(4)?,
            segment: r.get(5)?,
            detail: r.get(6)?,
            response: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
