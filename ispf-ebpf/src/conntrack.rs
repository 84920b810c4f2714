//! Connection tracking: replies of allowed TCP, UDP and ICMP echo flows pass
//! without a reverse rule; FIN shortens a flow's life, RST ends it; an entry
//! from an older policy epoch is re-judged before it is trusted.
//!
//! Each direction of an entry remembers the L2 sender whose identity was
//! checked under the entry's epoch. Packets of an established flow from
//! that sender take [`established`]: one map lookup, no identity or policy
//! lookups. Everything else (a new sender, a new epoch, an expired entry)
//! takes [`judge`], which identifies the sender again.

use core::ptr::{read_volatile, write_volatile};

use ispf_common::{
    CtVal, Settings, CT_FEED_LISTED, CT_FIN_SEEN, CT_ORIG_IS_A, FAMILY_V4,
    FLOW_CACHE_REFRESH_JIFFIES, IPPROTO_TCP, IPPROTO_UDP, REASON_REPLY, REASON_WOULD_DROP,
    SEG_PRESENT, VERDICT_PASS,
};
use ispf_ebpf::{
    decide::{judge_policy, on_fault, Judgement},
    flow::{ct_expired, ct_keys, ct_timeout_ns, CtKeys, Tracking, TCP_FIN, TCP_RST},
    outcome::{Cache, Outcome},
    parse::Packet,
};

use crate::{
    clock, counters, flowcache,
    maps::{ISPF_CONNTRACK, ISPF_CONNTRACK4},
    policy,
};

/// The entry of the flow whose key of family `v4` is in `keys`.
#[inline(always)]
fn entry(keys: &CtKeys, v4: bool) -> Option<*mut CtVal> {
    if v4 {
        ISPF_CONNTRACK4.get_ptr_mut(&keys.v4)
    } else {
        ISPF_CONNTRACK.get_ptr_mut(&keys.v6)
    }
}

#[inline(always)]
fn forget(keys: &CtKeys, v4: bool) {
    let _ = if v4 {
        ISPF_CONNTRACK4.remove(&keys.v4)
    } else {
        ISPF_CONNTRACK.remove(&keys.v6)
    };
}

#[inline(always)]
fn open(keys: &CtKeys, v4: bool, v: &CtVal) -> Result<(), ()> {
    if v4 {
        ISPF_CONNTRACK4.insert(&keys.v4, v, 0).map_err(|_| ())
    } else {
        ISPF_CONNTRACK.insert(&keys.v6, v, 0).map_err(|_| ())
    }
}

pub struct Flow {
    pub src: u16,
    pub dst: u16,
    pub src_flags: u8,
    pub dst_flags: u8,
    /// A feed lists an end of the packet and it passed the feed check.
    pub listed: bool,
}

/// What conntrack holds for a packet's flow, as far as it was looked up:
/// the full pipeline reuses it instead of looking again.
#[derive(Clone, Copy)]
pub enum Found {
    /// Not looked up (a first fragment; a protocol that is not tracked).
    NotLooked,
    /// Nothing; whether the packet's source is endpoint `a` of the key.
    Absent(bool),
    /// This entry; whether the packet's source is endpoint `a`.
    Entry(*mut CtVal, bool),
}

/// What the fast path found for a packet.
pub enum Fast {
    /// An established flow from an already identified sender. Its cache
    /// hint says until which jiffy the flow cache may stand for conntrack.
    Hit(Outcome),
    /// The packet needs the full pipeline.
    Miss(Found),
}

/// An echo request only continues its own direction, an echo reply only
/// answers; TCP and UDP packets may do either.
#[inline(always)]
fn icmp_fits(proto: u8, orig_dir: bool, track: Tracking) -> bool {
    proto == IPPROTO_TCP || proto == IPPROTO_UDP || orig_dir == (track == Tracking::Opens)
}

