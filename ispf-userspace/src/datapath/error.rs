//! What can go wrong in the datapath, each with what to do about it.

use std::path::PathBuf;

use aya::programs::ProgramError;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// Loading needs CAP_BPF/CAP_SYS_ADMIN.
    #[error("loading the XDP program needs root (CAP_BPF and CAP_NET_ADMIN); run ispf as root, e.g. with sudo")]
    NotRoot,
    /// The kernel refused the object.
    #[error("the kernel refused the ispf XDP program: {0}\nispf needs Linux >= 5.15 with BPF, BTF and the BPF JIT enabled")]
    Load(#[source] aya::EbpfError),
    #[error("the ispf object has no {kind} named {name}; the build is inconsistent, rebuild ispf")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map {name}: {source}")]
    Batch {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("program: {0}")]
    Program(#[from] ProgramError),
    /// Live traffic on the CPU overwrote the verdict record of a test run.
    #[error("live traffic overwrote the verdict record of a test run; replay on a program that is not attached, or retry")]
    Busy,
    /// bpffs refused a pin.
    #[error("cannot pin {}: {message}; ispf pins under a bpffs mount (mount -t bpf bpf /sys/fs/bpf)", path.display())]
    Pin { path: PathBuf, message: String },
    /// The compiled policy needs more entries than a map holds.
    #[error("policy does not fit: map {name} needs {needed} entries ({new} for the new policy, {kept} for the one still enforced while it is written) but holds {capacity}; {fix}")]
    Capacity {
        name: &'static str,
        needed: usize,
        new: usize,
        kept: usize,
        capacity: u32,
        fix: String,
    },
    /// Pins of a layout this controller does not know.
    #[error("the maps pinned under {} have layout version {found}, this ispf has {ours}; {fix}", dir.display())]
    Layout {
        dir: PathBuf,
        found: u32,
        ours: u32,
        fix: String,
    },
    /// Old pins that cannot be carried into this layout.
    #[error("cannot migrate map {name}: {message}")]
    Migration { name: &'static str, message: String },
    /// A failure injected by a test (see `Datapath::fail_writes_after`).
    #[error("injected write failure after {0} entries")]
    Injected(usize),
}
