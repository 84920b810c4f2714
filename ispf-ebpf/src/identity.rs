//! Who sent a frame and who receives it, in the order the spec prescribes:
//! device by MAC (VLAN-scoped), routers, device by IP, longest-prefix
//! subnet, VLAN segment, `unknown_source`; and anti-spoofing both ways.

use aya_ebpf::maps::lpm_trie::Key;
use ispf_common::{
    DeviceVal, MacKey, Settings, V4Key, V6Key, DEV_HAS_IP, DEV_HAS_MAC, DEV_V4_MANY, DEV_V4_ONE,
    DEV_V6_MANY, DEV_V6_ONE, FAMILY_V4, FAMILY_V6, NO_SEGMENT, SOURCE_MEMO_ENTRIES, VLAN_SLOTS,
};

use ispf_ebpf::parse::Packet;

use crate::maps::{
    ISPF_DEV_MAC, ISPF_DEV_V4, ISPF_DEV_V6, ISPF_ROUTERS, ISPF_SOURCE_MEMO, ISPF_SUBNET_V4,
    ISPF_SUBNET_V6, ISPF_VLAN,
};

/// The source could not be identified because it borrows another device's
/// identity. Carries the segment the frame really came from, for counting.
pub struct Spoofed(pub u16);

#[inline(always)]
fn device_by_mac(slot: u8, mac: &[u8; 6], vlan: u16) -> Option<DeviceVal> {
    let key = MacKey {
        slot,
        _pad: 0,
        mac: *mac,
    };
    // SAFETY: the value is copied out immediately; the map is only written
    // by the controller, which never frees entries under a reader (RCU).
    let d = unsafe { ISPF_DEV_MAC.get(&key) }.copied()?;
    if d.vlan != 0 && d.vlan != vlan {
        return None;
    }
    Some(d)
}

#[inline(always)]
fn is_router(slot: u8, mac: &[u8; 6]) -> bool {
    let key = MacKey {
        slot,
        _pad: 0,
        mac: *mac,
    };
    ISPF_ROUTERS.get_ptr(&key).is_some()
}

#[inline(always)]
fn device_by_ip(slot: u8, family: u8, ip: &[u8; 16]) -> Option<DeviceVal> {
    // SAFETY: as in `device_by_mac`.
    unsafe {
        if family == FAMILY_V4 {
            let key = V4Key {
                slot,
                _pad: [0; 3],
                addr: [ip[0], ip[1], ip[2], ip[3]],
            };
            ISPF_DEV_V4.get(&key).copied()
        } else {
            let key = V6Key {
                slot,
                _pad: [0; 3],
                addr: *ip,
            };
            ISPF_DEV_V6.get(&key).copied()
        }
    }
}

#[inline(always)]
fn subnet(slot: u8, family: u8, ip: &[u8; 16]) -> u16 {
    let seg = if family == FAMILY_V4 {
        let key = Key::new(8 + 32, [slot, ip[0], ip[1], ip[2], ip[3]]);
        ISPF_SUBNET_V4.get(&key).copied()
    } else {
        let mut data = [0u8; 17];
        data[0] = slot;
        data[1..].copy_from_slice(ip);
        ISPF_SUBNET_V6.get(&Key::new(8 + 128, data)).copied()
    };
    seg.unwrap_or(0) as u16
}

#[inline(always)]
fn vlan_segment(slot: u8, vlan: u16) -> u16 {
    let idx = slot as u32 * VLAN_SLOTS + (vlan as u32 & 0x0fff);
    ISPF_VLAN.get(idx).copied().unwrap_or(0) as u16
}

/// Whether the packet's source address is device `d`'s, as far as `d`'s
/// own record tells: `None` when only a lookup can say (several
/// addresses of the family, and not the first).
#[inline(always)]
fn own_address(d: &DeviceVal, pkt: &Packet) -> Option<bool> {
    let w = pkt.addr_words();
    let (same, one, many) = if pkt.family == FAMILY_V4 {
        let src = w[0] as u32;
        let mine = u32::from_ne_bytes(d.v4);
        (src == mine, DEV_V4_ONE, DEV_V4_MANY)
    } else {
        // SAFETY: `v6` is 16 bytes at offset 16 of a 4-aligned struct;
        // read as four u32 words (the map value is 8-aligned).
        let mine = unsafe { *(d.v6.as_ptr() as *const [u32; 4]) };
        let src: [u32; 4] = [
            w[0] as u32,
            (w[0] >> 32) as u32,
            w[1] as u32,
            (w[1] >> 32) as u32,
        ];
        (src == mine, DEV_V6_ONE, DEV_V6_MANY)
    };
    if d.flags & one != 0 {
        Some(same)
    } else if d.flags & many != 0 {
        same.then_some(true)
    } else {
        // No address of this family registered: not the device's.
        Some(false)
    }
}

/// The device or, failing that, the subnet that owns `ip`.
#[inline(always)]
fn by_address(slot: u8, family: u8, ip: &[u8; 16]) -> u16 {
    if let Some(d) = device_by_ip(slot, family, ip) {
        return d.segment;
    }
    subnet(slot, family, ip)
}

