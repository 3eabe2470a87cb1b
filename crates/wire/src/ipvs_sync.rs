//! IPVS connection-synchronisation datagrams, as the kernel's
//! `ip_vs_sync.c` sends and receives them over UDP multicast (group
//! 224.0.0.81, port 8848 by default): version 1, sent and received, and the
//! original version 0, received.
//!
//! Version 1 datagram: an 8-byte header (a zero byte, so that version-0
//! receivers drop it; the sync id; the datagram's size; the number of
//! entries; the version, 1; two zero bytes), then the entries, each
//! starting on a 4-byte boundary. An entry: type (bit 0: IPv6), protocol,
//! a 16-bit field with the entry's version in the top 4 bits (0) and its
//! size in the low 12, flags (32 bits), state (16), client, virtual and
//! destination ports, firewall mark, timeout in seconds, then the three
//! addresses (4 or 16 bytes each), then optional parameters (type, length,
//! data). Everything in network byte order.
//!
//! Version 0 datagram: a 4-byte header (number of entries, sync id, size),
//! then 24-byte IPv4 entries (protocol, ports, addresses, 16-bit flags and
//! state), each followed by 24 bytes of sequence data when its flags say
//! so.
//!
//! Decoding follows the kernel's receiver: the whole datagram is dropped
//! when its size or an entry's size does not add up (the entries before
//! the damage are kept, as the kernel has applied them by then); a single
//! entry is skipped when its protocol, state or a mandatory parameter is
//! not understood. Nothing here panics on any input.
//!
//! One extension, RVS's own: a FullNAT connection carries the client end
//! its real server sees (the director's local address and port) in a
//! mandatory parameter of type [`LOCAL_PARAM`], outside the kernel's
//! numbers. The kernel's backup skips an entry with a mandatory parameter
//! it does not know, and it could not FullNAT the connection anyway; an
//! RVS backup takes it over.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kernel's default multicast group.
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// The kernel's default UDP port.
pub const DEFAULT_PORT: u16 = 8848;
/// Version-1 header length.
pub const HEADER_LEN: usize = 8;
/// Version-0 header length.
pub const HEADER_V0_LEN: usize = 4;
/// A version-1 IPv4 entry without parameters.
pub const ENTRY_V4_LEN: usize = 36;
/// A version-1 IPv6 entry without parameters.
pub const ENTRY_V6_LEN: usize = 72;
/// A version-0 entry without sequence data.
pub const ENTRY_V0_LEN: usize = 24;
/// The sequence data of a version-0 entry or of a version-1 parameter.
const SEQ_DATA_LEN: usize = 24;
/// At most this many entries in one datagram (the count is one byte).
pub const MAX_ENTRIES: usize = 255;

/// Parameter types of a version-1 entry.
mod param {
    pub(super) const SEQ_DATA: u8 = 1;
    pub(super) const PE_DATA: u8 = 2;
    pub(super) const PE_NAME: u8 = 3;
    /// Set on a parameter a receiver may ignore.
    pub(super) const OPTIONAL: u8 = 1 << 6;
}

/// The parameter type of a FullNAT connection's local end (RVS's; the
/// kernel's are 1 to 3, with 0x40 marking optional ones): the local
/// address (4 or 16 bytes, the entry's family) then the port. Mandatory,
/// so that a kernel backup skips the entry.
pub const LOCAL_PARAM: u8 = 0x30;

/// The kernel's `IP_VS_CONN_F_*` connection flags.
pub mod flags {
    /// The forwarding method, in the low three bits.
    pub const FWD_MASK: u32 = 0x0007;
    /// NAT ("Masq").
    pub const MASQ: u32 = 0;
    /// Local node.
    pub const LOCALNODE: u32 = 1;
    /// IP-in-IP tunnel.
    pub const TUNNEL: u32 = 2;
    /// Direct routing.
    pub const DROUTE: u32 = 3;
    /// Bypass.
    pub const BYPASS: u32 = 4;
    /// Made from a sync message.
    pub const SYNC: u32 = 0x0020;
    /// In the kernel's hash table (never sent).
    pub const HASHED: u32 = 0x0040;
    /// No reply seen yet.
    pub const NOOUTPUT: u32 = 0x0080;
    /// Counted as inactive on its server.
    pub const INACTIVE: u32 = 0x0100;
    /// TCP sequence adjustment in use (application helpers).
    pub const SEQ_MASK: u32 = 0x0600;
    /// Client port unknown yet.
    pub const NO_CPORT: u32 = 0x0800;
    /// A persistence template.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling (never synced).
    pub const ONE_PACKET: u32 = 0x2000;
    /// What a backup takes from a sync message.
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
}

