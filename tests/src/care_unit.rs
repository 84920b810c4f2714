//! The README's care unit (`examples/care-unit.json`) as a scripted
//! sequence of frames with the verdict each must get. Order matters: later
//! frames rely on flows and fragments opened by earlier ones. The same
//! sequence is the bundled capture `examples/care-unit.pcap`.

use crate::frames::*;

pub struct Case {
    pub name: &'static str,
    pub frame: Vec<u8>,
    pub pass: bool,
    pub reason: &'static str,
    pub src: &'static str,
    pub dst: &'static str,
}

pub const PUMP1: &str = "02:00:00:00:10:01";
pub const PUMP2: &str = "02:00:00:00:10:02";
pub const MON1: &str = "02:00:00:00:20:01";
pub const MON2: &str = "02:00:00:00:20:02";
pub const WS: &str = "02:00:00:00:30:01";
pub const PIS: &str = "02:00:00:00:50:01";
pub const ROUTER: &str = "02:00:00:00:00:fe";
pub const LAPTOP: &str = "02:00:00:00:99:01";
pub const LAPTOP2: &str = "02:00:00:00:99:02";

/// The care unit's most common flow: pump 1 sending HL7 (TCP 2575) to the
/// PIS server, from `sport` with TCP `flags`.
pub fn pump_hl7(sport: u16, flags: u8) -> Vec<u8> {
    eth(
        mac(PIS),
        mac(PUMP1),
        &[],
        ETH_IP,
        &ipv4(
            v4("10.10.0.11"),
            v4("10.50.0.10"),
            6,
            &tcp(sport, 2575, flags),
            Frag::default(),
            0,
        ),
    )
}

pub fn policy_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/care-unit.json")
}

fn ip4(
    src_mac: &str,
    dst_mac: &str,
    vlans: &[u16],
    s: &str,
    d: &str,
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    eth(
        mac(dst_mac),
        mac(src_mac),
        vlans,
        ETH_IP,
        &ipv4(v4(s), v4(d), proto, l4, Frag::default(), 0),
    )
}

fn frag4(
    src_mac: &str,
    dst_mac: &str,
    s: &str,
    d: &str,
    proto: u8,
    l4: &[u8],
    frag: Frag,
) -> Vec<u8> {
    eth(
        mac(dst_mac),
        mac(src_mac),
        &[],
        ETH_IP,
        &ipv4(v4(s), v4(d), proto, l4, frag, 0),
    )
}

