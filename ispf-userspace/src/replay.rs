//! Reading captures for `ispf replay`: classic pcap and pcapng, Ethernet
//! link type only. Frames are returned in file order.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
};

use pcap_file::{
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
    DataLink,
};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read capture {}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a pcap or pcapng capture (it starts with bytes {magic:02x?}); write captures with tcpdump -w or tshark -w", file.display())]
    NotACapture { file: PathBuf, magic: Vec<u8> },
    #[error("{}: frame {frame}: {message}; the capture is truncated or corrupt", file.display())]
    Corrupt {
        file: PathBuf,
        frame: usize,
        message: String,
    },
    #[error("{}: frame {frame} has link type {link:?}; ispf judges Ethernet frames only (capture on the bridge port with tcpdump -i IF, not -i any)", file.display())]
    LinkType {
        file: PathBuf,
        frame: usize,
        link: DataLink,
    },
}

/// Reads every frame of `file`.
pub fn read_frames(file: &Path) -> Result<Vec<Vec<u8>>, CaptureError> {
    let read_err = |source| CaptureError::Read {
        file: file.to_owned(),
        source,
    };
    let mut f = File::open(file).map_err(read_err)?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(read_err)?;
    drop(f);
    let reader = BufReader::new(File::open(file).map_err(read_err)?);
    let corrupt = |frame: usize, e: pcap_file::PcapError| CaptureError::Corrupt {
        file: file.to_owned(),
        frame,
        message: e.to_string(),
    };
    let mut frames = Vec::new();
    match magic {
        [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0xc3, 0xd4]
        | [0x4d, 0x3c, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d] => {
            let mut r = PcapReader::new(reader).map_err(|e| corrupt(0, e))?;
            let link = r.header().datalink;
            if link != DataLink::ETHERNET {
                return Err(CaptureError::LinkType {
                    file: file.to_owned(),
                    frame: 1,
                    link,
                });
            }
            while let Some(p) = r.next_packet() {
                let p = p.map_err(|e| corrupt(frames.len() + 1, e))?;
                frames.push(p.data.into_owned());
            }
        }
        [0x0a, 0x0d, 0x0d, 0x0a] => {
            let mut r = PcapNgReader::new(reader).map_err(|e| corrupt(0, e))?;
            let mut links = Vec::new();
            while let Some(b) = r.next_block() {
                match b.map_err(|e| corrupt(frames.len() + 1, e))? {
                    Block::InterfaceDescription(i) => links.push(i.linktype),
                    Block::SectionHeader(_) => links.clear(),
                    Block::EnhancedPacket(p) => {
                        let frame = frames.len() + 1;
                        let link =
                            links.get(p.interface_id as usize).copied().ok_or_else(|| {
                                CaptureError::Corrupt {
                                    file: file.to_owned(),
                                    frame,
                                    message: format!(
                                        "packet names interface {} which was never described",
                                        p.interface_id
                                    ),
                                }
                            })?;
                        if link != DataLink::ETHERNET {
                            return Err(CaptureError::LinkType {
                                file: file.to_owned(),
                                frame,
                                link,
                            });
                        }
                        frames.push(p.data.into_owned());
                    }
                    Block::SimplePacket(p) => {
                        let frame = frames.len() + 1;
                        if links.first() != Some(&DataLink::ETHERNET) {
                            return Err(CaptureError::LinkType {
                                file: file.to_owned(),
                                frame,
                                link: links.first().copied().unwrap_or(DataLink::Unknown(0)),
                            });
                        }
                        frames.push(p.data.into_owned());
                    }
                    _ => {}
                }
            }
        }
        _ => {
            return Err(CaptureError::NotACapture {
                file: file.to_owned(),
                magic: magic[..n].to_vec(),
            })
        }
    }
    Ok(frames)
}
