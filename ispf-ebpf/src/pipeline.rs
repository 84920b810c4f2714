//! The pipeline, top-down in the specification's order: parse; the fast
//! paths of known flows (flow cache, then connection tracking); then
//! identity, anti-spoofing, non-IP, fragments, connection state and rules;
//! then counting, events and caching the outcome. Entry points (XDP, TC)
//! hand it a [`Frame`] and turn its answer into their action.

use core::ptr::{read_volatile, write_volatile};

use ispf_common::{
    Settings, ACTION_ALLOW, CACHED_ESTABLISHED, CACHED_JUDGED, DENIED_RECHECK_JIFFIES,
    EVENT_NEW_FLOW, EVENT_OPENED, EVENT_THREAT, FRAGMENTS_DENY, IPPROTO_TCP, NO_SEGMENT,
    REASON_FRAGMENT_UNTRACKED, REASON_INFRASTRUCTURE, REASON_INTERNAL_FAULT, REASON_MALFORMED,
    REASON_SPOOFED, REASON_WOULD_DROP,
};
use ispf_ebpf::{
    decide::{default_judgement, feed_verdict, monitor, on_fault, Judgement},
    flow::{cacheable, tracking, Tracking, TCP_FIN, TCP_RST},
    outcome::{Cache, Outcome, SLOT_UNKNOWN},
    parse::{self, Frame, FRAG_FIRST, FRAG_LATER, FRAG_NONE, KIND_INFRA, KIND_IP, KIND_OTHER},
};

use crate::{
    clock,
    conntrack::{self, Fast, Flow, Found},
    counters, events, feeds, flowcache, fragments, identity,
    maps::{Scratch, ISPF_ACTIVE, ISPF_SCRATCH, ISPF_SETTINGS},
    policy::segment_flags,
    sightings,
};

/// Judges one frame that arrived on `ifindex`, counts it and reports it.
/// Returns whether it passes. Fails closed.
#[inline(always)]
pub fn process<F: Frame>(frame: &F, ifindex: u32) -> bool {
    // Bytes on the wire: a tag the kernel took out of the frame counts.
    let bytes = frame.size() as u64 + if frame.outer_tag() != 0 { 4 } else { 0 };
    let slot = (ISPF_ACTIVE.get(0).copied().unwrap_or(0) & 1) as u8;
    let (settings, scratch) = match (ISPF_SETTINGS.get(slot as u32), ISPF_SCRATCH.get_ptr_mut(0)) {
        (Some(s), Some(scratch)) => (s, scratch),
        // Unreachable (arrays are preallocated); fail closed all the same.
        _ => {
            let j = Judgement::drop(REASON_INTERNAL_FAULT);
            let c = counters::slot(0, NO_SEGMENT, NO_SEGMENT, &j);
            counters::record(c, NO_SEGMENT, NO_SEGMENT, &j, bytes, 0);
            return false;
        }
    };
    // SAFETY: this CPU's own scratch; programs do not nest on a CPU.
    let scratch = unsafe { &mut *scratch };
    scratch.threat = 0;
    let mut o = judge(frame, slot, settings, scratch);
    launder(scratch, &mut o);
    let counter = if o.slot == SLOT_UNKNOWN {
        counters::slot(slot, o.src, o.dst, &o.j)
    } else {
        o.slot
    };
    counters::record(counter, o.src, o.dst, &o.j, bytes, settings.epoch);
    report(ifindex, settings, scratch, &o, counter);
    // The inventory learns sources off the flow cache's path only.
    if !matches!(o.cache, Cache::Hit(_)) && o.j.reason != REASON_MALFORMED {
        sightings::notice(frame, ifindex, &scratch.pkt, o.src, clock::now());
    }
    o.j.is_pass()
}

