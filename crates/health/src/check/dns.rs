//! DNS_CHECK: one query over UDP (recursion desired, a random id), as
//! keepalived's check_dns.c. Datagrams shorter than a header, with another
//! id or without the response bit are ignored and the wait goes on; the
//! first response with our id decides: rcode NOERROR = up, any other rcode
//! = down. Nothing within connect_timeout (or ICMP port unreachable) = down.
//! The answer section is not inspected (keepalived does not either).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use super::{fmt_duration, CheckResult};
use crate::spec::{dns_name_wire, DnsSpec};

const HEADER_LEN: usize = 12;
/// The response bit of the flags.
const QR: u16 = 0x8000;
/// Recursion desired.
const RD: u16 = 0x0100;

pub(super) async fn check(target: SocketAddr, timeout: Duration, spec: &DnsSpec) -> CheckResult {
    let what = format!("dns {target} {} {}", spec.query_type, spec.query_name);
    let id = random_id();
    let attempt = async {
        let sock = super::connected_udp(target).await?;
        sock.send(&query(id, spec)).await?;
        let mut buf = [0u8; 1500];
        loop {
            let n = sock.recv(&mut buf).await?;
            if let Some(rcode) = response_rcode(&buf[..n], id) {
                return Ok::<u8, std::io::Error>(rcode);
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(0)) => CheckResult::up(format!("{what}: answered NOERROR")),
        Ok(Ok(rcode)) => CheckResult::down(format!("{what}: answered rcode {rcode}")),
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => {
            CheckResult::down(format!("{what}: ICMP port unreachable"))
        }
        Ok(Err(e)) => CheckResult::down(format!("{what}: {e}")),
        Err(_) => CheckResult::down(format!(
            "{what}: no answer within {}",
            fmt_duration(timeout)
        )),
    }
}

fn random_id() -> u16 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() as u16
}

/// The query datagram: header (id, RD, one question) and the question.
fn query(id: u16, spec: &DnsSpec) -> Vec<u8> {
    let mut q = Vec::with_capacity(HEADER_LEN + spec.query_name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&RD.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    // Validated when the configuration was read.
    q.extend_from_slice(&dns_name_wire(&spec.query_name).unwrap_or_else(|| vec![0]));
    q.extend_from_slice(&spec.qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // class IN
    q
}

/// The rcode of `packet` when it is the response to query `id`, else None.
fn response_rcode(packet: &[u8], id: u16) -> Option<u8> {
    if packet.len() < HEADER_LEN || packet[0..2] != id.to_be_bytes() {
        return None;
    }
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    (flags & QR != 0).then_some((flags & 0x000f) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UdpSocket;

    fn spec(t: &str, qtype: u16, name: &str) -> DnsSpec {
        DnsSpec {
            query_type: t.into(),
            qtype,
            query_name: name.into(),
        }
    }

    #[test]
    fn query_bytes() {
        assert_eq!(
            query(0x4b41, &spec("SOA", 6, ".")),
            [0x4b, 0x41, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1]
        );
        assert_eq!(
            query(1, &spec("A", 1, "ex.org."))[HEADER_LEN..],
            [2, b'e', b'x', 3, b'o', b'r', b'g', 0, 0, 1, 0, 1]
        );
    }

    #[test]
    fn response_matching() {
        let mut r = query(7, &spec("A", 1, "ex.org"));
        assert_eq!(response_rcode(&r, 7), None, "a query is not a response");
        r[2] |= 0x80;
        assert_eq!(response_rcode(&r, 7), Some(0));
        assert_eq!(response_rcode(&r, 8), None, "another id");
        r[3] |= 3;
        assert_eq!(response_rcode(&r, 7), Some(3));
        assert_eq!(response_rcode(&r[..11], 7), None);
    }

    /// A responder that first sends noise (wrong id, a short datagram),
    /// then a response with `rcode`.
    async fn responder(rcode: u8) -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let mut r = buf[..n].to_vec();
                r[2] |= 0x80;
                r[3] = (r[3] & 0xf0) | rcode;
                let mut wrong = r.clone();
                wrong[0] ^= 0xff;
                let _ = s.send_to(&wrong, from).await;
                let _ = s.send_to(&r[..5], from).await;
                let _ = s.send_to(&r, from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn answers_decide() {
        let t = Duration::from_secs(2);
        let r = check(responder(0).await, t, &spec("A", 1, "rs.test")).await;
        assert!(r.ok, "{r:?}");
        let r = check(responder(2).await, t, &spec("A", 1, "rs.test")).await;
        assert!(!r.ok && r.reason.contains("rcode 2"), "{r:?}");
        // Nobody listening: port unreachable, or at worst silence.
        let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let r = check(addr, Duration::from_millis(300), &spec("SOA", 6, ".")).await;
        assert!(!r.ok, "{r:?}");
    }
}
