//! Reading the pcap files that [`crate::Lab::capture`] writes, with the
//! `pcap-file` crate, so tests can look at frames.

use std::path::Path;

use pcap_file::pcap::PcapReader;

use crate::LabError;

/// Link type 1: Ethernet frames (what tcpdump writes for a veth).
pub const LINKTYPE_ETHERNET: u32 = 1;

/// The frames of one capture file.
#[derive(Debug, Clone)]
pub struct Pcap {
    /// Link-layer header type of every frame (see [`LINKTYPE_ETHERNET`]).
    pub linktype: u32,
    /// The captured bytes of each frame, in order.
    pub frames: Vec<Vec<u8>>,
}

/// Parses a classic (not pcapng) capture file, either byte order, micro- or
/// nanosecond timestamps.
pub fn read_pcap(path: &Path) -> Result<Pcap, LabError> {
    let file =
        std::fs::File::open(path).map_err(LabError::io(format!("reading {}", path.display())))?;
    let bad = |why: pcap_file::PcapError| {
        LabError::InvalidSpec(format!("{} is not a pcap file: {why}", path.display()))
    };
    let mut reader = PcapReader::new(file).map_err(bad)?;
    let linktype = u32::from(reader.header().datalink);
    let mut frames = Vec::new();
    while let Some(packet) = reader.next_packet() {
        frames.push(packet.map_err(bad)?.data.into_owned());
    }
    Ok(Pcap { linktype, frames })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic pcap file: global header, then (incl_len, data) records.
    fn file(big_endian: bool, magic: u32, linktype: u32, frames: &[&[u8]]) -> Vec<u8> {
        let w = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w16 = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = Vec::new();
        f.extend(w(magic));
        f.extend(w16(2));
        f.extend(w16(4));
        f.extend(w(0)); // thiszone
        f.extend(w(0)); // sigfigs
        f.extend(w(262_144)); // snaplen
        f.extend(w(linktype));
        for (i, frame) in frames.iter().enumerate() {
            f.extend(w(1_700_000_000 + i as u32));
            f.extend(w(1000));
            f.extend(w(frame.len() as u32));
            f.extend(w(frame.len() as u32));
            f.extend_from_slice(frame);
        }
        f
    }

    fn read(bytes: &[u8]) -> Result<Pcap, LabError> {
        let dir = std::env::temp_dir().join(format!("rvs-lab-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.pcap", bytes.len()));
        std::fs::write(&path, bytes).unwrap();
        let r = read_pcap(&path);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn both_byte_orders_and_timestamp_resolutions() {
        let frames: [&[u8]; 2] = [b"\x01\x02\x03", b"frame two"];
        for (big_endian, magic) in [
            (false, 0xa1b2_c3d4),
            (true, 0xa1b2_c3d4),
            (true, 0xa1b2_3c4d),
        ] {
            let p = read(&file(big_endian, magic, LINKTYPE_ETHERNET, &frames)).unwrap();
            assert_eq!(p.linktype, LINKTYPE_ETHERNET);
            assert_eq!(
                p.frames,
                frames.map(<[u8]>::to_vec),
                "{big_endian} {magic:x}"
            );
        }
        let p = read(&file(false, 0xa1b2_c3d4, 113, &[])).unwrap();
        assert_eq!((p.linktype, p.frames.len()), (113, 0));
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let e = read(b"not a capture at all, really").unwrap_err();
        assert!(e.to_string().contains("is not a pcap file"), "{e}");
        let mut f = file(false, 0xa1b2_c3d4, LINKTYPE_ETHERNET, &[b"abcdef"]);
        f.truncate(f.len() - 2);
        assert!(read(&f).is_err());
    }
}
