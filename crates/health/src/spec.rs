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
    /// The reply pattern is not hex with `x` wildcards.
    #[error("`reply_pattern` must be hex bytes in which an `x` stands for any half byte, such as \"0a x1 xx\", not {0:?}")]
    BadReplyPattern(String),
    /// Lengths or a pattern without a required reply.
    #[error("`{0}` needs a reply: set require_reply = true (or leave it out)")]
    ReplyOptionWithoutReply(&'static str),
    /// Lengths without a pattern: keepalived ignores them then.
    #[error("`{0}` is only checked together with `reply_pattern` (as in keepalived); add a pattern or remove it")]
    LengthWithoutPattern(&'static str),
    /// min above max: the check could never pass.
    #[error(
        "`min_reply_length` {min} is above `max_reply_length` {max}: the check would always fail"
    )]
    ReplyLengths {
        /// min_reply_length.
        min: u16,
        /// max_reply_length.
        max: u16,
    },
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
    /// An HTTP status code or range that cannot exist.
    #[error("`status_codes` must list HTTP codes between 100 and 599 or ranges such as \"200-299\" (at least one), not {0}")]
    BadStatusCodes(String),
    /// A Host header or SNI name that would break the request.
    #[error(
        "`{option}` must be a host name (no spaces, control characters or '/'), not {value:?}"
    )]
    BadHostName {
        /// The key.
        option: &'static str,
        /// What was written.
        value: String,
    },
    /// Basic auth needs both halves.
    #[error("`username` and `password` go together (HTTP basic auth); give both or neither")]
    HalfCredentials,
    /// A user name basic auth cannot carry.
    #[error("`username` must not contain ':' or control characters (HTTP basic auth), not {0:?}")]
    BadUsername(String),
    /// SNI only exists with TLS.
    #[error("`sni_name` needs `enable_sni = true`")]
    SniNameWithoutSni,
    /// The SMTP HELO argument would break the command line.
    #[error("`helo_name` must be one word without control characters, not {0:?}")]
    BadHeloName(String),
    /// A DNS query type keepalived does not send.
    #[error("`query_type` must be one of A, NS, CNAME, SOA, MX, TXT, AAAA, RRSIG, DNSKEY (keepalived's DNS_CHECK types), not {0:?}")]
    BadQueryType(String),
    /// A DNS name that cannot be encoded.
    #[error("`query_name` must be a domain name such as \"example.org\" or \".\" (labels of 1..63 characters, 255 in all), not {0:?}")]
    BadQueryName(String),
    /// A file check without its file.
    #[error("a file check needs `file`, the path of the file holding a number, e.g. file = \"/run/rvs/rs1.weight\"")]
    MissingFile,
    /// The file multiplier is outside keepalived's range.
    #[error("`weight` of a file check must be -2147483647..2147483647, not {0}")]
    BadFileWeight(i64),
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
/// SSL_GET, MISC_CHECK, UDP_CHECK, PING_CHECK, SMTP_CHECK, DNS_CHECK and
/// FILE_CHECK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CheckType {
    Tcp,
    Http,
    Ssl,
    Misc,
    Udp,
    Ping,
    Smtp,
    Dns,
    File,
}

