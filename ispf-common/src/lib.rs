//! Types shared by the XDP datapath (`ispf-ebpf`) and the controller
//! (`ispf-userspace`).
//!
//! Every map key and value is `#[repr(C)]` with explicit padding so both
//! sides agree on the layout byte for byte; flags are integers, never `bool`,
//! `Option` or enums, and addresses are big-endian byte arrays as they appear
//! on the wire. Sizes and alignments are asserted in `layout.rs`.
#![no_std]

pub mod feeds;
pub mod flows;
mod layout;
pub mod maps;
pub mod policy;
pub mod reason;
pub mod telemetry;

pub use feeds::*;
pub use flows::*;
pub use maps::*;
pub use policy::*;
pub use reason::*;
pub use telemetry::*;
