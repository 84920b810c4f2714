//! What the inventory saw of a device over the last day, beyond its last
//! sighting: the life-critical segments the file placed it in, and whether
//! another device used one of its addresses. The checks of decisions read
//! these, because the last sighting is whatever the last frame said: a
//! frame with a pump's MAC and another address (or VLAN) would otherwise
//! make the pump look like a laptop to detection's automatic quarantine.

use std::{collections::HashMap, net::IpAddr};

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    db::DbError,
    judge::{Judged, Placement},
};
use crate::{decisions::mac_string, policy::Policy};

/// How far back the checks look: a pump or monitor sends many times a
/// day, and a day outlasts any scan an attacker would time around it.
pub const RECENT_S: i64 = 24 * 3600;

/// Whether a sighting the datapath placed in `reported` shows the file
/// placing the device in a life-critical segment, as `placement` (the
/// ingest's judge, over `policy`) does too: by an entry that names it by
/// address alone, by a subnet or by a VLAN. A MAC the file registers is
/// found by its entry on its VLAN whatever its frames say (the checks
/// read this history only for others); a router forwards for others; a decision's placement is no pump (a role
/// may put a cart in the pumps' segment); and a frame the datapath placed
/// otherwise than the judge (a spoofed ARP or ND frame, which the datapath
/// places by the address it borrows; a policy the ingest has not caught
/// up with) proves nothing.
pub fn placed_by_file(policy: &Policy, placement: &Placement, reported: u16) -> bool {
    let by_file = match placement.device {
        Some(i) => i < policy.file_devices && policy.devices[i].mac.is_none(),
        None => matches!(placement.judged, Judged::Subnet | Judged::Vlan),
    };
    // A quarantine moves an entry by address alone into the unknown
    // source's segment: never the file's placement, even if a file makes
    // that segment life-critical.
    by_file
        && placement.segment == reported
        && reported != policy.unknown
        && policy.segment(reported).is_some_and(|s| s.life_critical)
}

/// When each device's life-critical placement was last handed to the
/// database: a pump sends all day, and a row a minute is history enough.
#[derive(Default)]
pub struct Remembered(HashMap<([u8; 6], u16), i64>);

impl Remembered {
    /// Whether the placement of `mac` in `segment` at `at` is to be
    /// written (the first, or a minute after the last written).
    pub fn due(&mut self, mac: [u8; 6], segment: u16, at: i64) -> bool {
        let last = self.0.entry((mac, segment)).or_insert(i64::MIN);
        if at.saturating_sub(*last) < 60 {
            return false;
        }
        *last = at;
        true
    }
}

/// The addresses each of `macs` was last seen with (none for a device
/// never seen), through one cached statement: the engine's ten-second role
/// check asks this for every role's device, and preparing a statement per
/// device was most of its cost.
pub fn last_addresses(conn: &Connection, macs: &[[u8; 6]]) -> Result<Vec<Vec<IpAddr>>, DbError> {
    let mut st = conn.prepare_cached("SELECT ipv4, ipv6 FROM devices WHERE mac = ?1")?;
    let mut out = Vec::with_capacity(macs.len());
    for mac in macs {
        // An address that does not parse, or is no text (written by
        // hand), is none: one bad row must not stop the check of all.
        let text = |r: &rusqlite::Row, i| -> rusqlite::Result<Option<String>> {
            Ok(r.get_ref(i)?
                .as_str_or_null()
                .ok()
                .flatten()
                .map(str::to_owned))
        };
        let row = st
            .query_row([mac_string(mac)], |r| Ok((text(r, 0)?, text(r, 1)?)))
            .optional()?;
        let (v4, v6) = row.unwrap_or_default();
        let v4 = v4.and_then(|s| s.parse::<std::net::Ipv4Addr>().ok());
        let v6 = v6.and_then(|s| s.parse::<std::net::Ipv6Addr>().ok());
        out.push(
            v4.map(IpAddr::V4)
                .into_iter()
                .chain(v6.map(IpAddr::V6))
                .collect(),
        );
    }
    Ok(out)
}