impl CheckType {
    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Http => "http",
            Self::Ssl => "ssl",
            Self::Misc => "misc",
            Self::Udp => "udp",
            Self::Ping => "ping",
            Self::Smtp => "smtp",
            Self::Dns => "dns",
            Self::File => "file",
        }
    }

    fn allowed(self) -> &'static str {
        match self {
            Self::Tcp => "connect_ip connect_port connect_timeout delay_loop retry delay_before_retry warmup",
            Self::Http => "path status_codes digest virtualhost username password connect_ip connect_port connect_timeout delay_loop retry delay_before_retry warmup",
            Self::Ssl => "path status_codes digest virtualhost username password enable_sni sni_name connect_ip connect_port connect_timeout delay_loop retry delay_before_retry warmup",
            Self::Misc => "script misc_timeout misc_dynamic delay_loop retry delay_before_retry warmup",
            Self::Udp => "payload require_reply reply_pattern min_reply_length max_reply_length connect_ip connect_port connect_timeout delay_loop retry delay_before_retry warmup",
            Self::Ping => "connect_ip connect_timeout delay_loop retry delay_before_retry warmup",
            Self::Smtp => "helo_name connect_ip connect_port connect_timeout delay_loop retry delay_before_retry warmup",
            Self::Dns => "query_type query_name connect_ip connect_port connect_timeout delay_loop retry delay_before_retry warmup",
            Self::File => "file weight reverse delay_loop",
        }
    }

    fn is_http(self) -> bool {
        matches!(self, Self::Http | Self::Ssl)
    }
}

/// One entry of `status_codes`: a code, or a range written "200-299".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawStatus {
    Code(i64),
    Range(String),
}

/// One check table exactly as written; validated into [`CheckSpec`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    #[serde(rename = "type")]
    kind: CheckType,
    path: Option<String>,
    status_codes: Option<Vec<RawStatus>>,
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
    reply_pattern: Option<String>,
    min_reply_length: Option<u16>,
    max_reply_length: Option<u16>,
    virtualhost: Option<String>,
    username: Option<String>,
    password: Option<String>,
    enable_sni: Option<bool>,
    sni_name: Option<String>,
    helo_name: Option<String>,
    query_type: Option<String>,
    query_name: Option<String>,
    file: Option<std::path::PathBuf>,
    weight: Option<i64>,
    reverse: Option<bool>,
}

/// What a check does, with the options of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// TCP_CHECK: up when a TCP connection is accepted.
    Tcp,
    /// HTTP_GET: up when the status (and optionally the body digest) matches.
    Http(HttpSpec),
    /// SSL_GET: HTTP_GET over TLS; the certificate is not verified, as keepalived.
    Ssl(HttpSpec),
    /// SMTP_CHECK: up on a 220 greeting and a 250 answer to HELO.
    Smtp(SmtpSpec),
    /// DNS_CHECK: up on an answer with our id and rcode NOERROR.
    Dns(DnsSpec),
    /// FILE_CHECK: the number in a file sets the state (and weight).
    File(FileSpec),
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
            Self::Ssl(_) => "ssl",
            Self::Misc(_) => "misc",
            Self::Udp(_) => "udp",
            Self::Ping => "ping",
            Self::Smtp(_) => "smtp",
            Self::Dns(_) => "dns",
            Self::File(_) => "file",
        }
    }
}

/// HTTP_GET / SSL_GET options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSpec {
    /// Request path (default `/`).
    pub path: String,
    /// Accepted status codes as inclusive ranges (default `[200]`).
    pub status_codes: Vec<(u16, u16)>,
    /// MD5 the body must have, when set (keepalived's `digest`).
    pub digest: Option<[u8; 16]>,
    /// Host header value; `None` = the target `address:port`, as keepalived.
    pub virtualhost: Option<String>,
    /// HTTP basic auth (user, password), sent on every request when set.
    pub basic_auth: Option<(String, String)>,
    /// SSL_GET only: the TLS server name to send, resolved from
    /// `enable_sni` (then `sni_name`, else `virtualhost`); `None` = no SNI.
    pub sni: Option<String>,
}

impl HttpSpec {
    /// Whether `code` is one of the accepted status codes.
    pub fn accepts(&self, code: u16) -> bool {
        self.status_codes
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&code))
    }
}

/// SMTP_CHECK options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSpec {
    /// Argument of HELO (keepalived's default `smtpchecker.keepalived.org`).
    pub helo_name: String,
}

/// keepalived's SMTP_CHECK `helo_name` default.
pub const DEFAULT_HELO_NAME: &str = "smtpchecker.keepalived.org";
/// keepalived's `retry` default for DNS_CHECK.
pub const DEFAULT_DNS_RETRY: u32 = 3;

