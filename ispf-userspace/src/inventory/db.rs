//! The inventory database: SQLite in WAL mode, its schema versioned with
//! `PRAGMA user_version` and migrated forward in one transaction. The
//! schema is part of ispf's interface: network teams query it with
//! `sqlite3` (see the README and the `*_readable` views).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("inventory database {}: {message}; {fix}", path.display())]
    Open {
        path: PathBuf,
        message: String,
        fix: String,
    },
    #[error("inventory database: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// Each migration takes the schema from its index to the next version.
const MIGRATIONS: &[&str] = &[
    // 1: devices, their addresses, the timeline, runtime decisions.
    r#"
    CREATE TABLE devices (
        mac          TEXT PRIMARY KEY,     -- aa:bb:cc:dd:ee:ff
        vendor       TEXT,                 -- IEEE registry, NULL if none
        vlan         INTEGER NOT NULL,     -- 0: untagged
        interface    TEXT NOT NULL,        -- the port it was last seen on
        ipv4         TEXT,                 -- last source addresses seen
        ipv6         TEXT,
        hostname     TEXT,                 -- DHCP option 12, else LLDP system name
        vendor_class TEXT,                 -- DHCP option 60
        dhcp_params  TEXT,                 -- DHCP option 55, comma-separated
        first_seen   INTEGER NOT NULL,     -- unix seconds
        last_seen    INTEGER NOT NULL,
        segment      TEXT,                 -- where the datapath placed it
        judged       TEXT NOT NULL         -- registered | admitted | subnet | vlan | unknown
    );
    CREATE TABLE device_ips (
        mac        TEXT NOT NULL,
        ip         TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen  INTEGER NOT NULL,
        PRIMARY KEY (mac, ip)
    );
    CREATE TABLE timeline (
        id     INTEGER PRIMARY KEY,
        mac    TEXT NOT NULL,
        at     INTEGER NOT NULL,           -- unix seconds
        event  TEXT NOT NULL,              -- new | moved | ip_changed | admitted | quarantined | released | expired | ...
        detail TEXT NOT NULL,
        actor  TEXT                        -- who made a decision
    );
    CREATE INDEX timeline_by_mac ON timeline (mac, at);
    CREATE TABLE decisions (
        mac      TEXT NOT NULL,
        kind     TEXT NOT NULL,            -- quarantine | role | admit
        segment  TEXT,                     -- admit, role: the segment
        name     TEXT,                     -- admit: a device name
        risk     TEXT,                     -- admit: low | medium | high | critical
        reason   TEXT NOT NULL,
        forced   INTEGER NOT NULL DEFAULT 0,
        actor    TEXT NOT NULL,
        at       INTEGER NOT NULL,
        expires  INTEGER,                  -- unix seconds, NULL: never
        addresses TEXT NOT NULL DEFAULT '', -- quarantine: the device's addresses, comma-separated
        PRIMARY KEY (mac, kind)
    );
    CREATE VIEW devices_readable AS
        SELECT mac, vendor, vlan, interface, ipv4, ipv6, hostname, vendor_class, segment, judged,
               datetime(first_seen, 'unixepoch') AS first_seen,
               datetime(last_seen, 'unixepoch') AS last_seen
        FROM devices;
    CREATE VIEW decisions_readable AS
        SELECT mac, kind, segment, name, risk, reason, forced, actor,
               datetime(at, 'unixepoch') AS at, datetime(expires, 'unixepoch') AS expires, addresses
        FROM decisions;
    CREATE VIEW timeline_readable AS
        SELECT mac, datetime(at, 'unixepoch') AS at, event, detail, actor FROM timeline;
    "#,
    // 2: detection: each device's east-west baseline and the alerts raised.
    r#"
    CREATE TABLE baseline (
        mac         TEXT NOT NULL,
        dst_segment TEXT NOT NULL,
        protocol    TEXT NOT NULL,         -- tcp | udp | icmp | sctp | a number
        port        INTEGER NOT NULL,      -- 0 for protocols without ports
        learned_at  INTEGER NOT NULL,
        PRIMARY KEY (mac, dst_segment, protocol, port)
    );
    CREATE TABLE alerts (
        id        INTEGER PRIMARY KEY,
        at        INTEGER NOT NULL,
        mac       TEXT NOT NULL,
        kind      TEXT NOT NULL,           -- scan | anomaly
        severity  TEXT NOT NULL,           -- warning | critical
        segment   TEXT NOT NULL,           -- the device's segment then
        detail    TEXT NOT NULL,
        response  TEXT NOT NULL            -- what ispf did: quarantined until ..., or why not
    );
    CREATE INDEX alerts_by_time ON alerts (at);
    CREATE INDEX alerts_by_mac ON alerts (mac, at);
    CREATE VIEW alerts_readable AS
        SELECT id, datetime(at, 'unixepoch') AS at, mac, kind, severity, segment, detail, response FROM alerts;
    "#,
    // 3: identity: the RADIUS accounting sessions open now.
    r#"
    CREATE TABLE sessions (
        nas         TEXT NOT NULL,         -- the NAS's address
        id          TEXT NOT NULL,         -- Acct-Session-Id
        mac         TEXT NOT NULL,         -- Calling-Station-Id, aa:bb:cc:dd:ee:ff
        user        TEXT NOT NULL,         -- User-Name
        role        TEXT NOT NULL,
        segment     TEXT NOT NULL,
        since       INTEGER NOT NULL,
        last_update INTEGER NOT NULL,
        timeout_s   INTEGER NOT NULL,      -- over when no update comes for this long
        PRIMARY KEY (nas, id)
    );
    CREATE VIEW sessions_readable AS
        SELECT nas, id, mac, user, role, segment, datetime(since, 'unixepoch') AS since,
               datetime(last_update, 'unixepoch') AS last_update, timeout_s FROM sessions;
    "#,
    // 4: where a device was seen in a life-critical segment (by the file,
    // not by a decision), and who else used an address: so that one forged
    // sighting cannot make a pump look like something else to the checks
    // of automatic actions (see `history`).
    r#"
    CREATE TABLE life_critical_seen (
        mac        TEXT NOT NULL,
        segment    TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen  INTEGER NOT NULL,
        PRIMARY KEY (mac, segment)
    );
    CREATE INDEX device_ips_by_ip ON device_ips (ip, last_seen);
    "#,
    // 5: identity: RADIUS sessions that ended, for a day, and the newest
    // Event-Timestamp of each open one, so that a replayed Start or
    // Interim-Update binds nothing, even after a restart.
    r#"
    CREATE TABLE sessions_ended (
        nas        TEXT NOT NULL,
        id         TEXT NOT NULL,          -- Acct-Session-Id
        how        TEXT NOT NULL,          -- stopped (by its NAS) or lapsed (ended by ispf)
        at         INTEGER NOT NULL,       -- when it ended
        last_event INTEGER,                -- the newest Event-Timestamp it carried
        PRIMARY KEY (nas, id)
    );
    CREATE INDEX sessions_ended_by_time ON sessions_ended (at);
    ALTER TABLE sessions ADD COLUMN last_event INTEGER;
    "#,
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Why the directory holding the database cannot be written, if it cannot.
fn unwritable_dir(path: &Path) -> Option<String> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    if dir.exists() && !dir.is_dir() {
        return Some(format!(
            "{} is not a directory: move that file aside, or give ispf another --state-dir",
            dir.display()
        ));
    }
    if !dir.is_dir() {
        return Some(format!(
            "its directory {} does not exist and cannot be created: create it, or give ispf another --state-dir",
            dir.display()
        ));
    }
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a NUL-terminated path; access only reads it.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
        return None;
    }
    Some(match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EROFS) => format!(
            "{} is on a read-only file system: remount it read-write, or give ispf another --state-dir",
            dir.display()
        ),
        _ => format!(
            "ispf cannot write in {}: check its permissions, or give ispf another --state-dir",
            dir.display()
        ),
    })
}

