//! Configuration of health checks and of the service's health policy, exactly
//! the keys of `docs/rvsd.md` ("Planned additions"), with keepalived's defaults.
//!
//! Times are seconds; integers as in keepalived, fractions (`0.2`) accepted so
//! tests and impatient operators can run fast loops.
//!
//! The daemon embeds [`CheckSpec`] as the type of `real_server.check` entries
//! and copies the service keys; [`ServiceHealthSpec`] and
//! [`RealServerHealthSpec`] parse the same keys on their own (unknown keys are
//! errors, as everywhere in RVS).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rvs_vocab::ForwardMethod;
use serde::Deserialize;

/// keepalived's `connect_timeout` default (seconds).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// keepalived's `delay_loop` default (seconds), for the service and its checks.
pub const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
/// keepalived's `retry` default for every check but MISC.
pub const DEFAULT_RETRY: u32 = 1;
/// keepalived's `retry` default for MISC_CHECK: a failing script counts at once.
pub const DEFAULT_MISC_RETRY: u32 = 0;
/// keepalived's `delay_before_retry` default for every check but HTTP.
pub const DEFAULT_DELAY_BEFORE_RETRY: Duration = Duration::from_secs(1);
/// keepalived's `delay_before_retry` default for HTTP_GET / SSL_GET.
pub const DEFAULT_HTTP_DELAY_BEFORE_RETRY: Duration = Duration::from_secs(3);
/// keepalived's `quorum` default.
pub const DEFAULT_QUORUM: u32 = 1;
/// The longest time any of these keys accepts: a day. Longer is a typo.
const MAX_SECONDS: f64 = 86_400.0;

/// A configuration the operator has to correct; each message says what to
/// write instead.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SpecError {
    /// An option that belongs to another check type.
    #[error("`{option}` is not an option of a {kind} check; remove it (a {kind} check takes: {allowed})")]
    OptionNotForType {
        /// The offending key.
        option: &'static str,
        /// The check's `type`.
        kind: &'static str,
        /// The keys that type takes.
        allowed: &'static str,
    },
    /// A misc check without its command.
    #[error("a misc check needs `script`, the command to run, e.g. script = \"/usr/local/bin/check 10.0.2.11\"")]
    MissingScript,
    /// The script line does not split into words.
    #[error("`script` {0}")]
    BadScript(String),
    /// The digest is not an MD5 in hex.
    #[error("`digest` must be 32 hex digits, the MD5 of the expected body (as keepalived's genhash prints it), not {0:?}")]
    BadDigest(String),
    /// The payload is not hex.
    #[error("`payload` must be hex bytes such as \"0a0b0c\" or \"0a 0b 0c\", not {0:?}")]
    BadPayload(String),
    /// A time out of range.
    #[error("`{option}` must be a number of seconds {range}, not {value}")]
    BadDuration {
        /// The key.
        option: &'static str,
        /// The allowed range, in words.
        range: &'static str,
        /// What was written.
        value: f64,
    },
    /// An HTTP status code that cannot exist.
    #[error("`status_codes` must list HTTP codes between 100 and 599 (at least one), not {0:?}")]
    BadStatusCodes(Vec<u16>),
    /// An HTTP path that cannot go on a request line.
    #[error("`path` must start with '/' and contain no spaces or control characters, not {0:?}")]
    BadPath(String),
    /// Port 0 cannot be connected to.
    #[error("`connect_port` must be 1..65535; leave it out to use the real server's port")]
    BadPort,
    /// Quorum 0 would mean "always up".
    #[error("`quorum` must be at least 1 (keepalived's minimum); the default is 1")]
    BadQuorum,
}

