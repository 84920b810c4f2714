//! Every external program the code runs is on `xtask/programs.txt`, the
//! list `cargo xtask setup` installs and checks. A program missing from it
//! works here (someone installed it by hand) and fails on a fresh machine.

use std::path::{Path, PathBuf};

use ispf_tests::programs;
use regex::Regex;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Program names the code starts: `Command::new("x")`, `command("x")`,
/// the first word of `sh(&["x", ..])`, `must(&["x", ..])`,
/// `in_ns(ns, &["x", ..])`, and the program after `ip netns exec NS`.
fn programs_started(text: &str) -> Vec<String> {
    let patterns = [
        r#"Command::new\(\s*"([^"]+)""#,
        r#"\bcommand\(\s*"([^"]+)""#,
        r#"\b(?:sh|must)\(\s*&\[\s*"([^"]+)""#,
        r#"\bin_ns\(\s*[^,]+,\s*&\[\s*"([^"]+)""#,
        r#""netns",\s*"exec",\s*[^,]+,\s*"([^"]+)""#,
    ];
    let mut found = Vec::new();
    for p in patterns {
        for c in Regex::new(p).unwrap().captures_iter(text) {
            found.push(c[1].to_owned());
        }
    }
    found
}

#[test]
fn every_program_the_code_runs_is_on_the_setup_list() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for dir in ["ispf-userspace", "ispf-common", "tests", "xtask"] {
        sources(&root.join(dir), &mut files);
    }
    let mut missing = Vec::new();
    let mut seen = 0;
    // This file's own examples are not programs anyone runs.
    let me = Path::new(file!()).file_name().unwrap();
    for f in files.iter().filter(|f| f.file_name() != Some(me)) {
        let text = std::fs::read_to_string(f).unwrap();
        for prog in programs_started(&text) {
            seen += 1;
            if !programs::is_listed(&prog) {
                missing.push(format!(
                    "{}: {prog}",
                    f.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    // The scan must see the programs we know are run, or it proves nothing.
    assert!(seen > 20, "the scan found only {seen} program starts");
    assert!(
        missing.is_empty(),
        "programs run by the code but missing from xtask/programs.txt (add each with its Debian package):\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_scan_recognises_every_form() {
    let text = r#"
        Command::new("a1"); programs::command("a2"); sh(&["a3", "x"]);
        must(&[
            "a4", "y"]);
        in_ns(ns, &["a5", "-c"]);
        let v = ["ip", "netns", "exec", &ns, "a6"];
        Command::new(env!("CARGO_BIN_EXE_x"));
    "#;
    assert_eq!(programs_started(text), ["a1", "a2", "a3", "a4", "a5", "a6"]);
}

#[test]
fn the_list_is_well_formed() {
    let mut names = std::collections::BTreeSet::new();
    for line in programs::LIST.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(
            cols.len() >= 3,
            "`{line}`: program, source and check are required"
        );
        assert!(names.insert(cols[0]), "`{}` is listed twice", cols[0]);
    }
}
