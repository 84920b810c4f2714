//! Builds Ethernet frames byte by byte, including the malformed ones a
//! packet library would refuse to write. Checksums are left zero: the
//! datapath does not verify them.

pub type Mac = [u8; 6];

pub const ETH_IP: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_LLDP: u16 = 0x88cc;

/// Ethernet header plus tags (outer first). With two tags the outer one is
/// 802.1ad (0x88a8), otherwise 802.1Q.
pub fn eth(dst: Mac, src: Mac, vlans: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(64 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for (i, v) in vlans.iter().enumerate() {
        let tpid: u16 = if vlans.len() >= 2 && i == 0 {
            0x88a8
        } else {
            0x8100
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Frag {
    /// Offset in 8-byte units.
    pub offset: u16,
    pub more: bool,
    pub id: u32,
}

/// IPv4 header (with `option_words` 4-byte words of NOP options) + payload.
pub fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    payload: &[u8],
    frag: Frag,
    option_words: u8,
) -> Vec<u8> {
    let hlen = 20 + option_words as usize * 4;
    let total = (hlen + payload.len()) as u16;
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | (5 + option_words);
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&(frag.id as u16).to_be_bytes());
    let ff = (frag.offset & 0x1fff) | if frag.more { 0x2000 } else { 0 };
    h[6..8].copy_from_slice(&ff.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    for b in &mut h[20..] {
        *b = 1; // NOP option
    }
    h.extend_from_slice(payload);
    h
}

/// An IPv6 extension header to put in a chain.
#[derive(Clone, Copy, Debug)]
pub enum Ext {
    HopByHop,
    Routing,
    DestOpts,
    Auth,
    Fragment(Frag),
}

impl Ext {
    pub fn number(&self) -> u8 {
        match self {
            Ext::HopByHop => 0,
            Ext::Routing => 43,
            Ext::DestOpts => 60,
            Ext::Auth => 51,
            Ext::Fragment(_) => 44,
        }
    }
}

/// IPv6 header, extension chain, then the upper-layer payload of `proto`.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], exts: &[Ext], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, |n| n.number());
        match e {
            Ext::HopByHop | Ext::Routing | Ext::DestOpts => {
                // 8 bytes: next, len 0, then 6 bytes of PadN / routing data.
                body.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
            }
            Ext::Auth => {
                // len field 2 => (2 + 2) * 4 = 16 bytes.
                let mut a = vec![0u8; 16];
                a[0] = next;
                a[1] = 2;
                body.extend_from_slice(&a);
            }
            Ext::Fragment(f) => {
                let field = (f.offset << 3) | f.more as u16;
                body.push(next);
                body.push(0);
                body.extend_from_slice(&field.to_be_bytes());
                body.extend_from_slice(&f.id.to_be_bytes());
            }
        }
    }
    body.extend_from_slice(payload);
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
    h[6] = exts.first().map_or(proto, |e| e.number());
    h[7] = 64;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    h.extend_from_slice(&body);
    h
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t
}

pub fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(data);
    u
}

pub fn sctp(sport: u16, dport: u16) -> Vec<u8> {
    let mut s = vec![0u8; 12];
    s[0..2].copy_from_slice(&sport.to_be_bytes());
    s[2..4].copy_from_slice(&dport.to_be_bytes());
    s
}

/// ICMP or ICMPv6 header with an echo identifier.
pub fn icmp(kind: u8, id: u16) -> Vec<u8> {
    let mut i = vec![0u8; 8];
    i[0] = kind;
    i[4..6].copy_from_slice(&id.to_be_bytes());
    i
}

/// Ethernet/IPv4 ARP request.
pub fn arp(sender_mac: Mac, sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&sender_mac);
    a.extend_from_slice(&sender_ip);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target_ip);
    a
}

/// 802.3 + LLC spanning-tree BPDU payload (the caller passes its length as
/// the ethertype field).
pub fn stp_bpdu() -> Vec<u8> {
    let mut b = vec![0x42, 0x42, 0x03];
    b.extend_from_slice(&[0u8; 35]);
    b
}

pub fn v4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>()
        .expect("test IPv4 literal")
        .octets()
}

pub fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>()
        .expect("test IPv6 literal")
        .octets()
}

pub fn mac(s: &str) -> Mac {
    ispf::policy::parse_mac(s).expect("test MAC literal")
}

/// Swaps source and destination at every layer, for building replies.
pub fn reply_of(frame: &[u8]) -> Option<Vec<u8>> {
    let mut f = frame.to_vec();
    if f.len() < 14 {
        return None;
    }
    let (d, s) = (f[0..6].to_vec(), f[6..12].to_vec());
    f[0..6].copy_from_slice(&s);
    f[6..12].copy_from_slice(&d);
    let mut off = 12;
    let mut et = u16::from_be_bytes([f[off], f[off + 1]]);
    while et == 0x8100 || et == 0x88a8 {
        off += 4;
        if f.len() < off + 2 {
            return None;
        }
        et = u16::from_be_bytes([f[off], f[off + 1]]);
    }
    let l3 = off + 2;
    let (l4, proto) = match et {
        ETH_IP if f.len() >= l3 + 20 => {
            let (a, b) = (f[l3 + 12..l3 + 16].to_vec(), f[l3 + 16..l3 + 20].to_vec());
            f[l3 + 12..l3 + 16].copy_from_slice(&b);
            f[l3 + 16..l3 + 20].copy_from_slice(&a);
            (l3 + (f[l3] & 0x0f) as usize * 4, f[l3 + 9])
        }
        ETH_IPV6 if f.len() >= l3 + 40 => {
            let (a, b) = (f[l3 + 8..l3 + 24].to_vec(), f[l3 + 24..l3 + 40].to_vec());
            f[l3 + 8..l3 + 24].copy_from_slice(&b);
            f[l3 + 24..l3 + 40].copy_from_slice(&a);
            if f[l3 + 6] != 6 && f[l3 + 6] != 17 && f[l3 + 6] != 58 && f[l3 + 6] != 132 {
                return Some(f);
            }
            (l3 + 40, f[l3 + 6])
        }
        _ => return Some(f),
    };
    if f.len() < l4 + 4 {
        return Some(f);
    }
    match proto {
        6 | 17 | 132 => {
            let (a, b) = (f[l4..l4 + 2].to_vec(), f[l4 + 2..l4 + 4].to_vec());
            f[l4..l4 + 2].copy_from_slice(&b);
            f[l4 + 2..l4 + 4].copy_from_slice(&a);
        }
        1 if f[l4] == 8 => f[l4] = 0,
        58 if f[l4] == 128 => f[l4] = 129,
        _ => {}
    }
    Some(f)
}