/// DNS_CHECK options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSpec {
    /// The query type as written (upper case), for logs.
    pub query_type: String,
    /// Its RR type code.
    pub qtype: u16,
    /// The name asked for (default `.`, the root).
    pub query_name: String,
}

/// FILE_CHECK options (keepalived's track_file for real servers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// The file holding a number.
    pub path: std::path::PathBuf,
    /// Multiplier: 0 = the number is a state (0 up, else down); otherwise
    /// `number × weight` is added to the server's weight, and down when it
    /// reaches −2147483648 (keepalived's fault value).
    pub weight: i32,
    /// Inverts: with weight 0, 0 is down and non-zero up; otherwise the
    /// product is negated.
    pub reverse: bool,
}

/// MISC_CHECK options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscSpec {
    /// The script line as written, for logs.
    pub script: String,
    /// The script line split into program and arguments (shell-like quoting,
    /// no shell: as keepalived, which executes the words itself).
    pub argv: Vec<String>,
    /// `misc_timeout`; `None` means the service's delay_loop, as keepalived
    /// (its virtual server's, not the checker's).
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
    /// keepalived's `require_reply HEX`: (byte, mask of wildcard bits) the
    /// reply must match over the shorter of the two.
    pub reply_pattern: Option<Vec<(u8, u8)>>,
    /// (min, max) reply length, checked only with a pattern (keepalived's
    /// min_reply_length 0 / max_reply_length 255).
    pub reply_lengths: (u16, u16),
}

