//! Writes the care-unit scenario as a classic pcap (the bundled
//! `examples/care-unit.pcap`): `cargo run -p ispf-tests --bin write-demo-pcap -- FILE`.

use std::{fs::File, time::Duration};

use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    DataLink,
};

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/care-unit.pcap".into());
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(File::create(&path)?, header)?;
    for (i, c) in ispf_tests::care_unit::scenario().iter().enumerate() {
        let ts = Duration::from_millis(1_700_000_000_000 + i as u64 * 10);
        w.write_packet(&PcapPacket::new(ts, c.frame.len() as u32, &c.frame))?;
    }
    eprintln!("wrote {path}");
    Ok(())
}