/// Seconds as written in the file: an integer or a fraction.
#[derive(Debug, Clone, Copy)]
struct Seconds(f64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of seconds, like 5 or 0.5")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Seconds, E> {
                Ok(Seconds(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

fn duration(
    option: &'static str,
    value: Option<Seconds>,
    default: Duration,
    allow_zero: bool,
) -> Result<Duration, SpecError> {
    let Some(Seconds(v)) = value else {
        return Ok(default);
    };
    let ok = v.is_finite() && v <= MAX_SECONDS && if allow_zero { v >= 0.0 } else { v > 0.0 };
    if !ok {
        return Err(SpecError::BadDuration {
            option,
            range: if allow_zero {
                "from 0 to 86400"
            } else {
                "above 0 and at most 86400"
            },
            value: v,
        });
    }
    Ok(Duration::from_secs_f64(v))
}

fn opt_duration(
    option: &'static str,
    value: Option<Seconds>,
) -> Result<Option<Duration>, SpecError> {
    value
        .map(|v| duration(option, Some(v), Duration::ZERO, false))
        .transpose()
}

/// The check types of `type = "..."`, keepalived's TCP_CHECK, HTTP_GET,
/// MISC_CHECK, UDP_CHECK and PING_CHECK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CheckType {
    Tcp,
    Http,
    Misc,
    Udp,
    Ping,
}

impl CheckType {
    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Http => "http",
            Self::Misc => "misc",
            Self::Udp => "udp",
            Self::Ping => "ping",
        }
    }

    fn allowed(self) -> &'static str {
        match self {
            Self::Tcp => "connect_ip connect_port connect_timeout delay_loop retry delay_before_retry warmup",
            Self::Http => "path status_codes digest connect_ip connect_port connect_timeout delay_loop retry delay_before_retry warmup",
            Self::Misc => "script misc_timeout misc_dynamic delay_loop retry delay_before_retry warmup",
            Self::Udp => "payload require_reply connect_ip connect_port connect_timeout delay_loop retry delay_before_retry warmup",
            Self::Ping => "connect_ip connect_timeout delay_loop retry delay_before_retry warmup",
        }
    }
}

/// One check table exactly as written; validated into [`CheckSpec`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    #[serde(rename = "type")]
    kind: CheckType,
    path: Option<String>,
    status_codes: Option<Vec<u16>>,
    digest: Option<String>,
    connect_ip: Option<IpAddr>,
    connect_port: Option<u16>,
    connect_timeout: Option<Seconds>,
    delay_loop: Option<Seconds>,
    retry: Option<u32>,
    delay_before_retry: Option<Seconds>,
    warmup: Option<Seconds>,
    script: Option<String>,
    misc_timeout: Option<Seconds>,
    misc_dynamic: Option<bool>,
    payload: Option<String>,
    require_reply: Option<bool>,
}

/// What a check does, with the options of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// TCP_CHECK: up when a TCP connection is accepted.
    Tcp,
    /// HTTP_GET: up when the status (and optionally the body digest) matches.
    Http(HttpSpec),
    /// MISC_CHECK: up when the script exits 0 (or 2..255 with misc_dynamic).
    Misc(MiscSpec),
    /// UDP_CHECK: down on ICMP port unreachable, or on silence when a reply is required.
    Udp(UdpSpec),
    /// PING_CHECK: up when an ICMP echo reply comes back.
    Ping,
}

impl CheckKind {
    /// The `type` value, for logs and event reasons.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Http(_) => "http",
            Self::Misc(_) => "misc",
            Self::Udp(_) => "udp",
            Self::Ping => "ping",
        }
    }
}

/// HTTP_GET options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSpec {
    /// Request path (default `/`).
    pub path: String,
    /// Accepted status codes (default `[200]`).
    pub status_codes: Vec<u16>,
    /// MD5 the body must have, when set (keepalived's `digest`).
    pub digest: Option<[u8; 16]>,
}

/// MISC_CHECK options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscSpec {
    /// The script line as written, for logs.
    pub script: String,
    /// The script line split into program and arguments (shell-like quoting,
    /// no shell: as keepalived, which executes the words itself).
    pub argv: Vec<String>,
    /// `misc_timeout`; `None` means the check's delay_loop, as keepalived.
    pub timeout: Option<Duration>,
    /// `misc_dynamic`: exit codes 2..=255 mean up with weight `code - 2`.
    pub dynamic: bool,
}

/// UDP_CHECK options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpSpec {
    /// Datagram to send (from hex; default empty).
    pub payload: Vec<u8>,
    /// Whether silence until connect_timeout counts as down.
    pub require_reply: bool,
}

