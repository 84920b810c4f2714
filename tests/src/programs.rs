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

/// A `Command` for `program`, which must be on the list.
pub fn command(program: &str) -> Command {
    assert!(
        is_listed(program),
        "`{program}` is not in xtask/programs.txt: add it with its Debian package so `cargo xtask setup` installs it on a fresh machine"
    );
    Command::new(program)
}
