//! Helpers of the datapath tests: veth pairs as these tests wire them, frames
//! built by hand and an AF_PACKET injector.
//!
//! Namespaces come from `rvs_netns::Bed` (removed on drop, on panic and on
//! SIGINT/SIGTERM). AF_XDP sockets, XDP attachment and `if_nametoindex` act
//! on the network namespace of the calling *thread*, so the datapath side of
//! a test runs in a thread that has entered the director namespace:
//! `rvs_netns::spawn_in`.

#![allow(dead_code)] // reason: each test binary uses a different subset of the helpers.
#![allow(unreachable_pub)] // reason: test-only module, `pub` for the test files.

use std::ffi::CString;

use rvs_netns::{End, Veth};

/// A veth pair `a_dev`@`a` — `b_dev`@`b` with fixed MACs, one queue each,
/// addresses (CIDR) and up; TX checksum offload off so frames carry
/// complete checksums.
#[allow(clippy::too_many_arguments)] // reason: a flat description of both ends reads best in tests.
pub fn veth(
    a: &str,
    a_dev: &str,
    a_mac: &str,
    a_ip: &str,
    b: &str,
    b_dev: &str,
    b_mac: &str,
    b_ip: &str,
) {
    Veth::new(
        End::new(a, a_dev).mac(a_mac).addr(a_ip),
        End::new(b, b_dev).mac(b_mac).addr(b_ip),
    )
    .queues(1)
    .ethtool(&["tx", "off"])
    .up()
    .create()
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Parse a MAC "02:00:00:00:00:01".
pub fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (o, p) in m.iter_mut().zip(s.split(':')) {
        *o = u8::from_str_radix(p, 16).expect("mac");
    }
    m
}

/// Offsets into an untagged Ethernet + IPv4 (no options) + UDP frame.
pub mod off {
    /// IPv4 header start.
    pub const IP: usize = 14;
    /// UDP header start.
    pub const UDP: usize = 34;
    /// UDP payload start.
    pub const PAYLOAD: usize = 42;
}

/// UDP destination port of an Ethernet/IPv4 frame.
pub fn udp_dport(f: &[u8]) -> Option<u16> {
    (f.len() >= off::PAYLOAD && f[12..14] == [8, 0] && f[off::IP + 9] == 17)
        .then(|| u16::from_be_bytes([f[off::UDP + 2], f[off::UDP + 3]]))
}

/// RFC 1071 checksum.
pub fn csum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub mod director;
pub mod frames;

/// An AF_PACKET socket bound to one interface, to inject hand-made frames
/// (truncated, fragmented, VLAN-tagged) that no normal socket would send.
pub struct Injector {
    fd: libc::c_int,
    ifindex: i32,
}

impl Injector {
    /// Open on `dev` in the current thread's namespace.
    pub fn new(dev: &str) -> Self {
        let name = CString::new(dev).unwrap();
        // SAFETY: valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        assert!(ifindex > 0, "interface {dev} not found");
        // SAFETY: plain socket(2); checked below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        Self { fd, ifindex }
    }

    /// Send one complete Ethernet frame.
    pub fn send(&self, frame: &[u8]) {
        // SAFETY: all-zero is a valid sockaddr_ll; fields set below.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = self.ifindex;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: `frame` and `sa` are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "inject: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(self.fd) };
    }
}

/// Ethernet header (with optional VLAN tags, outermost first) + IPv4 header + `l4`.
/// `ihl_words` and `tot_len` are taken as given so malformed headers can be built.
#[allow(clippy::too_many_arguments)] // reason: each malformed case varies a different field.
pub fn ipv4_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    vlans: &[(u16, u16)],
    ihl_words: u8,
    frag_off: u16,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    l4: &[u8],
    tot_len: Option<u16>,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    for &(tpid, tci) in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let tot = tot_len.unwrap_or((20 + l4.len()) as u16);
    let mut ip = [0u8; 20];
    ip[0] = 0x40 | ihl_words;
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip[6..8].copy_from_slice(&frag_off.to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

/// A UDP header + payload with checksum 0 (allowed for IPv4).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}