/// One validated `[[service.real_server.check]]` table, defaults applied
/// except those that come from the server or the service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawCheck")]
pub struct CheckSpec {
    /// What the check does.
    pub kind: CheckKind,
    /// Address to check; `None` = the real server's.
    pub connect_ip: Option<IpAddr>,
    /// Port to check; `None` = the real server's.
    pub connect_port: Option<u16>,
    /// Bound of one attempt (network checks), default 5 s.
    pub connect_timeout: Duration,
    /// Time between checks; `None` = the service's delay_loop.
    pub delay_loop: Option<Duration>,
    /// Extra failures tolerated before down: down after `retry + 1` in a row.
    pub retry: u32,
    /// Time between the attempts of a failing series.
    pub delay_before_retry: Duration,
    /// Random delay up to this before the first check, to spread the load.
    pub warmup: Duration,
}

impl TryFrom<RawCheck> for CheckSpec {
    type Error = SpecError;

    fn try_from(r: RawCheck) -> Result<Self, SpecError> {
        let t = r.kind;
        let reject = |present: bool, option: &'static str| -> Result<(), SpecError> {
            if present {
                Err(SpecError::OptionNotForType {
                    option,
                    kind: t.name(),
                    allowed: t.allowed(),
                })
            } else {
                Ok(())
            }
        };
        if t != CheckType::Http {
            reject(r.path.is_some(), "path")?;
            reject(r.status_codes.is_some(), "status_codes")?;
            reject(r.digest.is_some(), "digest")?;
        }
        if t != CheckType::Misc {
            reject(r.script.is_some(), "script")?;
            reject(r.misc_timeout.is_some(), "misc_timeout")?;
            reject(r.misc_dynamic.is_some(), "misc_dynamic")?;
        } else {
            reject(r.connect_ip.is_some(), "connect_ip")?;
            reject(r.connect_port.is_some(), "connect_port")?;
            reject(r.connect_timeout.is_some(), "connect_timeout")?;
        }
        if t != CheckType::Udp {
            reject(r.payload.is_some(), "payload")?;
            reject(r.require_reply.is_some(), "require_reply")?;
        }
        if t == CheckType::Ping {
            reject(r.connect_port.is_some(), "connect_port")?;
        }
        if r.connect_port == Some(0) {
            return Err(SpecError::BadPort);
        }

        let kind = match t {
            CheckType::Tcp => CheckKind::Tcp,
            CheckType::Ping => CheckKind::Ping,
            CheckType::Http => {
                let path = r.path.unwrap_or_else(|| "/".into());
                if !path.starts_with('/')
                    || path.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(SpecError::BadPath(path));
                }
                let status_codes = r.status_codes.unwrap_or_else(|| vec![200]);
                if status_codes.is_empty() || status_codes.iter().any(|c| !(100..=599).contains(c))
                {
                    return Err(SpecError::BadStatusCodes(status_codes));
                }
                let digest = r.digest.map(|d| parse_digest(&d)).transpose()?;
                CheckKind::Http(HttpSpec {
                    path,
                    status_codes,
                    digest,
                })
            }
            CheckType::Misc => {
                let script = r.script.ok_or(SpecError::MissingScript)?;
                let argv = split_words(&script).map_err(SpecError::BadScript)?;
                CheckKind::Misc(MiscSpec {
                    script,
                    argv,
                    timeout: opt_duration("misc_timeout", r.misc_timeout)?,
                    dynamic: r.misc_dynamic.unwrap_or(false),
                })
            }
            CheckType::Udp => CheckKind::Udp(UdpSpec {
                payload: match r.payload {
                    Some(p) => parse_hex(&p).ok_or(SpecError::BadPayload(p))?,
                    None => Vec::new(),
                },
                require_reply: r.require_reply.unwrap_or(false),
            }),
        };
        let retry_default = if t == CheckType::Misc {
            DEFAULT_MISC_RETRY
        } else {
            DEFAULT_RETRY
        };
        let dbr_default = if t == CheckType::Http {
            DEFAULT_HTTP_DELAY_BEFORE_RETRY
        } else {
            DEFAULT_DELAY_BEFORE_RETRY
        };
        Ok(Self {
            kind,
            connect_ip: r.connect_ip,
            connect_port: r.connect_port,
            connect_timeout: duration(
                "connect_timeout",
                r.connect_timeout,
                DEFAULT_CONNECT_TIMEOUT,
                false,
            )?,
            delay_loop: opt_duration("delay_loop", r.delay_loop)?,
            retry: r.retry.unwrap_or(retry_default),
            delay_before_retry: duration(
                "delay_before_retry",
                r.delay_before_retry,
                dbr_default,
                true,
            )?,
            warmup: duration("warmup", r.warmup, Duration::ZERO, true)?,
        })
    }
}

