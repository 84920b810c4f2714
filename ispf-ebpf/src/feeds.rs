//! Threat-intelligence feeds: whether either end of a packet is listed.
//! Looked up only on the full pipeline (a new flow, or a flow from an
//! older generation being judged again), never for a packet the flow
//! cache or conntrack answers within its generation: a feed refresh is a
//! new generation, so an established flow to a newly listed address is
//! judged again, and stopped, at its next packet.

use aya_ebpf::maps::lpm_trie::Key;
use ispf_common::{
    FeedVal, Settings, V4Key, V6Key, FAMILY_V4, FAMILY_V6, FEEDS_V4_HOSTS, FEEDS_V4_NETS,
    FEEDS_V6_HOSTS, FEEDS_V6_NETS, FEED_DENY, MAX_FEEDS,
};
use ispf_ebpf::parse::Packet;

use crate::maps::{ISPF_FEED_HITS, ISPF_FEED_NET4, ISPF_FEED_NET6, ISPF_FEED_V4, ISPF_FEED_V6};

#[inline(always)]
fn listed(slot: u8, feeds: u8, family: u8, ip: &[u8; 16]) -> FeedVal {
    if family == FAMILY_V4 {
        let addr = [ip[0], ip[1], ip[2], ip[3]];
        if feeds & FEEDS_V4_HOSTS != 0 {
            let key = V4Key {
                slot,
                _pad: [0; 3],
                addr,
            };
            // SAFETY: copied out at once; the controller never frees an
            // entry under a reader (RCU).
            if let Some(v) = unsafe { ISPF_FEED_V4.get(&key) } {
                return *v;
            }
        }
        if feeds & FEEDS_V4_NETS != 0 {
            let key = Key::new(8 + 32, [slot, addr[0], addr[1], addr[2], addr[3]]);
            if let Some(v) = ISPF_FEED_NET4.get(&key) {
                return *v;
            }
        }
    } else {
        if feeds & FEEDS_V6_HOSTS != 0 {
            let key = V6Key {
                slot,
                _pad: [0; 3],
                addr: *ip,
            };
            // SAFETY: as above.
            if let Some(v) = unsafe { ISPF_FEED_V6.get(&key) } {
                return *v;
            }
        }
        if feeds & FEEDS_V6_NETS != 0 {
            let mut data = [0u8; 17];
            data[0] = slot;
            data[1..].copy_from_slice(ip);
            if let Some(v) = ISPF_FEED_NET6.get(&Key::new(8 + 128, data)) {
                return *v;
            }
        }
    }
    FeedVal::default()
}

/// The strongest feed entry for either end of an IP packet (`action` 0:
/// neither is listed). The controller made every entry inside a `deny`
/// network `deny` itself, so the first hit per address is its strongest.
#[inline(always)]
pub fn lookup(slot: u8, s: &Settings, pkt: &Packet) -> FeedVal {
    if s.feeds == 0 || (pkt.family != FAMILY_V4 && pkt.family != FAMILY_V6) {
        return FeedVal::default();
    }
    let a = listed(slot, s.feeds, pkt.family, &pkt.src_ip);
    if a.action == FEED_DENY {
        return a;
    }
    let b = listed(slot, s.feeds, pkt.family, &pkt.dst_ip);
    if b.action > a.action {
        b
    } else {
        a
    }
}

/// Counts a flow a feed hit, by whether its packet was dropped.
#[inline(always)]
pub fn count(hit: &FeedVal, dropped: bool) {
    let idx = (hit.feed as u32 & (MAX_FEEDS - 1)) * 2 + dropped as u32;
    if let Some(n) = ISPF_FEED_HITS.get_ptr_mut(idx) {
        // SAFETY: this CPU's own slot.
        unsafe { *n += 1 };
    }
}
