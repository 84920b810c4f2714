//! Frame parsing: Ethernet, up to two VLAN tags, ARP/LLDP/STP, IPv4 with
//! options, IPv6 with a bounded extension-header walk, fragments, and the
//! TCP/UDP/SCTP/ICMP/ICMPv6 header fields policy needs.
//!
//! Every read is bounds-checked against the frame end; anything the frame
//! announces but does not contain is `Err(Malformed)`. The parser is generic
//! over [`Frame`], so the same code runs on XDP packet memory in the kernel
//! and on byte slices in host unit tests.

mod frame;
mod ip;
mod packet;
#[cfg(test)]
mod tests;

pub use frame::{Frame, Malformed, SliceFrame, MAX_OFF, OUTER_TAG};
pub use ip::{is_dhcp, is_icmpv6_infrastructure, IPPROTO_IGMP};
pub use packet::{
    Packet, FRAG_FIRST, FRAG_LATER, FRAG_NONE, KIND_INFRA, KIND_IP, KIND_OTHER, MAX_IPV6_EXT,
};

use ip::{parse_ipv4, parse_ipv6};
use packet::clear;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_LLDP: u16 = 0x88cc;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// Parses the Ethernet header and its tags, then the layer the ethertype
/// names, into `pkt`.
#[inline(always)]
pub fn parse<F: Frame>(c: &F, pkt: &mut Packet) -> Result<(), Malformed> {
    let frame_len = c.size();
    let eth = c.bytes::<14>(0)?;
    clear(pkt);
    pkt.kind = KIND_OTHER;
    pkt.frag = FRAG_NONE;
    let mut vlan = 0u16;
    let mut ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let mut off = 14usize;
    // Up to two tags, the offloaded one included; the last one read is the
    // effective VLAN (inner for QinQ).
    let mut tags = 0;
    let outer = c.outer_tag();
    if outer & OUTER_TAG != 0 {
        vlan = outer as u16 & 0x0fff;
        tags = 1;
    }
    while tags < 3 && (ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD) {
        if tags == 2 {
            return Err(Malformed);
        }
        let tag = c.bytes::<4>(off)?;
        vlan = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        off += 4;
        tags += 1;
    }
    pkt.vlan = vlan;
    pkt.l3_off = off as u16;
    pkt.ethertype = ethertype;
    let src = [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]];
    pkt.sender = ispf_common::l2_fingerprint(&src, vlan);
    pkt.dst_mac_word = ispf_common::mac_word(&[eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]]);

    match ethertype {
        ETH_P_IP => parse_ipv4(c, off, frame_len, pkt)?,
        ETH_P_IPV6 => parse_ipv6(c, off, frame_len, pkt)?,
        ETH_P_ARP => {
            // Ethernet/IPv4 ARP is 28 bytes.
            c.bytes::<28>(off)?;
            pkt.kind = KIND_INFRA;
        }
        ETH_P_LLDP => pkt.kind = KIND_INFRA,
        t if t <= 1500 => {
            // 802.3 length frame: spanning tree is LLC DSAP/SSAP 0x42.
            let llc = c.bytes::<3>(off)?;
            if llc[0] == 0x42 && llc[1] == 0x42 {
                pkt.kind = KIND_INFRA;
            }
        }
        _ => {}
    }
    Ok(())
}
