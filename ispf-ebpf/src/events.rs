//! Flow events for the controller: the first packet of each denied 5-tuple
//! (again after a minute) and each new allowed east-west flow. Never on the
//! path of an established flow's packets; rate-limited per source and per
//! CPU so a flood costs a bounded amount and one scanner cannot silence
//! the others; every event not delivered is counted.

use ispf_common::{
    CtKey, Event, EventStats, FingerprintEvent, SourceBudget, DENIED_REPORT_INTERVAL_NS,
    EVENT_BURST, EVENT_DENIED, EVENT_RATE_PER_SEC, EVENT_SIGHTING, EVENT_TCP_MIDSTREAM, FAMILY_V4,
    FAMILY_V6, IPPROTO_TCP, SIGHTING_BURST, SIGHTING_RATE_PER_SEC, SOURCE_EVENT_BURST,
    SOURCE_EVENT_RATE_PER_SEC,
};
use ispf_ebpf::{
    decide::Judgement,
    parse::{Frame, Packet, FRAG_LATER},
};

use crate::maps::{ISPF_DENIED_SEEN, ISPF_EVENTS, ISPF_EVENT_SOURCES, ISPF_EVENT_STATS};

/// Reports a denied packet that starts a denied flow: its directional
/// 5-tuple (MACs for non-IP frames) was not reported in the last minute.
/// The budgets are read before the flow is looked up: without a token
/// (this CPU's, or the sender's own) nothing is looked up or recorded and
/// the packet is counted as rate-limited. So a scan that spent its
/// sender's budget costs one read of that sender's (hot) entry per frame,
/// not a lookup of every new flow in the denied-flow map; the price is
/// that such a sender's packets of flows already reported count as
/// rate-limited too.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn denied(
    ifindex: u32,
    pkt: &Packet,
    key: &mut CtKey,
    src: u16,
    dst: u16,
    j: &Judgement,
    now: u64,
) {
    let Some(st) = bucket(now) else {
        return;
    };
    if st.tokens == 0 {
        st.rate_limited += 1;
        return;
    }
    if source_exhausted(pkt.sender, now) {
        st.rate_limited += 1;
        return;
    }
    let ip = pkt.family == FAMILY_V4 || pkt.family == FAMILY_V6;
    if ip {
        key.a_addr = pkt.src_ip;
        key.b_addr = pkt.dst_ip;
    } else {
        key.a_addr = [0; 16];
        key.b_addr = [0; 16];
        key.a_addr[..6].copy_from_slice(&pkt.src_mac());
        key.b_addr[..6].copy_from_slice(&pkt.dst_mac());
    }
    key.a_port = pkt.sport;
    key.b_port = pkt.dport;
    key.proto = pkt.proto;
    key.family = pkt.family;
    // A mid-stream packet does not hide the opening of the same 5-tuple
    // from detection (an ACK sent first, then the SYN).
    key._pad = [midstream(pkt), 0];
    // SAFETY: copied out at once.
    if let Some(last) = unsafe { ISPF_DENIED_SEEN.get(&*key) }.copied() {
        if now.saturating_sub(last) < DENIED_REPORT_INTERVAL_NS {
            return;
        }
    }
    // Checked again: other CPUs may have taken the last token while the
    // flow was looked up.
    if !spend(source_budget(pkt.sender, now), pkt.sender, now) {
        st.rate_limited += 1;
        return;
    }
    st.tokens -= 1;
    let _ = ISPF_DENIED_SEEN.insert(&*key, &now, 0);
    write(ifindex, EVENT_DENIED, 0, pkt, src, dst, j, now);
}

/// This CPU's token bucket, refilled for `now`.
#[inline(always)]
fn bucket(now: u64) -> Option<&'static mut EventStats> {
    let st = ISPF_EVENT_STATS.get_ptr_mut(0)?;
    // SAFETY: this CPU's own slot.
    let st = unsafe { &mut *st };
    refill(
        &mut st.tokens,
        &mut st.refill_ns,
        now,
        EVENT_RATE_PER_SEC,
        EVENT_BURST,
    );
    Some(st)
}

#[inline(always)]
fn refill(tokens: &mut u64, at: &mut u64, now: u64, rate: u64, burst: u64) {
    let add = now.saturating_sub(*at) / (1_000_000_000 / rate);
    if add > 0 {
        *tokens = if *tokens + add > burst {
            burst
        } else {
            *tokens + add
        };
        *at = now;
    }
}

