//! The LVS part of a keepalived configuration, as keepalived states it:
//! every `virtual_server` (address, `fwmark` or `group`) with its options,
//! real servers and checkers, and the `virtual_server_group`s.
//!
//! Values are kept as written (`None` = not set) so the conversion can apply
//! keepalived's defaults and inheritance (virtual server → real server →
//! checker) in one place. Everything this stage does not understand becomes a
//! [`Note`].

use std::net::IpAddr;

use rvs_vocab::{ForwardMethod, Tunnel, TunnelChecksum};

use crate::parse::{Loc, Node, Note, ParseError};

/// What a `virtual_server` line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VsAddr {
    /// `virtual_server IP [PORT]`; no port = persistent port-less service.
    Ip(IpAddr, Option<u16>),
    /// `virtual_server fwmark N`.
    Fwmark(u32),
    /// `virtual_server group NAME`.
    Group(String),
}

/// Checker timing options, settable on the virtual server, the real server
/// and the checker (each level the default for the next).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckOpts {
    /// `connect_timeout` (seconds, may be fractional).
    pub connect_timeout: Option<f64>,
    /// `retry` or legacy `nb_get_retry`.
    pub retry: Option<u32>,
    /// `delay_before_retry` (seconds).
    pub delay_before_retry: Option<f64>,
    /// `warmup` (seconds).
    pub warmup: Option<f64>,
    /// `delay_loop` (seconds).
    pub delay_loop: Option<f64>,
}

/// A checker type keepalived knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// TCP_CHECK.
    Tcp,
    /// HTTP_GET.
    Http,
    /// SSL_GET.
    Ssl,
    /// MISC_CHECK.
    Misc,
    /// UDP_CHECK.
    Udp,
    /// PING_CHECK.
    Ping,
    /// DNS_CHECK.
    Dns,
    /// SMTP_CHECK.
    Smtp,
    /// BFD_CHECK.
    Bfd,
    /// FILE_CHECK.
    File,
}

impl CheckKind {
    fn from_keyword(k: &str) -> Option<Self> {
        Some(match k {
            "TCP_CHECK" => Self::Tcp,
            "HTTP_GET" => Self::Http,
            "SSL_GET" => Self::Ssl,
            "MISC_CHECK" => Self::Misc,
            "UDP_CHECK" => Self::Udp,
            "PING_CHECK" => Self::Ping,
            "DNS_CHECK" => Self::Dns,
            "SMTP_CHECK" => Self::Smtp,
            "BFD_CHECK" => Self::Bfd,
            "FILE_CHECK" => Self::File,
            _ => return None,
        })
    }

    /// The keepalived keyword, for notes.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Tcp => "TCP_CHECK",
            Self::Http => "HTTP_GET",
            Self::Ssl => "SSL_GET",
            Self::Misc => "MISC_CHECK",
            Self::Udp => "UDP_CHECK",
            Self::Ping => "PING_CHECK",
            Self::Dns => "DNS_CHECK",
            Self::Smtp => "SMTP_CHECK",
            Self::Bfd => "BFD_CHECK",
            Self::File => "FILE_CHECK",
        }
    }
}

/// One `url { }` of HTTP_GET / SSL_GET.
#[derive(Debug, Clone, PartialEq)]
pub struct Url {
    /// Where the block is.
    pub loc: Loc,
    /// `path`.
    pub path: Option<String>,
    /// `digest` (MD5 hex).
    pub digest: Option<String>,
    /// `status_code` values and ranges, inclusive.
    pub status_codes: Vec<(u16, u16)>,
    /// `virtualhost` of this url.
    pub virtualhost: Option<String>,
}

/// One (deprecated) `host { }` block of SMTP_CHECK: keepalived runs one
/// checker per host.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpHost {
    /// Where the block is.
    pub loc: Loc,
    /// `connect_ip`.
    pub connect_ip: Option<IpAddr>,
    /// `connect_port`.
    pub connect_port: Option<u16>,
    /// `connect_timeout` of this host.
    pub connect_timeout: Option<f64>,
}

/// A top-level `track_file` block (FILE_CHECK refers to it by name).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackFile {
    /// Its name.
    pub name: String,
    /// Where the block is.
    pub loc: Loc,
    /// `file`.
    pub file: Option<String>,
    /// `weight W [reverse]`; keepalived's default is 1.
    pub weight: Option<(i64, bool)>,
}

/// One checker block of a real server.
#[derive(Debug, Clone, PartialEq)]
pub struct Checker {
    /// Where the block is.
    pub loc: Loc,
    /// Which checker.
    pub kind: CheckKind,
    /// `connect_ip`.
    pub connect_ip: Option<IpAddr>,
    /// `connect_port`.
    pub connect_port: Option<u16>,
    /// Timing options set in the checker itself.
    pub opts: CheckOpts,
    /// HTTP_GET / SSL_GET urls.
    pub urls: Vec<Url>,
    /// MISC_CHECK `misc_path`.
    pub misc_path: Option<String>,
    /// MISC_CHECK `misc_timeout`.
    pub misc_timeout: Option<f64>,
    /// MISC_CHECK `misc_dynamic`.
    pub misc_dynamic: bool,
    /// UDP_CHECK `payload` (hex as written).
    pub payload: Option<String>,
    /// UDP_CHECK `require_reply`, with its optional hex pattern.
    pub require_reply: Option<Option<String>>,
    /// UDP_CHECK `min_reply_length`, `max_reply_length`.
    pub reply_lengths: (Option<u16>, Option<u16>),
    /// DNS_CHECK `type`.
    pub dns_type: Option<String>,
    /// DNS_CHECK `name`.
    pub dns_name: Option<String>,
    /// HTTP_GET / SSL_GET `virtualhost`.
    pub virtualhost: Option<String>,
    /// `username` / `password` (basic auth; not in upstream keepalived's
    /// keyword list, but found in configurations of patched builds).
    pub username: Option<String>,
    /// See `username`.
    pub password: Option<String>,
    /// SSL_GET `enable_sni`.
    pub enable_sni: bool,
    /// SSL_GET `sni_name`.
    pub sni_name: Option<String>,
    /// SMTP_CHECK `helo_name`.
    pub helo_name: Option<String>,
    /// SMTP_CHECK `host` blocks.
    pub smtp_hosts: Vec<SmtpHost>,
    /// A connection option (address, port, binding, timeout) set in the
    /// checker itself: SMTP_CHECK then checks the server besides its hosts.
    pub own_connection: bool,
    /// FILE_CHECK `track_file` name.
    pub track_file: Option<(String, Loc)>,
    /// FILE_CHECK `weight W [reverse]`.
    pub file_weight: Option<(i64, bool)>,
    /// FILE_CHECK `dynamic`.
    pub file_dynamic: Option<Loc>,
}

