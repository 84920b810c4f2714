//! Reading and writing the inventory database's rows: devices, their
//! addresses, the timeline and runtime decisions. Callers own the
//! connection (the ingest thread one, the engine one, each query its own
//! reader) and this module owns the SQL.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use foldhash::HashMap as FastMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::db::DbError;
use crate::decisions::{canonical_mac, mac_string, Decision, Kind};

/// One device as the inventory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub mac: [u8; 6],
    pub vendor: Option<String>,
    pub vlan: u16,
    pub interface: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub hostname: Option<String>,
    pub vendor_class: Option<String>,
    pub dhcp_params: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Where the datapath last placed it, and how (`registered`, `subnet`,
    /// `vlan`, `router`, `unknown`).
    pub segment: String,
    pub judged: String,
}

impl Device {
    /// The addresses of its last sighting, IPv4 first.
    pub fn last_addresses(&self) -> Vec<IpAddr> {
        self.ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.ipv6.map(IpAddr::V6))
            .collect()
    }
}

/// One line of a device's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimelineEntry {
    pub mac: String,
    /// Unix seconds.
    pub at: i64,
    /// `new`, `moved`, `ip_changed`, `admitted`, `quarantined`,
    /// `released`, `expired`, ...
    pub event: String,
    pub detail: String,
    pub actor: Option<String>,
}

/// The database holds MACs as `aa:bb:cc:dd:ee:ff`; listings parse 100k of
/// them, so that spelling is decoded directly (others, written by hand,
/// through the policy's parser).
fn parse_mac6(s: &str) -> Option<[u8; 6]> {
    let b = s.as_bytes();
    let hex = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if b.len() == 17 && (0..5).all(|i| b[3 * i + 2] == b':') {
        let mut m = [0u8; 6];
        for (i, out) in m.iter_mut().enumerate() {
            *out = hex(b[3 * i])? << 4 | hex(b[3 * i + 1])?;
        }
        return Some(m);
    }
    crate::policy::parse_mac(s)
}

/// A text column borrowed, not copied: a listing reads 100k rows.
fn text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<&'r str>> {
    Ok(r.get_ref(i)?.as_str_or_null()?)
}

fn device_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Device>> {
    let text = |i| text(r, i);
    let Some(mac) = text(0)?.and_then(parse_mac6) else {
        return Ok(None);
    };
    Ok(Some(Device {
        mac,
        vendor: r.get(1)?,
        vlan: r.get::<_, i64>(2)? as u16,
        interface: r.get(3)?,
        ipv4: text(4)?.and_then(|s| s.parse().ok()),
        ipv6: text(5)?.and_then(|s| s.parse().ok()),
        hostname: r.get(6)?,
        vendor_class: r.get(7)?,
        dhcp_params: r.get(8)?,
        first_seen: r.get(9)?,
        last_seen: r.get(10)?,
        segment: text(11)?.unwrap_or_default().to_owned(),
        judged: r.get(12)?,
    }))
}

const DEVICE_COLUMNS: &str = "mac, vendor, vlan, interface, ipv4, ipv6, hostname, vendor_class, \
     dhcp_params, first_seen, last_seen, segment, judged";

/// Every device (rows whose MAC does not parse, written by hand, are
/// skipped).
pub fn devices(conn: &Connection) -> Result<Vec<Device>, DbError> {
    let mut st = conn.prepare(&format!("SELECT {DEVICE_COLUMNS} FROM devices"))?;
    let rows = st.query_map([], device_of)?;
    let mut out = Vec::new();
    for r in rows {
        if let Some(d) = r? {
            out.push(d);
        }
    }
    Ok(out)
}

/// How long an address a device no longer uses, and a life-critical
/// placement no longer seen, are kept: DHCP churn on a guest VLAN adds
/// rows every day, and `ispf devices` reads every address.
pub const RETAIN_S: i64 = 90 * 24 * 3600;