impl CheckSpec {
    /// Fills in what comes from the real server (address, port) and from the
    /// service (delay_loop), giving what [`crate::HealthMonitor`] runs.
    pub fn resolve(&self, server: SocketAddr, service_delay_loop: Duration) -> CheckConfig {
        let delay_loop = self.delay_loop.unwrap_or(service_delay_loop);
        let timeout = match &self.kind {
            CheckKind::Misc(m) => m.timeout.unwrap_or(delay_loop),
            _ => self.connect_timeout,
        };
        CheckConfig {
            kind: self.kind.clone(),
            target: SocketAddr::new(
                self.connect_ip.unwrap_or(server.ip()),
                self.connect_port.unwrap_or(server.port()),
            ),
            timeout,
            delay_loop,
            retry: self.retry,
            delay_before_retry: self.delay_before_retry,
            warmup: self.warmup,
        }
    }
}

/// A check ready to run: every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    /// What the check does.
    pub kind: CheckKind,
    /// Where it connects (ping uses the address only; misc uses neither).
    pub target: SocketAddr,
    /// Bound of one attempt: connect_timeout, or misc_timeout for scripts.
    pub timeout: Duration,
    /// Time between checks while nothing fails.
    pub delay_loop: Duration,
    /// Down after `retry + 1` consecutive failures.
    pub retry: u32,
    /// Time between the attempts of a failing series.
    pub delay_before_retry: Duration,
    /// Random delay up to this before the first attempt.
    pub warmup: Duration,
}

/// `[service.sorry_server]`: where traffic goes while quorum is lost.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SorryServerSpec {
    /// Its address.
    pub address: IpAddr,
    /// Its port; `None` = the service's.
    pub port: Option<u16>,
    /// How packets reach it (`dr`, `nat`, `tun`, as for real servers).
    #[serde(default, with = "rvs_vocab::short_name")]
    pub method: ForwardMethod,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceHealth {
    delay_loop: Option<Seconds>,
    quorum: Option<u32>,
    hysteresis: Option<u32>,
    #[serde(default)]
    inhibit_on_failure: bool,
    #[serde(default)]
    alpha: bool,
    #[serde(default)]
    omega: bool,
    quorum_up: Option<String>,
    quorum_down: Option<String>,
    sorry_server: Option<SorryServerSpec>,
}

/// The health keys of a `[[service]]` (keepalived's virtual_server ones).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawServiceHealth")]
pub struct ServiceHealthSpec {
    /// Default delay_loop of this service's checks (60 s).
    pub delay_loop: Duration,
    /// Live weight needed for quorum (1).
    pub quorum: u32,
    /// Margin around quorum against flapping (0).
    pub hysteresis: u32,
    /// Failed servers stay with weight 0 instead of being removed.
    pub inhibit_on_failure: bool,
    /// Checked servers start down until their checks pass.
    pub alpha: bool,
    /// Run quorum_down when the daemon stops.
    pub omega: bool,
    /// Command run when quorum is gained.
    pub quorum_up: Option<String>,
    /// Command run when quorum is lost (and on stop with omega).
    pub quorum_down: Option<String>,
    /// Server that replaces the pool while quorum is lost.
    pub sorry_server: Option<SorryServerSpec>,
}

impl Default for ServiceHealthSpec {
    fn default() -> Self {
        Self {
            delay_loop: DEFAULT_DELAY_LOOP,
            quorum: DEFAULT_QUORUM,
            hysteresis: 0,
            inhibit_on_failure: false,
            alpha: false,
            omega: false,
            quorum_up: None,
            quorum_down: None,
            sorry_server: None,
        }
    }
}

impl TryFrom<RawServiceHealth> for ServiceHealthSpec {
    type Error = SpecError;