/// The fast path of established flows.
#[inline(always)]
pub fn established(s: &Settings, pkt: &Packet, keys: &mut CtKeys, track: Tracking) -> Fast {
    if track == Tracking::None {
        return Fast::Miss(Found::NotLooked);
    }
    let src_is_a = ct_keys(keys, pkt);
    let keys: &CtKeys = keys;
    let v4 = pkt.family == FAMILY_V4;
    let Some(ptr) = entry(keys, v4) else {
        return Fast::Miss(Found::Absent(src_is_a));
    };
    let present = Fast::Miss(Found::Entry(ptr, src_is_a));
    // SAFETY: a pointer into an LRU map value; see `judge`.
    let ct = unsafe { &mut *ptr };
    if ct.flags & CT_FEED_LISTED != 0 {
        return present;
    }
    let orig_dir = (ct.flags & CT_ORIG_IS_A != 0) == src_is_a;
    // The epoch is read before the sender: `judge` clears the senders
    // before it moves an entry to a new epoch, so a sender read after a
    // current epoch was validated under that epoch.
    // SAFETY: reads of plain integers inside the map value.
    let epoch = unsafe { read_volatile(&ct.epoch) };
    let sender = pkt.sender;
    let known = if orig_dir {
        (unsafe { read_volatile(&ct.orig_l2) }) == sender && ct.orig_dst_mac == pkt.dst_mac_word
    } else {
        (unsafe { read_volatile(&ct.reply_l2) }) == sender
    };
    if epoch != s.epoch || !known || !icmp_fits(pkt.proto, orig_dir, track) {
        return present;
    }
    let now = clock::now();
    if ct_expired(now, ct, pkt.proto, s) {
        return present;
    }
    // SAFETY: as above; written before the sender (see `judge`).
    let (src, dst, slot) = unsafe {
        if orig_dir {
            (ct.orig_src, ct.orig_dst, read_volatile(&ct.orig_slot))
        } else {
            (ct.orig_dst, ct.orig_src, read_volatile(&ct.reply_slot))
        }
    };
    let j = continuing(ct, orig_dir);
    let until = carry_on(keys, v4, ct, pkt, now, s);
    let mut o = Outcome::new(src, dst, j);
    o.slot = slot;
    o.cache = Cache::Established(until);
    Fast::Hit(o)
}

/// The judgement of a packet that continues its flow.
#[inline(always)]
fn continuing(ct: &CtVal, orig_dir: bool) -> Judgement {
    if orig_dir {
        Judgement {
            verdict: VERDICT_PASS,
            reason: ct.reason,
            rule: ct.rule,
        }
    } else {
        Judgement::pass(REASON_REPLY)
    }
}

/// A packet continues its flow: refresh, note FIN, end on RST. Returns
/// until which jiffy the flow cache may stand for this entry (0: not at
/// all). The entry must not be written after this: a removed entry's
/// memory is reused.
#[inline(always)]
fn carry_on(keys: &CtKeys, v4: bool, ct: &mut CtVal, pkt: &Packet, now: u64, s: &Settings) -> u64 {
    ct.last_seen_ns = now;
    let tcp = pkt.proto == IPPROTO_TCP;
    if tcp && pkt.tcp_flags & TCP_RST != 0 {
        forget(keys, v4);
        flowcache::bump(pkt);
        return 0;
    }
    if tcp && pkt.tcp_flags & TCP_FIN != 0 {
        // Cached outcomes were made under the longer timeout.
        ct.flags |= CT_FIN_SEEN;
        flowcache::bump(pkt);
        return 0;
    }
    if ct_timeout_ns(ct, pkt.proto, s) == 0 {
        return 0;
    }
    clock::jiffies() + FLOW_CACHE_REFRESH_JIFFIES
}