/// keepalived's `max_reply_length` default.
pub const DEFAULT_MAX_REPLY_LENGTH: u16 = 255;

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
    /// Time between the attempts of a failing series; `None` = the check's
    /// delay_loop (keepalived's DNS_CHECK default).
    pub delay_before_retry: Option<Duration>,
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
        if !t.is_http() {
            reject(r.path.is_some(), "path")?;
            reject(r.status_codes.is_some(), "status_codes")?;
            reject(r.digest.is_some(), "digest")?;
            reject(r.virtualhost.is_some(), "virtualhost")?;
            reject(r.username.is_some(), "username")?;
            reject(r.password.is_some(), "password")?;
        }
        if t != CheckType::Ssl {
            reject(r.enable_sni.is_some(), "enable_sni")?;
            reject(r.sni_name.is_some(), "sni_name")?;
        }
        if t != CheckType::Smtp {
            reject(r.helo_name.is_some(), "helo_name")?;
        }
        if t != CheckType::Dns {
            reject(r.query_type.is_some(), "query_type")?;
            reject(r.query_name.is_some(), "query_name")?;
        }
        if t != CheckType::File {
            reject(r.file.is_some(), "file")?;
            reject(r.weight.is_some(), "weight")?;
            reject(r.reverse.is_some(), "reverse")?;
        } else {
            // keepalived reads the file when it changes: no connection and
            // no retries, the number applies at once.
            reject(r.connect_ip.is_some(), "connect_ip")?;
            reject(r.connect_port.is_some(), "connect_port")?;
            reject(r.connect_timeout.is_some(), "connect_timeout")?;
            reject(r.retry.is_some(), "retry")?;
            reject(r.delay_before_retry.is_some(), "delay_before_retry")?;
            reject(r.warmup.is_some(), "warmup")?;
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
            reject(r.reply_pattern.is_some(), "reply_pattern")?;
            reject(r.min_reply_length.is_some(), "min_reply_length")?;
            reject(r.max_reply_length.is_some(), "max_reply_length")?;
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
            CheckType::Http | CheckType::Ssl => {
                let path = r.path.unwrap_or_else(|| "/".into());
                if !path.starts_with('/')
                    || path.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(SpecError::BadPath(path));
                }
                let status_codes = match r.status_codes {
                    None => vec![(200, 200)],
                    Some(raw) => parse_status_codes(&raw)?,
                };
                let digest = r.digest.map(|d| parse_digest(&d)).transpose()?;
                if let Some(v) = &r.virtualhost {
                    check_host_name("virtualhost", v)?;
                }
                let basic_auth = match (r.username, r.password) {
                    (None, None) => None,
                    (Some(u), Some(p)) => {
                        if u.contains(':') || u.chars().any(char::is_control) {
                            return Err(SpecError::BadUsername(u));
                        }
                        Some((u, p))
                    }
                    _ => return Err(SpecError::HalfCredentials),
                };
                let enable_sni = r.enable_sni.unwrap_or(false);
                if let Some(n) = &r.sni_name {
                    if !enable_sni {
                        return Err(SpecError::SniNameWithoutSni);
                    }
                    check_host_name("sni_name", n)?;
                }
                // keepalived's order: sni_name, else the virtualhost.
                let sni = enable_sni
                    .then(|| r.sni_name.clone().or_else(|| r.virtualhost.clone()))
                    .flatten();
                let spec = HttpSpec {
                    path,
                    status_codes,
                    digest,
                    virtualhost: r.virtualhost,
                    basic_auth,
                    sni,
                };
                if t == CheckType::Ssl {
                    CheckKind::Ssl(spec)
                } else {
                    CheckKind::Http(spec)
                }
            }
            CheckType::Smtp => {
                let helo_name = r.helo_name.unwrap_or_else(|| DEFAULT_HELO_NAME.into());
                if helo_name.is_empty()
                    || helo_name
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(SpecError::BadHeloName(helo_name));
                }
                CheckKind::Smtp(SmtpSpec { helo_name })
            }
            CheckType::Dns => {
                let query_type = r.query_type.unwrap_or_else(|| "SOA".into());
                let qtype = dns_type_code(&query_type)
                    .ok_or_else(|| SpecError::BadQueryType(query_type.clone()))?;
                let query_name = r.query_name.unwrap_or_else(|| ".".into());
                if dns_name_wire(&query_name).is_none() {
                    return Err(SpecError::BadQueryName(query_name));
                }
                CheckKind::Dns(DnsSpec {
                    query_type: query_type.to_ascii_uppercase(),
                    qtype,
                    query_name,
                })
            }
            CheckType::File => {
                let path = r.file.clone().ok_or(SpecError::MissingFile)?;
                let w = r.weight.unwrap_or(0);
                let weight = i32::try_from(w)
                    .ok()
                    .filter(|w| *w != i32::MIN)
                    .ok_or(SpecError::BadFileWeight(w))?;
                CheckKind::File(FileSpec {
                    path,
                    weight,
                    reverse: r.reverse.unwrap_or(false),
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
            CheckType::Udp => {
                let reply_pattern = r
                    .reply_pattern
                    .map(|p| parse_pattern(&p).ok_or(SpecError::BadReplyPattern(p)))
                    .transpose()?;
                if reply_pattern.is_some() && r.require_reply == Some(false) {
                    return Err(SpecError::ReplyOptionWithoutReply("reply_pattern"));
                }
                if reply_pattern.is_none() {
                    if r.min_reply_length.is_some() {
                        return Err(SpecError::LengthWithoutPattern("min_reply_length"));
                    }
                    if r.max_reply_length.is_some() {
                        return Err(SpecError::LengthWithoutPattern("max_reply_length"));
                    }
                }
                let (min, max) = (
                    r.min_reply_length.unwrap_or(0),
                    r.max_reply_length.unwrap_or(DEFAULT_MAX_REPLY_LENGTH),
                );
                if min > max {
                    return Err(SpecError::ReplyLengths { min, max });
                }
                CheckKind::Udp(UdpSpec {
                    payload: match r.payload {
                        Some(p) => parse_hex(&p).ok_or(SpecError::BadPayload(p))?,
                        None => Vec::new(),
                    },
                    require_reply: r.require_reply.unwrap_or(reply_pattern.is_some()),
                    reply_pattern,
                    reply_lengths: (min, max),
                })
            }
        };
        let retry_default = match t {
            CheckType::Misc | CheckType::File => DEFAULT_MISC_RETRY,
            CheckType::Dns => DEFAULT_DNS_RETRY,
            _ => DEFAULT_RETRY,
        };
        let dbr_default = match t {
            CheckType::Http | CheckType::Ssl => Some(DEFAULT_HTTP_DELAY_BEFORE_RETRY),
            // keepalived: DNS_CHECK retries after its delay_loop.
            CheckType::Dns => None,
            _ => Some(DEFAULT_DELAY_BEFORE_RETRY),
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
            delay_before_retry: match (r.delay_before_retry, dbr_default) {
                (None, None) => None,
                (v, d) => Some(duration(
                    "delay_before_retry",
                    v,
                    d.unwrap_or_default(),
                    true,
                )?),
            },
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
            CheckKind::Misc(m) => m.timeout.unwrap_or(service_delay_loop),
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
            delay_before_retry: self.delay_before_retry.unwrap_or(delay_loop),
            warmup: self.warmup,
            server_weight: 1,
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
    /// The real server's configured weight (1 unless set with
    /// [`CheckConfig::with_server_weight`]): a weighted file check adds to it.
    pub server_weight: u32,
}

impl CheckConfig {
    /// Sets the real server's configured weight, which a file check with a
    /// `weight` multiplier adjusts (keepalived's track_file weight).
    pub fn with_server_weight(mut self, weight: u32) -> Self {
        self.server_weight = weight;
        self
    }
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
    /// Run when the server's checks bring it up (keepalived's notify_up).
    #[serde(default, deserialize_with = "command")]
    pub notify_up: Option<String>,
    /// Run when its checks take it down (keepalived's notify_down).
    #[serde(default, deserialize_with = "command")]
    pub notify_down: Option<String>,
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

/// A command line that splits into words, as scripts are run.
fn command<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let line = String::deserialize(d)?;
    split_words(&line).map_err(|e| serde::de::Error::custom(format!("command {line:?} {e}")))?;
    Ok(Some(line))
}

fn parse_status_codes(raw: &[RawStatus]) -> Result<Vec<(u16, u16)>, SpecError> {
    let shown = || {
        let words: Vec<String> = raw
            .iter()
            .map(|r| match r {
                RawStatus::Code(c) => c.to_string(),
                RawStatus::Range(s) => format!("{s:?}"),
            })
            .collect();
        format!("[{}]", words.join(", "))
    };
    if raw.is_empty() {
        return Err(SpecError::BadStatusCodes(shown()));
    }
    let code = |v: i64| u16::try_from(v).ok().filter(|c| (100..=599).contains(c));
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let range = match r {
            RawStatus::Code(c) => code(*c).map(|c| (c, c)),
            RawStatus::Range(s) => s.split_once('-').and_then(|(lo, hi)| {
                let lo = code(lo.trim().parse().ok()?)?;
                let hi = code(hi.trim().parse().ok()?)?;
                (lo <= hi).then_some((lo, hi))
            }),
        };
        out.push(range.ok_or_else(|| SpecError::BadStatusCodes(shown()))?);
    }
    Ok(out)
}

fn check_host_name(option: &'static str, v: &str) -> Result<(), SpecError> {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(SpecError::BadHostName {
            option,
            value: v.into(),
        });
    }
    Ok(())
}

