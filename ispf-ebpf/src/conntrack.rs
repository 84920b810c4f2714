//! Connection tracking: replies of allowed TCP, UDP and ICMP echo flows pass
//! without a reverse rule; FIN shortens a flow's life, RST ends it; an entry
//! from an older policy epoch is re-judged before it is trusted.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use ispf_common::{
    CtKey, CtVal, Settings, CT_FIN_SEEN, CT_ORIG_IS_A, IPPROTO_TCP, REASON_REPLY, REASON_WOULD_DROP,
};
use ispf_ebpf::{
    decide::{judge_policy, on_fault, Judgement},
    flow::{ct_expired, ct_key, tracking, Tracking, TCP_FIN, TCP_RST},
};

use crate::{maps::ISPF_CONNTRACK, policy};
use ispf_ebpf::parse::Packet;

pub struct Flow {
    pub src: u16,
    pub dst: u16,
    pub src_flags: u8,
    pub dst_flags: u8,
}

/// Judges an IP packet (not a later fragment) through conntrack and policy.
/// Returns the judgement and the destination segment to count it under: a
/// reply is counted towards the segment its flow came from (an unregistered
/// originator, say a quarantined laptop, is `world` as a destination),
/// and whether the packet opened a new flow.
#[inline(always)]
pub fn judge(
    slot: u8,
    s: &Settings,
    pkt: &Packet,
    key: &mut CtKey,
    f: &Flow,
) -> (Judgement, u16, bool) {
    let track = tracking(pkt.family, pkt.proto, pkt.icmp_type);
    let dport = u16::from_be_bytes(pkt.dport);
    if track == Tracking::None {
        return (judge_new(slot, s, pkt, f, dport), f.dst, false);
    }
    let src_is_a = ct_key(
        key,
        pkt.family,
        pkt.proto,
        &pkt.src_ip,
        &pkt.dst_ip,
        pkt.sport,
        pkt.dport,
    );
    let key: &CtKey = key;
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(ct) = ISPF_CONNTRACK.get_ptr_mut(key) {
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
        // An echo request only continues its own direction, an echo reply
        // only answers; TCP and UDP packets may do either.
        let icmp_fits = pkt.proto == IPPROTO_TCP
            || pkt.proto == ispf_common::IPPROTO_UDP
            || (orig_dir == (track == Tracking::Opens));
        if sender_fits && icmp_fits && !ct_expired(now, ct, pkt.proto, s) {
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
                ct.epoch = s.epoch;
                ct.reason = reason;
                ct.rule = rule;
                ct.last_seen_ns = now;
                if pkt.tcp_flags & TCP_FIN != 0 {
                    ct.flags |= CT_FIN_SEEN;
                }
                let (j, dst) = if orig_dir {
                    (
                        Judgement {
                            verdict: ispf_common::VERDICT_PASS,
                            reason: ct.reason,
                            rule: ct.rule,
                        },
                        f.dst,
                    )
                } else {
                    (Judgement::pass(REASON_REPLY), ct.orig_src)
                };
                if pkt.proto == IPPROTO_TCP && pkt.tcp_flags & TCP_RST != 0 {
                    let _ = ISPF_CONNTRACK.remove(key);
                }
                return (j, dst, false);
            }
            // The policy no longer allows this flow: forget it.
            let _ = ISPF_CONNTRACK.remove(key);
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
        let v = CtVal {
            last_seen_ns: now,
            epoch: s.epoch,
            rule: j.rule,
            orig_src: f.src,
            orig_dst: f.dst,
            reason: j.reason,
            flags,
            _pad: [0; 2],
        };
        if ISPF_CONNTRACK.insert(key, &v, 0).is_err() {
            return (on_fault(j, f.src_flags, f.dst_flags), f.dst, false);
        }
        return (j, f.dst, true);
    }
    (j, f.dst, false)
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
