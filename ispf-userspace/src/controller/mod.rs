//! `ispf run`: load (or adopt) the datapath, enforce on the named ports,
//! and serve clients until stopped.
//!
//! Everything the kernel needs is pinned under the pin directory, so
//! enforcement does not depend on this process: killing it leaves the
//! program, links and maps in place, and the next `ispf run` adopts them.
//!
//! Inside, one engine thread owns the datapath and makes every change
//! (`engine`); the control socket (`server`), `/metrics`
//! ([`crate::metrics::http`]), the ring-buffer reader (`ring`) and the
//! link watcher (`ports`) are tasks of their own that read what the
//! engine publishes (`shared`) and send it commands; the inventory, the
//! feed refresher and detection are threads (`services`) that do the same.

mod backstop;
mod boot;
mod connection;
mod decide;
mod devices;
mod engine;
mod exclusive;
mod expiry;
mod feeds_apply;
mod fleet;
mod fleet_sets;
mod fleet_stale;
mod fleet_take;
mod known;
mod leaving;
mod narrow;
mod port_watch;
mod ports;
mod queued;
mod quiet;
mod reload;
mod ring;
mod server;
mod services;
mod shared;
mod start;
pub mod state;
mod sweep;
mod upgrade;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use tokio::{
    io::unix::AsyncFd,
    net::{TcpListener, UnixListener},
    signal::unix::{signal, SignalKind},
    sync::Notify,
};

pub use boot::RunOptions;
pub use ports::{AttachOptions, Hook};

use crate::{
    control::socket_path,
    feeds::refresh::Refresher,
    inventory::Inventory,
    metrics::{self, ControllerFacts},
    system,
};
use engine::{log, Command};
use services::{start_detection, start_feeds, start_identity, start_inventory, Services};
use shared::Shared;

pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9469";

/// Removes ispf from every port and deletes its pins and run state, with no
/// controller running.
/// The interfaces it was detached from; `None` when nothing was pinned
/// there.
pub fn detach(pin_dir: &Path, run_dir: &Path) -> Result<Option<Vec<String>>> {
    // A controller started with another run directory may still be using
    // these pins: its lock says so.
    let (_lock, pins) = exclusive::Exclusive::offline(pin_dir, run_dir)?;
    let run = state::RunDir::new(run_dir);
    if !pins {
        // Nothing was pinned; a directory made since is a starting
        // controller's.
        run.clear();
        return Ok(None);
    }
    engine::detach(pin_dir, &run).map(Some)
}

/// The pid of the controller holding `run_dir`, if one does.
pub fn holder(run_dir: &Path) -> Option<u32> {
    exclusive::Exclusive::holder_pid(run_dir)
}

/// Whether the controller `pid` (as [`holder`] named it before a detach;
/// `None`: whoever holds it) has let go of `run_dir` within `within` (it
/// answers a detach before it has finished stopping).
pub fn stopped(run_dir: &Path, pid: Option<u32>, within: Duration) -> bool {
    exclusive::Exclusive::released(run_dir, pid, within)
}

/// Runs the controller until SIGTERM/SIGINT (enforcement stays) or a
/// `detach` request (enforcement removed).
pub fn run(opts: RunOptions) -> Result<()> {
    // Before anything is bound or read: a non-root start must say so, not
    // fail on something root would have been allowed to do.
    system::require_root()?;
    // A client that hangs up must cost its own answer, never the
    // controller (Rust ignores SIGPIPE, but whoever calls this may have
    // reset it).
    // SAFETY: sets one signal's disposition; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    if !opts.metrics_addr.ip().is_loopback() && !opts.metrics_allow_remote {
        bail!(
            "--metrics-addr {} is not a loopback address: anyone who can reach it could read the unit's traffic matrix; pass --metrics-allow-remote to serve it anyway",
            opts.metrics_addr
        );
    }
    let sock = socket_path(&opts.run_dir);
    if server::answering(&opts.run_dir) {
        bail!(
            "another ispf controller is already running (it answers on {}); stop it first",
            sock.display()
        );
    }
    system::ensure_bpffs(&opts.pin_dir)?;
    // Held until the controller has stopped (or detached).
    let _lock = exclusive::Exclusive::for_run(&opts.pin_dir, &opts.run_dir)?;
    let events_out: Option<Box<dyn std::io::Write + Send>> = match &opts.events_out {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
        Some(p) => Some(Box::new(
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening events file {}", p.display()))?,
        )),
    };
    // Bound before anything is attached, so a busy port fails the start
    // cleanly instead of leaving enforcement behind without a controller.
    let metrics_std = std::net::TcpListener::bind(opts.metrics_addr).with_context(|| {
        format!(
            "serving metrics on {} (pick another with --metrics-addr)",
            opts.metrics_addr
        )
    })?;
    metrics_std.set_nonblocking(true)?;
    let mut engine = start::start(&opts)?;
    if let Some((f, _)) = &opts.fleet {
        engine.fleet = Some(crate::fleet::writer::Writer::new(f.clone())?);
    }
    let _ = fs::remove_file(&sock);
    let shared = Arc::new(Shared::new(
        engine.snapshot(),
        engine.dp.open_stats()?,
        events_out,
    ));
    let ring = engine.dp.take_events();
    let inventory = Arc::new(start_inventory(&opts, &shared)?);
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel::<Command>();
    let stop = cmd_tx.clone();
    let feeds = Arc::new(start_feeds(&opts, &shared, cmd_tx.clone())?);
    let detection = Arc::new(start_detection(&opts, &shared, cmd_tx.clone())?);
    let identity = Arc::new(start_identity(&opts, &shared, cmd_tx.clone())?);
    let fleet = match &opts.fleet {
        Some((f, seed)) => Some(Arc::new(services::start_fleet(
            f.clone(),
            seed.clone(),
            &opts,
            &shared,
            cmd_tx.clone(),
        )?)),
        None => None,
    };
    let engine_thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("ispf-engine".into())
            .spawn(move || engine.serve(cmd_rx, shared))?
    };
    let (link_tx, link_rx) = std::sync::mpsc::channel();
    if let Err(e) = ports::watch_links(link_tx) {
        log(format!(
            "warning: cannot follow link events ({}); ports are checked every second instead",
            crate::describe(&e)
        ));
    }
    {
        let cmd = cmd_tx.clone();
        std::thread::Builder::new()
            .name("ispf-link-fwd".into())
            .spawn(move || {
                while let Ok(ev) = link_rx.recv() {
                    if cmd.send(Command::Link(ev)).is_err() {
                        return;
                    }
                }
            })?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(serve_all(
        opts,
        sock,
        metrics_std,
        Services {
            shared,
            inventory,
            feeds,
            detection,
            identity,
            fleet,
        },
        ring,
        cmd_tx,
    ));
    drop(rt);
    // The link watcher's forwarder never lets go of its sender: the engine
    // is told to stop rather than left waiting for every sender to go.
    let _ = stop.send(Command::Stop);
    let _ = engine_thread.join();
    result
}