/// The sender's own bucket (shared by all CPUs; a lost update between
/// two CPUs costs a token, never a report), refilled for `now`; `None`
/// for a sender not seen lately, whose bucket is still full. One scanner
/// cannot spend the budget that reports everyone else's flows.
#[inline(always)]
fn source_budget(sender: u64, now: u64) -> Option<&'static mut SourceBudget> {
    let b = ISPF_EVENT_SOURCES.get_ptr_mut(&sender)?;
    // SAFETY: an LRU entry stays valid under RCU for this program.
    let b = unsafe { &mut *b };
    refill(
        &mut b.tokens,
        &mut b.refill_ns,
        now,
        SOURCE_EVENT_RATE_PER_SEC,
        SOURCE_EVENT_BURST,
    );
    Some(b)
}

/// Whether the sender's bucket is empty with no token due: read only,
/// and without branches, because the program is close to the verifier's
/// budget (a refill here, or the bucket held across the flow's lookup,
/// made `ispf_tc` fail to load).
#[inline(always)]
fn source_exhausted(sender: u64, now: u64) -> bool {
    match ISPF_EVENT_SOURCES.get_ptr(&sender) {
        Some(b) => {
            // SAFETY: as in `source_budget`; a torn read only misjudges
            // one packet's report.
            let (tokens, at) = unsafe { ((*b).tokens, (*b).refill_ns) };
            let none = (tokens == 0) as u8;
            let not_due =
                (now.saturating_sub(at) < 1_000_000_000 / SOURCE_EVENT_RATE_PER_SEC) as u8;
            none & not_due != 0
        }
        None => false,
    }
}

/// Takes one token from the sender's bucket as [`source_budget`] found
/// it; false when it has none left.
#[inline(always)]
fn spend(budget: Option<&'static mut SourceBudget>, sender: u64, now: u64) -> bool {
    match budget {
        Some(b) if b.tokens == 0 => false,
        Some(b) => {
            b.tokens -= 1;
            true
        }
        None => {
            let fresh = SourceBudget {
                tokens: SOURCE_EVENT_BURST - 1,
                refill_ns: now,
            };
            let _ = ISPF_EVENT_SOURCES.insert(&sender, &fresh, 0);
            true
        }
    }
}

/// Takes one token from this CPU's flow-event bucket.
#[inline(always)]
fn take_token(now: u64) -> bool {
    let Some(st) = bucket(now) else {
        return false;
    };
    if st.tokens == 0 {
        st.rate_limited += 1;
        return false;
    }
    st.tokens -= 1;
    true
}

/// Takes one token from this CPU's sighting bucket.
#[inline(always)]
fn take_sighting_token(now: u64) -> bool {
    let Some(st) = ISPF_EVENT_STATS.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's own slot.
    let st = unsafe { &mut *st };
    refill(
        &mut st.sighting_tokens,
        &mut st.sighting_refill_ns,
        now,
        SIGHTING_RATE_PER_SEC,
        SIGHTING_BURST,
    );
    if st.sighting_tokens == 0 {
        st.sightings_limited += 1;
        return false;
    }
    st.sighting_tokens -= 1;
    true
}

/// Reports a source: its MAC, VLAN, port, address and segment. Sightings
/// have a per-CPU budget of their own; without a token the sighting
/// is counted as rate-limited and not recorded as reported, so it is
/// tried again on the source's next packet.
#[inline(always)]
pub fn sighting(ifindex: u32, pkt: &Packet, src: u16, now: u64) -> bool {
    if !take_sighting_token(now) {
        return false;
    }
    let Some(mut entry) = ISPF_EVENTS.reserve::<Event>(0) else {
        ring_full();
        return false;
    };
    // SAFETY: `reserve` hands out uninitialised memory of the right size;
    // every field is written before submit.
    unsafe {
        let e = entry.as_mut_ptr();
        (*e).ts_ns = now;
        (*e).rule = 0;
        (*e).ifindex = ifindex;
        (*e).src = src;
        (*e).dst = 0;
        (*e).vlan = pkt.vlan;
        (*e).kind = EVENT_SIGHTING;
        (*e).reason = 0;
        (*e).verdict = 0;
        (*e).family = pkt.family;
        (*e).proto = pkt.proto;
        (*e).flags = 0;
        (*e).sport = [0; 2];
        (*e).dport = [0; 2];
        (*e).src_mac = pkt.src_mac();
        (*e).dst_mac = [0; 6];
        (*e).src_ip = pkt.src_ip;
        (*e).dst_ip = [0; 16];
        (*e)._pad2 = [0; 4];
    }
    entry.submit(0);
    counted(true);
    true
}