/// RR type codes of the query types keepalived's DNS_CHECK sends.
pub(crate) fn dns_type_code(t: &str) -> Option<u16> {
    Some(match t.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "RRSIG" => 46,
        "DNSKEY" => 48,
        _ => return None,
    })
}

/// A domain name in DNS wire format (length-prefixed labels, root last);
/// `None` when a label is empty or too long, as keepalived refuses.
pub(crate) fn dns_name_wire(name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len() + 2);
    if name != "." {
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        for label in trimmed.split('.') {
            let len = u8::try_from(label.len())
                .ok()
                .filter(|l| (1..=63).contains(l))?;
            if !label.is_ascii() || label.chars().any(|c| c.is_ascii_control() || c == ' ') {
                return None;
            }
            out.push(len);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

fn parse_digest(s: &str) -> Result<[u8; 16], SpecError> {
    let bytes = parse_hex(s)
        .filter(|b| b.len() == 16 && !s.chars().any(char::is_whitespace))
        .ok_or_else(|| SpecError::BadDigest(s.into()))?;
    let mut out = [0u8; 16];
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// Hex pairs like [`parse_hex`], where `x` or `X` is a wildcard half byte:
/// (value, mask of the wildcard bits).
fn parse_pattern(s: &str) -> Option<Vec<(u8, u8)>> {
    let mut out = Vec::new();
    for word in s.split_whitespace() {
        if word.len() % 2 != 0 {
            return None;
        }
        for pair in word.as_bytes().chunks(2) {
            let mut value = 0u8;
            let mut mask = 0u8;
            for &c in pair {
                value <<= 4;
                mask <<= 4;
                if c == b'x' || c == b'X' {
                    mask |= 0x0f;
                } else {
                    value |= (c as char).to_digit(16)? as u8;
                }
            }
            out.push((value, mask));
        }
    }
    (!out.is_empty()).then_some(out)
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
        assert_eq!(c.delay_before_retry, Some(secs(1)));
        assert_eq!(c.warmup, Duration::ZERO);
        assert_eq!(c.connect_ip, None);
        assert_eq!(c.connect_port, None);
    }

    #[test]
    fn http_defaults_and_full_table() {
        let c = check("type = \"http\"").unwrap();
        assert_eq!(c.delay_before_retry, Some(secs(3)));
        assert_eq!(c.retry, 1);
        assert_eq!(
            c.kind,
            CheckKind::Http(HttpSpec {
                path: "/".into(),
                status_codes: vec![(200, 200)],
                digest: None,
                virtualhost: None,
                basic_auth: None,
                sni: None,
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
        assert_eq!(h.status_codes, vec![(200, 200), (204, 204)]);
        assert_eq!(h.digest.unwrap()[0], 0x9b);
        assert_eq!(h.digest.unwrap()[15], 0x8c);
        assert_eq!(c.connect_ip, Some("10.0.2.11".parse().unwrap()));
        assert_eq!(c.connect_port, Some(8080));
        assert_eq!(c.connect_timeout, secs(2));
        assert_eq!(c.delay_loop, Some(secs(10)));
        assert_eq!(c.retry, 4);
        assert_eq!(c.delay_before_retry, Some(Duration::from_millis(500)));
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
        assert_eq!(c.delay_before_retry, Some(secs(1)));
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
                require_reply: false,
                reply_pattern: None,
                reply_lengths: (0, 255),
            })
        );
        let c = check("type = \"udp\"\npayload = \"0a0B ff\"\nrequire_reply = true").unwrap();
        assert_eq!(
            c.kind,
            CheckKind::Udp(UdpSpec {
                payload: vec![0x0a, 0x0b, 0xff],
                require_reply: true,
                reply_pattern: None,
                reply_lengths: (0, 255),
            })
        );
        let c = check(
            "type = \"udp\"\nreply_pattern = \"0a x1 XX\"\nmin_reply_length = 2\nmax_reply_length = 9",
        )
        .unwrap();
        assert_eq!(
            c.kind,
            CheckKind::Udp(UdpSpec {
                payload: vec![],
                require_reply: true,
                reply_pattern: Some(vec![(0x0a, 0), (0x01, 0xf0), (0, 0xff)]),
                reply_lengths: (2, 9),
            }),
            "a pattern implies a required reply"
        );
        let c = check("type = \"ping\"\nconnect_ip = \"10.0.2.12\"").unwrap();
        assert_eq!(c.kind, CheckKind::Ping);
        assert_eq!(c.retry, 1);
    }

    #[test]
    fn ssl_smtp_dns_file_tables() {
        let c = check(
            r#"
            type = "ssl"
            path = "/h"
            status_codes = [200, "300-399", " 503 - 504 "]
            virtualhost = "www.example.org"
            username = "monitor"
            password = "s:e cret"
            enable_sni = true
            "#,
        )
        .unwrap();
        let CheckKind::Ssl(h) = &c.kind else {
            panic!("not ssl: {c:?}")
        };
        assert_eq!(h.status_codes, vec![(200, 200), (300, 399), (503, 504)]);
        assert!(h.accepts(350) && !h.accepts(400));
        assert_eq!(h.virtualhost.as_deref(), Some("www.example.org"));
        assert_eq!(
            h.basic_auth,
            Some(("monitor".to_string(), "s:e cret".to_string()))
        );
        assert_eq!(
            h.sni.as_deref(),
            Some("www.example.org"),
            "SNI from virtualhost"
        );
        assert_eq!(c.delay_before_retry, Some(secs(3)), "as HTTP_GET");
        let c = check(
            "type = \"ssl\"\nenable_sni = true\nsni_name = \"a.test\"\nvirtualhost = \"b.test\"",
        )
        .unwrap();
        let CheckKind::Ssl(h) = &c.kind else { panic!() };
        assert_eq!(h.sni.as_deref(), Some("a.test"), "sni_name first");
        let c = check("type = \"ssl\"\nvirtualhost = \"b.test\"").unwrap();
        let CheckKind::Ssl(h) = &c.kind else { panic!() };
        assert_eq!(h.sni, None, "no SNI without enable_sni, as keepalived");

        let c = check("type = \"smtp\"").unwrap();
        assert_eq!(
            c.kind,
            CheckKind::Smtp(SmtpSpec {
                helo_name: "smtpchecker.keepalived.org".into()
            })
        );
        assert_eq!((c.retry, c.delay_before_retry), (1, Some(secs(1))));

        let c = check("type = \"dns\"").unwrap();
        assert_eq!(
            c.kind,
            CheckKind::Dns(DnsSpec {
                query_type: "SOA".into(),
                qtype: 6,
                query_name: ".".into()
            })
        );
        assert_eq!(c.retry, 3, "keepalived's DNS_CHECK retry default");
        assert_eq!(c.delay_before_retry, None);
        let server: SocketAddr = "10.0.2.11:53".parse().unwrap();
        assert_eq!(c.resolve(server, secs(7)).delay_before_retry, secs(7));
        let c = check("type = \"dns\"\nquery_type = \"aaaa\"\nquery_name = \"ex.org.\"").unwrap();
        let CheckKind::Dns(d) = &c.kind else { panic!() };
        assert_eq!((d.qtype, d.query_type.as_str()), (28, "AAAA"));

        let c = check("type = \"file\"\nfile = \"/run/x\"").unwrap();
        assert_eq!(
            c.kind,
            CheckKind::File(FileSpec {
                path: "/run/x".into(),
                weight: 0,
                reverse: false
            })
        );
        assert_eq!(c.retry, 0, "a file's number applies at once");
        let c = check(
            "type = \"file\"\nfile = \"/run/x\"\nweight = -5\nreverse = true\ndelay_loop = 2",
        )
        .unwrap();
        let CheckKind::File(f) = &c.kind else {
            panic!()
        };
        assert_eq!((f.weight, f.reverse), (-5, true));
        assert_eq!(c.resolve(server, secs(60)).server_weight, 1);
        assert_eq!(
            c.resolve(server, secs(60))
                .with_server_weight(9)
                .server_weight,
            9
        );
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
            ("type = \"udp\"\nreply_pattern = \"0y\"", "`reply_pattern` must be"),
            ("type = \"udp\"\nreply_pattern = \"\"", "`reply_pattern` must be"),
            (
                "type = \"udp\"\nreply_pattern = \"00\"\nrequire_reply = false",
                "needs a reply",
            ),
            ("type = \"udp\"\nmax_reply_length = 9", "only checked together"),
            (
                "type = \"udp\"\nreply_pattern = \"00\"\nmin_reply_length = 9\nmax_reply_length = 2",
                "would always fail",
            ),
            (
                "type = \"tcp\"\nreply_pattern = \"00\"",
                "`reply_pattern` is not an option of a tcp check",
            ),
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
            (
                "type = \"http\"\nstatus_codes = [\"299-200\"]",
                "ranges such as",
            ),
            (
                "type = \"http\"\nstatus_codes = [\"2xx\"]",
                "ranges such as",
            ),
            ("type = \"http\"\nstatus_codes = [99]", "ranges such as"),
            ("type = \"http\"\nusername = \"u\"", "give both or neither"),
            ("type = \"http\"\npassword = \"p\"", "give both or neither"),
            (
                "type = \"http\"\nusername = \"a:b\"\npassword = \"p\"",
                "must not contain ':'",
            ),
            (
                "type = \"http\"\nvirtualhost = \"a b\"",
                "`virtualhost` must be a host name",
            ),
            (
                "type = \"http\"\nenable_sni = true",
                "`enable_sni` is not an option of a http check",
            ),
            (
                "type = \"ssl\"\nsni_name = \"a\"",
                "needs `enable_sni = true`",
            ),
            (
                "type = \"tcp\"\nhelo_name = \"x\"",
                "`helo_name` is not an option of a tcp check",
            ),
            ("type = \"smtp\"\nhelo_name = \"a b\"", "one word"),
            (
                "type = \"dns\"\nquery_type = \"PTR\"",
                "`query_type` must be one of",
            ),
            (
                "type = \"dns\"\nquery_name = \"a..b\"",
                "`query_name` must be",
            ),
            (
                "type = \"dns\"\nquery_name = \".a\"",
                "`query_name` must be",
            ),
            (
                "type = \"dns\"\npath = \"/\"",
                "`path` is not an option of a dns check",
            ),
            ("type = \"file\"", "needs `file`"),
            (
                "type = \"file\"\nfile = \"/x\"\nretry = 2",
                "`retry` is not an option of a file check",
            ),
            (
                "type = \"file\"\nfile = \"/x\"\nweight = 2147483648",
                "-2147483647..2147483647",
            ),
            (
                "type = \"tcp\"\nweight = 1",
                "`weight` is not an option of a tcp check",
            ),
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
        // misc_timeout defaults to the service's delay_loop, as keepalived,
        // even when the check has its own.
        let c = check("type = \"misc\"\nscript = \"/bin/true\"\ndelay_loop = 5")
            .unwrap()
            .resolve(server, secs(30));
        assert_eq!(c.timeout, secs(30));
        assert_eq!(c.delay_loop, secs(5));
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
        assert_eq!(r.notify_up, None);
        let n: RealServerHealthSpec =
            toml::from_str("notify_up = \"/bin/up 'a b'\"\nnotify_down = \"/bin/down\"").unwrap();
        assert_eq!(n.notify_up.as_deref(), Some("/bin/up 'a b'"));
        assert_eq!(n.notify_down.as_deref(), Some("/bin/down"));
        let e = toml::from_str::<RealServerHealthSpec>("notify_down = \"/bin/x 'a\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unterminated"), "{e}");
        let svc = ServiceHealthSpec {
            inhibit_on_failure: true,
            ..Default::default()
        };
        assert!(!r.inhibit_on_failure(&svc));
        assert!(RealServerHealthSpec::default().inhibit_on_failure(&svc));
    }
}
