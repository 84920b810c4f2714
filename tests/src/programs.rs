//! The external programs the tests may run: exactly those `cargo xtask
//! setup` installs and checks (`xtask/programs.txt`). A test that starts
//! anything else fails here, instead of passing on a machine that happens
//! to have it and failing on a fresh one.

use std::process::Command;

/// The list `cargo xtask setup` installs from.
pub const LIST: &str = include_str!("../../xtask/programs.txt");

/// Program names on the list.
pub fn listed() -> impl Iterator<Item = &'static str> {
    LIST.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
}

pub fn is_listed(program: &str) -> bool {
    listed().any(|p| p == program)
}

/// Runs `sql` with `sqlite3` on the database at `db`; its output,
/// trimmed. Fails the test on an SQL error.
pub fn sqlite(db: &std::path::Path, sql: &str) -> String {
    let out = command("sqlite3").arg(db).arg(sql).output().unwrap();
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits up to `secs` for `sql`'s output on `db` to be `want`.
pub fn wait_sqlite(db: &std::path::Path, sql: &str, want: &str, secs: u64) {
    let t = std::time::Instant::now();
    loop {
        let got = sqlite(db, sql);
        if got == want {
            return;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(secs),
            "{sql}: {got:?}, not {want:?} within {secs} s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A `Command` for `program`, which must be on the list.
pub fn command(program: &str) -> Command {
    assert!(
        is_listed(program),
        "`{program}` is not in xtask/programs.txt: add it with its Debian package so `cargo xtask setup` installs it on a fresh machine"
    );
    Command::new(program)
}