/// One `real_server` block.
#[derive(Debug, Clone, PartialEq)]
pub struct RealServer {
    /// Where the block is.
    pub loc: Loc,
    /// Address.
    pub address: IpAddr,
    /// Port; `None` = the virtual server's.
    pub port: Option<u16>,
    /// `weight` (default 1).
    pub weight: Option<u32>,
    /// Per-server `lvs_method`.
    pub method: Option<ForwardMethod>,
    /// Its tunnel (`lvs_method TUN type …`; IPIP for the other methods).
    pub tunnel: Option<Tunnel>,
    /// `inhibit_on_failure` set on the real server.
    pub inhibit_on_failure: Option<bool>,
    /// `uthreshold`.
    pub uthreshold: Option<u32>,
    /// `lthreshold`.
    pub lthreshold: Option<u32>,
    /// Checker defaults set on the real server.
    pub opts: CheckOpts,
    /// Checkers, in order.
    pub checkers: Vec<Checker>,
    /// `virtualhost`: default of its HTTP_GET / SSL_GET checkers.
    pub virtualhost: Option<String>,
    /// `notify_up` command.
    pub notify_up: Option<String>,
    /// `notify_down` command.
    pub notify_down: Option<String>,
}

/// One `virtual_server` block.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServer {
    /// Where the block is.
    pub loc: Loc,
    /// What it names.
    pub addr: VsAddr,
    /// `lvs_sched` / `lb_algo`.
    pub sched: Option<String>,
    /// `sh-port`, `flag-1` … as written.
    pub sched_flags: Vec<(String, Loc)>,
    /// `lvs_method` / `lb_kind`.
    pub method: Option<ForwardMethod>,
    /// Its tunnel (`lvs_method TUN type …`), the real servers' default.
    pub tunnel: Option<Tunnel>,
    /// `persistence_timeout` (value given or keepalived's 360 without one).
    pub persistence_timeout: Option<u32>,
    /// `persistence_granularity`.
    pub persistence_granularity: Option<String>,
    /// `protocol` upper-cased (TCP, UDP, SCTP).
    pub protocol: Option<(String, Loc)>,
    /// `quorum`.
    pub quorum: Option<u32>,
    /// `hysteresis`.
    pub hysteresis: Option<u32>,
    /// `inhibit_on_failure`.
    pub inhibit_on_failure: bool,
    /// `alpha`.
    pub alpha: bool,
    /// `omega`.
    pub omega: bool,
    /// `quorum_up` command.
    pub quorum_up: Option<String>,
    /// `quorum_down` command.
    pub quorum_down: Option<String>,
    /// `sorry_server IP [PORT]`.
    pub sorry_server: Option<(IpAddr, Option<u16>)>,
    /// `sorry_server_inhibit`.
    pub sorry_server_inhibit: bool,
    /// `sorry_server_lvs_method`.
    pub sorry_server_method: Option<ForwardMethod>,
    /// Its tunnel.
    pub sorry_server_tunnel: Option<Tunnel>,
    /// `ops`.
    pub ops: bool,
    /// Checker defaults set on the virtual server.
    pub opts: CheckOpts,
    /// Real servers, in order.
    pub real_servers: Vec<RealServer>,
    /// `virtualhost`: default of its HTTP_GET / SSL_GET checkers.
    pub virtualhost: Option<String>,
    /// `weight`: default weight of its real servers (keepalived's 1).
    pub weight: Option<u32>,
    /// `ip_family inet|inet6` (`Some(true)`: inet6): a fwmark service's
    /// address family.
    pub ip_family: Option<bool>,
    /// Where each keyword of the block first stands, so notes point at the
    /// keyword rather than at the `virtual_server` line.
    pub keyword_locs: std::collections::BTreeMap<String, Loc>,
}

impl VirtualServer {
    /// The line of `keyword` in this block, else the block's own.
    pub fn at(&self, keyword: &str) -> &Loc {
        self.keyword_locs.get(keyword).unwrap_or(&self.loc)
    }
}

/// An entry of a `virtual_server_group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEntry {
    /// Addresses (a range expanded) with an optional port.
    Addrs(Vec<IpAddr>, Option<u16>, Loc),
    /// `fwmark N [inet|inet6]` (`Some(true)`: inet6).
    Fwmark(u32, Option<bool>, Loc),
}

/// A `virtual_server_group` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Where the block is.
    pub loc: Loc,
    /// Its entries, in order.
    pub entries: Vec<GroupEntry>,
}

