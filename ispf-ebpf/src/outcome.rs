//! What the pipeline decided about one packet: the one result type that the
//! flow cache, connection tracking and the full pipeline all hand to the
//! verdict, counting and reporting.

use ispf_common::FlowCacheEntry;

use crate::{decide::Judgement, flow::Tracking};

/// "Counter slot not looked up yet" (distinct from
/// `ispf_common::COUNTER_SLOT_NONE`, "no slot to be had").
pub const SLOT_UNKNOWN: u32 = u32::MAX - 1;

/// What the flow cache has to do with a packet's outcome.
#[derive(Clone, Copy)]
pub enum Cache {
    /// Nothing: not a packet the cache is for.
    No,
    /// The outcome came from this entry of this CPU's cache.
    Hit(*mut FlowCacheEntry),
    /// Judged in full while conntrack held nothing for the flow: cache the
    /// outcome if it is of a cacheable kind.
    Judged(Tracking),
    /// Conntrack continued the flow: cache it as established until this
    /// jiffy.
    Established(u64),
}

pub struct Outcome {
    pub src: u16,
    /// Destination segment to count under (for a reply: the segment its
    /// flow came from).
    pub dst: u16,
    pub j: Judgement,
    /// The packet opened a new flow.
    pub opened: bool,
    /// Counter slot when already known, else [`SLOT_UNKNOWN`]. (Not an
    /// `Option`: a `None`'s undefined payload can reach a register spill,
    /// which the verifier rejects.)
    pub slot: u32,
    pub cache: Cache,
}

impl Outcome {
    #[inline(always)]
    pub fn new(src: u16, dst: u16, j: Judgement) -> Self {
        Self {
            src,
            dst,
            j,
            opened: false,
            slot: SLOT_UNKNOWN,
            cache: Cache::No,
        }
    }
}
