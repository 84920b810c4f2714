//! The ispf controller library: policy model, validation and compilation,
//! the datapath loader, and replay of captures through the real program.

pub mod bpfsys;
pub mod clock;
pub mod config;
pub mod control;
pub mod controller;
pub mod datapath;
pub mod decisions;
pub mod detect;
pub mod events;
pub mod feeds;
pub mod fleet;
pub mod identity;
pub mod inventory;
pub mod metrics;
pub mod policy;
pub mod replay;
pub mod system;

/// The XDP object, built from `ispf-ebpf` by `build.rs`.
pub const ISPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ispf-xdp"));
