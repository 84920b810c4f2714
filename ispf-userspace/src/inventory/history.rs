//! What the inventory saw of a device over the last day, beyond its last
//! sighting: the life-critical segments the file placed it in, and whether
//! another device used one of its addresses. The checks of decisions read
//! these, because the last sighting is whatever the last frame said: a
//! frame with a pump's MAC and another address (or VLAN) would otherwise
//! make the pump look like a laptop to detection's automatic quarantine.

use std::net::IpAddr;

use rusqlite::{params, Connection};

use super::db::DbError;
use crate::decisions::mac_string;

/// How far back the checks look: a pump or monitor sends many times a
/// day, and a day outlasts any scan an attacker would time around it.
pub const RECENT_S: i64 = 24 * 3600;

/// The life-critical segments the file placed `mac` in since `since`.
pub fn life_critical_since(
    conn: &Connection,
    mac: &[u8; 6],
    since: i64,
) -> Result<Vec<String>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT segment FROM life_critical_seen WHERE mac = ?1 AND last_seen >= ?2",
    )?;
    let rows = st.query_map(params![mac_string(mac), since], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether a device other than `mac` sent from `a` since `since`.
pub fn shared_since(
    conn: &Connection,
    mac: &[u8; 6],
    a: &IpAddr,
    since: i64,
) -> Result<bool, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT 1 FROM device_ips WHERE ip = ?1 AND last_seen >= ?2 AND mac != ?3 LIMIT 1",
    )?;
    Ok(st.exists(params![a.to_string(), since, mac_string(mac)])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::store::{write, Batch};

    #[test]
    fn remembers_life_critical_placements_and_shared_addresses_for_a_day() {
        let dir = std::env::temp_dir().join(format!("ispf-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut conn = crate::inventory::db::open(&dir.join("inventory.db")).unwrap();
        let (pump, laptop) = ([2, 0, 0, 0, 0x10, 1], [2, 0, 0, 0, 0x99, 1]);
        let x: IpAddr = "10.0.0.7".parse().unwrap();
        let batch = Batch {
            addresses: vec![(pump, x, 1_000), (laptop, x, 5_000)],
            life_critical: vec![(pump, "pumps".into(), 1_000)],
            ..Default::default()
        };
        write(&mut conn, &batch).unwrap();
        assert_eq!(life_critical_since(&conn, &pump, 900).unwrap(), ["pumps"]);
        assert!(life_critical_since(&conn, &pump, 1_001).unwrap().is_empty());
        assert!(life_critical_since(&conn, &laptop, 0).unwrap().is_empty());
        // The laptop used the pump's address after it: shared for both,
        // until the other's last use is older than asked.
        assert!(shared_since(&conn, &laptop, &x, 1_000).unwrap());
        assert!(!shared_since(&conn, &laptop, &x, 1_001).unwrap());
        assert!(shared_since(&conn, &pump, &x, 5_000).unwrap());
        assert!(!shared_since(&conn, &pump, &"10.0.0.8".parse().unwrap(), 0).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
