//! The parsed headers as the datapath keeps them ([`Packet`]), with the
//! word-wise stores and loads that keep the per-packet path free of byte
//! loops and store-forwarding stalls.

use ispf_common::FAMILY_V6;

/// What kind of frame this is, for the decision.
pub const KIND_IP: u8 = 0;
/// ARP, LLDP, STP, DHCP, ICMPv6 ND: judged by `defaults.infrastructure`.
pub const KIND_INFRA: u8 = 1;
/// Any other ethertype: judged by `defaults.default_action`.
pub const KIND_OTHER: u8 = 2;

pub const FRAG_NONE: u8 = 0;
/// Offset 0 with more fragments following: judged, verdict remembered.
pub const FRAG_FIRST: u8 = 1;
/// Offset > 0: takes the first fragment's verdict.
pub const FRAG_LATER: u8 = 2;

/// Longest IPv6 extension-header chain the datapath walks; longer chains are
/// malformed (an attacker must not hide the transport header past our reach).
pub const MAX_IPV6_EXT: usize = 6;

/// The parsed headers. 8-aligned, and the fields the per-packet fast path
/// reads as words are written as words: a word load of bytes that were
/// just stored piecemeal stalls the CPU's store forwarding (several ns per
/// packet, measured), and byte-aligned copies compile to calls of a byte
/// loop on BPF.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    /// [`ispf_common::l2_fingerprint`] of the sender (MAC and VLAN).
    pub sender: u64,
    /// [`ispf_common::mac_word`] of the destination MAC.
    pub dst_mac_word: u64,
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub frag_id: u32,
    /// Effective VLAN: the only tag, or the inner tag of QinQ; 0 untagged.
    pub vlan: u16,
    pub kind: u8,
    pub family: u8,
    pub proto: u8,
    pub frag: u8,
    pub more_frags: u8,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub _pad: u8,
    /// Offset of what follows the Ethernet header and its tags.
    pub l3_off: u16,
    /// Offset of the transport header (0: none parsed).
    pub l4_off: u16,
    /// The ethertype after the VLAN tags.
    pub ethertype: u16,
}

const PACKET_WORDS: usize = 9;

/// The MAC in the low 48 bits of a [`ispf_common::mac_word`].
#[inline(always)]
fn mac_bytes(w: u64) -> [u8; 6] {
    let b = w.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}
const _: () = assert!(core::mem::size_of::<Packet>() == PACKET_WORDS * 8);

impl Packet {
    /// Source and destination address as four words in memory order
    /// (`[src 0..8, src 8..16, dst 0..8, dst 8..16]`), each one aligned
    /// load. LLVM loses the struct's alignment through `&[u8; 16]`
    /// references and falls back to byte loads and shifts.
    #[inline(always)]
    pub fn addr_words(&self) -> [u64; 4] {
        // SAFETY: the addresses are the first 32 bytes of this 8-aligned
        // struct, and any bytes are valid u64s.
        unsafe { *(self as *const Packet as *const [u64; 4]) }
    }

    /// An IPv6 source a host makes up itself: link-local (`fe80::/10`) or
    /// unspecified (`::`, duplicate address detection). A registered
    /// device sending from one is identified by its MAC alone.
    #[inline(always)]
    pub fn src_is_self_assigned(&self) -> bool {
        if self.family != FAMILY_V6 {
            return false;
        }
        let w = self.addr_words();
        let first = w[0].to_ne_bytes();
        (first[0] == 0xfe && first[1] & 0xc0 == 0x80) || (w[0] | w[1]) == 0
    }

    /// The source MAC (kept only inside [`Packet::sender`]).
    #[inline(always)]
    pub fn src_mac(&self) -> [u8; 6] {
        mac_bytes(self.sender)
    }

    #[inline(always)]
    pub fn dst_mac(&self) -> [u8; 6] {
        mac_bytes(self.dst_mac_word)
    }

    /// Both ports as one word, in memory order (`sport` first).
    #[inline(always)]
    pub fn ports_word(&self) -> u32 {
        // SAFETY: `sport`, `dport` are bytes 48..52 of this 8-aligned struct.
        unsafe { *(self as *const Packet as *const u32).add(12) }
    }

    #[inline(always)]
    pub(super) fn set_ports(&mut self, sport: [u8; 2], dport: [u8; 2]) {
        let w = u32::from_ne_bytes([sport[0], sport[1], dport[0], dport[1]]);
        // SAFETY: as in `ports_word`.
        unsafe { *(self as *mut Packet as *mut u32).add(12) = w };
    }
}

/// Zeroes `pkt` with word stores. Volatile, because LLVM merges plain
/// stores into a `memset` call, which on BPF is a byte loop in a
/// subprogram: several times slower on the per-packet path.
#[inline(always)]
pub(super) fn clear(pkt: &mut Packet) {
    let words = pkt as *mut Packet as *mut u64;
    let mut i = 0;
    while i < PACKET_WORDS {
        // SAFETY: Packet is whole words, 8-aligned, and all-zero is valid.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
}

/// Stores the addresses with word stores. The fast path reads them back
/// as words (`Packet::addr_words`); byte stores followed by a word load of
/// the same bytes stall the CPU's store forwarding, which measurably cost
/// more than the byte loads here do.
#[inline(always)]
pub(super) fn set_addr4(pkt: &mut Packet, src: &[u8], dst: &[u8]) {
    let word = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as u64;
    let (s, d) = (word(src), word(dst));
    // SAFETY: the addresses are the first 32 bytes of the 8-aligned Packet.
    unsafe { *(pkt as *mut Packet as *mut [u64; 4]) = [s, 0, d, 0] };
}

#[inline(always)]
pub(super) fn set_addr6(pkt: &mut Packet, h: &[u8; 40]) {
    let word = |i: usize| {
        u64::from_ne_bytes([
            h[i],
            h[i + 1],
            h[i + 2],
            h[i + 3],
            h[i + 4],
            h[i + 5],
            h[i + 6],
            h[i + 7],
        ])
    };
    let w = [word(8), word(16), word(24), word(32)];
    // SAFETY: as in `set_addr4`.
    unsafe { *(pkt as *mut Packet as *mut [u64; 4]) = w };
}
