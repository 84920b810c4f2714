//! Each CPU's exact-match flow cache: the outcome of a recent flow
//! direction, found with one multiply and one array read instead of hash
//! map lookups. It holds two kinds of outcome:
//!
//! - established flows (conntrack said "continue"), trusted for at most
//!   `FLOW_CACHE_REFRESH_JIFFIES` before conntrack is read and refreshed
//!   again;
//! - judgements made while conntrack held nothing for the flow (denials,
//!   monitor-mode passes, untracked protocols).
//!
//! Conntrack changes are seen through generations: opening, ending or
//! closing a flow bumps its group's generation, which every entry of
//! either direction recorded when it was made. A reload changes the epoch;
//! the generation map's last slot is bumped to flush everything.
//! Per CPU, so an entry is never read half-written by another CPU.

use core::ptr::{read_volatile, write_volatile};

use ispf_common::{
    FlowCacheEntry, Settings, CACHED_ESTABLISHED, CT_GENERATIONS, FLOW_CACHE_ENTRIES,
};
use ispf_ebpf::{
    decide::Judgement,
    flow::{cache_index, direction_key, flow_group, Probe},
    outcome::{Cache, Outcome},
    parse::Packet,
};

use crate::{
    clock,
    maps::{ISPF_CT_GENERATION, ISPF_FLOW_CACHE},
};

/// The flush counter: the generation map's last slot (see
/// `ispf_common::MAP_CT_GENERATION`).
const FLUSH: u32 = CT_GENERATIONS;

#[inline(always)]
fn generation_of(index: u32) -> u32 {
    match ISPF_CT_GENERATION.get_ptr(index) {
        // SAFETY: a u32 in an array value; written by any CPU, a torn or
        // stale read only costs a miss.
        Some(g) => unsafe { read_volatile(g) },
        None => 0,
    }
}

/// Fills `p` for `pkt`. Must run before conntrack is read for the packet,
/// so a flow opened or ended meanwhile invalidates what is then cached.
#[inline(always)]
pub fn probe(pkt: &Packet, p: &mut Probe) {
    p.key = direction_key(pkt);
    p.index = cache_index(&p.key, FLOW_CACHE_ENTRIES);
    p.group = flow_group(&p.key, CT_GENERATIONS);
    p.generation = generation_of(p.group).wrapping_add(generation_of(FLUSH));
}

/// Invalidates every cached outcome of `pkt`'s flow, both directions, on
/// every CPU. Called after conntrack opens, closes or ends the flow.
#[inline(always)]
pub fn bump(pkt: &Packet) {
    let group = flow_group(&direction_key(pkt), CT_GENERATIONS);
    if let Some(g) = ISPF_CT_GENERATION.get_ptr_mut(group) {
        // SAFETY: as in `generation_of`. Not atomic: two CPUs bumping at
        // once still leave a changed value, which is all readers compare.
        unsafe { write_volatile(g, read_volatile(g).wrapping_add(1)) };
    }
}

/// The cached outcome of the probed direction, if one is valid.
#[inline(always)]
pub fn lookup(s: &Settings, pkt: &Packet, p: &Probe) -> Option<Outcome> {
    let e = ISPF_FLOW_CACHE.get_ptr_mut(p.index)?;
    // SAFETY: this CPU's own entry.
    let v = unsafe { &*e };
    // Word by word: an array comparison compiles to a `bcmp` call, a byte
    // loop on BPF.
    let k = &p.key;
    let differs = (v.key[0] ^ k[0])
        | (v.key[1] ^ k[1])
        | (v.key[2] ^ k[2])
        | (v.key[3] ^ k[3])
        | (v.key[4] ^ k[4]);
    if v.kind == 0
        || differs != 0
        || v.epoch != s.epoch
        || v.generation != p.generation
        || v.sender != pkt.sender
        || v.dst_mac != pkt.dst_mac_word
    {
        return None;
    }
    if v.kind == CACHED_ESTABLISHED && clock::jiffies() >= v.until_jiffies {
        return None;
    }
    let j = Judgement {
        verdict: v.verdict,
        reason: v.reason,
        rule: v.rule,
    };
    let mut o = Outcome::new(v.src, v.dst, j);
    o.slot = v.slot;
    o.cache = Cache::Hit(e);
    Some(o)
}

/// What to cache for the probed direction.
pub struct Entry {
    pub kind: u8,
    pub src: u16,
    pub dst: u16,
    pub j: Judgement,
    pub slot: u32,
    pub until_jiffies: u64,
    pub checked_jiffies: u64,
}

/// Caches an outcome for the probed direction, replacing whatever shared
/// its slot.
#[inline(always)]
pub fn remember(s: &Settings, pkt: &Packet, p: &Probe, n: &Entry) {
    let Some(e) = ISPF_FLOW_CACHE.get_ptr_mut(p.index) else {
        return;
    };
    // SAFETY: this CPU's own entry; XDP does not nest on a CPU.
    let v: &mut FlowCacheEntry = unsafe { &mut *e };
    v.key = p.key;
    v.sender = pkt.sender;
    v.dst_mac = pkt.dst_mac_word;
    v.until_jiffies = n.until_jiffies;
    v.checked_jiffies = n.checked_jiffies;
    v.epoch = s.epoch;
    v.generation = p.generation;
    v.slot = n.slot;
    v.rule = n.j.rule;
    v.src = n.src;
    v.dst = n.dst;
    v.verdict = n.j.verdict;
    v.reason = n.j.reason;
    v.kind = n.kind;
}
