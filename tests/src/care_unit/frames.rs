//! Frames beyond plain flows: infrastructure protocols, other
//! ethertypes, IPv6 extension headers, malformed headers, fragments, and a
//! reset that ends a flow.

use super::*;

pub(super) fn cases() -> Vec<Case> {
    let c = case;
    let (p1, pis) = (P1_IP, PIS_IP);
    let ns = neighbour_solicitation();
    vec![
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
            "DHCP discover (broadcast on the guest VLAN: guest's)",
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
            "guest",
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