pub fn scenario() -> Vec<Case> {
    let c = |name, frame, pass, reason, src, dst| Case {
        name,
        frame,
        pass,
        reason,
        src,
        dst,
    };
    let (p1, pis) = ("10.10.0.11", "10.50.0.10");
    let ns = {
        let mut m = icmp(135, 0);
        m.extend_from_slice(&[0u8; 16]);
        m
    };
    vec![
        c(
            "pump opens HL7 to the PIS",
            ip4(PUMP1, PIS, &[], p1, pis, 6, &tcp(40000, 2575, TCP_SYN)),
            true,
            "allowed",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "PIS answers the pump",
            ip4(
                PIS,
                PUMP1,
                &[],
                pis,
                p1,
                6,
                &tcp(2575, 40000, TCP_SYN | TCP_ACK),
            ),
            true,
            "reply",
            "pis-servers",
            "infusion-pumps",
        ),
        c(
            "pump continues its flow",
            ip4(PUMP1, PIS, &[], p1, pis, 6, &tcp(40000, 2575, TCP_ACK)),
            true,
            "allowed",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "pump to PIS HTTPS: no rule",
            ip4(PUMP1, PIS, &[], p1, pis, 6, &tcp(40001, 443, TCP_SYN)),
            false,
            "denied_default",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "PIS opens a connection to a pump",
            ip4(PIS, PUMP1, &[], pis, p1, 6, &tcp(50000, 22, TCP_SYN)),
            false,
            "denied_default",
            "pis-servers",
            "infusion-pumps",
        ),
        c(
            "pump to pump (intra allow)",
            ip4(
                PUMP1,
                PUMP2,
                &[],
                p1,
                "10.10.0.12",
                17,
                &udp(5000, 5000, b"x"),
            ),
            true,
            "intra_allowed",
            "infusion-pumps",
            "infusion-pumps",
        ),
        c(
            "monitor to monitor (intra deny)",
            ip4(
                MON1,
                MON2,
                &[],
                "10.20.0.21",
                "10.20.0.22",
                6,
                &tcp(40000, 80, TCP_SYN),
            ),
            false,
            "intra_denied",
            "patient-monitors",
            "patient-monitors",
        ),
        c(
            "pump pings the PIS (* -> pis icmp)",
            ip4(PUMP1, PIS, &[], p1, pis, 1, &icmp(8, 7)),
            true,
            "allowed",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "echo reply to the pump",
            ip4(PIS, PUMP1, &[], pis, p1, 1, &icmp(0, 7)),
            true,
            "reply",
            "pis-servers",
            "infusion-pumps",
        ),
        c(
            "PIS pings a pump",
            ip4(PIS, PUMP1, &[], pis, p1, 1, &icmp(8, 9)),
            false,
            "denied_default",
            "pis-servers",
            "infusion-pumps",
        ),
        c(
            "workstation on VLAN 130 to DICOM",
            ip4(
                WS,
                PIS,
                &[130],
                "10.30.0.31",
                pis,
                6,
                &tcp(40000, 11113, TCP_SYN),
            ),
            true,
            "allowed",
            "clinical-workstations",
            "pis-servers",
        ),
        c(
            "workstation MAC off its VLAN borrows its own IP",
            ip4(
                WS,
                PIS,
                &[],
                "10.30.0.31",
                pis,
                6,
                &tcp(40000, 443, TCP_SYN),
            ),
            false,
            "spoofed",
            "quarantine",
            "pis-servers",
        ),
        c(
            "pump sends with the other pump's IP",
            ip4(
                PUMP1,
                PIS,
                &[],
                "10.10.0.12",
                pis,
                6,
                &tcp(40000, 2575, TCP_SYN),
            ),
            false,
            "spoofed",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "laptop borrows a pump's IP",
            ip4(LAPTOP, PIS, &[], p1, pis, 6, &tcp(40000, 2575, TCP_SYN)),
            false,
            "spoofed",
            "quarantine",
            "pis-servers",
        ),
        c(
            "guest laptop to the internet via the router",
            ip4(
                LAPTOP,
                ROUTER,
                &[140],
                "10.99.0.5",
                "93.184.216.34",
                6,
                &tcp(40000, 443, TCP_SYN),
            ),
            true,
            "allowed",
            "guest",
            "world",
        ),
        c(
            "guest pings the PIS (guest -> * beats * -> pis)",
            ip4(LAPTOP, PIS, &[140], "10.99.0.5", pis, 1, &icmp(8, 1)),
            false,
            "denied_rule",
            "guest",
            "pis-servers",
        ),
        c(
            "guest laptop on QinQ (inner tag 140)",
            ip4(
                LAPTOP,
                ROUTER,
                &[300, 140],
                "10.99.0.5",
                "93.184.216.34",
                17,
                &udp(40000, 53, b"q"),
            ),
            true,
            "allowed",
            "guest",
            "world",
        ),
        c(
            "unknown laptop is quarantined",
            ip4(
                LAPTOP,
                PIS,
                &[],
                "10.99.0.7",
                pis,
                6,
                &tcp(40000, 443, TCP_SYN),
            ),
            false,
            "denied_default",
            "quarantine",
            "pis-servers",
        ),
        c(
            "quarantined laptop pings the PIS (ping-pis)",
            ip4(LAPTOP, PIS, &[], "10.99.0.7", pis, 1, &icmp(8, 3)),
            true,
            "allowed",
            "quarantine",
            "pis-servers",
        ),
        c(
            "the echo reply reaches the quarantined laptop",
            ip4(PIS, LAPTOP, &[], pis, "10.99.0.7", 1, &icmp(0, 3)),
            true,
            "reply",
            "pis-servers",
            "quarantine",
        ),
        c(
            "an unregistered destination is world, even on the same bridge",
            ip4(
                LAPTOP,
                LAPTOP2,
                &[],
                "10.99.0.7",
                "10.99.0.8",
                6,
                &tcp(40000, 445, TCP_SYN),
            ),
            false,
            "denied_default",
            "quarantine",
            "world",
        ),
        c(
            "router forwards from the PIS subnet",
            ip4(
                ROUTER,
                PUMP1,
                &[],
                "10.50.0.99",
                p1,
                6,
                &tcp(40000, 22, TCP_SYN),
            ),
            false,
            "denied_default",
            "pis-servers",
            "infusion-pumps",
        ),
        c(
            "router forwards from outside",
            ip4(
                ROUTER,
                PUMP1,
                &[],
                "198.51.100.7",
                p1,
                6,
                &tcp(40000, 22, TCP_SYN),
            ),
            false,
            "denied_default",
            "world",
            "infusion-pumps",
        ),
        c(
            "ARP from the laptop",
            eth(
                [0xff; 6],
                mac(LAPTOP),
                &[],
                ETH_ARP,
                &arp(mac(LAPTOP), v4("10.99.0.7"), v4(pis)),
            ),
            true,
            "infrastructure",
            "quarantine",
            "world",
        ),
        c(
            "DHCP discover",
            ip4(
                LAPTOP,
                "ff:ff:ff:ff:ff:ff",
                &[140],
                "0.0.0.0",
                "255.255.255.255",
                17,
                &udp(68, 67, &[0u8; 32]),
            ),
            true,
            "infrastructure",
            "guest",
            "world",
        ),
        c(
            "IPv6 neighbour solicitation",
            eth(
                [0x33, 0x33, 0xff, 0, 0, 0x10],
                mac(MON1),
                &[],
                ETH_IPV6,
                &ipv6(v6("fd00:20::21"), v6("ff02::1:ff00:10"), &[], 58, &ns),
            ),
            true,
            "infrastructure",
            "patient-monitors",
            "world",
        ),
        c(
            "LLDP from a pump",
            eth(
                [0x01, 0x80, 0xc2, 0, 0, 0x0e],
                mac(PUMP1),
                &[],
                ETH_LLDP,
                &[0u8; 20],
            ),
            true,
            "infrastructure",
            "infusion-pumps",
            "world",
        ),
        c(
            "spanning-tree BPDU",
            {
                let b = stp_bpdu();
                eth(
                    [0x01, 0x80, 0xc2, 0, 0, 0],
                    mac(ROUTER),
                    &[],
                    b.len() as u16,
                    &b,
                )
            },
            true,
            "infrastructure",
            "world",
            "world",
        ),
        c(
            "other ethertype follows default_action",
            eth(mac(PIS), mac(PUMP1), &[], 0x88b5, &[0u8; 30]),
            false,
            "denied_default",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "monitor over IPv6 with hop-by-hop and dest-opts headers",
            eth(
                mac(PIS),
                mac(MON1),
                &[],
                ETH_IPV6,
                &ipv6(
                    v6("fd00:20::21"),
                    v6("fd00:50::10"),
                    &[Ext::HopByHop, Ext::DestOpts],
                    6,
                    &tcp(40000, 2575, TCP_SYN),
                ),
            ),
            true,
            "allowed",
            "patient-monitors",
            "pis-servers",
        ),
        c(
            "IPv6 chain longer than the datapath walks",
            eth(
                mac(PIS),
                mac(MON1),
                &[],
                ETH_IPV6,
                &ipv6(
                    v6("fd00:20::21"),
                    v6("fd00:50::10"),
                    &[
                        Ext::HopByHop,
                        Ext::DestOpts,
                        Ext::Routing,
                        Ext::Auth,
                        Ext::DestOpts,
                        Ext::Routing,
                        Ext::DestOpts,
                    ],
                    6,
                    &tcp(40000, 2575, TCP_SYN),
                ),
            ),
            false,
            "malformed",
            "-",
            "-",
        ),
        c(
            "three VLAN tags",
            ip4(
                LAPTOP,
                PIS,
                &[10, 20, 30],
                "10.99.0.7",
                pis,
                6,
                &tcp(1, 2, TCP_SYN),
            ),
            false,
            "malformed",
            "-",
            "-",
        ),
        c(
            "IPv4 header length below 20 bytes",
            {
                let mut f = ip4(PUMP1, PIS, &[], p1, pis, 6, &tcp(40000, 2575, TCP_SYN));
                f[14] = 0x44;
                f
            },
            false,
            "malformed",
            "-",
            "-",
        ),
        c(
            "TCP header cut short",
            {
                let mut ip = ipv4(
                    v4(p1),
                    v4(pis),
                    6,
                    &tcp(40000, 2575, TCP_SYN)[..12],
                    Frag::default(),
                    0,
                );
                ip.truncate(32);
                eth(mac(PIS), mac(PUMP1), &[], ETH_IP, &ip)
            },
            false,
            "malformed",
            "-",
            "-",
        ),
        c(
            "IPv4 options (IHL 7) are fine",
            eth(
                mac(PIS),
                mac(PUMP1),
                &[],
                ETH_IP,
                &ipv4(
                    v4(p1),
                    v4(pis),
                    6,
                    &tcp(40002, 2575, TCP_SYN),
                    Frag::default(),
                    2,
                ),
            ),
            true,
            "allowed",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "later fragment before its first fragment",
            frag4(
                PUMP1,
                PIS,
                p1,
                pis,
                6,
                &[0u8; 16],
                Frag {
                    offset: 3,
                    more: false,
                    id: 77,
                },
            ),
            false,
            "fragment_untracked",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "first fragment of an allowed datagram",
            frag4(
                PUMP1,
                PIS,
                p1,
                pis,
                6,
                &tcp(40003, 2575, TCP_SYN),
                Frag {
                    offset: 0,
                    more: true,
                    id: 78,
                },
            ),
            true,
            "allowed",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "middle fragment follows the first",
            frag4(
                PUMP1,
                PIS,
                p1,
                pis,
                6,
                &[0u8; 16],
                Frag {
                    offset: 3,
                    more: true,
                    id: 78,
                },
            ),
            true,
            "allowed",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "last fragment follows the first",
            frag4(
                PUMP1,
                PIS,
                p1,
                pis,
                6,
                &[0u8; 16],
                Frag {
                    offset: 5,
                    more: false,
                    id: 78,
                },
            ),
            true,
            "allowed",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "first fragment of a denied datagram",
            frag4(
                PUMP1,
                PIS,
                p1,
                pis,
                17,
                &udp(40000, 2575, &[0u8; 8]),
                Frag {
                    offset: 0,
                    more: true,
                    id: 79,
                },
            ),
            false,
            "denied_default",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "its later fragment cannot bypass",
            frag4(
                PUMP1,
                PIS,
                p1,
                pis,
                17,
                &[0u8; 16],
                Frag {
                    offset: 2,
                    more: false,
                    id: 79,
                },
            ),
            false,
            "denied_default",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "pump resets its HL7 flow",
            ip4(PUMP1, PIS, &[], p1, pis, 6, &tcp(40000, 2575, TCP_RST)),
            true,
            "allowed",
            "infusion-pumps",
            "pis-servers",
        ),
        c(
            "the PIS can no longer answer on it",
            ip4(PIS, PUMP1, &[], pis, p1, 6, &tcp(2575, 40000, TCP_ACK)),
            false,
            "denied_default",
            "pis-servers",
            "infusion-pumps",
        ),
    ]
}
