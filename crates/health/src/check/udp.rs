//! UDP_CHECK: sends the payload from a connected socket and waits up to
//! connect_timeout. A reply = up. ICMP port unreachable (surfacing as
//! ECONNREFUSED on a connected socket) = down. Silence = up, unless
//! `require_reply`, then down. With `reply_pattern` (keepalived's
//! `require_reply HEX`) the reply must also have a length within
//! min/max_reply_length and match the pattern over the shorter of the two,
//! wildcard half bytes aside; as keepalived, at most max + 1 bytes are read.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use super::{fmt_duration, CheckResult};
use crate::spec::UdpSpec;

pub(super) async fn check(target: SocketAddr, timeout: Duration, spec: &UdpSpec) -> CheckResult {
    let what = format!("udp {target}");
    let attempt = async {
        let sock = super::connected_udp(target).await?;
        sock.send(&spec.payload).await?;
        let mut buf = vec![0u8; usize::from(spec.reply_lengths.1) + 1];
        let n = sock.recv(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(reply)) => match mismatch(&reply, spec) {
            None => CheckResult::up(format!("{what}: reply of {} bytes", reply.len())),
            Some(why) => CheckResult::down(format!("{what}: {why}")),
        },
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => {
            CheckResult::down(format!("{what}: ICMP port unreachable"))
        }
        Ok(Err(e)) => CheckResult::down(format!("{what}: {e}")),
        Err(_) if spec.require_reply => {
            CheckResult::down(format!("{what}: no reply within {}", fmt_duration(timeout)))
        }
        Err(_) => CheckResult::up(format!(
            "{what}: no ICMP error within {}",
            fmt_duration(timeout)
        )),
    }
}

/// Why `reply` fails the pattern and lengths, if it does.
fn mismatch(reply: &[u8], spec: &UdpSpec) -> Option<String> {
    let pattern = spec.reply_pattern.as_ref()?;
    let (min, max) = spec.reply_lengths;
    if reply.len() < usize::from(min) || reply.len() > usize::from(max) {
        return Some(format!(
            "reply of {} bytes, expected {min} to {max}",
            reply.len()
        ));
    }
    let at = reply
        .iter()
        .zip(pattern)
        .position(|(b, (want, wild))| (b ^ want) & !wild != 0)?;
    Some(format!(
        "reply byte {at} is {:02x}, the pattern wants {:02x}",
        reply[at], pattern[at].0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pattern: &[(u8, u8)], min: u16, max: u16) -> UdpSpec {
        UdpSpec {
            payload: vec![],
            require_reply: true,
            reply_pattern: Some(pattern.to_vec()),
            reply_lengths: (min, max),
        }
    }

    #[test]
    fn pattern_and_lengths_as_keepalived() {
        let s = spec(&[(0xab, 0), (0x01, 0xf0), (0, 0xff)], 0, 255);
        assert_eq!(mismatch(&[0xab, 0x71, 0x55, 0x99], &s), None);
        assert!(mismatch(&[0xab, 0x72], &s).unwrap().contains("byte 1"));
        // Only the shorter of reply and pattern is compared.
        assert_eq!(mismatch(&[0xab], &s), None);
        assert!(mismatch(&[0xab], &spec(&[(0xab, 0)], 2, 255)).is_some());
        assert!(mismatch(&[0xab; 4], &spec(&[(0xab, 0)], 0, 3)).is_some());
        let plain = UdpSpec {
            reply_pattern: None,
            ..s
        };
        assert_eq!(mismatch(&[1, 2, 3], &plain), None, "no pattern: any reply");
    }
}