/// Deletes the baseline of MACs the inventory does not record, learned
/// more than [`UNRECORDED_BASELINE_S`] before `now`, and the addresses and
/// life-critical placements last seen more than [`RETAIN_S`] before `now`, but never a device's last addresses (the
/// ones `devices` names, which `ispf devices` lists), nor by a clock that
/// jumped ahead: the horizon counts from the newest sighting when that is
/// older than `now`. The timeline, decisions and alerts are the record,
/// and are kept. Rows are found under a read, then deleted a chunk a
/// transaction, so writers (a quarantine being recorded) wait for one
/// chunk at most. Returns how many rows went.
pub fn prune(conn: &mut Connection, now: i64) -> Result<usize, DbError> {
    let newest: Option<i64> =
        conn.query_row("SELECT MAX(last_seen) FROM devices", [], |r| r.get(0))?;
    let before = newest.map_or(now, |n| n.min(now)) - RETAIN_S;
    let found = |conn: &Connection, sql: &str, before: i64| -> Result<Vec<i64>, DbError> {
        let mut st = conn.prepare(sql)?;
        let rows = st.query_map([before], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    let ips = found(
        conn,
        "SELECT rowid FROM device_ips i WHERE last_seen < ?1 AND NOT EXISTS \
         (SELECT 1 FROM devices d WHERE d.mac = i.mac AND (d.ipv4 = i.ip OR d.ipv6 = i.ip))",
        before,
    )?;
    let seen = found(
        conn,
        "SELECT rowid FROM life_critical_seen WHERE last_seen < ?1",
        before,
    )?;
    // Detection learns every MAC's baseline, also of MACs the inventory
    // does not record (more unknown devices than it keeps: a flood of
    // random MACs); theirs go after an hour, or the table would grow
    // without bound. (Services alerted for, `learned_at` 0, are the
    // alerts' and stay.)
    let unrecorded = found(
        conn,
        "SELECT rowid FROM baseline b WHERE learned_at > 0 AND learned_at < ?1 AND NOT EXISTS \
         (SELECT 1 FROM devices d WHERE d.mac = b.mac)",
        now - UNRECORDED_BASELINE_S,
    )?;
    for (table, rows) in [
        ("device_ips", &ips),
        ("life_critical_seen", &seen),
        ("baseline", &unrecorded),
    ] {
        for chunk in rows.chunks(PRUNE_CHUNK) {
            let tx = conn.transaction()?;
            {
                let mut del =
                    tx.prepare_cached(&format!("DELETE FROM {table} WHERE rowid = ?1"))?;
                for r in chunk {
                    del.execute([r])?;
                }
            }
            tx.commit()?;
        }
    }
    Ok(ips.len() + seen.len() + unrecorded.len())
}

/// How long detection's baseline of a MAC the inventory does not record
/// is kept.
pub const UNRECORDED_BASELINE_S: i64 = 3600;

/// Rows [`prune`] deletes in one transaction.
const PRUNE_CHUNK: usize = 2000;

/// The devices the datapath last placed in one of `segments` (by name).
pub fn devices_in(conn: &Connection, segments: &[&str]) -> Result<Vec<Device>, DbError> {
    if segments.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; segments.len()].join(", ");
    let mut st = conn.prepare(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE segment IN ({marks})"
    ))?;
    let rows = st.query_map(rusqlite::params_from_iter(segments), device_of)?;
    let mut out = Vec::new();
    for r in rows {
        if let Some(d) = r? {
            out.push(d);
        }
    }
    Ok(out)
}

pub fn device(conn: &Connection, mac: &[u8; 6]) -> Result<Option<Device>, DbError> {
    let mut st = conn.prepare(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE mac = ?1"
    ))?;
    Ok(st
        .query_row([mac_string(mac)], device_of)
        .optional()?
        .flatten())
}

/// Every address each device was seen with, newest first. (No ORDER BY:
/// sorting 100k rows in SQLite costs more than sorting each device's few.)
pub fn addresses(conn: &Connection) -> Result<Addresses, DbError> {
    let mut st = conn.prepare("SELECT mac, ip, last_seen FROM device_ips")?;
    let mut seen = Addresses::default();
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let Some(mac) = r.get_ref(0)?.as_str().ok().and_then(parse_mac6) else {
            continue;
        };
        seen.0.entry(mac).or_default().push((r.get(2)?, r.get(1)?));
    }
    for v in seen.0.values_mut() {
        v.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    }
    Ok(seen)
}

/// The addresses of every device, each device's newest first.
#[derive(Default)]
pub struct Addresses(FastMap<[u8; 6], Vec<(i64, String)>>);

impl Addresses {
    /// Takes a device's addresses out (a device is listed once).
    pub fn take(&mut self, mac: &[u8; 6]) -> Vec<String> {
        self.0
            .remove(mac)
            .map(|v| v.into_iter().map(|(_, ip)| ip).collect())
            .unwrap_or_default()
    }
}