async fn serve_all(
    opts: RunOptions,
    sock: std::path::PathBuf,
    metrics_std: std::net::TcpListener,
    services: Services,
    ring: Option<aya::maps::RingBuf<aya::maps::MapData>>,
    cmd_tx: std::sync::mpsc::Sender<Command>,
) -> Result<()> {
    let Services {
        shared,
        inventory,
        feeds,
        detection,
        identity,
        fleet,
    } = services;
    let listener =
        UnixListener::bind(&sock).with_context(|| format!("binding {}", sock.display()))?;
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o600))?;
    let shutdown = Arc::new(Notify::new());
    let control = Arc::new(connection::Control::new(
        shared.clone(),
        inventory.clone(),
        feeds.clone(),
        identity.clone(),
        fleet.clone(),
        cmd_tx.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(server::serve(listener, control));

    let metrics = TcpListener::from_std(metrics_std)?;
    log(format!(
        "metrics on http://{}/metrics",
        metrics.local_addr().unwrap_or(opts.metrics_addr)
    ));
    let render_shared = shared.clone();
    let render_inventory = inventory.clone();
    let render_feeds = feeds.clone();
    let (render_detection, render_identity) = (detection.clone(), identity.clone());
    let render_fleet = fleet.clone();
    let render: metrics::http::Render = Arc::new(move || {
        render_metrics(
            &render_shared,
            &render_inventory,
            &render_feeds,
            (&render_detection.facts, &render_identity.facts),
            render_fleet.as_ref().map(|f| &*f.facts),
        )
    });
    tokio::spawn(metrics::http::serve(metrics, render));

    if let Some(rb) = ring {
        // SAFETY: the ring buffer owns its map fd for as long as the
        // AsyncFd owns the ring buffer, and never swaps it.
        let fd = unsafe { AsyncFd::register(rb) }
            .map_err(|e| anyhow::anyhow!("polling the events ring buffer: {e}"))?;
        tokio::spawn(ring::read_events(
            fd,
            shared.clone(),
            inventory.clone(),
            detection.clone(),
        ));
    }
    {
        let cmd = cmd_tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if cmd.send(Command::Tick).is_err() {
                    return;
                }
            }
        });
    }
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                log("SIGHUP: reloading the policy file");
                let (reply, _) = tokio::sync::oneshot::channel();
                let _ = cmd_tx.send(Command::Reload { path: None, dry_run: false, from_fleet: false, reply });
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = shutdown.notified() => {
                // Detached: nothing is enforced any more.
                return Ok(());
            }
        }
    }
    let _ = fs::remove_file(&sock);
    log(format!(
        "stopped; enforcement continues from the pins under {} (`ispf detach` removes it)",
        opts.pin_dir.display()
    ));
    Ok(())
}

fn render_metrics(
    shared: &Shared,
    inventory: &Inventory,
    feeds: &Refresher,
    (detection, identity): (&crate::detect::Facts, &crate::identity::Facts),
    fleet: Option<&crate::fleet::Facts>,
) -> String {
    let snap = shared.snapshot();
    let counters = server::current_counters(shared);
    let facts = ControllerFacts {
        policy: &snap.policy,
        interfaces: &snap.interfaces,
        generation: snap.generation,
        last_reload_unix: snap.last_reload_unix,
        last_reload_ok: snap.last_reload_ok,
        reloads_ok: snap.reloads_ok,
        reloads_failed: snap.reloads_failed,
        events_written: shared.events_written.load(Ordering::Relaxed),
        events_slow_reader: shared.events_slow_reader.load(Ordering::Relaxed),
    };
    let stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
    let devices = metrics::DeviceFacts::of(&inventory.facts, &snap.decisions);
    let feed_status = server::feed_statuses(feeds, &stats, &snap);
    metrics::render(
        &stats,
        &counters,
        &facts,
        &metrics::Extra {
            devices: &devices,
            feeds: &feed_status,
            detection,
            identity,
            fleet,
        },
    )
    .unwrap_or_else(|e| format!("# metrics unavailable: {e}\n"))
}
