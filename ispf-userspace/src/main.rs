//! `ispf`: the controller's command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// The controller allocates in bursts of hundreds of thousands of small
/// objects (a 100k-device document copied, validated and compiled for each
/// runtime decision; inventory listings); glibc's allocator spent a
/// quarter of a decision's time in `malloc` and its consolidation.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let command = cli::Cli::parse().command;
    let controller = matches!(
        command,
        cli::Command::Run { .. } | cli::Command::Service { .. }
    );
    if !controller {
        // A command's output read by `head` or `grep -q`: end quietly when
        // the reader goes, as Unix tools do, instead of `println!`
        // panicking on the closed pipe. Never where the controller runs
        // (`run`, and `service`, which systemd starts): its clients may
        // hang up at any time, and a vectored write to a closed socket
        // raises the signal. `controller::run` ignores it again anyway.
        // SAFETY: resets one signal's disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli::commands::run(command) {
        Ok(code) => code,
        // A reader that stops early (`ispf replay | head`) is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        // The controller's last words go to its log, stamped like the
        // rest of it; a command's error is for the person who typed it.
        Err(e) if controller => {
            ispf::clock::log(ispf::describe(&e));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ispf: {}", ispf::describe(&e));
            ExitCode::FAILURE
        }
    }
}