pub fn addresses_of(conn: &Connection, mac: &[u8; 6]) -> Result<Vec<String>, DbError> {
    let mut st =
        conn.prepare("SELECT ip FROM device_ips WHERE mac = ?1 ORDER BY last_seen DESC")?;
    let rows = st.query_map([mac_string(mac)], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A device's timeline, newest first.
pub fn timeline(conn: &Connection, mac: &[u8; 6]) -> Result<Vec<TimelineEntry>, DbError> {
    let mut st = conn.prepare(
        "SELECT mac, at, event, detail, actor FROM timeline WHERE mac = ?1 ORDER BY at DESC, id DESC",
    )?;
    let rows = st.query_map([mac_string(mac)], |r| {
        Ok(TimelineEntry {
            mac: r.get(0)?,
            at: r.get(1)?,
            event: r.get(2)?,
            detail: r.get(3)?,
            actor: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What one ingest batch writes, in one transaction.
#[derive(Default)]
pub struct Batch<'a> {
    pub devices: Vec<&'a Device>,
    /// (mac, address, unix seconds)
    pub addresses: Vec<([u8; 6], IpAddr, i64)>,
    /// (mac, life-critical segment the file placed it in, unix seconds):
    /// see [`super::history`].
    pub life_critical: Vec<([u8; 6], String, i64)>,
    pub timeline: Vec<TimelineEntry>,
}

impl Batch<'_> {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.addresses.is_empty()
            && self.life_critical.is_empty()
            && self.timeline.is_empty()
    }
}

pub fn write(conn: &mut Connection, b: &Batch<'_>) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    {
        let mut dev = tx.prepare_cached(&format!(
            "INSERT INTO devices ({DEVICE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT(mac) DO UPDATE SET vendor = excluded.vendor, vlan = excluded.vlan,
               interface = excluded.interface, ipv4 = excluded.ipv4, ipv6 = excluded.ipv6,
               hostname = excluded.hostname, vendor_class = excluded.vendor_class,
               dhcp_params = excluded.dhcp_params, last_seen = excluded.last_seen,
               segment = excluded.segment, judged = excluded.judged"
        ))?;
        for d in &b.devices {
            dev.execute(params![
                mac_string(&d.mac),
                d.vendor,
                d.vlan,
                d.interface,
                d.ipv4.map(|a| a.to_string()),
                d.ipv6.map(|a| a.to_string()),
                d.hostname,
                d.vendor_class,
                d.dhcp_params,
                d.first_seen,
                d.last_seen,
                d.segment,
                d.judged,
            ])?;
        }
        let mut ip = tx.prepare_cached(
            "INSERT INTO device_ips (mac, ip, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT(mac, ip) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
        )?;
        for (mac, a, at) in &b.addresses {
            ip.execute(params![mac_string(mac), a.to_string(), at])?;
        }
        let mut lc = tx.prepare_cached(
            "INSERT INTO life_critical_seen (mac, segment, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT(mac, segment) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
        )?;
        for (mac, segment, at) in &b.life_critical {
            lc.execute(params![mac_string(mac), segment, at])?;
        }
        let mut tl = tx.prepare_cached(
            "INSERT INTO timeline (mac, at, event, detail, actor) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for e in &b.timeline {
            tl.execute(params![e.mac, e.at, e.event, e.detail, e.actor])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn decision_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Decision>> {
    let kind: String = r.get(1)?;
    let mac: String = r.get(0)?;
    let (Some(kind), Ok(mac)) = (Kind::parse(&kind), canonical_mac(&mac)) else {
        return Ok(None);
    };
    Ok(Some(Decision {
        mac,
        kind,
        segment: r.get(2)?,
        name: r.get(3)?,
        risk: r.get(4)?,
        reason: r.get(5)?,
        forced: r.get::<_, i64>(6)? != 0,
        actor: r.get(7)?,
        at: r.get(8)?,
        expires: r.get(9)?,
        addresses: r
            .get::<_, String>(10)?
            .split(',')
            .filter_map(|a| a.trim().parse().ok())
            .collect(),
    }))
}

pub fn decisions(conn: &Connection) -> Result<Vec<Decision>, DbError> {
    let mut st = conn.prepare(
        "SELECT mac, kind, segment, name, risk, reason, forced, actor, at, expires, addresses FROM decisions ORDER BY at, mac",
    )?;
    let rows = st.query_map([], decision_of)?;
    let mut out = Vec::new();
    for r in rows {
        if let Some(d) = r? {
            out.push(d);
        }
    }
    Ok(out)
}

/// Records decisions made and undone, with their timeline entries, in one
/// transaction: all of it is durable, or none.
pub fn record_decisions(
    conn: &mut Connection,
    put: &[Decision],
    remove: &[(String, Kind)],
    timeline: &[TimelineEntry],
) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    for (mac, kind) in remove {
        tx.execute(
            "DELETE FROM decisions WHERE mac = ?1 AND kind = ?2",
            params![mac, kind.as_str()],
        )?;
    }
    for d in put {
        tx.execute(
            "INSERT OR REPLACE INTO decisions (mac, kind, segment, name, risk, reason, forced, actor, at, expires, addresses)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                d.mac,
                d.kind.as_str(),
                d.segment,
                d.name,
                d.risk,
                d.reason,
                d.forced as i64,
                d.actor,
                d.at,
                d.expires,
                d.addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ],
        )?;
    }
    for e in timeline {
        tx.execute(
            "INSERT INTO timeline (mac, at, event, detail, actor) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.mac, e.at, e.event, e.detail, e.actor],
        )?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
#[path = "store_tests.rs"]
pub(crate) mod tests;
