//! One attempt of each check type, one file per type (as keepalived's
//! check_tcp.c, check_http.c, ...). Every attempt is bounded by the check's
//! timeout and never panics; failures come back as a reason string.

mod dns;
mod file;
mod http;
mod misc;
mod ping;
mod smtp;
mod ssl;
mod tcp;
mod udp;

use std::time::Duration;

use crate::spec::{CheckConfig, CheckKind};

pub use misc::run_command;
pub(crate) use misc::{run_here, KILL_GRACE};

/// The verdict of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The attempt passed.
    pub ok: bool,
    /// misc_dynamic: the weight the script asked for (exit code − 2); a
    /// weighted file check: the configured weight plus the file's share.
    pub weight: Option<u32>,
    /// What happened, in words, for logs and events.
    pub reason: String,
}

impl CheckResult {
    pub(crate) fn up(reason: impl Into<String>) -> Self {
        Self {
            ok: true,
            weight: None,
            reason: reason.into(),
        }
    }

    pub(crate) fn down(reason: impl Into<String>) -> Self {
        Self {
            ok: false,
            weight: None,
            reason: reason.into(),
        }
    }
}

/// Runs one attempt of `check` now, without retries: what the monitor calls
/// every delay_loop, exposed so tools can check a server on demand.
pub async fn check_once(check: &CheckConfig) -> CheckResult {
    match &check.kind {
        CheckKind::Tcp => tcp::check(check.target, check.timeout).await,
        CheckKind::Http(h) => http::check(check.target, check.timeout, h).await,
        CheckKind::Ssl(h) => ssl::check(check.target, check.timeout, h).await,
        CheckKind::Smtp(s) => smtp::check(check.target, check.timeout, s).await,
        CheckKind::Dns(d) => dns::check(check.target, check.timeout, d).await,
        CheckKind::File(f) => file::check(f, check.server_weight).await,
        CheckKind::Misc(m) => misc::check(m, check.timeout).await,
        CheckKind::Udp(u) => udp::check(check.target, check.timeout, u).await,
        CheckKind::Ping => ping::check(check.target.ip(), check.timeout).await,
    }
}

/// A UDP socket of `target`'s family, on any local address and port,
/// connected to `target` (so ICMP port unreachable surfaces as
/// ECONNREFUSED); for the UDP and DNS checks.
pub(crate) async fn connected_udp(
    target: std::net::SocketAddr,
) -> std::io::Result<tokio::net::UdpSocket> {
    let local: std::net::SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(local).await?;
    sock.connect(target).await?;
    Ok(sock)
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    let s = format!("{:.3}", d.as_secs_f64());
    format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
}