/// The life-critical segments the file placed `mac` in since `since`.
pub fn life_critical_since(
    conn: &Connection,
    mac: &[u8; 6],
    since: i64,
) -> Result<Vec<String>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT segment FROM life_critical_seen WHERE mac = ?1 AND last_seen >= ?2",
    )?;
    let rows = st.query_map(params![mac_string(mac), since], segment_name)?;
    Ok(rows
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()?)
}

/// A stored segment name. One written into the database by hand as a
/// number or a blob is read as its text, rather than failing the query
/// and with it the check of every quarantine's addresses (which then
/// keep them); only NULL names none.
fn segment_name(r: &rusqlite::Row) -> rusqlite::Result<Option<String>> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(0)? {
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Null => None,
    })
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

/// The other devices that sent from `a` since `since`: all of them (a
/// limit would let many made-up MACs push the one that matters out).
pub fn others_since(
    conn: &Connection,
    mac: &[u8; 6],
    a: &IpAddr,
    since: i64,
) -> Result<Vec<[u8; 6]>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT mac FROM device_ips WHERE ip = ?1 AND last_seen >= ?2 AND mac != ?3",
    )?;
    let rows = st.query_map(params![a.to_string(), since, mac_string(mac)], |r| {
        r.get::<_, String>(0)
    })?;
    Ok(rows
        .filter_map(|m| crate::policy::parse_mac(&m.ok()?))
        .collect())
}