/// One connection (or persistence template) as a sync message carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SyncConn {
    /// IP protocol number (0 for a firewall-mark service's template).
    pub protocol: u8,
    /// [`flags`] bits.
    pub flags: u32,
    /// Protocol state, in the kernel's numbering (TCP: 1 ESTABLISHED ...).
    pub state: u16,
    /// Client address and port.
    pub client: (IpAddr, u16),
    /// Virtual address and port (a template of a firewall-mark service
    /// carries the mark as its IPv4 address).
    pub virtual_addr: (IpAddr, u16),
    /// Real server address and port.
    pub dest: (IpAddr, u16),
    /// The firewall mark of the service, 0 if none.
    pub fwmark: u32,
    /// Timeout of its state in seconds; 0 (version 0): the state's default.
    pub timeout: u32,
    /// FullNAT (RVS): the client end the real server sees, the director's
    /// local address and port ([`LOCAL_PARAM`]); `None` for every other
    /// method.
    pub local: Option<(IpAddr, u16)>,
}

impl SyncConn {
    /// IPv6 addresses.
    pub fn is_ipv6(&self) -> bool {
        self.client.0.is_ipv6()
    }

    /// Bytes of one address of this entry's family.
    fn addr_len(&self) -> usize {
        if self.is_ipv6() {
            16
        } else {
            4
        }
    }

    /// Bytes this entry takes in a version-1 datagram, padding excluded.
    pub fn encoded_len(&self) -> usize {
        let fixed = if self.is_ipv6() {
            ENTRY_V6_LEN
        } else {
            ENTRY_V4_LEN
        };
        fixed + self.local.map_or(0, |_| 2 + self.addr_len() + 2)
    }
}

/// Why a whole datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// Shorter than a header.
    #[error("shorter than a sync message header")]
    TooShort,
    /// The header's size is not the datagram's.
    #[error("header says {said} bytes, the datagram has {got}")]
    SizeMismatch {
        /// The header's size field.
        said: u16,
        /// The datagram's length.
        got: usize,
    },
    /// An entry runs past the end, or its size is impossible.
    #[error("entry {index} is truncated or has an impossible size")]
    BadEntry {
        /// Its position, from 0.
        index: usize,
    },
    /// An entry of an unknown entry version.
    #[error("entry {index} has unknown version {version}")]
    EntryVersion {
        /// Its position, from 0.
        index: usize,
        /// The version it claims.
        version: u8,
    },
}

/// Why one entry was skipped (the rest of the datagram is still read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// A protocol the director does not track.
    Protocol(u8),
    /// A state beyond the protocol's table.
    State(u16),
    /// A mandatory parameter the director does not know, or a persistence
    /// engine (SIP) it does not have.
    Parameter(u8),
}

/// A received datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The sync id of the sender.
    pub syncid: u8,
    /// 1, or 0 for the original format.
    pub version: u8,
    /// The entries, in order.
    pub conns: Vec<SyncConn>,
    /// Entries skipped, with why.
    pub skipped: Vec<Skipped>,
    /// What made the receiver stop early, if something did: the entries
    /// before it are in `conns`.
    pub error: Option<SyncError>,
}

/// Protocols and their number of states, as the kernel's backup checks.
fn states(protocol: u8) -> Option<u16> {
    match protocol {
        crate::ip_proto::TCP => Some(11),
        crate::ip_proto::UDP => Some(1),
        // IP_VS_SCTP_S_LAST: NONE … CLOSED, 14 states since kernel 3.12.
        crate::ip_proto::SCTP => Some(14),
        _ => None,
    }
}

/// Checks what the kernel's backup checks per entry; templates carry no
/// state (a non-zero one is read as 0).
fn check_entry(c: &mut SyncConn) -> Result<(), Skipped> {
    if c.flags & flags::TEMPLATE != 0 {
        c.state = 0;
        return Ok(());
    }
    let n = states(c.protocol).ok_or(Skipped::Protocol(c.protocol))?;
    if c.state >= n {
        return Err(Skipped::State(c.state));
    }
    Ok(())
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn v4(b: &[u8], at: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]))
}