    fn try_from(r: RawServiceHealth) -> Result<Self, SpecError> {
        let quorum = r.quorum.unwrap_or(DEFAULT_QUORUM);
        if quorum == 0 {
            return Err(SpecError::BadQuorum);
        }
        Ok(Self {
            delay_loop: duration("delay_loop", r.delay_loop, DEFAULT_DELAY_LOOP, false)?,
            quorum,
            hysteresis: r.hysteresis.unwrap_or(0),
            inhibit_on_failure: r.inhibit_on_failure,
            alpha: r.alpha,
            omega: r.omega,
            quorum_up: r.quorum_up,
            quorum_down: r.quorum_down,
            sorry_server: r.sorry_server,
        })
    }
}

/// The health keys of a `[[service.real_server]]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServerHealthSpec {
    /// Overrides the service's inhibit_on_failure when set.
    #[serde(default)]
    pub inhibit_on_failure: Option<bool>,
    /// The checks; all must pass for the server to be up.
    #[serde(default)]
    pub check: Vec<CheckSpec>,
}

impl RealServerHealthSpec {
    /// The server's own setting, else the service's.
    pub fn inhibit_on_failure(&self, service: &ServiceHealthSpec) -> bool {
        self.inhibit_on_failure
            .unwrap_or(service.inhibit_on_failure)
    }
}

fn parse_digest(s: &str) -> Result<[u8; 16], SpecError> {
    let bytes = parse_hex(s)
        .filter(|b| b.len() == 16 && !s.chars().any(char::is_whitespace))
        .ok_or_else(|| SpecError::BadDigest(s.into()))?;
    let mut out = [0u8; 16];
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// Hex digits in pairs; whitespace between pairs is ignored.
fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for word in s.split_whitespace() {
        if word.len() % 2 != 0 {
            return None;
        }
        let b = word.as_bytes();
        for pair in b.chunks(2) {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        }
    }
    Some(out)
}

