//! The command line: every subcommand and its options. Dispatch is in
//! `commands`; what is printed for people is in `show`.

pub mod commands;
pub mod detect;
pub mod devices;
pub mod fleet;
pub mod identity;
mod offline;
pub mod service;
pub mod show;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use ispf::{
    control::{DEFAULT_PIN_DIR, DEFAULT_RUN_DIR},
    controller::DEFAULT_METRICS_ADDR,
    datapath::MapSizeRequest,
    inventory::{DEFAULT_MAX_UNKNOWN, DEFAULT_STATE_DIR},
};

#[derive(Parser)]
#[command(
    name = "ispf",
    version,
    about = "Internal segmentation firewall for hospital care-unit networks (XDP)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `NAME=ENTRIES` for `--map-size`.
fn map_size(spec: &str) -> Result<String, String> {
    MapSizeRequest::default().set(spec)?;
    Ok(spec.to_owned())
}

pub fn map_sizes(specs: &[String]) -> MapSizeRequest {
    let mut r = MapSizeRequest::default();
    for s in specs {
        // Checked by the parser already.
        let _ = r.set(s);
    }
    r
}

/// A verdict reason, as counters and events name it.
fn reason(s: &str) -> Result<String, String> {
    if ispf_common::REASON_NAMES.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "no reason `{s}`; reasons are: {}",
            ispf_common::REASON_NAMES.join(", ")
        ))
    }
}

/// `30m`, `8h`, `2d`.
fn duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration such as 30m, 8h or 2d: {e}"))
}

/// Where the pipeline is attached (`run --hook`).
#[derive(Clone, Copy, ValueEnum)]
pub enum HookArg {
    /// XDP on every port (native where the driver can, else generic).
    Xdp,
    /// TC clsact ingress on every port.
    Tc,
    /// Native XDP on physical NICs, TC on veth, tap, virtio and other
    /// virtual ports.
    Auto,
}