fn v6(b: &[u8], at: usize) -> IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    IpAddr::V6(Ipv6Addr::from(a))
}

/// Decodes a datagram, version 1 or 0, as the kernel's backup reads it.
pub fn decode(buf: &[u8]) -> Result<Decoded, SyncError> {
    if buf.len() < HEADER_V0_LEN {
        return Err(SyncError::TooShort);
    }
    let said = be16(buf, 2);
    if usize::from(said) != buf.len() {
        return Err(SyncError::SizeMismatch {
            said,
            got: buf.len(),
        });
    }
    let v1 = buf.len() >= HEADER_LEN && buf[0] == 0 && buf[5] == 1 && buf[6] == 0 && buf[7] == 0;
    let mut out = Decoded {
        syncid: buf[1],
        version: u8::from(v1),
        conns: Vec::new(),
        skipped: Vec::new(),
        error: None,
    };
    let result = if v1 {
        decode_v1(buf, &mut out)
    } else {
        decode_v0(buf, &mut out)
    };
    out.error = result.err();
    Ok(out)
}

fn keep(out: &mut Decoded, mut c: SyncConn) {
    match check_entry(&mut c) {
        Ok(()) => out.conns.push(c),
        Err(s) => out.skipped.push(s),
    }
}

fn decode_v1(buf: &[u8], out: &mut Decoded) -> Result<(), SyncError> {
    let count = usize::from(buf[4]);
    let mut at = HEADER_LEN;
    for index in 0..count {
        if at + ENTRY_V4_LEN > buf.len() {
            return Err(SyncError::BadEntry { index });
        }
        let ver_size = be16(buf, at + 2);
        let size = usize::from(ver_size & 0x0fff);
        let end = at + size;
        if end > buf.len() {
            return Err(SyncError::BadEntry { index });
        }
        if ver_size >> 12 != 0 {
            return Err(SyncError::EntryVersion {
                index,
                version: (ver_size >> 12) as u8,
            });
        }
        let ipv6 = match buf[at] {
            0 => false,
            t if t & 1 != 0 => true,
            _ => return Err(SyncError::BadEntry { index }),
        };
        let fixed = if ipv6 { ENTRY_V6_LEN } else { ENTRY_V4_LEN };
        if size < fixed {
            return Err(SyncError::BadEntry { index });
        }
        let e = &buf[at..end];
        let addr = |i: usize| {
            if ipv6 {
                v6(e, 24 + 16 * i)
            } else {
                v4(e, 24 + 4 * i)
            }
        };
        let conn = SyncConn {
            protocol: e[1],
            flags: (be32(e, 4) & flags::BACKUP_MASK) | flags::SYNC,
            state: be16(e, 8),
            client: (addr(0), be16(e, 10)),
            virtual_addr: (addr(1), be16(e, 12)),
            dest: (addr(2), be16(e, 14)),
            fwmark: be32(e, 16),
            timeout: be32(e, 20),
            local: None,
        };
        match parameters(&e[fixed..], ipv6) {
            Ok(Params { skip: None, local }) => keep(out, SyncConn { local, ..conn }),
            Ok(Params {
                skip: Some(skip), ..
            }) => out.skipped.push(skip),
            Err(()) => return Err(SyncError::BadEntry { index }),
        }
        // The next entry starts on a 4-byte boundary.
        at += (size + 3) & !3;
    }
    Ok(())
}

/// What an entry's parameters say.
struct Params {
    /// Why the entry must be skipped, if it must.
    skip: Option<Skipped>,
    /// A FullNAT connection's local end ([`LOCAL_PARAM`]).
    local: Option<(IpAddr, u16)>,
}