/// Everything of a keepalived configuration that matters to RVS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keepalived {
    /// `virtual_server` blocks in file order.
    pub virtual_servers: Vec<VirtualServer>,
    /// `virtual_server_group` blocks.
    pub groups: Vec<Group>,
    /// `lvs_timeouts` from `global_defs`: tcp, tcpfin, udp.
    pub lvs_timeouts: (Option<u32>, Option<u32>, Option<u32>),
    /// `script_user USER [GROUP]` from `global_defs`: who scripts run as.
    pub script_user: Option<(String, Option<String>)>,
    /// Interfaces named by `vrrp_instance … { interface X }`, first use first.
    pub vrrp_interfaces: Vec<(String, Loc)>,
    /// `lvs_sync_daemon` (or an instance's `lvs_sync_daemon_interface`):
    /// rvsd's backup sync daemon, and what the VRRP hooks start.
    pub sync_daemon: Option<crate::vrrp::SyncSettings>,
    /// `track_file` blocks, for FILE_CHECK.
    pub track_files: Vec<TrackFile>,
}

/// Largest address range a `virtual_server_group` entry may expand to.
pub const MAX_RANGE: u32 = 256;

fn err(loc: &Loc, msg: impl Into<String>) -> ParseError {
    ParseError::Syntax {
        loc: loc.clone(),
        msg: msg.into(),
    }
}

fn note(notes: &mut Vec<Note>, loc: &Loc, msg: impl Into<String>) {
    notes.push(Note {
        loc: loc.clone(),
        msg: msg.into(),
    });
}

fn arg<'a>(n: &'a Node, i: usize, what: &str) -> Result<&'a str, ParseError> {
    n.args
        .get(i)
        .map(String::as_str)
        .ok_or_else(|| err(&n.loc, format!("{} needs {what}", n.key)))
}

fn num<T: std::str::FromStr>(n: &Node, what: &str) -> Result<T, ParseError> {
    let s = arg(n, 0, what)?;
    s.parse()
        .map_err(|_| err(&n.loc, format!("{}: '{s}' is not {what}", n.key)))
}

/// A keepalived <TIMER>; RVS takes whole seconds, so a fraction is rounded
/// up (a check never runs more often or times out sooner than configured).
fn timer(n: &Node, notes: &mut Vec<Note>) -> Result<f64, ParseError> {
    let s = arg(n, 0, "a time in seconds")?;
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => {
            let whole = v.ceil();
            if whole != v {
                note(
                    notes,
                    &n.loc,
                    format!(
                        "{} {s} rounded up to {whole} s: RVS takes whole seconds",
                        n.key
                    ),
                );
            }
            Ok(whole)
        }
        _ => Err(err(
            &n.loc,
            format!("{}: '{s}' is not a time in seconds", n.key),
        )),
    }
}

fn boolean(n: &Node) -> Result<bool, ParseError> {
    match n.args.first().map(|s| s.to_ascii_lowercase()).as_deref() {
        None | Some("on" | "true" | "yes") => Ok(true),
        Some("off" | "false" | "no") => Ok(false),
        Some(o) => Err(err(
            &n.loc,
            format!("{}: '{o}' is not one of on|off|true|false|yes|no", n.key),
        )),
    }
}

fn ip(n: &Node, s: &str) -> Result<IpAddr, ParseError> {
    s.parse()
        .map_err(|_| err(&n.loc, format!("{}: '{s}' is not an IP address", n.key)))
}

fn port(n: &Node, s: &str) -> Result<u16, ParseError> {
    s.parse()
        .map_err(|_| err(&n.loc, format!("{}: '{s}' is not a port (0..65535)", n.key)))
}

/// `lvs_method` / legacy `lb_kind`: NAT, DR or TUN (keepalived's words,
/// upper case), TUN with keepalived's tunnel options (`type {ipip|gue port
/// N|gre} [nocsum|csum|remcsum]`, check_parser.c's rules). keepalived
/// refuses another word; a word in the wrong case is read as keepalived
/// would not read it: `None`, with a note, and the default applies.
fn method(n: &Node, notes: &mut Vec<Note>) -> Result<Option<(ForwardMethod, Tunnel)>, ParseError> {
    let s = arg(n, 0, "NAT, DR or TUN")?;
    let m = match s.to_ascii_uppercase().as_str() {
        "NAT" => ForwardMethod::Masq,
        "DR" => ForwardMethod::Route,
        "TUN" => ForwardMethod::Tunnel,
        _ => {
            return Err(err(
                &n.loc,
                format!("{}: '{s}' is not NAT, DR or TUN", n.key),
            ))
        }
    };
    if s != s.to_ascii_uppercase() {
        note(
            notes,
            &n.loc,
            format!(
                "{} {s}: keepalived takes only NAT, DR or TUN in upper case and ignores \
                 '{s}', so its default applies (NAT, or the virtual server's method for a \
                 real server) and is written; write {} {} if that is what you meant",
                n.key,
                n.key,
                s.to_ascii_uppercase()
            ),
        );
        return Ok(None);
    }
    let tunnel = tunnel_options(n, m)?;
    if n.key.starts_with("lb_kind") {
        note(
            notes,
            &n.loc,
            "legacy lb_kind read as lvs_method".to_string(),
        );
    }
    Ok(Some((m, tunnel)))
}