/// The error for `e` on the database at `path`, with what to do about it.
pub fn explain(path: &Path, e: &rusqlite::Error) -> DbError {
    let message = e.to_string();
    let lower = message.to_lowercase();
    let fix = if let Some(why) = unwritable_dir(path) {
        why
    } else if lower.contains("readonly") || lower.contains("read-only") {
        format!(
            "ispf needs to write it: check the permissions of {} and of its directory, and that the file system is not mounted read-only",
            path.display()
        )
    } else if lower.contains("locked") || lower.contains("busy") {
        "another process holds it locked: stop it (`fuser` names it), or give ispf another --state-dir".into()
    } else if lower.contains("not a database")
        || lower.contains("malformed")
        || lower.contains("corrupt")
        || lower.contains("no such table")
        || lower.contains("no such column")
    {
        format!(
            "the file is damaged (or a table was dropped or changed by hand): move it aside (mv {0} {0}.damaged) and restart ispf, which starts a new inventory with the runtime decisions kept in decisions.json beside it; `sqlite3 {0}.damaged .recover` may save the rest",
            path.display()
        )
    } else {
        "see the message; `sqlite3` can open the file to look".into()
    };
    DbError::Open {
        path: path.to_owned(),
        message,
        fix,
    }
}

/// Opens (creating if needed) the database at `path` for writing, in WAL
/// mode, migrated to the current schema.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let conn = Connection::open(path).map_err(|e| explain(path, &e))?;
    // A locked database answers within a second, not never.
    conn.busy_timeout(std::time::Duration::from_secs(1))
        .map_err(|e| explain(path, &e))?;
    let check = |c: &Connection| -> rusqlite::Result<()> {
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "NORMAL")?;
        let ok: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if ok != "ok" {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(format!("corrupt: {ok}")),
            ));
        }
        Ok(())
    };
    check(&conn).map_err(|e| explain(path, &e))?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// A second connection for readers (`ispf devices` while sightings are