/// Hands `FINGERPRINT_BYTES` of the frame from `off` (as far as the frame
/// goes, in whole words) to userspace: DHCP options, LLDP TLVs.
#[inline(always)]
pub fn fingerprint<F: Frame>(
    frame: &F,
    ifindex: u32,
    pkt: &Packet,
    kind: u8,
    off: usize,
    src: u16,
    now: u64,
) {
    if !take_sighting_token(now) {
        return;
    }
    let Some(mut entry) = ISPF_EVENTS.reserve::<FingerprintEvent>(0) else {
        ring_full();
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved memory of the right size; every field is written
    // before submit (the payload past `len` is whatever the ring held: the
    // reader takes `len` bytes).
    unsafe {
        (*e).ts_ns = now;
        (*e)._pad = 0;
        (*e).ifindex = ifindex;
        (*e).src = src;
        (*e).vlan = pkt.vlan;
        (*e).kind = kind;
        (*e)._pad2 = 0;
        (*e).src_mac = pkt.src_mac();
        (*e)._pad3 = [0; 2];
        (*e).len = frame.copy_out(off, &mut (*e).data) as u16;
    }
    entry.submit(0);
    counted(true);
}

fn ring_full() {
    if let Some(st) = ISPF_EVENT_STATS.get_ptr_mut(0) {
        // SAFETY: this CPU's own slot.
        unsafe { (*st).ringbuf_full += 1 };
    }
}

fn counted(sighting: bool) {
    if let Some(st) = ISPF_EVENT_STATS.get_ptr_mut(0) {
        // SAFETY: this CPU's own slot.
        unsafe {
            (*st).emitted += 1;
            if sighting {
                (*st).sightings += 1;
            }
        }
    }
}

/// Emits one event, rate-limited; `flags`: `EVENT_OPENED` or 0.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn emit(
    ifindex: u32,
    kind: u8,
    flags: u8,
    pkt: &Packet,
    src: u16,
    dst: u16,
    j: &Judgement,
    now: u64,
) {
    if !spend(source_budget(pkt.sender, now), pkt.sender, now) {
        if let Some(st) = bucket(now) {
            st.rate_limited += 1;
        }
        return;
    }
    if take_token(now) {
        write(ifindex, kind, flags, pkt, src, dst, j, now);
    }
}

/// [`EVENT_TCP_MIDSTREAM`] for a TCP packet without SYN, or with SYN and
/// ACK: one that cannot open a connection. (Not a later fragment, which
/// carries no TCP header to tell.)
#[inline(always)]
fn midstream(pkt: &Packet) -> u8 {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    if pkt.proto == IPPROTO_TCP && pkt.frag != FRAG_LATER && pkt.tcp_flags & (SYN | ACK) != SYN {
        EVENT_TCP_MIDSTREAM
    } else {
        0
    }
}

/// Writes one event straight into the ring buffer.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn write(
    ifindex: u32,
    kind: u8,
    flags: u8,
    pkt: &Packet,
    src: u16,
    dst: u16,
    j: &Judgement,
    now: u64,
) {
    let Some(mut entry) = ISPF_EVENTS.reserve::<Event>(0) else {
        ring_full();
        return;
    };
    // SAFETY: `reserve` hands out uninitialised memory of the right size;
    // every field is written before submit.
    unsafe {
        let e = entry.as_mut_ptr();
        (*e).ts_ns = now;
        (*e).rule = j.rule;
        (*e).ifindex = ifindex;
        (*e).src = src;
        (*e).dst = dst;
        (*e).vlan = pkt.vlan;
        (*e).kind = kind;
        (*e).reason = j.reason;
        (*e).verdict = j.verdict;
        (*e).family = pkt.family;
        (*e).proto = pkt.proto;
        (*e).flags = flags | midstream(pkt);
        (*e).sport = pkt.sport;
        (*e).dport = pkt.dport;
        (*e).src_mac = pkt.src_mac();
        (*e).dst_mac = pkt.dst_mac();
        (*e).src_ip = pkt.src_ip;
        (*e).dst_ip = pkt.dst_ip;
        (*e)._pad2 = [0; 4];
    }
    entry.submit(0);
    counted(false);
}