/// The entry point `replay` runs frames through.
#[derive(Clone, Copy, ValueEnum)]
pub enum EntryArg {
    Xdp,
    Tc,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Verdict {
    Pass,
    Drop,
}

#[derive(Subcommand)]
pub enum Command {
    /// Validate a policy file and summarise what it compiles to, with the
    /// map sizes it needs (two generations of it must fit: `reload`
    /// applies the same rule).
    Check {
        policy: PathBuf,
        /// Check against these map sizes (NAME=ENTRIES: devices, policy,
        /// conntrack, fragments) instead of those `run` would choose.
        #[arg(long = "map-size", value_name = "NAME=ENTRIES", value_parser = map_size)]
        map_sizes: Vec<String>,
    },
    /// Run every frame of a pcap/pcapng capture through the real XDP program
    /// (BPF_PROG_TEST_RUN) under POLICY and print each verdict. Needs root.
    Replay {
        #[arg(long)]
        policy: PathBuf,
        #[arg(long)]
        pcap: PathBuf,
        /// One JSON object per frame on stdout, nothing else.
        #[arg(long)]
        json: bool,
        /// The entry point to run frames through (the same pipeline).
        #[arg(long, value_enum, default_value = "xdp")]
        hook: EntryArg,
    },
    /// Print the JSON Schema of the policy format.
    Schema,
    /// Run the controller as the systemd unit does: everything `ispf run`
    /// takes, from a configuration file (/etc/ispf/ispf.toml).
    Service {
        #[arg(long, default_value = "/etc/ispf/ispf.toml")]
        config: PathBuf,
        /// Only check the file (and the policy it names), then exit.
        #[arg(long)]
        check: bool,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (ispf.1 and one per subcommand) into DIR.
    #[command(hide = true)]
    Man { dir: PathBuf },
    /// Enforce POLICY on the named bridge ports until stopped. Enforcement
    /// is pinned and survives this process; a restart adopts it.
    Run {
        /// The policy file; with --etcd, only seeds a site that has no
        /// policy yet (a host enforces the site's last good revision).
        #[arg(long)]
        policy: Option<PathBuf>,
        #[command(flatten)]
        etcd: fleet::EtcdArgs,
        /// A bridge port to enforce on (repeat for several).
        #[arg(long = "iface", required = true)]
        interfaces: Vec<String>,
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
        /// Map sizes (NAME=ENTRIES: devices, policy, conntrack, fragments);
        /// by default sized from the policy at start for two generations.
        #[arg(long = "map-size", value_name = "NAME=ENTRIES", value_parser = map_size)]
        map_sizes: Vec<String>,
        /// Serve Prometheus metrics here (plain HTTP, /metrics).
        #[arg(long, default_value = DEFAULT_METRICS_ADDR)]
        metrics_addr: std::net::SocketAddr,
        /// Allow --metrics-addr to be a non-loopback address.
        #[arg(long)]
        metrics_allow_remote: bool,
        /// Write every flow event as a JSON line to FILE (`-`: stdout).
        #[arg(long = "events", value_name = "FILE")]
        events_out: Option<PathBuf>,
        /// When the pinned datapath enforces a policy the run directory
        /// has no record of, apply POLICY over it as a new generation
        /// (connections are re-established) instead of refusing to start.
        #[arg(long)]
        reapply: bool,
        /// Where to attach on each port: `auto` puts native XDP on
        /// physical NICs and TC on virtual ports (veth, tap, virtio), where
        /// XDP would give up TSO/GRO aggregation.
        #[arg(long, value_enum, default_value = "auto")]
        hook: HookArg,
        /// With native XDP on a virtual port, leave GRO off (ispf turns it
        /// on otherwise).
        #[arg(long)]
        keep_gro_off: bool,
        /// The inventory database (inventory.db) and runtime decisions live here.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// At most this many devices the policy does not place by
        /// registration or decision are recorded (a MAC flood cannot fill
        /// memory or disk); more are counted, not recorded.
        #[arg(long, default_value_t = DEFAULT_MAX_UNKNOWN)]
        max_unknown_devices: usize,
        /// POST every alert as JSON to this URL (a SIEM or paging gateway);
        /// retried three times.
        #[arg(long, value_name = "URL")]
        alert_webhook: Option<String>,
    },
    /// The fleet: one policy and one set of decisions for every host of a
    /// site, through etcd.
    Fleet {
        #[command(subcommand)]
        cmd: fleet::FleetCommand,
        #[command(flatten)]
        etcd: fleet::EtcdArgs,
    },
    /// Threat feeds: entries, last refresh, errors, hits.
    Feeds {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Detection alerts (scan, anomaly), newest first.
    Alerts {
        /// Only alerts raised within this long (e.g. 1h).
        #[arg(long, value_parser = duration)]
        since: Option<std::time::Duration>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Role sessions open now (RADIUS accounting): user, role, MAC, since, NAS.
    Sessions {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// The east-west services a device learned as normal.
    Baseline {
        mac: String,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// The device inventory: every device seen, where it is and why.
    Devices {
        /// Only devices in no segment of their own (defaults.unknown_source).
        #[arg(long, conflicts_with = "quarantined")]
        unknown: bool,
        /// Only quarantined devices.
        #[arg(long)]
        quarantined: bool,
        /// Only devices in this segment now.
        #[arg(long)]
        segment: Option<String>,
        /// Only devices first seen within this long (e.g. 10m, 2h, 1d).
        #[arg(long, value_parser = duration)]
        since: Option<std::time::Duration>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// One device and its timeline, newest first.
    Device {
        mac: String,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Give an unknown device a segment without editing the policy file.
    Admit {
        mac: String,
        #[arg(long)]
        segment: String,
        /// A name for the device.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_parser = ["low", "medium", "high", "critical"])]
        risk: Option<String>,
        /// Undo it after this long (e.g. 8h); by default until released.
        #[arg(long, value_parser = duration)]
        expires: Option<std::time::Duration>,
        #[arg(long)]
        reason: Option<String>,
        /// Who decides (recorded); by default the user running the command.
        #[arg(long)]
        by: Option<String>,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Move a device to the unknown-source segment, whatever the file says.
    Quarantine {
        mac: String,
        #[arg(long)]
        reason: String,
        #[arg(long, value_parser = duration)]
        expires: Option<std::time::Duration>,
        /// Required for a device in a life-critical segment (recorded).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        by: Option<String>,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Undo a device's quarantine (or, with none, its admit).
    Release {
        mac: String,
        #[arg(long)]
        by: Option<String>,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Print the admitted devices as policy `devices` JSON, to move them
    /// into the file.
    ExportDevices {
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Follow flow events of the running controller, as JSON lines.
    Events {
        /// Only events from or to this segment.
        #[arg(long)]
        segment: Option<String>,
        /// Only events with this reason (denied_rule, spoofed, allowed, ...).
        #[arg(long, value_parser = reason)]
        reason: Option<String>,
        /// Only passed or only dropped packets' events.
        #[arg(long, value_enum)]
        verdict: Option<Verdict>,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Live view of the busiest and the most-dropped segment pairs.
    Top {
        /// Print one refresh and exit.
        #[arg(long)]
        once: bool,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Validate and apply a policy atomically (the running one's file when
    /// POLICY is omitted); prints what changes. An invalid file changes nothing.
    Reload {
        policy: Option<PathBuf>,
        /// Show what would change without applying it.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Policy generation, interfaces, map occupancy and counters.
    Status {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Remove ispf from every interface and delete its pins and maps: the
    /// off switch (stopping the controller leaves enforcement in place).
    Detach {
        /// Default /sys/fs/bpf/ispf. When a controller answers on
        /// --run-dir, it is detached only if these are its pins.
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metrics carry the unit's traffic matrix: unless told otherwise,
    /// `run` serves them on loopback only. (The integration tests give
    /// each controller a free port, so this default is checked here.)
    #[test]
    fn run_serves_metrics_on_loopback_by_default() {
        let cli = <Cli as clap::Parser>::try_parse_from(["ispf", "run", "--iface", "eth1"])
            .expect("a minimal run parses");
        let Command::Run { metrics_addr, .. } = cli.command else {
            panic!("not parsed as run");
        };
        assert!(metrics_addr.ip().is_loopback(), "{metrics_addr}");
        assert_eq!(metrics_addr.to_string(), DEFAULT_METRICS_ADDR);
    }
}