/// written): WAL lets it read without waiting for the writer.
pub fn open_reader(path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| explain(path, &e))?;
    conn.busy_timeout(std::time::Duration::from_secs(1))?;
    Ok(conn)
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), DbError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| explain(path, &e))?;
    if version > SCHEMA_VERSION {
        return Err(DbError::Open {
            path: path.to_owned(),
            message: format!(
                "its schema is version {version}, newer than this ispf's {SCHEMA_VERSION}"
            ),
            fix: "run the ispf that wrote it, or move the file aside".into(),
        });
    }
    for (v, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", v as i64 + 1)?;
        tx.commit()?;
    }
    // A table dropped by hand is not put back by a migration: said at
    // once, rather than as the failure of the next decision.
    for table in TABLES {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .map_err(|e| explain(path, &e))?;
        if n == 0 {
            let missing = rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(format!("no such table: {table}")),
            );
            return Err(explain(path, &missing));
        }
    }
    Ok(())
}

/// The tables the schema's migrations make.
const TABLES: &[&str] = &[
    "devices",
    "device_ips",
    "timeline",
    "decisions",
    "baseline",
    "alerts",
    "sessions",
    "life_critical_seen",
    "sessions_ended",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ispf-db-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn creates_migrates_and_reopens() {
        let d = dir("new");
        let p = d.join("inventory.db");
        let c = open(&p).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let mode: String = c
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(c);
        open(&p).unwrap();
        open_reader(&p).unwrap();
    }

    #[test]
    fn bad_files_get_errors_that_say_what_to_do() {
        let d = dir("bad");
        let corrupt = d.join("corrupt.db");
        std::fs::write(&corrupt, vec![0x42u8; 8192]).unwrap();
        let e = open(&corrupt).unwrap_err().to_string();
        assert!(
            e.contains("corrupt.db") && e.contains("move it aside"),
            "{e}"
        );
        let newer = d.join("newer.db");
        {
            let c = Connection::open(&newer).unwrap();
            c.pragma_update(None, "user_version", 99).unwrap();
        }
        let e = open(&newer).unwrap_err().to_string();
        assert!(e.contains("newer than this ispf"), "{e}");
        let missing_dir = PathBuf::from("/proc/ispf-no-such-dir/inventory.db");
        let e = open(&missing_dir).unwrap_err().to_string();
        assert!(e.contains("inventory.db"), "{e}");
        // A --state-dir that is a file, not one that does not exist.
        let file = d.join("a-file");
        std::fs::write(&file, b"").unwrap();
        let e = open(&file.join("inventory.db")).unwrap_err().to_string();
        assert!(
            e.contains("is not a directory") && e.contains("move that file aside"),
            "{e}"
        );
    }

    /// A table dropped by hand is found at open, with what to do.
    #[test]
    fn a_dropped_table_is_named_at_open() {
        let d = dir("dropped");
        let p = d.join("inventory.db");
        open(&p)
            .unwrap()
            .execute("DROP TABLE decisions", [])
            .unwrap();
        let e = open(&p).unwrap_err().to_string();
        assert!(
            e.contains("no such table: decisions") && e.contains("decisions.json"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