/// The life-critical segments that any device other than `mac` was
/// placed in since `since`, of those that sent from `a` since then: one
/// query however many MACs used the address (an attacker can make up
/// thousands).
pub fn life_critical_of_others_since(
    conn: &Connection,
    mac: &[u8; 6],
    a: &IpAddr,
    since: i64,
) -> Result<Vec<String>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT l.segment FROM device_ips d JOIN life_critical_seen l ON l.mac = d.mac \
         WHERE d.ip = ?1 AND d.last_seen >= ?2 AND d.mac != ?3 AND l.last_seen >= ?2",
    )?;
    let rows = st.query_map(params![a.to_string(), since, mac_string(mac)], segment_name)?;
    Ok(rows
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::store::{write, Batch};

    #[test]
    fn only_the_files_placements_that_the_datapath_agrees_with_are_remembered() {
        let policy = Policy::from_str(
            r#"{"version":1,"segments":[
                {"name":"pumps","life_critical":true,"vlans":[20]},{"name":"ws","vlans":[30]}],
              "devices":[{"name":"p1","mac":"02:00:00:00:10:01","segment":"pumps"},
                         {"name":"p2","ipv4":"10.0.0.2","segment":"pumps"}]}"#,
            std::path::Path::new("t.json"),
        )
        .unwrap();
        let judge = super::super::judge::Judge::new(std::sync::Arc::new(policy.clone()));
        let pumps = policy.segment_id("pumps").unwrap();
        let ws = policy.segment_id("ws").unwrap();
        let (p1, laptop) = ([2, 0, 0, 0, 0x10, 1], [2, 0, 0, 0, 0x99, 1]);
        // By its MAC: found by its entry, not by history.
        assert!(!placed_by_file(
            &policy,
            &judge.place(&p1, 20, None, None),
            pumps
        ));
        // By the VLAN, by an entry by address alone: remembered.
        assert!(placed_by_file(
            &policy,
            &judge.place(&laptop, 20, None, None),
            pumps
        ));
        let by_address = judge.place(&laptop, 30, Some("10.0.0.2".parse().unwrap()), None);
        assert!(placed_by_file(&policy, &by_address, pumps));
        // The datapath placed it elsewhere: nothing proven.
        assert!(!placed_by_file(&policy, &by_address, ws));
        assert!(!placed_by_file(
            &policy,
            &judge.place(&laptop, 30, None, None),
            ws
        ));
        let mut r = Remembered::default();
        assert!(r.due(laptop, pumps, 100));
        assert!(!r.due(laptop, pumps, 159));
        assert!(r.due(laptop, ws, 159));
        assert!(r.due(laptop, pumps, 160));
    }

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
        assert_eq!(others_since(&conn, &laptop, &x, 0).unwrap(), [pump]);
        assert!(others_since(&conn, &laptop, &x, 1_001).unwrap().is_empty());
        // Asked for the laptop: the pump used its address, from pumps.
        let of_others = |mac: &[u8; 6], since| life_critical_of_others_since(&conn, mac, &x, since);
        assert_eq!(of_others(&laptop, 900).unwrap(), ["pumps"]);
        assert!(of_others(&laptop, 1_001).unwrap().is_empty());
        assert!(
            of_others(&pump, 0).unwrap().is_empty(),
            "the laptop was never life-critical"
        );
        // A monitor that used the address lately, but was life-critical
        // only long before: both must be recent.
        let monitor = [2, 0, 0, 0, 0x20, 1];
        let batch = Batch {
            addresses: vec![(monitor, x, 5_000)],
            life_critical: vec![(monitor, "monitors".into(), 1_000)],
            ..Default::default()
        };
        write(&mut conn, &batch).unwrap();
        let of_others = |mac: &[u8; 6], since| life_critical_of_others_since(&conn, mac, &x, since);
        assert!(of_others(&laptop, 2_000).unwrap().is_empty());
        // Segments written by hand: a number (stored as text by the
        // column's affinity) and a blob, read as its text; the check does
        // not fail.
        for (mac, segment) in [
            ("02:00:00:00:30:01", "7"),
            ("02:00:00:00:30:02", "x'70756d7073'"),
        ] {
            conn.execute(
                &format!("INSERT INTO life_critical_seen (mac, segment, first_seen, last_seen) VALUES ('{mac}', {segment}, 6000, 6000)"),
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO device_ips (mac, ip, first_seen, last_seen) VALUES (?1, '10.0.0.7', 6000, 6000)",
                params![mac],
            )
            .unwrap();
        }
        let mut read = of_others(&laptop, 5_500).unwrap();
        read.sort();
        assert_eq!(read, ["7", "pumps"]);
        assert_eq!(
            life_critical_since(&conn, &[2, 0, 0, 0, 0x30, 1], 0).unwrap(),
            ["7"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn last_addresses_read_as_a_device_read_does() {
        let dir = std::env::temp_dir().join(format!("ispf-last-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conn = crate::inventory::db::open(&dir.join("inventory.db")).unwrap();
        let row = |mac: &str, v4: Option<&str>, v6: Option<&str>| {
            conn.execute(
                "INSERT INTO devices (mac, vlan, interface, ipv4, ipv6, first_seen, last_seen, judged) \
                 VALUES (?1, 0, 'eth0', ?2, ?3, 1, 1, 'unknown')",
                params![mac, v4, v6],
            )
            .unwrap();
        };
        row("02:00:00:00:00:01", Some("10.0.0.1"), Some("2001:db8::1"));
        row("02:00:00:00:00:02", None, Some("2001:db8::2"));
        // Written by hand: an address that does not parse is none.
        row("02:00:00:00:00:03", Some("not an address"), None);
        // Nor is one that is no text; the others are still read.
        conn.execute(
            "INSERT INTO devices (mac, vlan, interface, ipv4, first_seen, last_seen, judged) \
             VALUES ('02:00:00:00:00:05', 0, 'eth0', x'ff00', 1, 1, 'unknown')",
            [],
        )
        .unwrap();
        let blob = last_addresses(&conn, &[[2, 0, 0, 0, 0, 5], [2, 0, 0, 0, 0, 1]]).unwrap();
        assert!(blob[0].is_empty());
        assert_eq!(blob[1].len(), 2);
        let macs = [
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            [2, 0, 0, 0, 0, 3],
            [2, 0, 0, 0, 0, 4],
        ];
        let got = last_addresses(&conn, &macs).unwrap();
        for (mac, got) in macs.iter().zip(&got) {
            let want = crate::inventory::store::device(&conn, mac)
                .unwrap()
                .map(|d| d.last_addresses())
                .unwrap_or_default();
            assert_eq!(*got, want, "{mac:?}");
        }
        assert_eq!(got[0].len(), 2);
        assert_eq!(got[1], ["2001:db8::2".parse::<IpAddr>().unwrap()]);
        assert!(got[2].is_empty() && got[3].is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
