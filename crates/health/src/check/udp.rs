//! UDP_CHECK: sends the payload from a connected socket and waits up to
//! connect_timeout. A reply = up. ICMP port unreachable (surfacing as
//! ECONNREFUSED on a connected socket) = down. Silence = up, unless
//! `require_reply`, then down.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::{fmt_duration, CheckResult};
use crate::spec::UdpSpec;

pub(super) async fn check(target: SocketAddr, timeout: Duration, spec: &UdpSpec) -> CheckResult {
    let what = format!("udp {target}");
    let attempt = async {
        let local: SocketAddr = if target.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local).await?;
        sock.connect(target).await?;
        sock.send(&spec.payload).await?;
        let mut buf = [0u8; 2048];
        sock.recv(&mut buf).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(n)) => CheckResult::up(format!("{what}: reply of {n} bytes")),
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