/// Passes the outcome's verdict, reason and segments through this CPU's
/// scratch. To the verifier a value read back from a map is unknown, so
/// counting and reporting are verified once for all the judgements
/// `judge` can return rather than once per constant (the program is close
/// to the verifier's budget of a million processed instructions).
#[inline(always)]
fn launder(scratch: &mut Scratch, o: &mut Outcome) {
    // SAFETY: fields of this CPU's own scratch.
    unsafe {
        write_volatile(&mut scratch.verdict, o.j.verdict);
        write_volatile(&mut scratch.reason, o.j.reason);
        write_volatile(&mut scratch.src, o.src);
        write_volatile(&mut scratch.dst, o.dst);
        o.j.verdict = read_volatile(&scratch.verdict);
        o.j.reason = read_volatile(&scratch.reason);
        o.src = read_volatile(&scratch.src);
        o.dst = read_volatile(&scratch.dst);
    }
}

/// Parse, then the fast paths: unfragmented IP packets that are not
/// infrastructure, of flows seen before. TCP FIN and RST change conntrack
/// and always reach it.
#[inline(always)]
fn judge<F: Frame>(frame: &F, slot: u8, s: &Settings, scratch: &mut Scratch) -> Outcome {
    if parse::parse(frame, &mut scratch.pkt).is_err() {
        return Outcome::new(NO_SEGMENT, NO_SEGMENT, Judgement::drop(REASON_MALFORMED));
    }
    let pkt = &scratch.pkt;
    let track = tracking(pkt.family, pkt.proto, pkt.icmp_type);
    if pkt.kind != KIND_IP || pkt.frag != FRAG_NONE {
        // Not probed: nothing of this packet may enter the cache (the probe
        // in scratch is another packet's), not even a flow it continues.
        let mut o = judge_in_full(slot, s, scratch, track, Found::NotLooked);
        o.cache = Cache::No;
        return o;
    }
    let conntrack_unchanged = pkt.proto != IPPROTO_TCP || pkt.tcp_flags & (TCP_FIN | TCP_RST) == 0;
    flowcache::probe(pkt, &mut scratch.probe);
    if conntrack_unchanged {
        if let Some(o) = flowcache::lookup(s, pkt, &scratch.probe) {
            return o;
        }
    }
    let found = match conntrack::established(s, pkt, &mut scratch.ct, track) {
        Fast::Hit(mut o) => {
            if !conntrack_unchanged || matches!(o.cache, Cache::Established(0)) {
                o.cache = Cache::No;
            }
            return o;
        }
        Fast::Miss(found) => found,
    };
    let mut o = judge_in_full(slot, s, scratch, track, found);
    o.cache = match o.cache {
        // Conntrack continued the flow after identifying the sender.
        Cache::Established(until) if conntrack_unchanged && until != 0 => Cache::Established(until),
        Cache::Established(_) => Cache::No,
        _ if conntrack_unchanged && matches!(found, Found::Absent(_) | Found::NotLooked) => {
            Cache::Judged(track)
        }
        _ => Cache::No,
    };
    o
}

