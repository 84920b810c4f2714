//! The device inventory's eyes: every source the datapath has not reported
//! recently (MAC and VLAN, port, source address) is reported through the
//! ring buffer at once when something about it changed and otherwise at
//! most once a minute; DHCP client requests and LLDP frames are handed to
//! userspace for passive fingerprinting. Never on the path of a packet the
//! flow cache answers: a device whose flows are all established is still
//! seen each time conntrack is consulted for them (every 16 jiffies).

use ispf_common::{
    SightingMemo, EVENT_DHCP, EVENT_LLDP, FAMILY_V4, FAMILY_V6, IPPROTO_UDP, SIGHTING_MEMO_ENTRIES,
    SIGHTING_REFRESH_NS,
};
use ispf_ebpf::parse::{Frame, Packet, KIND_INFRA};

use crate::{events, maps::ISPF_SIGHTINGS};

const ETH_P_LLDP: u16 = 0x88cc;
/// DHCP options start after the fixed BOOTP header and the magic cookie.
const DHCP_OPTIONS: usize = 8 + 236 + 4;

/// Notices the source of a packet the full pipeline (or conntrack) judged.
#[inline(always)]
pub fn notice<F: Frame>(frame: &F, ifindex: u32, pkt: &Packet, src_segment: u16, now: u64) {
    // Broadcast or multicast source MACs are not devices.
    if pkt.sender & 1 != 0 {
        return;
    }
    if pkt.kind == KIND_INFRA {
        fingerprints(frame, ifindex, pkt, src_segment, now);
    }
    let index =
        (pkt.sender.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as u32 & (SIGHTING_MEMO_ENTRIES - 1);
    let Some(m) = ISPF_SIGHTINGS.get_ptr_mut(index) else {
        return;
    };
    // SAFETY: this CPU's own entry; programs do not nest on a CPU.
    let m: &mut SightingMemo = unsafe { &mut *m };
    let w = pkt.addr_words();
    // Another source had this entry: nothing of it carries over.
    let (old4, old6) = if m.sender == pkt.sender {
        (m.v4, m.v6)
    } else {
        (0, [0, 0])
    };
    // An unspecified source (a DHCP or DAD client) or a link-local IPv6
    // one names no address worth reporting: a host alternating between
    // its link-local and global IPv6 addresses is one unchanged source.
    let (v4, v6) = match pkt.family {
        FAMILY_V4 if w[0] as u32 != 0 => (w[0] as u32, old6),
        FAMILY_V6 if !pkt.src_is_self_assigned() => (old4, [w[0], w[1]]),
        _ => (old4, old6),
    };
    let changed = m.sender != pkt.sender || m.ifindex != ifindex || m.v4 != v4 || m.v6 != v6;
    if !changed && now.wrapping_sub(m.reported_ns) < SIGHTING_REFRESH_NS {
        return;
    }
    if !events::sighting(ifindex, pkt, src_segment, now) {
        return;
    }
    m.sender = pkt.sender;
    m.ifindex = ifindex;
    m.v4 = v4;
    m.v6 = v6;
    m.reported_ns = now;
}

/// DHCP client requests (UDP 68 -> 67) and LLDP frames go to userspace.
#[inline(always)]
fn fingerprints<F: Frame>(frame: &F, ifindex: u32, pkt: &Packet, src: u16, now: u64) {
    if pkt.family == FAMILY_V4 && pkt.proto == IPPROTO_UDP && u16::from_be_bytes(pkt.dport) == 67 {
        let off = pkt.l4_off as usize + DHCP_OPTIONS;
        events::fingerprint(frame, ifindex, pkt, EVENT_DHCP, off, src, now);
    } else if pkt.ethertype == ETH_P_LLDP {
        events::fingerprint(
            frame,
            ifindex,
            pkt,
            EVENT_LLDP,
            pkt.l3_off as usize,
            src,
            now,
        );
    }
}