/// Walks an entry's parameters (`ipv6`: the entry's family): `Err` when
/// they do not add up (the datagram is dropped).
fn parameters(mut p: &[u8], ipv6: bool) -> Result<Params, ()> {
    let mut seen = 0u8;
    let mut skip = None;
    let mut local = None;
    while !p.is_empty() {
        if p.len() < 2 {
            return Err(());
        }
        let (kind, len) = (p[0], usize::from(p[1]));
        if len == 0 || 2 + len > p.len() {
            return Err(());
        }
        match kind & !param::OPTIONAL {
            param::SEQ_DATA => {
                if len != SEQ_DATA_LEN || seen & 1 != 0 {
                    return Err(());
                }
                seen |= 1;
            }
            // A persistence engine's data and name: RVS has none, so the
            // entry is skipped as the kernel skips one whose engine is not
            // loaded. Malformed ones still drop the datagram.
            param::PE_DATA | param::PE_NAME => {
                let bit = if kind & !param::OPTIONAL == param::PE_DATA {
                    2
                } else {
                    4
                };
                let max = if bit == 2 { 255 } else { 32 };
                if len > max || seen & bit != 0 {
                    return Err(());
                }
                seen |= bit;
                skip = Some(Skipped::Parameter(kind));
            }
            LOCAL_PARAM => {
                let alen = if ipv6 { 16 } else { 4 };
                if len != alen + 2 || local.is_some() {
                    return Err(());
                }
                let addr = if ipv6 { v6(p, 2) } else { v4(p, 2) };
                local = Some((addr, be16(p, 2 + alen)));
            }
            other => {
                if kind & param::OPTIONAL == 0 {
                    skip = skip.or(Some(Skipped::Parameter(other)));
                }
            }
        }
        p = &p[2 + len..];
    }
    Ok(Params { skip, local })
}

fn decode_v0(buf: &[u8], out: &mut Decoded) -> Result<(), SyncError> {
    let count = usize::from(buf[0]);
    let mut at = HEADER_V0_LEN;
    for index in 0..count {
        if at + ENTRY_V0_LEN > buf.len() {
            return Err(SyncError::BadEntry { index });
        }
        let e = &buf[at..at + ENTRY_V0_LEN];
        // Only the bits a backup uses, as for version 1.
        let conn_flags = (u32::from(be16(e, 20)) & flags::BACKUP_MASK) | flags::SYNC;
        at += ENTRY_V0_LEN;
        if conn_flags & flags::SEQ_MASK != 0 {
            at += SEQ_DATA_LEN;
            if at > buf.len() {
                return Err(SyncError::BadEntry { index });
            }
        }
        keep(
            out,
            SyncConn {
                protocol: e[1],
                flags: conn_flags,
                state: be16(e, 22),
                client: (v4(e, 8), be16(e, 2)),
                virtual_addr: (v4(e, 12), be16(e, 4)),
                dest: (v4(e, 16), be16(e, 6)),
                fwmark: 0,
                timeout: 0,
                local: None,
            },
        );
    }
    Ok(())
}

/// Builds version-1 datagrams of at most `maxlen` bytes (and
/// [`MAX_ENTRIES`] entries) for sync id `syncid`, as the kernel's master
/// batches them.
#[derive(Clone, Debug)]
pub struct Encoder {
    syncid: u8,
    maxlen: usize,
    buf: Vec<u8>,
    count: u8,
}

impl Encoder {
    /// An encoder; `maxlen` is at least one IPv6 entry and its header.
    pub fn new(syncid: u8, maxlen: usize) -> Self {
        let maxlen = maxlen.clamp(HEADER_LEN + ENTRY_V6_LEN, 0xffff);
        let mut e = Encoder {
            syncid,
            maxlen,
            buf: Vec::with_capacity(maxlen),
            count: 0,
        };
        e.reset();
        e
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.buf
            .extend_from_slice(&[0, self.syncid, 0, HEADER_LEN as u8, 0, 1, 0, 0]);
        self.count = 0;
    }

    /// Entries waiting in the datagram being built.
    pub fn pending(&self) -> usize {
        usize::from(self.count)
    }

    /// Adds `c`. When it does not fit, the datagram built so far is
    /// returned (finished) and `c` starts the next one.
    pub fn push(&mut self, c: &SyncConn) -> Option<Vec<u8>> {
        let pad = (4 - self.buf.len() % 4) % 4;
        let full = usize::from(self.count) >= MAX_ENTRIES
            || self.buf.len() + pad + c.encoded_len() > self.maxlen;
        let done = if full { self.flush() } else { None };
        let pad = (4 - self.buf.len() % 4) % 4;
        self.buf.extend(std::iter::repeat_n(0, pad));
        write_entry(&mut self.buf, c);
        self.count += 1;
        let size = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&size.to_be_bytes());
        self.buf[4] = self.count;
        done
    }

    /// The datagram built so far, if it has any entry.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let out = self.buf.clone();
        self.reset();
        Some(out)
    }
}

