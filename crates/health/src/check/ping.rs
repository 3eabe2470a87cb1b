//! PING_CHECK: one ICMP echo request, up when the matching reply arrives
//! within connect_timeout.
//!
//! Socket choice, as keepalived's check_ping.c: first an unprivileged ICMP
//! datagram socket ("ping socket", `SOCK_DGRAM` + `IPPROTO_ICMP`), which works
//! without root when the process's group is inside
//! `net.ipv4.ping_group_range`; when the kernel refuses it (EACCES/EPERM, the
//! default range is empty), a raw ICMP socket, which needs root or
//! CAP_NET_RAW. The socket is connected to the target so the kernel only
//! hands us its packets; the reply is recognised by a random token in the
//! payload (a ping socket rewrites the identifier). The socket is driven by
//! tokio as a datagram socket, which keeps this crate free of `unsafe`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::{fmt_duration, CheckResult};

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

pub(super) async fn check(target: IpAddr, timeout: Duration) -> CheckResult {
    let what = format!("ping {target}");
    match tokio::time::timeout(timeout, echo(target)).await {
        Ok(Ok(kind)) => CheckResult::up(format!("{what}: echo reply ({kind} socket)")),
        Ok(Err(e)) => CheckResult::down(format!("{what}: {e}")),
        Err(_) => CheckResult::down(format!(
            "{what}: no echo reply within {}",
            fmt_duration(timeout)
        )),
    }
}

/// Opens the best ICMP socket this process may have: (socket, is_raw).
fn open(target: IpAddr) -> io::Result<(Socket, bool)> {
    let (domain, proto) = match target {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => Ok((s, false)),
        Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied) || e.raw_os_error() == Some(1) => {
            Socket::new(domain, Type::RAW, Some(proto))
                .map(|s| (s, true))
                .map_err(|raw| {
                    io::Error::new(
                        raw.kind(),
                        format!(
                            "no ICMP socket: ping socket refused ({e}; widen net.ipv4.ping_group_range) \
                             and raw socket refused ({raw}; needs root or CAP_NET_RAW)"
                        ),
                    )
                })
        }
        Err(e) => Err(e),
    }
}

fn random_token() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

/// RFC 1071 checksum (the kernel fills it for ping sockets and ICMPv6, but
/// a raw IPv4 socket sends what we give it).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn request(v6: bool, ident: u16, seq: u16, token: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(16);
    p.push(if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 });
    p.push(0);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&token.to_be_bytes());
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// Whether `packet` (as read from the socket) is the reply to our token.
fn is_reply(packet: &[u8], v6: bool, raw: bool, token: u64) -> bool {
    // A raw IPv4 socket delivers the IP header too; the others do not.
    let icmp = if raw && !v6 {
        let Some(first) = packet.first() else {
            return false;
        };
        let ihl = usize::from(first & 0x0f) * 4;
        match packet.get(ihl..) {
            Some(rest) => rest,
            None => return false,
        }
    } else {
        packet
    };
    let want_type = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    icmp.len() >= 16 && icmp[0] == want_type && icmp[8..16] == token.to_be_bytes()
}

async fn echo(target: IpAddr) -> io::Result<&'static str> {
    let (sock, raw) = open(target)?;
    let v6 = target.is_ipv6();
    sock.set_nonblocking(true)?;
    sock.connect(&SocketAddr::new(target, 0).into())?;
    // tokio's UdpSocket is only a readiness-driven datagram fd: it carries
    // an ICMP socket as well, with no unsafe registration on our side.
    let sock = UdpSocket::from_std(std::net::UdpSocket::from(sock))?;
    let token = random_token();
    sock.send(&request(v6, (token >> 48) as u16, 1, token))
        .await?;
    let mut buf = [0u8; 1500];
    loop {
        let n = sock.recv(&mut buf).await?;
        if is_reply(&buf[..n], v6, raw, token) {
            return Ok(if raw { "raw" } else { "datagram" });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_checksum_verifies() {
        let p = request(false, 0x1234, 1, 0xdead_beef_0102_0304);
        assert_eq!(p[0], 8);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        assert_eq!(&p[8..16], &0xdead_beef_0102_0304u64.to_be_bytes());
    }

    #[test]
    fn reply_matching() {
        let token = 0x0102_0304_0506_0708;
        let mut reply = request(false, 1, 1, token);
        reply[0] = ECHO_REPLY_V4;
        assert!(is_reply(&reply, false, false, token));
        assert!(!is_reply(&reply, false, false, token + 1));
        let mut with_ip = vec![0x45; 1];
        with_ip.extend_from_slice(&[0; 19]);
        with_ip.extend_from_slice(&reply);
        assert!(is_reply(&with_ip, false, true, token));
        assert!(!is_reply(&with_ip, false, false, token));
        // Our own request (seen on loopback by a raw socket) is not a reply.
        let req = request(false, 1, 1, token);
        assert!(!is_reply(&req, false, false, token));
        assert!(!is_reply(&[], false, true, token));
        assert!(!is_reply(&[0x4f], false, true, token));
    }
}