/// Splits a command line into words: whitespace separates, single quotes
/// keep everything, double quotes keep everything but `\"` and `\\`, a
/// backslash outside quotes escapes the next character.
pub(crate) fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("has an unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("has an unterminated \" quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("has an unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("ends with a lone backslash".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    if words.is_empty() {
        return Err("is empty; name the program to run".into());
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> Result<CheckSpec, String> {
        toml::from_str::<CheckSpec>(toml_text).map_err(|e| e.to_string())
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn tcp_defaults_are_keepalived_s() {
        let c = check("type = \"tcp\"").unwrap();
        assert_eq!(c.kind, CheckKind::Tcp);
        assert_eq!(c.connect_timeout, secs(5));
        assert_eq!(c.delay_loop, None);
        assert_eq!(c.retry, 1);
        assert_eq!(c.delay_before_retry, secs(1));
        assert_eq!(c.warmup, Duration::ZERO);
        assert_eq!(c.connect_ip, None);
        assert_eq!(c.connect_port, None);
    }

    #[test]
    fn http_defaults_and_full_table() {
        let c = check("type = \"http\"").unwrap();
        assert_eq!(c.delay_before_retry, secs(3));
        assert_eq!(c.retry, 1);
        assert_eq!(
            c.kind,
            CheckKind::Http(HttpSpec {
                path: "/".into(),
                status_codes: vec![200],
                digest: None
            })
        );
        // Every key of the documented example.
        let c = check(
            r#"
            type = "http"
            path = "/health"
            status_codes = [200, 204]
            digest = "9b2c0a4e5e6f7d8c9b2c0a4e5e6f7d8c"
            connect_ip = "10.0.2.11"
            connect_port = 8080
            connect_timeout = 2
            delay_loop = 10
            retry = 4
            delay_before_retry = 0.5
            warmup = 7
            "#,
        )
        .unwrap();
        let CheckKind::Http(h) = &c.kind else {
            panic!("not http: {c:?}")
        };
        assert_eq!(h.path, "/health");
        assert_eq!(h.status_codes, vec![200, 204]);
        assert_eq!(h.digest.unwrap()[0], 0x9b);
        assert_eq!(h.digest.unwrap()[15], 0x8c);
        assert_eq!(c.connect_ip, Some("10.0.2.11".parse().unwrap()));
        assert_eq!(c.connect_port, Some(8080));
        assert_eq!(c.connect_timeout, secs(2));
        assert_eq!(c.delay_loop, Some(secs(10)));
        assert_eq!(c.retry, 4);
        assert_eq!(c.delay_before_retry, Duration::from_millis(500));
        assert_eq!(c.warmup, secs(7));
    }

    #[test]
    fn misc_defaults_and_options() {
        let c = check(
            r#"type = "misc"
               script = "/usr/local/bin/check '10.0.2.11 x' \"a\\\"b\" c\\ d""#,
        )
        .unwrap();
        assert_eq!(c.retry, 0, "keepalived's misc retry default is 0");
        assert_eq!(c.delay_before_retry, secs(1));
        let CheckKind::Misc(m) = &c.kind else {
            panic!("not misc")
        };
        assert_eq!(
            m.argv,
            vec!["/usr/local/bin/check", "10.0.2.11 x", "a\"b", "c d"]
        );
        assert_eq!(m.timeout, None);
        assert!(!m.dynamic);
        let c =
            check("type = \"misc\"\nscript = \"/bin/true\"\nmisc_timeout = 5\nmisc_dynamic = true")
                .unwrap();
        let CheckKind::Misc(m) = &c.kind else {
            panic!("not misc")
        };
        assert_eq!(m.timeout, Some(secs(5)));
        assert!(m.dynamic);
    }

    #[test]
    fn udp_and_ping() {
        let c = check("type = \"udp\"").unwrap();
        assert_eq!(
            c.kind,
            CheckKind::Udp(UdpSpec {
                payload: vec![],
                require_reply: false
            })
        );
        let c = check("type = \"udp\"\npayload = \"0a0B ff\"\nrequire_reply = true").unwrap();
        assert_eq!(
            c.kind,
            CheckKind::Udp(UdpSpec {
                payload: vec![0x0a, 0x0b, 0xff],
                require_reply: true
            })
        );
        let c = check("type = \"ping\"\nconnect_ip = \"10.0.2.12\"").unwrap();
        assert_eq!(c.kind, CheckKind::Ping);
        assert_eq!(c.retry, 1);
    }

    #[test]
    fn refusals_name_the_fix() {
        let cases: &[(&str, &str)] = &[
            ("type = \"tcp\"\nbogus = 1", "unknown field `bogus`"),
            ("type = \"icmp\"", "unknown variant `icmp`"),
            ("path = \"/\"", "missing field `type`"),
            (
                "type = \"tcp\"\npath = \"/x\"",
                "`path` is not an option of a tcp check",
            ),
            (
                "type = \"misc\"\nscript = \"/bin/true\"\nconnect_timeout = 3",
                "`connect_timeout` is not an option of a misc check",
            ),
            (
                "type = \"misc\"\nscript = \"/bin/true\"\nconnect_port = 3",
                "`connect_port` is not an option of a misc check",
            ),
            (
                "type = \"ping\"\nconnect_port = 80",
                "`connect_port` is not an option of a ping check",
            ),
            (
                "type = \"http\"\npayload = \"00\"",
                "`payload` is not an option of a http check",
            ),
            (
                "type = \"tcp\"\nmisc_dynamic = true",
                "`misc_dynamic` is not an option of a tcp check",
            ),
            (
                "type = \"udp\"\nstatus_codes = [200]",
                "`status_codes` is not an option of a udp check",
            ),
            ("type = \"misc\"", "needs `script`"),
            ("type = \"misc\"\nscript = \"  \"", "`script` is empty"),
            (
                "type = \"misc\"\nscript = \"/bin/x 'a\"",
                "unterminated ' quote",
            ),
            ("type = \"http\"\ndigest = \"abc\"", "32 hex digits"),
            (
                "type = \"http\"\ndigest = \"zz2c0a4e5e6f7d8c9b2c0a4e5e6f7d8c\"",
                "32 hex digits",
            ),
            ("type = \"http\"\nstatus_codes = []", "between 100 and 599"),
            (
                "type = \"http\"\nstatus_codes = [700]",
                "between 100 and 599",
            ),
            ("type = \"http\"\npath = \"health\"", "must start with '/'"),
            ("type = \"http\"\npath = \"/a b\"", "must start with '/'"),
            ("type = \"udp\"\npayload = \"0g\"", "hex bytes"),
            ("type = \"udp\"\npayload = \"abc\"", "hex bytes"),
            (
                "type = \"tcp\"\nconnect_timeout = 0",
                "`connect_timeout` must be a number of seconds above 0",
            ),
            ("type = \"tcp\"\ndelay_loop = -1", "`delay_loop` must be"),
            (
                "type = \"tcp\"\nwarmup = 100000",
                "`warmup` must be a number of seconds from 0 to 86400",
            ),
            (
                "type = \"tcp\"\nconnect_port = 0",
                "`connect_port` must be 1..65535",
            ),
            ("type = \"tcp\"\nretry = -1", "invalid value"),
        ];
        for (text, want) in cases {
            let err = check(text).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn resolve_fills_server_and_service_values() {
        let server: SocketAddr = "10.0.2.11:80".parse().unwrap();
        let c = check("type = \"tcp\"").unwrap().resolve(server, secs(30));
        assert_eq!(c.target, server);
        assert_eq!(c.delay_loop, secs(30));
        assert_eq!(c.timeout, secs(5));
        let c =
            check("type = \"tcp\"\nconnect_ip = \"10.0.2.99\"\nconnect_port = 81\ndelay_loop = 2")
                .unwrap()
                .resolve(server, secs(30));
        assert_eq!(c.target, "10.0.2.99:81".parse().unwrap());
        assert_eq!(c.delay_loop, secs(2));
        // misc_timeout defaults to the delay_loop, as keepalived.
        let c = check("type = \"misc\"\nscript = \"/bin/true\"")
            .unwrap()
            .resolve(server, secs(30));
        assert_eq!(c.timeout, secs(30));
        let c = check("type = \"misc\"\nscript = \"/bin/true\"\nmisc_timeout = 4")
            .unwrap()
            .resolve(server, secs(30));
        assert_eq!(c.timeout, secs(4));
    }

    #[test]
    fn service_keys_defaults_and_full() {
        let s: ServiceHealthSpec = toml::from_str("").unwrap();
        assert_eq!(s, ServiceHealthSpec::default());
        assert_eq!(s.delay_loop, secs(60));
        assert_eq!(s.quorum, 1);
        assert_eq!(s.hysteresis, 0);
        let s: ServiceHealthSpec = toml::from_str(
            r#"
            delay_loop = 6
            quorum = 3
            hysteresis = 1
            inhibit_on_failure = true
            alpha = true
            omega = true
            quorum_up = "/usr/local/bin/notify up"
            quorum_down = "/usr/local/bin/notify down"
            [sorry_server]
            address = "10.0.2.99"
            port = 80
            method = "nat"
            "#,
        )
        .unwrap();
        assert_eq!(s.delay_loop, secs(6));
        assert_eq!((s.quorum, s.hysteresis), (3, 1));
        assert!(s.inhibit_on_failure && s.alpha && s.omega);
        assert_eq!(s.quorum_up.as_deref(), Some("/usr/local/bin/notify up"));
        assert_eq!(s.quorum_down.as_deref(), Some("/usr/local/bin/notify down"));
        assert_eq!(
            s.sorry_server,
            Some(SorryServerSpec {
                address: "10.0.2.99".parse().unwrap(),
                port: Some(80),
                method: ForwardMethod::Masq
            })
        );
        let e = toml::from_str::<ServiceHealthSpec>("quorum = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 1"), "{e}");
        let e = toml::from_str::<ServiceHealthSpec>(
            "[sorry_server]\naddress = \"10.0.2.9\"\nweight = 2",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `weight`"), "{e}");
    }

    #[test]
    fn real_server_keys_and_override() {
        let r: RealServerHealthSpec = toml::from_str(
            r#"
            inhibit_on_failure = false
            [[check]]
            type = "tcp"
            [[check]]
            type = "http"
            path = "/health"
            "#,
        )
        .unwrap();
        assert_eq!(r.check.len(), 2);
        let svc = ServiceHealthSpec {
            inhibit_on_failure: true,
            ..Default::default()
        };
        assert!(!r.inhibit_on_failure(&svc));
        assert!(RealServerHealthSpec::default().inhibit_on_failure(&svc));
    }
}