fn write_entry(buf: &mut Vec<u8>, c: &SyncConn) {
    let len = c.encoded_len() as u16;
    buf.push(u8::from(c.is_ipv6()));
    buf.push(c.protocol);
    buf.extend_from_slice(&(len & 0x0fff).to_be_bytes());
    buf.extend_from_slice(&(c.flags & !flags::HASHED).to_be_bytes());
    buf.extend_from_slice(&c.state.to_be_bytes());
    buf.extend_from_slice(&c.client.1.to_be_bytes());
    buf.extend_from_slice(&c.virtual_addr.1.to_be_bytes());
    buf.extend_from_slice(&c.dest.1.to_be_bytes());
    buf.extend_from_slice(&c.fwmark.to_be_bytes());
    buf.extend_from_slice(&c.timeout.to_be_bytes());
    for a in [c.client.0, c.virtual_addr.0, c.dest.0] {
        match a {
            IpAddr::V4(a) if !c.is_ipv6() => buf.extend_from_slice(&a.octets()),
            IpAddr::V6(a) if c.is_ipv6() => buf.extend_from_slice(&a.octets()),
            // Mixed families cannot be expressed: the client's decides,
            // the other address written as unspecified.
            _ => buf.extend(std::iter::repeat_n(0, c.addr_len())),
        }
    }
    if let Some((addr, port)) = c.local {
        buf.push(LOCAL_PARAM);
        buf.push((c.addr_len() + 2) as u8);
        match addr {
            IpAddr::V4(a) if !c.is_ipv6() => buf.extend_from_slice(&a.octets()),
            IpAddr::V6(a) if c.is_ipv6() => buf.extend_from_slice(&a.octets()),
            _ => buf.extend(std::iter::repeat_n(0, c.addr_len())),
        }
        buf.extend_from_slice(&port.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tcp(cport: u16) -> SyncConn {
        SyncConn {
            protocol: 6,
            flags: flags::DROUTE | flags::NOOUTPUT,
            state: 1,
            client: ("10.0.1.2".parse().unwrap(), cport),
            virtual_addr: ("10.0.100.1".parse().unwrap(), 80),
            dest: ("10.0.2.11".parse().unwrap(), 80),
            fwmark: 0,
            timeout: 900,
            local: None,
        }
    }

    /// A datagram written byte by byte from the kernel's layout (not by
    /// the encoder): one IPv4 TCP entry of a direct-routing connection.
    const KERNEL_V4: [u8; 44] = [
        0x00, 0x07, 0x00, 0x2c, // reserved, syncid 7, size 44
        0x01, 0x01, 0x00, 0x00, // 1 entry, version 1, spare
        0x00, 0x06, 0x00, 0x24, // type v4, TCP, ver 0 / size 36
        0x00, 0x00, 0x00, 0xc3, // flags: DROUTE | HASHED | NOOUTPUT
        0x00, 0x01, 0x9c, 0x40, // ESTABLISHED, cport 40000
        0x00, 0x50, 0x00, 0x50, // vport 80, dport 80
        0x00, 0x00, 0x00, 0x00, // fwmark
        0x00, 0x00, 0x03, 0x84, // timeout 900 s
        10, 0, 1, 2, // caddr
        10, 0, 100, 1, // vaddr
        10, 0, 2, 11, // daddr
    ];

    #[test]
    fn a_kernel_datagram_decodes_as_the_kernel_backup_reads_it() {
        let d = decode(&KERNEL_V4).unwrap();
        assert_eq!((d.syncid, d.version, d.error), (7, 1, None));
        let mut want = tcp(40000);
        // HASHED masked off, SYNC added, as ip_vs_proc_sync_conn does.
        want.flags = flags::DROUTE | flags::NOOUTPUT | flags::SYNC;
        assert_eq!(d.conns, vec![want]);
        // And the encoder writes the same bytes (but HASHED, never sent).
        let mut e = Encoder::new(7, 1472);
        let mut sent = tcp(40000);
        sent.flags |= flags::SYNC;
        assert!(e.push(&sent).is_none());
        let out = e.flush().unwrap();
        let mut kernel = KERNEL_V4;
        kernel[15] = 0xa3; // without HASHED
        assert_eq!(out, kernel);
    }

    #[test]
    fn ipv6_entries_and_padding() {
        let mut e = Encoder::new(1, 1472);
        let a = SyncConn {
            protocol: 17,
            flags: flags::MASQ,
            state: 0,
            client: ("fd00::2".parse().unwrap(), 5353),
            virtual_addr: ("fd00::100".parse().unwrap(), 53),
            dest: ("fd00:2::11".parse().unwrap(), 5300),
            fwmark: 7,
            timeout: 300,
            local: None,
        };
        e.push(&a);
        e.push(&tcp(1));
        let out = e.flush().unwrap();
        assert_eq!(out.len(), HEADER_LEN + ENTRY_V6_LEN + ENTRY_V4_LEN);
        assert_eq!(out[HEADER_LEN], 1, "type: IPv6");
        let d = decode(&out).unwrap();
        assert_eq!(d.conns.len(), 2);
        assert_eq!(d.conns[0].dest, a.dest);
        assert_eq!(d.conns[0].fwmark, 7);
    }

    #[test]
    fn datagrams_are_cut_at_maxlen_and_at_255_entries() {
        let mut e = Encoder::new(1, HEADER_LEN + 3 * ENTRY_V4_LEN);
        let mut out = Vec::new();
        for p in 0..7 {
            out.extend(e.push(&tcp(p)));
        }
        out.extend(e.flush());
        let counts: Vec<usize> = out.iter().map(|d| decode(d).unwrap().conns.len()).collect();
        assert_eq!(counts, vec![3, 3, 1]);
        let mut e = Encoder::new(1, 65000);
        let mut out = Vec::new();
        for p in 0..300 {
            out.extend(e.push(&tcp(p)));
        }
        out.extend(e.flush());
        let counts: Vec<usize> = out.iter().map(|d| decode(d).unwrap().conns.len()).collect();
        assert_eq!(counts, vec![255, 45]);
    }

    #[test]
    fn damaged_datagrams_are_refused_and_bad_entries_skipped() {
        assert_eq!(decode(&KERNEL_V4[..3]), Err(SyncError::TooShort));
        assert!(matches!(
            decode(&KERNEL_V4[..40]),
            Err(SyncError::SizeMismatch { said: 44, got: 40 })
        ));
        // Two entries announced, one present: the first is kept.
        let mut two = KERNEL_V4;
        two[4] = 2;
        let d = decode(&two).unwrap();
        assert_eq!(d.conns.len(), 1);
        assert_eq!(d.error, Some(SyncError::BadEntry { index: 1 }));
        // An entry version the kernel does not know.
        let mut ver = KERNEL_V4;
        ver[10] = 0x10;
        assert_eq!(
            decode(&ver).unwrap().error,
            Some(SyncError::EntryVersion {
                index: 0,
                version: 1
            })
        );
        // A state beyond TCP's table and an unknown protocol: skipped.
        let mut state = KERNEL_V4;
        state[17] = 11;
        let d = decode(&state).unwrap();
        assert_eq!(
            (d.conns.len(), d.skipped.clone()),
            (0, vec![Skipped::State(11)])
        );
        let mut proto = KERNEL_V4;
        proto[9] = 47;
        assert_eq!(decode(&proto).unwrap().skipped, vec![Skipped::Protocol(47)]);
    }

    #[test]
    fn a_fullnat_entry_carries_its_local_end_in_a_mandatory_parameter() {
        let mut c = tcp(40000);
        c.flags = flags::MASQ | flags::SYNC;
        c.local = Some(("10.0.2.200".parse().unwrap(), 1024));
        let mut e = Encoder::new(7, 1472);
        e.push(&c);
        let out = e.flush().unwrap();
        // The entry's size counts the parameter: 36 + 2 + 4 + 2.
        assert_eq!(&out[HEADER_LEN + 2..HEADER_LEN + 4], &[0x00, 0x2c]);
        assert_eq!(
            &out[HEADER_LEN + ENTRY_V4_LEN..],
            &[LOCAL_PARAM, 6, 10, 0, 2, 200, 0x04, 0x00]
        );
        const { assert!(LOCAL_PARAM & param::OPTIONAL == 0, "mandatory") };
        assert_eq!(decode(&out).unwrap().conns, vec![c]);
        // A receiver that does not know the type (the kernel's) skips the
        // entry, as it skips any unknown mandatory parameter.
        let mut unknown = out.clone();
        unknown[HEADER_LEN + ENTRY_V4_LEN] = LOCAL_PARAM + 1;
        let d = decode(&unknown).unwrap();
        assert_eq!(d.conns, vec![]);
        assert_eq!(d.skipped, vec![Skipped::Parameter(LOCAL_PARAM + 1)]);
        // A local end of the wrong length drops the datagram.
        let mut short = out;
        short[HEADER_LEN + ENTRY_V4_LEN + 1] = 5;
        assert_eq!(
            decode(&short).unwrap().error,
            Some(SyncError::BadEntry { index: 0 })
        );
    }

    #[test]
    fn version_0_datagrams_are_read() {
        let v0: [u8; 28] = [
            1, 9, 0, 28, // 1 entry, syncid 9, size 28
            0, 17, 0x13, 0x88, // reserved, UDP, cport 5000
            0, 53, 0, 53, // vport, dport
            10, 0, 1, 2, 10, 0, 100, 1, 10, 0, 2, 12, // addresses
            0, 0, 0, 0, // flags MASQ, state 0
        ];
        let d = decode(&v0).unwrap();
        assert_eq!((d.version, d.syncid, d.conns.len()), (0, 9, 1));
        let c = d.conns[0];
        assert_eq!(c.dest, ("10.0.2.12".parse().unwrap(), 53));
        assert_eq!((c.timeout, c.flags), (0, flags::SYNC));
    }

    fn any_conn() -> impl Strategy<Value = SyncConn> {
        let addr = prop_oneof![
            any::<[u8; 4]>().prop_map(|a| (IpAddr::from(a), false)),
            any::<[u8; 16]>().prop_map(|a| (IpAddr::from(a), true)),
        ];
        (
            addr,
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            prop_oneof![Just(6u8), Just(17u8)],
            any::<(u16, u16, u16, u32, u32)>(),
            0u16..11,
            any::<u32>(),
            proptest::option::of((any::<[u8; 16]>(), any::<u16>())),
        )
            .prop_map(|((c, v6), va, da, protocol, ports, state, fl, local)| {
                let other = |b: [u8; 16]| {
                    if v6 {
                        IpAddr::from(b)
                    } else {
                        IpAddr::from([b[0], b[1], b[2], b[3]])
                    }
                };
                let fl = (fl & flags::BACKUP_MASK & !flags::SEQ_MASK) | flags::SYNC;
                SyncConn {
                    protocol,
                    flags: fl,
                    // Templates and UDP have one state.
                    state: if protocol == 17 || fl & flags::TEMPLATE != 0 {
                        0
                    } else {
                        state
                    },
                    client: (c, ports.0),
                    virtual_addr: (other(va), ports.1),
                    dest: (other(da), ports.2),
                    fwmark: ports.3,
                    timeout: ports.4,
                    local: local.map(|(a, p)| (other(a), p)),
                }
            })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(conns in proptest::collection::vec(any_conn(), 1..40)) {
            let mut e = Encoder::new(3, 1472);
            let mut grams = Vec::new();
            for c in &conns {
                grams.extend(e.push(c));
            }
            grams.extend(e.flush());
            let mut back = Vec::new();
            for g in &grams {
                prop_assert!(g.len() <= 1472);
                let d = decode(g).unwrap();
                prop_assert_eq!(d.error, None);
                prop_assert!(d.skipped.is_empty());
                back.extend(d.conns);
            }
            prop_assert_eq!(back, conns);
        }

        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&bytes);
            // With a consistent size field, so the entries are walked.
            if bytes.len() >= 8 {
                let mut b = bytes.clone();
                let n = b.len() as u16;
                b[2..4].copy_from_slice(&n.to_be_bytes());
                b[0] = 0;
                b[5] = 1;
                b[6] = 0;
                b[7] = 0;
                let _ = decode(&b);
            }
        }
    }
}
