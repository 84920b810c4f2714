//! Types shared by the XDP datapath (`ispf-ebpf`) and the controller
//! (`ispf-userspace`).
//!
//! Every map key and value is `#[repr(C)]` with explicit padding so both
//! sides agree on the layout byte for byte; flags are integers, never `bool`,
//! `Option` or enums, and addresses are big-endian byte arrays as they appear
//! on the wire. Sizes are asserted in the tests at the bottom of each module.
#![no_std]

pub mod feeds;
pub mod maps;
pub mod reason;

pub use feeds::*;
pub use maps::*;
pub use reason::*;
