//! IP fragments: a first fragment's verdict is remembered so later
//! fragments, which carry no transport header, get the same one; a later
//! fragment of no known first fragment is dropped.

use ispf_common::{FragKey, FragVal, Settings, REASON_FRAGMENT_UNTRACKED};
use ispf_ebpf::decide::Judgement;

use crate::{clock, maps::ISPF_FRAGMENTS};
use ispf_ebpf::parse::Packet;

#[inline(always)]
fn fill(k: &mut FragKey, pkt: &Packet) {
    k.src = pkt.src_ip;
    k.dst = pkt.dst_ip;
    k.id = pkt.frag_id;
    k.proto = pkt.proto;
    k.family = pkt.family;
    k._pad = [0; 2];
}

/// Remembers the verdict of a first fragment. `Err` when the map is full.
#[inline(always)]
pub fn remember(pkt: &Packet, k: &mut FragKey, j: &Judgement) -> Result<(), ()> {
    fill(k, pkt);
    let v = FragVal {
        last_seen_ns: clock::now(),
        rule: j.rule,
        verdict: j.verdict,
        reason: j.reason,
        _pad: [0; 2],
    };
    ISPF_FRAGMENTS.insert(&*k, &v, 0).map_err(|_| ())
}

/// The verdict of a later fragment. The last fragment (no more-fragments
/// flag) releases the entry.
#[inline(always)]
pub fn follow(pkt: &Packet, k: &mut FragKey, s: &Settings) -> Judgement {
    fill(k, pkt);
    let k: &FragKey = k;
    // SAFETY: copied out immediately.
    let Some(v) = (unsafe { ISPF_FRAGMENTS.get(k) }).copied() else {
        return Judgement::drop(REASON_FRAGMENT_UNTRACKED);
    };
    let now = clock::now();
    if now.saturating_sub(v.last_seen_ns) > s.fragment_timeout_s as u64 * 1_000_000_000 {
        let _ = ISPF_FRAGMENTS.remove(k);
        return Judgement::drop(REASON_FRAGMENT_UNTRACKED);
    }
    if pkt.more_frags == 0 {
        let _ = ISPF_FRAGMENTS.remove(k);
    }
    Judgement {
        verdict: v.verdict,
        reason: v.reason,
        rule: v.rule,
    }
}
