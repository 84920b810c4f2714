//! Pure logic of the ispf datapath: everything that decides, as opposed to
//! everything that reads packets or maps. It compiles for the BPF target
//! (used by `main.rs`) and for the host, where it is unit-tested.
#![cfg_attr(target_arch = "bpf", no_std)]

pub mod decide;
pub mod flow;
pub mod outcome;
pub mod parse;