/// The source segment of an IP packet that is not infrastructure, as
/// [`source`] finds it, remembered per CPU for the sender and address
/// under the current epoch: a sender that opens many flows (a scan) is
/// identified once.
#[inline(always)]
pub fn source_remembered(slot: u8, s: &Settings, pkt: &Packet) -> Result<u16, Spoofed> {
    let w = pkt.addr_words();
    let mix = pkt.sender ^ w[0] ^ w[1].rotate_left(17);
    let index = (mix.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as u32 & (SOURCE_MEMO_ENTRIES - 1);
    let Some(m) = ISPF_SOURCE_MEMO.get_ptr_mut(index) else {
        return source(slot, s, pkt, true);
    };
    // SAFETY: this CPU's own entry; programs do not nest on a CPU.
    let m = unsafe { &mut *m };
    if m.sender == pkt.sender
        && m.ip[0] == w[0]
        && m.ip[1] == w[1]
        && m.family == pkt.family
        && m.epoch == s.epoch
    {
        return if m.spoofed != 0 {
            Err(Spoofed(m.segment))
        } else {
            Ok(m.segment)
        };
    }
    let r = source(slot, s, pkt, true);
    let (segment, spoofed) = match r {
        Ok(seg) => (seg, 0),
        Err(Spoofed(seg)) => (seg, 1),
    };
    m.sender = pkt.sender;
    m.ip = [w[0], w[1]];
    m.family = pkt.family;
    m.epoch = s.epoch;
    m.segment = segment;
    m.spoofed = spoofed;
    r
}

/// Source segment. With `check_spoof` false (infrastructure frames, whose
/// source addresses are legitimately unset or foreign) the spoofing checks
/// are skipped and identification continues as if they had passed.
#[inline(always)]
pub fn source(slot: u8, s: &Settings, pkt: &Packet, check_spoof: bool) -> Result<u16, Spoofed> {
    let is_ip = pkt.family == FAMILY_V4 || pkt.family == FAMILY_V6;
    // 1. A registered device's MAC. A link-local or unspecified IPv6
    // source is not checked against its addresses: hosts make those up.
    if let Some(d) = device_by_mac(slot, &pkt.src_mac(), pkt.vlan) {
        if check_spoof && is_ip && !pkt.src_is_self_assigned() {
            let spoofed = if d.flags & DEV_HAS_IP != 0 {
                match own_address(&d, pkt) {
                    Some(own) => !own,
                    None => !matches!(device_by_ip(slot, pkt.family, &pkt.src_ip),
                                      Some(o) if o.device == d.device),
                }
            } else {
                device_by_ip(slot, pkt.family, &pkt.src_ip).is_some()
            };
            if spoofed {
                return Err(Spoofed(d.segment));
            }
        }
        return Ok(d.segment);
    }
    // 2. A router: identified by IP alone.
    if is_router(slot, &pkt.src_mac()) {
        let seg = if is_ip {
            by_address(slot, pkt.family, &pkt.src_ip)
        } else {
            NO_SEGMENT
        };
        return Ok(if seg != NO_SEGMENT {
            seg
        } else {
            s.world_segment
        });
    }
    // 3. An unclaimed MAC.
    let where_plugged = || {
        let seg = vlan_segment(slot, pkt.vlan);
        if seg != NO_SEGMENT {
            seg
        } else {
            s.unknown_segment
        }
    };
    if is_ip {
        if let Some(d) = device_by_ip(slot, pkt.family, &pkt.src_ip) {
            if check_spoof && d.flags & DEV_HAS_MAC != 0 {
                return Err(Spoofed(where_plugged()));
            }
            return Ok(d.segment);
        }
        let seg = subnet(slot, pkt.family, &pkt.src_ip);
        if seg != NO_SEGMENT {
            return Ok(seg);
        }
    }
    Ok(where_plugged())
}

/// Destination segment, first match wins: the device with the
/// destination IP; the longest subnet containing it; the device with the
/// destination MAC (unicast, not a router's); the segment owning the
/// frame's VLAN (a bridge does not route, so the frame stays inside its
/// VLAN) unless the MAC is a router's; for any other unicast MAC that is not
/// a router's, `unknown_source` (a local host nobody registered); else
/// `world` (beyond a router, or broadcast and multicast on no owned VLAN).
#[inline(always)]
pub fn destination(slot: u8, s: &Settings, pkt: &Packet) -> u16 {
    if pkt.family == FAMILY_V4 || pkt.family == FAMILY_V6 {
        let seg = by_address(slot, pkt.family, &pkt.dst_ip);
        if seg != NO_SEGMENT {
            return seg;
        }
    }
    let dst = pkt.dst_mac();
    if is_router(slot, &dst) {
        return s.world_segment;
    }
    let unicast = pkt.dst_mac_word & 1 == 0;
    if unicast {
        if let Some(d) = device_by_mac(slot, &dst, pkt.vlan) {
            return d.segment;
        }
    }
    let seg = vlan_segment(slot, pkt.vlan);
    if seg != NO_SEGMENT {
        return seg;
    }
    if unicast {
        s.unknown_segment
    } else {
        s.world_segment
    }
}