/// Judges an IP packet (not a later fragment) through conntrack and
/// policy; `found` is what the fast path already looked up.
#[inline(always)]
pub fn judge(
    slot: u8,
    s: &Settings,
    pkt: &Packet,
    keys: &mut CtKeys,
    f: &Flow,
    track: Tracking,
    found: Found,
) -> Outcome {
    let dport = u16::from_be_bytes(pkt.dport);
    if track == Tracking::None {
        return Outcome::new(f.src, f.dst, judge_new(slot, s, pkt, f, dport));
    }
    let v4 = pkt.family == FAMILY_V4;
    let (existing, src_is_a) = match found {
        Found::Entry(e, a) => (Some(e), a),
        Found::Absent(a) => (None, a),
        Found::NotLooked => {
            let a = ct_keys(keys, pkt);
            (entry(keys, v4), a)
        }
    };
    let keys: &CtKeys = keys;
    let now = clock::now();
    let sender = pkt.sender;
    if let Some(ct) = existing {
        // SAFETY: a pointer into an LRU map value; concurrent updates of the
        // same flow on another CPU can at worst race a timestamp.
        let ct = unsafe { &mut *ct };
        let orig_dir = (ct.flags & CT_ORIG_IS_A != 0) == src_is_a;
        // Only the side that opened (or was opened to) in that segment may
        // use the flow: the sender's segment must be the one recorded for
        // its end. (The receiver is fixed by the addresses of the key.)
        let sender_fits = if orig_dir {
            ct.orig_src == f.src
        } else {
            ct.orig_dst == f.src
        };
        if sender_fits
            && icmp_fits(pkt.proto, orig_dir, track)
            && !ct_expired(now, ct, pkt.proto, s)
        {
            let orig_dport = if orig_dir {
                dport
            } else {
                u16::from_be_bytes(pkt.sport)
            };
            let current = if ct.epoch == s.epoch {
                Some((ct.reason, ct.rule))
            } else {
                rejudge(slot, s, pkt, ct, orig_dport)
            };
            if let Some((reason, rule)) = current {
                // SAFETY (all writes): plain integers inside the map value.
                // Senders identified under an older epoch are forgotten
                // before the epoch moves on (see `established`).
                unsafe {
                    if ct.epoch != s.epoch {
                        write_volatile(&mut ct.orig_l2, 0);
                        write_volatile(&mut ct.reply_l2, 0);
                    }
                    write_volatile(&mut ct.epoch, s.epoch);
                }
                ct.reason = reason;
                ct.rule = rule;
                // Listing depends on the flow's addresses and the feeds'
                // generation only: any packet of the flow says the same.
                ct.flags = if f.listed {
                    ct.flags | CT_FEED_LISTED
                } else {
                    ct.flags & !CT_FEED_LISTED
                };
                let j = continuing(ct, orig_dir);
                let dst = if orig_dir { f.dst } else { ct.orig_src };
                let counter = counters::slot(slot, f.src, dst, &j);
                // This sender is now identified for its direction, its
                // counter slot stored first. The originating direction's
                // fast path counts under the recorded destination, so only
                // a packet that resolves to it may stand for that direction.
                unsafe {
                    if !orig_dir {
                        write_volatile(&mut ct.reply_slot, counter);
                        write_volatile(&mut ct.reply_l2, sender);
                    } else if f.dst == ct.orig_dst && pkt.dst_mac_word == ct.orig_dst_mac {
                        write_volatile(&mut ct.orig_slot, counter);
                        write_volatile(&mut ct.orig_l2, sender);
                    }
                }
                let until = carry_on(keys, v4, ct, pkt, now, s);
                let mut o = Outcome::new(f.src, dst, j);
                o.slot = counter;
                if until != 0 {
                    o.cache = Cache::Established(until);
                }
                return o;
            }
            // The policy no longer allows this flow: forget it.
            forget(keys, v4);
            flowcache::bump(pkt);
        }
    }
    let j = judge_new(slot, s, pkt, f, dport);
    let opens = track == Tracking::Opens
        && j.is_pass()
        && j.reason != REASON_WOULD_DROP
        && !(pkt.proto == IPPROTO_TCP && pkt.tcp_flags & TCP_RST != 0);
    if opens {
        let mut flags = if src_is_a { CT_ORIG_IS_A } else { 0 };
        if pkt.tcp_flags & TCP_FIN != 0 {
            flags |= CT_FIN_SEEN;
        }
        if f.listed {
            flags |= CT_FEED_LISTED;
        }
        // The opening packet counts under the key its direction keeps.
        let counter = counters::slot(slot, f.src, f.dst, &j);
        let v = CtVal {
            last_seen_ns: now,
            epoch: s.epoch,
            rule: j.rule,
            orig_src: f.src,
            orig_dst: f.dst,
            reason: j.reason,
            flags,
            _pad: [0; 2],
            orig_l2: sender,
            reply_l2: 0,
            orig_dst_mac: pkt.dst_mac_word,
            orig_slot: counter,
            reply_slot: 0,
        };
        if open(keys, v4, &v).is_err() {
            return Outcome::new(f.src, f.dst, on_fault(j, f.src_flags, f.dst_flags));
        }
        // The other direction may have cached a denial meanwhile.
        flowcache::bump(pkt);
        let mut o = Outcome::new(f.src, f.dst, j);
        o.opened = true;
        o.slot = counter;
        return o;
    }
    Outcome::new(f.src, f.dst, j)
}

#[inline(always)]
fn judge_new(slot: u8, s: &Settings, pkt: &Packet, f: &Flow, dport: u16) -> Judgement {
    let entry = policy::lookup(slot, f.src, f.dst, pkt.family, pkt.proto, dport);
    judge_policy(
        f.src,
        f.dst,
        entry,
        f.src_flags,
        f.dst_flags,
        s.default_action,
    )
}

/// The opening direction judged by the current policy: its reason and rule
/// if it is still allowed, `None` if the flow has lost its permission.
#[inline(always)]
fn rejudge(slot: u8, s: &Settings, pkt: &Packet, ct: &CtVal, orig_dport: u16) -> Option<(u8, u32)> {
    let sf = policy::segment_flags(slot, ct.orig_src);
    let df = policy::segment_flags(slot, ct.orig_dst);
    // A segment the new policy no longer has ends its flows (the controller
    // also removes them; this covers packets in between).
    if sf & SEG_PRESENT == 0 || df & SEG_PRESENT == 0 {
        return None;
    }
    let entry = policy::lookup(
        slot,
        ct.orig_src,
        ct.orig_dst,
        pkt.family,
        pkt.proto,
        orig_dport,
    );
    let j = judge_policy(ct.orig_src, ct.orig_dst, entry, sf, df, s.default_action);
    (j.is_pass() && j.reason != REASON_WOULD_DROP).then_some((j.reason, j.rule))
}