/// The options after `lvs_method TUN`, as keepalived reads them: `type`
/// and `port` take a value, the last checksum word wins; a GUE tunnel
/// needs a port and nothing else may have one, IPIP takes no checksum
/// choice, GRE no `remcsum`. Options after another method are refused.
fn tunnel_options(n: &Node, m: ForwardMethod) -> Result<Tunnel, ParseError> {
    let rest = &n.args[1..];
    if rest.is_empty() {
        return Ok(Tunnel::Ipip);
    }
    if m != ForwardMethod::Tunnel {
        return Err(err(
            &n.loc,
            format!("{}: tunnel options '{}' need TUN", n.key, rest.join(" ")),
        ));
    }
    let (mut kind, mut port, mut checksum) = ("ipip", None, None);
    let mut words = rest.iter();
    while let Some(w) = words.next() {
        match w.as_str() {
            "type" => {
                kind = match words.next().map(String::as_str) {
                    Some(t @ ("ipip" | "gue" | "gre")) => t,
                    Some(other) => {
                        return Err(err(
                            &n.loc,
                            format!(
                                "{}: unknown tunnel type '{other}'; write ipip, gue or gre",
                                n.key
                            ),
                        ))
                    }
                    None => {
                        return Err(err(
                            &n.loc,
                            format!("{}: type needs ipip, gue or gre", n.key),
                        ))
                    }
                }
            }
            "port" => {
                let p = words
                    .next()
                    .ok_or_else(|| err(&n.loc, format!("{}: port needs a number", n.key)))?;
                port = Some(self::port(n, p)?).filter(|&p| p != 0);
                if port.is_none() {
                    return Err(err(&n.loc, format!("{}: a GUE port is 1..65535", n.key)));
                }
            }
            c => match TunnelChecksum::from_name(c) {
                Some(c) => checksum = Some(c),
                None => {
                    return Err(err(
                        &n.loc,
                        format!(
                            "{}: '{c}' is not a tunnel option (type, port, nocsum, csum, remcsum)",
                            n.key
                        ),
                    ))
                }
            },
        }
    }
    // keepalived writes nocsum when none is given, which IPIP accepts.
    let checksum = checksum.filter(|c| kind != "ipip" || *c != TunnelChecksum::Nocsum);
    Tunnel::from_parts(kind, port, checksum)
        .map_err(|e| err(&n.loc, format!("{} {}: {e}", n.key, n.args.join(" "))))
}

fn addr_port(n: &Node) -> Result<(IpAddr, Option<u16>), ParseError> {
    let a = ip(n, arg(n, 0, "an IP address")?)?;
    let p = match n.args.get(1) {
        Some(p) => Some(port(n, p)?),
        None => None,
    };
    Ok((a, p))
}

fn script(n: &Node, notes: &mut Vec<Note>) -> Result<String, ParseError> {
    let s = arg(n, 0, "a command")?.to_string();
    if n.args.len() > 1 {
        note(
            notes,
            &n.loc,
            format!(
                "{}: running as user '{}' is not supported; rvsd runs it as its own user",
                n.key,
                n.args[1..].join(" ")
            ),
        );
    }
    Ok(s)
}

