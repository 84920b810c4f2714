//! The README's care unit (`examples/care-unit.json`) as a scripted
//! sequence of frames with the verdict each must get. Order matters: later
//! frames rely on flows and fragments opened by earlier ones. The same
//! sequence is the bundled capture `examples/care-unit.pcap`.

use crate::frames::*;

mod flows;
mod frames;
mod identity;

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

/// The PIS server trying SSH on pump 1 from `sport`: denied, a new flow
/// per source port (a scan, or a flood of denied flows).
pub fn pis_ssh_to_pump(sport: u16) -> Vec<u8> {
    eth(
        mac(PUMP1),
        mac(PIS),
        &[],
        ETH_IP,
        &ipv4(
            v4("10.50.0.10"),
            v4("10.10.0.11"),
            6,
            &tcp(sport, 22, TCP_SYN),
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
/// The case of `frame`: `pass` or not, for `reason`, from segment `src` to
/// segment `dst`.
fn case(
    name: &'static str,
    frame: Vec<u8>,
    pass: bool,
    reason: &'static str,
    src: &'static str,
    dst: &'static str,
) -> Case {
    Case {
        name,
        frame,
        pass,
        reason,
        src,
        dst,
    }
}

const P1_IP: &str = "10.10.0.11";
const PIS_IP: &str = "10.50.0.10";

/// An ICMPv6 neighbour solicitation's body (type 135, zero target).
fn neighbour_solicitation() -> Vec<u8> {
    let mut m = icmp(135, 0);
    m.extend_from_slice(&[0u8; 16]);
    m
}

pub fn scenario() -> Vec<Case> {
    [flows::cases(), identity::cases(), frames::cases()]
        .into_iter()
        .flatten()
        .collect()
}
