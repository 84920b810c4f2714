//! `cargo xtask`: set-up, tests and demos. It runs things; the eBPF object
//! itself is built by `ispf-userspace/build.rs`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod package;
mod roff;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing, then run every test tier.
    Test {
        /// Generated cases for the kernel-vs-model test (default 100000).
        #[arg(long)]
        cases: Option<u64>,
    },
    /// Install the toolchain and packages only.
    Setup,
    /// Replay the bundled care-unit capture against the example policy.
    ReplayDemo,
    /// Measure per-packet cost, scale, end-to-end rate and policy apply
    /// time; write bench/results.json, bench/RESULTS.md, bench/cost-vs-size.svg.
    Bench {
        /// A small run (under a minute) that only checks the harness works.
        #[arg(long)]
        quick: bool,
    },
    /// Build a simulated care unit in network namespaces, enforce the
    /// example policy with `ispf run`, drive real traffic, print the
    /// verdicts, clean up (root).
    Demo,
    /// Build target/debian/ispf_<version>_amd64.deb (binary, man pages,
    /// completions, docs, systemd unit and its configuration).
    Package,
}

/// Every external program the code, the tests, the demo and the benchmark
/// run, with its source and how to check it runs (see the file's header).
const PROGRAMS: &str = include_str!("../programs.txt");

/// Debian packages set-up installs besides the programs' (the BPF linker
/// is built against LLVM 22's libraries).
const BUILD_PACKAGES: &[&str] = &["llvm-22-dev"];

struct Program {
    name: &'static str,
    /// A Debian package, or `toolchain` (rustup's).
    source: &'static str,
    check: Vec<&'static str>,
    /// The check passes on any exit status (the program has no option
    /// that exits 0 without doing something).
    any_status: bool,
}

fn programs() -> Vec<Program> {
    PROGRAMS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut cols = l.split_whitespace();
            let name = cols.next().expect("non-empty line");
            let source = cols.next().unwrap_or("");
            let mut check: Vec<&str> = cols.collect();
            let any_status = check.first().is_some_and(|c| c.starts_with('!'));
            if let Some(first) = check.first_mut() {
                *first = first.trim_start_matches('!');
            }
            Program {
                name,
                source,
                check,
                any_status,
            }
        })
        .collect()
}

/// Whether `p` starts and answers its check within ten seconds (for a
/// data file: whether it is there).
fn runs(p: &Program) -> bool {
    if p.name.starts_with('/') {
        return Path::new(p.name).is_file();
    }
    let Ok(mut child) = Command::new(p.name)
        .args(&p.check)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return p.any_status || status.success(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                return false;
            }
        }
    }
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn main() -> std::process::ExitCode {
    // Print the failure, not a backtrace of xtask itself.
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Setup => setup(),
        Cmd::Test { cases } => {
            setup()?;
            test(cases)
        }
        Cmd::ReplayDemo => {
            setup()?;
            replay_demo()
        }
        Cmd::Bench { quick } => {
            setup()?;
            if !is_root() {
                bail!("benchmarks load XDP programs and create namespaces: run `cargo xtask bench` as root");
            }
            // Optimised build: the harness's own overhead must not blur the figures.
            run(&mut cargo(&[
                "build",
                "-q",
                "--release",
                "-p",
                "ispf-tests",
                "--bin",
                "ispf-bench",
            ]))?;
            let mut c = Command::new(root().join("target/release/ispf-bench"));
            c.current_dir(root()).args(["--out", "bench"]);
            if quick {
                c.arg("--quick");
            }
            run(&mut c)
        }
        Cmd::Package => {
            setup()?;
            package::package().map(|_| ())
        }
        Cmd::Demo => {
            setup()?;
            if !is_root() {
                bail!("the demo creates network namespaces and attaches XDP programs: run `cargo xtask demo` as root");
            }
            run(&mut cargo(&[
                "build",
                "-q",
                "-p",
                "ispf-userspace",
                "-p",
                "ispf-tests",
                "--bin",
                "ispf",
                "--bin",
                "care-unit-demo",
            ]))?;
            run(&mut Command::new(
                root().join("target/debug/care-unit-demo"),
            ))
        }
    }
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_owned()
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Idempotent: each step checks first, so a ready machine costs seconds.
/// Ends by running every listed program's check, and fails with the list
/// of those that still do not run.
fn setup() -> Result<()> {
    let programs = programs();
    let mut missing: Vec<&str> = BUILD_PACKAGES.to_vec();
    for p in programs.iter().filter(|p| p.source != "toolchain") {
        if !missing.contains(&p.source) {
            missing.push(p.source);
        }
    }
    missing.retain(|p| !installed(p));
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "Debian packages {missing:?} are missing; install them as root: apt-get install {}",
                missing.join(" ")
            );
        }
        run(Command::new("apt-get").arg("update").arg("-q"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    let has_src = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("rust-src"))
        .unwrap_or(false);
    if !has_src {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    if !succeeds(Command::new("bpf-linker").arg("--version")) {
        // Debian has LLVM 22, not the 23 bpf-linker defaults to.
        let path = format!(
            "/usr/lib/llvm-22/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        run(Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("PATH", path))?;
    }
    let broken: Vec<String> = programs
        .iter()
        .filter(|p| !runs(p))
        .map(|p| {
            format!(
                "{} (from {}; checked with `{} {}`)",
                p.name,
                p.source,
                p.name,
                p.check.join(" ")
            )
        })
        .collect();
    if !broken.is_empty() {
        bail!(
            "set-up installed what it could, but these programs still do not run:\n  {}",
            broken.join("\n  ")
        );
    }
    Ok(())
}

pub(crate) fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root()).args(args);
    c
}

fn test(cases: Option<u64>) -> Result<()> {
    // Style gates first: they are quick and fail with a precise message.
    run(&mut cargo(&["fmt", "--all", "--", "--check"]))?;
    run(&mut cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Tier 1: host unit tests (shared types, pure datapath logic, compiler).
    run(&mut cargo(&[
        "test",
        "-p",
        "ispf-common",
        "-p",
        "ispf-ebpf",
        "-p",
        "ispf-userspace",
    ]))?;
    // Tiers 2-3 and the model: the real program in the kernel.
    if !is_root() {
        bail!("the kernel and end-to-end tiers load XDP programs and create network namespaces: run `cargo xtask test` as root");
    }
    let mut c = cargo(&["test", "-p", "ispf-tests", "--", "--test-threads=1"]);
    if let Some(n) = cases {
        c.env("ISPF_CASES", n.to_string());
    }
    run(&mut c)
}

fn replay_demo() -> Result<()> {
    let r = root();
    run(&mut cargo(&["build", "-p", "ispf-userspace"]))?;
    let ispf = r.join("target/debug/ispf");
    run(Command::new(&ispf)
        .arg("check")
        .arg(r.join("examples/care-unit.json")))?;
    run(Command::new(&ispf)
        .arg("replay")
        .arg("--policy")
        .arg(r.join("examples/care-unit.json"))
        .arg("--pcap")
        .arg(r.join("examples/care-unit.pcap")))
}