/// Identity, spoofing, non-IP, fragments, conntrack and policy, in the
/// order the specification gives them.
#[inline(always)]
fn judge_in_full(
    slot: u8,
    s: &Settings,
    scratch: &mut Scratch,
    track: Tracking,
    found: Found,
) -> Outcome {
    let pkt = &scratch.pkt;
    let dst = identity::destination(slot, s, pkt);

    if pkt.kind == KIND_INFRA {
        let src = identity::source(slot, s, pkt, false).unwrap_or_else(|e| e.0);
        let j = if s.infrastructure == ACTION_ALLOW {
            Judgement::pass(REASON_INFRASTRUCTURE)
        } else {
            Judgement::drop(REASON_INFRASTRUCTURE)
        };
        return Outcome::new(src, dst, j);
    }
    let src = match identity::source_remembered(slot, s, pkt) {
        Ok(seg) => seg,
        Err(identity::Spoofed(seg)) => {
            return Outcome::new(seg, dst, Judgement::drop(REASON_SPOOFED))
        }
    };
    let mut f = Flow {
        src,
        dst,
        src_flags: segment_flags(slot, src),
        dst_flags: segment_flags(slot, dst),
        listed: false,
    };
    if pkt.kind == KIND_OTHER {
        let j = monitor(
            default_judgement(s.default_action),
            f.src_flags,
            f.dst_flags,
        );
        return Outcome::new(src, dst, j);
    }
    // Threat feeds: before fragments, connection state and rules.
    let hit = feeds::lookup(slot, s, pkt);
    if hit.action != 0 {
        f.listed = true;
        let v = feed_verdict(hit.action, f.src_flags, f.dst_flags);
        let dropped = v.is_some_and(|j| !j.is_pass());
        feeds::count(&hit, dropped);
        if !dropped {
            scratch.threat = hit.feed.wrapping_add(1);
        }
        if let Some(j) = v {
            return Outcome::new(src, dst, j);
        }
    }
    if pkt.frag != FRAG_NONE && s.fragments == FRAGMENTS_DENY {
        return Outcome::new(src, dst, Judgement::drop(REASON_FRAGMENT_UNTRACKED));
    }
    if pkt.frag == FRAG_LATER {
        let j = fragments::follow(pkt, &mut scratch.frag, s);
        return Outcome::new(src, dst, j);
    }
    let mut o = conntrack::judge(slot, s, pkt, &mut scratch.ct, &f, track, found);
    if pkt.frag == FRAG_FIRST
        && fragments::remember(pkt, &mut scratch.frag, &o.j).is_err()
        && o.j.is_pass()
    {
        o.j = on_fault(o.j, f.src_flags, f.dst_flags);
        o.slot = SLOT_UNKNOWN;
    }
    o
}

/// Events for the controller (denied flows, their first packet and again
/// after a minute; new east-west flows) and the flow cache entry of a
/// packet the cache did not answer.
#[inline(always)]
fn report(ifindex: u32, s: &Settings, scratch: &mut Scratch, o: &Outcome, counter: u32) {
    let j = &o.j;
    let denied = !j.is_pass() || j.reason == REASON_WOULD_DROP;
    let mut checked = 0;
    if denied && j.reason != REASON_MALFORMED {
        let tick = clock::jiffies();
        let due = match o.cache {
            // SAFETY: this CPU's own cache entry.
            Cache::Hit(e) => {
                tick.wrapping_sub(unsafe { (*e).checked_jiffies }) >= DENIED_RECHECK_JIFFIES
            }
            _ => true,
        };
        if due {
            // The denied-flow map is the authority: it is shared by all
            // CPUs, outlives cache entries and keeps real time.
            let now = clock::now();
            let pkt = &scratch.pkt;
            events::denied(ifindex, pkt, &mut scratch.denied, o.src, o.dst, j, now);
            if let Cache::Hit(e) = o.cache {
                // SAFETY: as above.
                unsafe { (*e).checked_jiffies = tick };
            }
            checked = tick;
        }
    } else if scratch.threat != 0 {
        // A flow that passed although a feed lists an end: reported with
        // the feed, whatever its segments.
        let t = Judgement {
            rule: scratch.threat as u32 - 1,
            ..*j
        };
        events::emit(
            ifindex,
            EVENT_THREAT,
            if o.opened { EVENT_OPENED } else { 0 },
            &scratch.pkt,
            o.src,
            o.dst,
            &t,
            clock::now(),
        );
    } else if o.opened && o.src != s.world_segment && o.dst != s.world_segment {
        events::emit(
            ifindex,
            EVENT_NEW_FLOW,
            EVENT_OPENED,
            &scratch.pkt,
            o.src,
            o.dst,
            j,
            clock::now(),
        );
    }
    let (kind, until_jiffies) = match o.cache {
        Cache::Judged(track) if !o.opened && cacheable(j, track) => (CACHED_JUDGED, 0),
        Cache::Established(until) => (CACHED_ESTABLISHED, until),
        _ => return,
    };
    let entry = flowcache::Entry {
        kind,
        src: o.src,
        dst: o.dst,
        j: *j,
        slot: counter,
        until_jiffies,
        checked_jiffies: checked,
    };
    flowcache::remember(s, &scratch.pkt, &scratch.probe, &entry);
}