/// Returns true when `n` was one of the shared timing options.
fn check_opt(n: &Node, o: &mut CheckOpts, notes: &mut Vec<Note>) -> Result<bool, ParseError> {
    match n.key.as_str() {
        "connect_timeout" => o.connect_timeout = Some(timer(n, notes)?),
        "retry" | "nb_get_retry" => o.retry = Some(num(n, "a retry count")?),
        "delay_before_retry" => o.delay_before_retry = Some(timer(n, notes)?),
        "warmup" => o.warmup = Some(timer(n, notes)?),
        "delay_loop" => o.delay_loop = Some(timer(n, notes)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Extracts the LVS configuration from a parsed keepalived file.
///
/// Top-level blocks RVS has no equivalent for (VRRP, BFD, static routes …)
/// become notes; a value keepalived itself would refuse is an error.
pub fn extract(tree: &[Node], notes: &mut Vec<Note>) -> Result<Keepalived, ParseError> {
    let mut k = Keepalived::default();
    for n in tree {
        match n.key.as_str() {
            "virtual_server" => k.virtual_servers.push(virtual_server(n, notes)?),
            "virtual_server_group" => k.groups.push(group(n, notes)?),
            "global_defs" => global_defs(n, &mut k, notes)?,
            "vrrp_instance" => {
                for c in n.children() {
                    if c.key == "interface" {
                        if let Some(i) = c.args.first() {
                            if !k.vrrp_interfaces.iter().any(|(x, _)| x == i) {
                                k.vrrp_interfaces.push((i.clone(), c.loc.clone()));
                            }
                        }
                    }
                }
                note(
                    notes,
                    &n.loc,
                    format!(
                        "vrrp_instance {} stays with keepalived: it is in the VRRP-only \
                         keepalived.conf (--vrrp-output)",
                        n.args.join(" ")
                    ),
                );
            }
            "track_file" | "vrrp_track_file" => k.track_files.push(track_file(n, notes)?),
            k2 if k2.starts_with("vrrp_") || k2 == "track_file" => note(
                notes,
                &n.loc,
                format!("{k2} stays with keepalived: it is in the VRRP-only keepalived.conf (--vrrp-output)"),
            ),
            "SSL" => note(
                notes,
                &n.loc,
                "SSL block (CA, client certificate and key for SSL_GET) ignored: RVS's ssl \
                 check presents no client certificate and, as keepalived, does not verify \
                 the server's",
            ),
            other => note(
                notes,
                &n.loc,
                format!("{other} is ignored: it has no RVS equivalent"),
            ),
        }
    }
    Ok(k)
}

fn global_defs(n: &Node, k: &mut Keepalived, notes: &mut Vec<Note>) -> Result<(), ParseError> {
    let mut ignored = false;
    for c in n.children() {
        match c.key.as_str() {
            "lvs_timeouts" => {
                let mut it = c.args.iter();
                while let Some(key) = it.next() {
                    let v = it
                        .next()
                        .ok_or_else(|| err(&c.loc, format!("lvs_timeouts: {key} needs SECS")))?;
                    let v: u32 = v.parse().map_err(|_| {
                        err(
                            &c.loc,
                            format!("lvs_timeouts: '{v}' is not a number of seconds"),
                        )
                    })?;
                    match key.as_str() {
                        "tcp" => k.lvs_timeouts.0 = Some(v),
                        "tcpfin" => k.lvs_timeouts.1 = Some(v),
                        "udp" => k.lvs_timeouts.2 = Some(v),
                        o => {
                            return Err(err(
                                &c.loc,
                                format!("lvs_timeouts: '{o}' is not tcp, tcpfin or udp"),
                            ))
                        }
                    }
                }
            }
            "script_user" => {
                let user = c
                    .args
                    .first()
                    .ok_or_else(|| err(&c.loc, "script_user needs USER [GROUP]".to_string()))?;
                k.script_user = Some((user.clone(), c.args.get(1).cloned()));
            }
            // rvsd never runs scripts with its own privileges: what
            // keepalived's enable_script_security asks is always so.
            "enable_script_security" => {}
            // rvsd's backup [[sync_daemon]] and the VRRP hooks
            // (crate::vrrp::sync_settings reads it).
            "lvs_sync_daemon" => {}
            _ => ignored = true,
        }
    }
    if ignored {
        note(
            notes,
            &n.loc,
            "global_defs is ignored (notification e-mail, router_id, … have no RVS \
             equivalent) except lvs_timeouts and script_user",
        );
    }
    Ok(())
}

fn virtual_server(n: &Node, notes: &mut Vec<Note>) -> Result<VirtualServer, ParseError> {
    let addr = match n.args.first().map(String::as_str) {
        Some("fwmark") => VsAddr::Fwmark(
            arg(n, 1, "a mark")?
                .parse()
                .map_err(|_| err(&n.loc, "virtual_server fwmark: the mark is not a number"))?,
        ),
        Some("group") => VsAddr::Group(arg(n, 1, "a group name")?.to_string()),
        Some(_) => {
            let (a, p) = addr_port(n)?;
            VsAddr::Ip(a, p)
        }
        None => {
            return Err(err(
                &n.loc,
                "virtual_server needs IP [PORT], fwmark N or group NAME",
            ))
        }
    };
    if n.block.is_none() {
        return Err(err(&n.loc, "virtual_server needs a { } block"));
    }
    let mut vs = VirtualServer {
        loc: n.loc.clone(),
        addr,
        sched: None,
        sched_flags: Vec::new(),
        method: None,
        tunnel: None,
        persistence_timeout: None,
        persistence_granularity: None,
        protocol: None,
        quorum: None,
        hysteresis: None,
        inhibit_on_failure: false,
        alpha: false,
        omega: false,
        quorum_up: None,
        quorum_down: None,
        sorry_server: None,
        sorry_server_inhibit: false,
        sorry_server_method: None,
        sorry_server_tunnel: None,
        ops: false,
        opts: CheckOpts::default(),
        real_servers: Vec::new(),
        virtualhost: None,
        weight: None,
        ip_family: None,
        keyword_locs: Default::default(),
    };
    for c in n.children() {
        vs.keyword_locs
            .entry(c.key.clone())
            .or_insert_with(|| c.loc.clone());
        if check_opt(c, &mut vs.opts, notes)? {
            continue;
        }
        match c.key.as_str() {
            "weight" => vs.weight = Some(weight(c)?),
            "lvs_sched" | "lb_algo" => {
                let name = arg(c, 0, "a scheduler")?;
                // keepalived matches scheduler names exactly and ignores
                // another spelling: the default (wlc) then applies.
                let lower = name.to_ascii_lowercase();
                if name != lower && rvs_vocab::sched::NAMES.contains(&lower.as_str()) {
                    note(
                        notes,
                        &c.loc,
                        format!(
                            "{} {name}: keepalived takes scheduler names in lower case only and \
                             ignores '{name}', so its default wlc applies and is written; write \
                             {} {lower} if that is what you meant",
                            c.key, c.key
                        ),
                    );
                    continue;
                }
                vs.sched = Some(name.to_string());
                if c.key == "lb_algo" {
                    note(notes, &c.loc, "legacy lb_algo read as lvs_sched");
                }
            }
            "lvs_method" | "lb_kind" => {
                if let Some((m, t)) = method(c, notes)? {
                    vs.method = Some(m);
                    vs.tunnel = Some(t);
                }
            }
            flag if rvs_vocab::sched::flag_number(flag).is_some() => {
                vs.sched_flags.push((c.key.clone(), c.loc.clone()))
            }
            "persistence_timeout" => {
                vs.persistence_timeout = Some(if c.args.is_empty() {
                    360
                } else {
                    num(c, "a number of seconds")?
                })
            }
            "persistence_granularity" => {
                vs.persistence_granularity = Some(arg(c, 0, "a netmask")?.to_string())
            }
            "protocol" => {
                vs.protocol = Some((
                    arg(c, 0, "TCP, UDP or SCTP")?.to_ascii_uppercase(),
                    c.loc.clone(),
                ))
            }
            "quorum" => vs.quorum = Some(num(c, "a weight")?),
            "hysteresis" => vs.hysteresis = Some(num(c, "a weight")?),
            "inhibit_on_failure" => vs.inhibit_on_failure = boolean(c)?,
            "alpha" => vs.alpha = boolean(c)?,
            "omega" => vs.omega = boolean(c)?,
            "quorum_up" => vs.quorum_up = Some(script(c, notes)?),
            "quorum_down" => vs.quorum_down = Some(script(c, notes)?),
            "sorry_server" => vs.sorry_server = Some(addr_port(c)?),
            "sorry_server_inhibit" => {
                vs.sorry_server_inhibit = boolean(c)?;
                if vs.sorry_server_inhibit {
                    note(
                        notes,
                        &c.loc,
                        "sorry_server_inhibit is not supported: the sorry server is \
                         removed, not set to weight 0, when quorum returns",
                    );
                }
            }
            "sorry_server_lvs_method" => {
                if let Some((m, t)) = method(c, notes)? {
                    vs.sorry_server_method = Some(m);
                    vs.sorry_server_tunnel = Some(t);
                }
            }
            "ops" => vs.ops = true,
            "real_server" => vs.real_servers.push(real_server(c, notes)?),
            "virtualhost" => vs.virtualhost = Some(arg(c, 0, "a host name")?.to_string()),
            "persistence_engine" => note(
                notes,
                &c.loc,
                "persistence_engine is not supported by RVS; persistence is by client \
                 address only",
            ),
            "ip_family" => match c.args.first().map(String::as_str) {
                Some("inet") => vs.ip_family = Some(false),
                Some("inet6") => vs.ip_family = Some(true),
                _ => note(
                    notes,
                    &c.loc,
                    format!(
                        "ip_family '{}' is not inet or inet6: ignored, as keepalived does",
                        c.args.join(" ")
                    ),
                ),
            },
            "ha_suspend" | "hashed" | "smtp_alert" | "snmp_name" | "net_mask" | "retry_delay" => {
                note(
                    notes,
                    &c.loc,
                    format!("{} is ignored: it has no RVS equivalent", c.key),
                )
            }
            other => note(
                notes,
                &c.loc,
                format!("unknown virtual_server keyword '{other}' ignored"),
            ),
        }
    }
    Ok(vs)
}

fn real_server(n: &Node, notes: &mut Vec<Note>) -> Result<RealServer, ParseError> {
    let (address, port) = addr_port(n)?;
    let mut rs = RealServer {
        loc: n.loc.clone(),
        address,
        port,
        weight: None,
        method: None,
        tunnel: None,
        inhibit_on_failure: None,
        uthreshold: None,
        lthreshold: None,
        opts: CheckOpts::default(),
        checkers: Vec::new(),
        virtualhost: None,
        notify_up: None,
        notify_down: None,
    };
    for c in n.children() {
        if check_opt(c, &mut rs.opts, notes)? {
            continue;
        }
        if let Some(kind) = CheckKind::from_keyword(&c.key) {
            rs.checkers.push(checker(c, kind, notes)?);
            continue;
        }
        match c.key.as_str() {
            "weight" => rs.weight = Some(weight(c)?),
            "lvs_method" => {
                if let Some((m, t)) = method(c, notes)? {
                    rs.method = Some(m);
                    rs.tunnel = Some(t);
                }
            }
            "inhibit_on_failure" => rs.inhibit_on_failure = Some(boolean(c)?),
            "uthreshold" => rs.uthreshold = Some(num(c, "a connection count")?),
            "lthreshold" => rs.lthreshold = Some(num(c, "a connection count")?),
            "notify_up" => rs.notify_up = Some(script(c, notes)?),
            "notify_down" => rs.notify_down = Some(script(c, notes)?),
            "alpha" => note(
                notes,
                &c.loc,
                "per-real-server alpha is not supported: the virtual server's alpha applies",
            ),
            "virtualhost" => rs.virtualhost = Some(arg(c, 0, "a host name")?.to_string()),
            "smtp_alert" | "snmp_name" => note(
                notes,
                &c.loc,
                format!("{} is ignored: it has no RVS equivalent", c.key),
            ),
            other => note(
                notes,
                &c.loc,
                format!("unknown real_server keyword '{other}' ignored"),
            ),
        }
    }
    Ok(rs)
}

/// A real-server weight (of a real server, or a virtual server's default).
fn weight(c: &Node) -> Result<u32, ParseError> {
    let w: i64 = num(c, "a weight")?;
    u32::try_from(w)
        .ok()
        .filter(|w| *w <= i32::MAX as u32)
        .ok_or_else(|| err(&c.loc, format!("weight {w} is out of range 0..2147483647")))
}

fn checker(n: &Node, kind: CheckKind, notes: &mut Vec<Note>) -> Result<Checker, ParseError> {
    let mut ck = Checker {
        loc: n.loc.clone(),
        kind,
        connect_ip: None,
        connect_port: None,
        opts: CheckOpts::default(),
        urls: Vec::new(),
        misc_path: None,
        misc_timeout: None,
        misc_dynamic: false,
        payload: None,
        require_reply: None,
        reply_lengths: (None, None),
        dns_type: None,
        dns_name: None,
        virtualhost: None,
        username: None,
        password: None,
        enable_sni: false,
        sni_name: None,
        helo_name: None,
        smtp_hosts: Vec::new(),
        own_connection: false,
        track_file: None,
        file_weight: None,
        file_dynamic: None,
    };
    let kw = kind.keyword();
    for c in n.children() {
        if matches!(
            c.key.as_str(),
            "connect_ip"
                | "connect_port"
                | "bindto"
                | "bind_port"
                | "bind_if"
                | "fwmark"
                | "connect_timeout"
        ) {
            ck.own_connection = true;
        }
        if kind != CheckKind::File && check_opt(c, &mut ck.opts, notes)? {
            continue;
        }
        match (kind, c.key.as_str()) {
            (CheckKind::File, "track_file") => {
                ck.track_file = Some((arg(c, 0, "a track_file name")?.to_string(), c.loc.clone()))
            }
            (CheckKind::File, "weight") => ck.file_weight = Some(file_weight(c)?),
            (CheckKind::File, "dynamic") => ck.file_dynamic = Some(c.loc.clone()),
            (CheckKind::File, other) => note(
                notes,
                &c.loc,
                format!("FILE_CHECK takes no '{other}' (keepalived ignores it too); dropped"),
            ),
            (_, "connect_ip") => ck.connect_ip = Some(ip(c, arg(c, 0, "an IP address")?)?),
            (_, "connect_port") => ck.connect_port = Some(port(c, arg(c, 0, "a port")?)?),
            (CheckKind::Http | CheckKind::Ssl, "url") => ck.urls.push(url(c, notes)?),
            (CheckKind::Http | CheckKind::Ssl, "virtualhost") => {
                ck.virtualhost = Some(arg(c, 0, "a host name")?.to_string())
            }
            (CheckKind::Http | CheckKind::Ssl, "username") => {
                ck.username = Some(arg(c, 0, "a user name")?.to_string())
            }
            (CheckKind::Http | CheckKind::Ssl, "password") => {
                ck.password = Some(arg(c, 0, "a password")?.to_string())
            }
            (CheckKind::Http | CheckKind::Ssl, "enable_sni") => ck.enable_sni = boolean(c)?,
            (CheckKind::Http | CheckKind::Ssl, "sni_name") => {
                ck.sni_name = Some(arg(c, 0, "a server name")?.to_string())
            }
            (CheckKind::Smtp, "helo_name") => {
                ck.helo_name = Some(arg(c, 0, "a host name")?.to_string())
            }
            (CheckKind::Misc, "misc_path") => ck.misc_path = Some(script(c, notes)?),
            (CheckKind::Misc, "misc_timeout") => ck.misc_timeout = Some(timer(c, notes)?),
            (CheckKind::Misc, "misc_dynamic") => ck.misc_dynamic = boolean(c)?,
            (CheckKind::Udp, "payload") => ck.payload = Some(c.args.join(" ")),
            (CheckKind::Udp, "min_reply_length") => {
                ck.reply_lengths.0 = Some(num(c, "a length (0..65535)")?)
            }
            (CheckKind::Udp, "max_reply_length") => {
                ck.reply_lengths.1 = Some(num(c, "a length (0..65535)")?)
            }
            (CheckKind::Udp, "require_reply") => {
                ck.require_reply = Some(if c.args.is_empty() {
                    None
                } else {
                    Some(c.args.join(" "))
                })
            }
            (CheckKind::Dns, "type") => ck.dns_type = Some(arg(c, 0, "a query type")?.to_string()),
            (CheckKind::Dns, "name") => ck.dns_name = Some(arg(c, 0, "a domain name")?.to_string()),
            (CheckKind::Smtp, "host") => ck.smtp_hosts.push(smtp_host(c, notes)?),
            // The whole checker is reported as not carried over.
            (CheckKind::Bfd, _) => {}
            _ => note(
                notes,
                &c.loc,
                format!(
                    "{kw} option '{}' is not supported by RVS and was dropped",
                    c.key
                ),
            ),
        }
    }
    Ok(ck)
}

/// `weight W [reverse|noreverse]` of FILE_CHECK and track_file.
fn file_weight(n: &Node) -> Result<(i64, bool), ParseError> {
    let w: i64 = num(n, "a weight")?;
    if !(-2_147_483_647..=2_147_483_647).contains(&w) {
        return Err(err(
            &n.loc,
            format!("weight {w} is out of range -2147483647..2147483647"),
        ));
    }
    let reverse = match n.args.get(1).map(String::as_str) {
        None | Some("noreverse") => false,
        Some("reverse") => true,
        Some(o) => {
            return Err(err(
                &n.loc,
                format!("weight: '{o}' is not reverse or noreverse"),
            ))
        }
    };
    Ok((w, reverse))
}

fn track_file(n: &Node, notes: &mut Vec<Note>) -> Result<TrackFile, ParseError> {
    let mut t = TrackFile {
        name: arg(n, 0, "a name")?.to_string(),
        loc: n.loc.clone(),
        file: None,
        weight: None,
    };
    for c in n.children() {
        match c.key.as_str() {
            "file" => t.file = Some(arg(c, 0, "a file path")?.to_string()),
            "weight" => t.weight = Some(file_weight(c)?),
            "init_file" => note(
                notes,
                &c.loc,
                "track_file init_file is not carried: rvsd does not create or write the \
                 file; a missing file reads as 0, as in keepalived",
            ),
            other => note(
                notes,
                &c.loc,
                format!("unknown track_file keyword '{other}' ignored"),
            ),
        }
    }
    Ok(t)
}

fn smtp_host(n: &Node, notes: &mut Vec<Note>) -> Result<SmtpHost, ParseError> {
    let mut h = SmtpHost {
        loc: n.loc.clone(),
        connect_ip: None,
        connect_port: None,
        connect_timeout: None,
    };
    for c in n.children() {
        match c.key.as_str() {
            "connect_ip" => h.connect_ip = Some(ip(c, arg(c, 0, "an IP address")?)?),
            "connect_port" => h.connect_port = Some(port(c, arg(c, 0, "a port")?)?),
            "connect_timeout" => h.connect_timeout = Some(timer(c, notes)?),
            other => note(
                notes,
                &c.loc,
                format!(
                    "SMTP_CHECK host option '{other}' is not supported by RVS and was dropped \
                     (RVS checks from the director's own address)"
                ),
            ),
        }
    }
    Ok(h)
}

fn url(n: &Node, notes: &mut Vec<Note>) -> Result<Url, ParseError> {
    let mut u = Url {
        loc: n.loc.clone(),
        path: None,
        digest: None,
        status_codes: Vec::new(),
        virtualhost: None,
    };
    for c in n.children() {
        match c.key.as_str() {
            "virtualhost" => u.virtualhost = Some(arg(c, 0, "a host name")?.to_string()),
            "path" => u.path = Some(arg(c, 0, "a path")?.to_string()),
            "digest" => {
                let d = arg(c, 0, "an MD5 digest")?;
                if d.len() != 32 || !d.chars().all(|x| x.is_ascii_hexdigit()) {
                    return Err(err(
                        &c.loc,
                        format!("digest '{d}' is not an MD5 digest (32 hex digits)"),
                    ));
                }
                u.digest = Some(d.to_ascii_lowercase());
            }
            "status_code" => {
                if c.args.is_empty() {
                    return Err(err(&c.loc, "status_code needs a code or range"));
                }
                for a in &c.args {
                    let bad = || err(&c.loc, format!("status_code: '{a}' is not a code or range"));
                    let (lo, hi) = match a.split_once('-') {
                        Some((l, h)) => {
                            (l.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?)
                        }
                        None => {
                            let v = a.parse().map_err(|_| bad())?;
                            (v, v)
                        }
                    };
                    if lo > hi || !(100..=599).contains(&lo) || !(100..=599).contains(&hi) {
                        return Err(bad());
                    }
                    u.status_codes.push((lo, hi));
                }
            }
            other => note(
                notes,
                &c.loc,
                format!("url option '{other}' is not supported by RVS and was dropped"),
            ),
        }
    }
    Ok(u)
}

fn group(n: &Node, notes: &mut Vec<Note>) -> Result<Group, ParseError> {
    let name = arg(n, 0, "a name")?.to_string();
    let mut g = Group {
        name,
        loc: n.loc.clone(),
        entries: Vec::new(),
    };
    for c in n.children() {
        if c.key == "fwmark" {
            let m = arg(c, 0, "a mark")?
                .parse()
                .map_err(|_| err(&c.loc, "fwmark: the mark is not a number"))?;
            let family = match c.args.get(1).map(String::as_str) {
                None => None,
                Some("inet") => Some(false),
                Some("inet6") => Some(true),
                Some(other) => {
                    return Err(err(
                        &c.loc,
                        format!("fwmark {m}: '{other}' is not inet or inet6"),
                    ))
                }
            };
            g.entries.push(GroupEntry::Fwmark(m, family, c.loc.clone()));
            continue;
        }
        let p = match c.args.first() {
            Some(p) => Some(port(c, p)?),
            None => None,
        };
        match expand_range(&c.key) {
            Ok(addrs) => g.entries.push(GroupEntry::Addrs(addrs, p, c.loc.clone())),
            Err(RangeError::TooBig(count)) => note(
                notes,
                &c.loc,
                format!(
                    "virtual_server_group {}: range {} has {count} addresses (more than {MAX_RANGE}); \
                     skipped: describe it with a [[fwmark]] rule whose address is the prefix",
                    g.name, c.key
                ),
            ),
            Err(RangeError::Invalid) => {
                return Err(err(
                    &c.loc,
                    format!(
                        "virtual_server_group {}: '{}' is not an address, range or fwmark",
                        g.name, c.key
                    ),
                ))
            }
        }
    }
    Ok(g)
}

enum RangeError {
    Invalid,
    TooBig(u128),
}

/// `A`, `A-B` (B a full address or the last IPv4 octet / IPv6 group) or
/// `A/len`.
fn expand_range(s: &str) -> Result<Vec<IpAddr>, RangeError> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok(vec![a]);
    }
    let (first, last): (IpAddr, IpAddr) = if let Some((a, len)) = s.split_once('/') {
        let a: IpAddr = a.parse().map_err(|_| RangeError::Invalid)?;
        let len: u32 = len.parse().map_err(|_| RangeError::Invalid)?;
        match a {
            IpAddr::V4(v) if len <= 32 => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let lo = u32::from(v) & mask;
                (IpAddr::V4(lo.into()), IpAddr::V4((lo | !mask).into()))
            }
            IpAddr::V6(v) if len <= 128 => {
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                let lo = u128::from(v) & mask;
                (IpAddr::V6(lo.into()), IpAddr::V6((lo | !mask).into()))
            }
            _ => return Err(RangeError::Invalid),
        }
    } else if let Some((a, b)) = s.rsplit_once('-') {
        let a: IpAddr = a.parse().map_err(|_| RangeError::Invalid)?;
        let b = match (a, b.parse::<IpAddr>()) {
            (_, Ok(b)) => b,
            (IpAddr::V4(v), Err(_)) => {
                let last: u8 = b.parse().map_err(|_| RangeError::Invalid)?;
                let o = v.octets();
                IpAddr::V4([o[0], o[1], o[2], last].into())
            }
            (IpAddr::V6(v), Err(_)) => {
                let last = u16::from_str_radix(b, 16).map_err(|_| RangeError::Invalid)?;
                let mut seg = v.segments();
                seg[7] = last;
                IpAddr::V6(seg.into())
            }
        };
        (a, b)
    } else {
        return Err(RangeError::Invalid);
    };
    let (lo, hi) = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
        _ => return Err(RangeError::Invalid),
    };
    if lo > hi {
        return Err(RangeError::Invalid);
    }
    // The whole IPv6 space has one address more than u128 counts.
    let count = (hi - lo).saturating_add(1);
    if count > u128::from(MAX_RANGE) {
        return Err(RangeError::TooBig(count));
    }
    Ok((lo..=hi)
        .map(|x| match first {
            IpAddr::V4(_) => IpAddr::V4((x as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(x.into()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(s: &str) -> Vec<String> {
        match expand_range(s) {
            Ok(v) => v.iter().map(ToString::to_string).collect(),
            Err(_) => vec!["ERR".into()],
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(addrs("10.0.0.1-3"), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(addrs("10.0.0.254-10.0.1.1").len(), 4);
        assert_eq!(
            addrs("10.0.0.8/30"),
            ["10.0.0.8", "10.0.0.9", "10.0.0.10", "10.0.0.11"]
        );
        assert_eq!(addrs("2001:db8::1-3").len(), 3);
        assert_eq!(addrs("10.0.0.5-1"), ["ERR"]);
        assert!(matches!(
            expand_range("10.0.0.0/16"),
            Err(RangeError::TooBig(65536))
        ));
        // Found by the corpus property test: counting ::/0 overflowed.
        assert!(matches!(expand_range("::/0"), Err(RangeError::TooBig(_))));
        assert!(matches!(
            expand_range("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Err(RangeError::TooBig(_))
        ));
    }
}
