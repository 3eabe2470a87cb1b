//! Reading the pcap files that [`crate::Lab::capture`] writes, so tests can
//! look at frames without another dependency.

use std::path::Path;

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
    let data = std::fs::read(path).map_err(LabError::io(format!("reading {}", path.display())))?;
    let bad =
        |why: &str| LabError::InvalidSpec(format!("{} is not a pcap file: {why}", path.display()));
    let magic = data
        .get(..4)
        .ok_or_else(|| bad("shorter than its header"))?;
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(bad("unknown magic")),
    };
    let u32_at = |off: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(off..off + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let linktype = u32_at(20).ok_or_else(|| bad("truncated header"))?;
    let mut frames = Vec::new();
    let mut off = 24;
    while off < data.len() {
        let incl = u32_at(off + 8).ok_or_else(|| bad("truncated record header"))? as usize;
        let start = off + 16;
        let frame = data
            .get(start..start + incl)
            .ok_or_else(|| bad("truncated record"))?;
        frames.push(frame.to_vec());
        off = start + incl;
    }
    Ok(Pcap { linktype, frames })
}
