//! argv → request, with ipvsadm 1.31's syntax, defaults and error wording.
//!
//! Pure: name resolution goes through [`Lookup`], so tests run without DNS.
//! Hand-written rather than clap because ipvsadm's popt syntax needs things
//! clap does not do the same way: `-p` with an *optional* value that is taken
//! from the next word unless it starts with `-`, clusters such as `-Ln` or
//! `-At` whose last letter takes the next word, the rule that the first option
//! must be a command, and ipvsadm's own messages and option-check order.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use rvs_api::{
    Command, DestSpec, Family, ForwardMethod, FwmarkRuleSpec, Protocol, ServiceKey, ServiceSpec,
    SysctlSettings,
};
use rvs_vocab::tunnel::TUNNEL_TYPES;
use rvs_vocab::{sched, sysctl};
use rvs_vocab::{SyncDaemon, SyncRole};
use rvs_vocab::{Tunnel, TunnelChecksum};

/// ipvsadm's default persistence timeout (`-p` without a value).
pub(crate) const DEFAULT_PERSISTENCE: u32 = 300;
/// ipvsadm's upper bound for any timeout: 31 days.
const MAX_TIMEOUT: u32 = 86400 * 31;
/// Weights and thresholds are C ints in ipvsadm.
const INT_MAX: u32 = i32::MAX as u32;

/// Name resolution used while parsing, so the parser stays pure.
pub(crate) trait Lookup {
    /// Address of a host name (ipvsadm takes the first, IPv4 preferred).
    fn host(&self, name: &str) -> Option<IpAddr>;
    /// Port of a service name such as `http` for the protocol.
    fn service(&self, name: &str, proto: Protocol) -> Option<u16>;
}

/// What `-L` should print.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ListRequest {
    /// `-n`: no name resolution.
    pub(crate) numeric: bool,
    /// `-t/-u/-f`: only this service (and no version title line).
    pub(crate) service: Option<ServiceKey>,
    /// `-c`: the connection table instead of the services.
    pub(crate) connections: bool,
    /// `--timeout`: the `--set` timeouts instead of the services.
    pub(crate) timeouts: bool,
    /// `--stats`: counters instead of connections.
    pub(crate) stats: bool,
    /// `--rate`: per-second rates instead of connections.
    pub(crate) rate: bool,
    /// `--thresholds`: thresholds instead of weights.
    pub(crate) thresholds: bool,
    /// `--persistent-conn`: persistence templates per real server (and the
    /// persistence-engine columns with `-c`).
    pub(crate) persistent_conn: bool,
    /// `--exact`: counters unabbreviated.
    pub(crate) exact: bool,
    /// `--nosort`: rvsd's order instead of ipvsadm's sort.
    pub(crate) nosort: bool,
    /// `--mark-rules` (RVS): the firewall-mark rules after the services.
    pub(crate) mark_rules: bool,
    /// `--daemon`: the sync daemons instead of the services.
    pub(crate) daemon: bool,
    /// `--defense` (RVS): the SYN-flood defence instead of the services.
    pub(crate) defense: bool,
    /// `--sysctl` (RVS): every IPVS sysctl's value instead of the services.
    pub(crate) sysctl: bool,
    /// `--tun-info`: the tunnel column (type, port, checksum flag).
    pub(crate) tun_info: bool,
}

/// One invocation's intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send a change to rvsd.
    Command(Command),
    /// Fetch and print the table.
    List(ListRequest),
    /// `-S`: print the table as ipvsadm rules; `-n` for numeric output.
    Save {
        /// `-n`: no name resolution.
        numeric: bool,
    },
    /// `-R`: read rules from stdin and apply them as one transaction.
    Restore,
    /// `--list-mark-rules` (RVS): the firewall-mark classifier rules.
    ListMarkRules,
    /// `-h`: usage on stdout, exit 0.
    Help,
    /// `-v`: version on stdout, exit 0.
    Version,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invocation {
    /// What to do.
    pub(crate) action: Action,
    /// `--socket PATH`, our addition; `None` means env or default.
    pub(crate) socket: Option<PathBuf>,
}

/// Why the command line was refused; both exit with status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// ipvsadm's `fail(2, ...)`: print the message alone.
    Message(String),
    /// ipvsadm's `tryhelp_exit`: print the "Try ... -h" hint.
    TryHelp,
}

fn fail<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError::Message(msg.into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    Restore,
    Save,
    Zero,
    AddMarkRule,
    DelMarkRule,
    ListMarkRules,
    Reload,
    StartDaemon,
    StopDaemon,
    Sysctl,
}

impl Cmd {
    /// ipvsadm's `cmdnames`, used in its messages.
    fn name(self) -> &'static str {
        match self {
            Cmd::Add => "add-service",
            Cmd::Edit => "edit-service",
            Cmd::Del => "delete-service",
            Cmd::Flush => "flush",
            Cmd::List => "list",
            Cmd::AddDest => "add-server",
            Cmd::DelDest => "delete-server",
            Cmd::EditDest => "edit-server",
            Cmd::Timeout => "set",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
            Cmd::AddMarkRule => "add-mark-rule",
            Cmd::DelMarkRule => "delete-mark-rule",
            Cmd::ListMarkRules => "list-mark-rules",
            Cmd::Reload => "reload",
            Cmd::StartDaemon => "start-daemon",
            Cmd::StopDaemon => "stop-daemon",
            Cmd::Sysctl => "sysctl",
        }
    }
}

/// Options in ipvsadm's `optnames` order (the order its checks report in),
/// leaving out the persistence-engine options rvsadm refuses before any
/// check; RVS's own options come last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    McastInterface,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    SyncId,
    Exact,
    OnePacket,
    SchedFlags,
    SyncMaxlen,
    McastGroup,
    McastPort,
    McastTtl,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
    Ports,
    MarkRules,
    Defense,
    Sysctl,
    SyncRefreshPeriod,
    SyncRetries,
    SyncThreshold,
    LocalAddress,
    Toa,
}

const OPTS: [Opt; 42] = [
    Opt::Numeric,
    Opt::Connection,
    Opt::Service,
    Opt::Scheduler,
    Opt::Persistent,
    Opt::Netmask,
    Opt::Server,
    Opt::Forward,
    Opt::Weight,
    Opt::UThreshold,
    Opt::LThreshold,
    Opt::McastInterface,
    Opt::Timeout,
    Opt::Daemon,
    Opt::Stats,
    Opt::Rate,
    Opt::Thresholds,
    Opt::PersistentConn,
    Opt::NoSort,
    Opt::SyncId,
    Opt::Exact,
    Opt::OnePacket,
    Opt::SchedFlags,
    Opt::SyncMaxlen,
    Opt::McastGroup,
    Opt::McastPort,
    Opt::McastTtl,
    Opt::TunInfo,
    Opt::TunType,
    Opt::TunPort,
    Opt::TunNocsum,
    Opt::TunCsum,
    Opt::TunRemcsum,
    Opt::Ports,
    Opt::MarkRules,
    Opt::Defense,
    Opt::Sysctl,
    Opt::SyncRefreshPeriod,
    Opt::SyncRetries,
    Opt::SyncThreshold,
    Opt::LocalAddress,
    Opt::Toa,
];

impl Opt {
    fn bit(self) -> u64 {
        1 << (self as u64)
    }

    fn name(self) -> &'static str {
        match self {
            Opt::Numeric => "numeric",
            Opt::Connection => "connection",
            Opt::Service => "service-address",
            Opt::Scheduler => "scheduler",
            Opt::Persistent => "persistent",
            Opt::Netmask => "netmask",
            Opt::Server => "real-server",
            Opt::Forward => "forwarding-method",
            Opt::Weight => "weight",
            Opt::UThreshold => "u-threshold",
            Opt::LThreshold => "l-threshold",
            Opt::McastInterface => "mcast-interface",
            Opt::Timeout => "timeout",
            Opt::Daemon => "daemon",
            Opt::SyncId => "syncid",
            Opt::SyncMaxlen => "sync-maxlen",
            Opt::McastGroup => "mcast-group",
            Opt::McastPort => "mcast-port",
            Opt::McastTtl => "mcast-ttl",
            Opt::Stats => "stats",
            Opt::Rate => "rate",
            Opt::Thresholds => "thresholds",
            Opt::PersistentConn => "persistent-conn",
            Opt::NoSort => "nosort",
            Opt::Exact => "exact",
            Opt::OnePacket => "ops",
            Opt::SchedFlags => "sched-flags",
            Opt::TunInfo => "tun-info",
            Opt::TunType => "tun-type",
            Opt::TunPort => "tun-port",
            Opt::TunNocsum => "tun-nocsum",
            Opt::TunCsum => "tun-csum",
            Opt::TunRemcsum => "tun-remcsum",
            Opt::Ports => "ports",
            Opt::MarkRules => "mark-rules",
            Opt::Defense => "defense",
            Opt::Sysctl => "sysctl",
            Opt::SyncRefreshPeriod => "sync-refresh-period",
            Opt::SyncRetries => "sync-retries",
            Opt::SyncThreshold => "sync-threshold",
            Opt::LocalAddress => "laddr",
            Opt::Toa => "toa",
        }
    }

    /// ipvsadm's `commands_v_options` cell: '+' required, 'x' illegal,
    /// '1' at most one of these, ' ' optional.
    fn rule(self, cmd: Cmd) -> char {
        use Opt::*;
        match cmd {
            Cmd::Add | Cmd::Edit => match self {
                Service => '+',
                Scheduler | Persistent | Netmask | OnePacket | SchedFlags | LocalAddress | Toa => {
                    ' '
                }
                _ => 'x',
            },
            Cmd::Del => match self {
                Service => '+',
                _ => 'x',
            },
            Cmd::Flush | Cmd::Timeout | Cmd::Restore | Cmd::Reload | Cmd::Sysctl => 'x',
            Cmd::DelMarkRule => 'x',
            // Rules are always numeric; -n is accepted out of habit.
            Cmd::ListMarkRules => match self {
                Numeric => ' ',
                _ => 'x',
            },
            // The rule's -t/-u/--any is required too, checked first with
            // its own message.
            Cmd::AddMarkRule => match self {
                Service | Ports => ' ',
                _ => 'x',
            },
            Cmd::StartDaemon => match self {
                McastInterface => '+',
                SyncId | SyncMaxlen | McastGroup | McastPort | McastTtl | SyncRefreshPeriod
                | SyncRetries | SyncThreshold => ' ',
                _ => 'x',
            },
            Cmd::StopDaemon => match self {
                SyncId => ' ',
                _ => 'x',
            },
            Cmd::List => match self {
                Connection | Service | Timeout | Daemon | Defense | Sysctl => '1',
                Numeric | Stats | Rate | Thresholds | PersistentConn | NoSort | Exact
                | MarkRules | TunInfo => ' ',
                _ => 'x',
            },
            Cmd::AddDest | Cmd::EditDest => match self {
                Service | Server => '+',
                Forward | Weight | UThreshold | LThreshold | TunType | TunPort | TunNocsum
                | TunCsum | TunRemcsum => ' ',
                _ => 'x',
            },
            Cmd::DelDest => match self {
                Service | Server => '+',
                _ => 'x',
            },
            Cmd::Save => match self {
                Numeric => ' ',
                _ => 'x',
            },
            Cmd::Zero => match self {
                Service => ' ',
                _ => 'x',
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arg {
    None,
    Required,
    Optional,
}

/// (long name, short letter, argument). Entries for ipvsadm options rvsadm
/// does not implement (persistence engines) are listed so they get a
/// precise error instead of "unknown option".
pub(crate) const TABLE: &[(&str, Option<char>, Arg)] = &[
    ("add-service", Some('A'), Arg::None),
    ("edit-service", Some('E'), Arg::None),
    ("delete-service", Some('D'), Arg::None),
    ("clear", Some('C'), Arg::None),
    ("list", Some('L'), Arg::None),
    ("list", Some('l'), Arg::None),
    ("zero", Some('Z'), Arg::None),
    ("add-server", Some('a'), Arg::None),
    ("edit-server", Some('e'), Arg::None),
    ("delete-server", Some('d'), Arg::None),
    ("set", None, Arg::None),
    ("help", Some('h'), Arg::None),
    ("version", Some('v'), Arg::None),
    ("restore", Some('R'), Arg::None),
    ("save", Some('S'), Arg::None),
    ("start-daemon", None, Arg::Required),
    ("stop-daemon", None, Arg::Required),
    ("tcp-service", Some('t'), Arg::Required),
    ("udp-service", Some('u'), Arg::Required),
    ("sctp-service", None, Arg::Required),
    ("fwmark-service", Some('f'), Arg::Required),
    ("scheduler", Some('s'), Arg::Required),
    ("persistent", Some('p'), Arg::Optional),
    ("netmask", Some('M'), Arg::Required),
    ("real-server", Some('r'), Arg::Required),
    ("masquerading", Some('m'), Arg::None),
    ("ipip", Some('i'), Arg::None),
    ("gatewaying", Some('g'), Arg::None),
    ("weight", Some('w'), Arg::Required),
    ("u-threshold", Some('x'), Arg::Required),
    ("l-threshold", Some('y'), Arg::Required),
    ("numeric", Some('n'), Arg::None),
    ("connection", Some('c'), Arg::None),
    ("mcast-interface", None, Arg::Required),
    ("syncid", None, Arg::Required),
    ("sync-maxlen", None, Arg::Required),
    ("mcast-group", None, Arg::Required),
    ("mcast-port", None, Arg::Required),
    ("mcast-ttl", None, Arg::Required),
    ("sync-refresh-period", None, Arg::Required),
    ("sync-retries", None, Arg::Required),
    ("sync-threshold", None, Arg::Required),
    ("timeout", None, Arg::None),
    ("daemon", None, Arg::None),
    ("stats", None, Arg::None),
    ("rate", None, Arg::None),
    ("thresholds", None, Arg::None),
    ("persistent-conn", None, Arg::None),
    ("nosort", None, Arg::None),
    ("sort", None, Arg::None),
    ("exact", Some('X'), Arg::None),
    ("ipv6", Some('6'), Arg::None),
    ("ops", Some('o'), Arg::None),
    ("pe", None, Arg::Required),
    ("sched-flags", Some('b'), Arg::Required),
    ("tun-info", None, Arg::None),
    ("tun-type", None, Arg::Required),
    ("tun-port", None, Arg::Required),
    ("tun-nocsum", None, Arg::None),
    ("tun-csum", None, Arg::None),
    ("tun-remcsum", None, Arg::None),
    // RVS: FullNAT (not in ipvsadm, whose 1.31 owns the short letters).
    ("fullnat", None, Arg::None),
    ("laddr", None, Arg::Required),
    ("toa", None, Arg::None),
    ("socket", None, Arg::Required),
    // RVS's firewall-mark classifier; ipvsadm has no equivalent.
    ("add-mark-rule", None, Arg::Required),
    ("delete-mark-rule", None, Arg::Required),
    ("list-mark-rules", None, Arg::None),
    // RVS: rvsd re-reads its configuration file (systemd's ExecReload).
    ("reload", None, Arg::None),
    ("any", None, Arg::Required),
    ("ports", None, Arg::Required),
    ("mark-rules", None, Arg::None),
    // RVS: the SYN-flood defence; `--defense KEY=VALUE` sets, `-L --defense` lists.
    ("defense", None, Arg::Optional),
    // RVS: any IPVS sysctl RVS takes; `--sysctl KEY=VALUE` sets, `-L --sysctl` lists.
    ("sysctl", None, Arg::Optional),
];

/// One option occurrence after popt-style tokenizing.
#[derive(Debug)]
struct Token {
    /// Long name from [`TABLE`].
    name: &'static str,
    /// As the user wrote it, for messages (`-w`, `--weight`).
    spelled: String,
    value: Option<String>,
}

/// Splits argv into options and positional words the way popt does:
/// `--long`, `--long=value`, `--long value`, short clusters, `--` ends options.
fn tokenize(args: &[String]) -> Result<(Vec<Token>, Vec<String>), ParseError> {
    let mut tokens = Vec::new();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            positional.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let Some(&(lname, _, kind)) = TABLE.iter().find(|(n, _, _)| *n == name) else {
                return fail(format!("{arg}: unknown option"));
            };
            let value = match kind {
                Arg::None => {
                    if inline.is_some() {
                        return fail(format!("--{name}: option does not take an argument"));
                    }
                    None
                }
                Arg::Required => match inline {
                    Some(v) => Some(v),
                    None if i < args.len() => {
                        i += 1;
                        Some(args[i - 1].clone())
                    }
                    None => return fail(format!("--{name}: missing argument")),
                },
                Arg::Optional => match inline {
                    Some(v) => Some(v),
                    None if i < args.len() && !args[i].starts_with('-') => {
                        i += 1;
                        Some(args[i - 1].clone())
                    }
                    None => None,
                },
            };
            tokens.push(Token {
                name: lname,
                spelled: format!("--{name}"),
                value,
            });
        } else if arg.len() > 1 && arg.starts_with('-') {
            let letters: Vec<char> = arg[1..].chars().collect();
            let mut j = 0;
            while j < letters.len() {
                let c = letters[j];
                j += 1;
                let Some(&(lname, _, kind)) = TABLE.iter().find(|(_, s, _)| *s == Some(c)) else {
                    return fail(format!("-{c}: unknown option"));
                };
                let rest: String = letters[j..].iter().collect();
                let value = match kind {
                    Arg::None => None,
                    Arg::Required | Arg::Optional if !rest.is_empty() => {
                        j = letters.len();
                        Some(rest)
                    }
                    Arg::Required if i < args.len() => {
                        i += 1;
                        Some(args[i - 1].clone())
                    }
                    Arg::Required => return fail(format!("-{c}: missing argument")),
                    Arg::Optional if i < args.len() && !args[i].starts_with('-') => {
                        i += 1;
                        Some(args[i - 1].clone())
                    }
                    Arg::Optional => None,
                };
                tokens.push(Token {
                    name: lname,
                    spelled: format!("-{c}"),
                    value,
                });
            }
        } else {
            positional.push(arg.clone());
        }
    }
    Ok((tokens, positional))
}

/// A whole word as C's `strtol(s, &end, 10)` reads it when `*end == 0`:
/// blanks, a sign, at least one digit and nothing after. `None`: not a
/// number at all; `Some(None)`: a number beyond a C long (`ERANGE`).
fn strtol(s: &str) -> Option<Option<i64>> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = digits.parse::<i64>().ok();
    Some(if negative { n.map(|n| -n) } else { n })
}

/// Whether `s` is a number to C (in range or not): such a word is never
/// looked up as a service name. getaddrinfo would read it modulo 65536
/// (`65617` as port 81), where ipvsadm's getservbyname finds nothing.
pub(crate) fn is_number(s: &str) -> bool {
    strtol(s).is_some()
}

/// ipvsadm's `string_to_number`: the whole word a base-10 number
/// (`strtol`), within bounds.
fn number(s: &str, min: u32, max: u32) -> Option<u32> {
    let n = strtol(s)??;
    (i64::from(min)..=i64::from(max))
        .contains(&n)
        .then_some(n as u32)
}

fn timeout(s: &str, min: u32) -> Result<u32, ParseError> {
    number(s, min, MAX_TIMEOUT).map_or_else(
        || fail(format!("invalid timeout value `{s}' specified")),
        Ok,
    )
}

/// ipvsadm's `parse_service`: `host[:port]`, `[v6]:port` or a bare IPv6
/// address. Returns the address and the port if one was given.
fn parse_addr_port(s: &str, proto: Protocol, lookup: &dyn Lookup) -> Option<(IpAddr, Option<u16>)> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return None; // also rejects ""
    }
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let (addr, after) = inner.split_once(']')?;
        let port = after.strip_prefix(':')?;
        (addr, Some(port))
    } else if s.parse::<std::net::Ipv6Addr>().is_ok() {
        (s, None)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let addr = if let Ok(a) = host.parse::<IpAddr>() {
        a
    } else if host.contains(':') {
        return None;
    } else {
        lookup.host(host)?
    };
    let port = match port {
        None => None,
        Some(p) => Some(match number(p, 0, 65535) {
            Some(n) => n as u16,
            None if is_number(p) => return None,
            None => lookup.service(p, proto)?,
        }),
    };
    Some((addr, port))
}

/// `--laddr`: an address of the director, written as an address (a name
/// could resolve to anything; `[v6]` is taken as ipvsadm writes IPv6).
fn parse_local_address(s: &str) -> Result<IpAddr, ParseError> {
    let bare = s
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse().or_else(|_| {
        fail(format!(
            "illegal local address '{s}' specified: --laddr takes an IP address of the director \
             that the real servers route back to, e.g. --laddr 10.0.2.200"
        ))
    })
}

/// `-M`: dotted mask for IPv4 (must be contiguous here), prefix for IPv6.
/// Full masks (/32, /128) are normalized to `None`.
fn parse_netmask(s: &str, v6: bool, lookup: &dyn Lookup) -> Result<Option<u8>, ParseError> {
    if v6 {
        // ipvsadm uses atoi(): leading digits count, the rest is ignored.
        let digits: String = s
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let n: u32 = digits.parse().unwrap_or(0);
        if !(1..=128).contains(&n) {
            return fail("illegal ipv6 netmask specified");
        }
        return Ok((n != 128).then_some(n as u8));
    }
    let mask = match s.parse::<Ipv4Addr>() {
        Ok(m) => m,
        Err(_) => match lookup.host(s) {
            Some(IpAddr::V4(m)) => m,
            _ => return fail("illegal virtual server persistent mask specified"),
        },
    };
    let bits = u32::from(mask);
    let prefix = bits.leading_ones();
    if bits.checked_shl(prefix).unwrap_or(0) != 0 {
        return fail(format!(
            "netmask {mask} is not contiguous: rvsd takes prefix masks only"
        ));
    }
    Ok((prefix != 32).then_some(prefix as u8))
}

/// ipvsadm's `parse_sched_flags`: comma-separated names, each known and
/// matching the scheduler (default wlc). ipvsadm keeps bits, so the result
/// is in bit order under the scheduler's own names: what `-L` and `-S`
/// print back.
fn parse_sched_flags(sched: &str, s: &str) -> Result<Vec<String>, ParseError> {
    let mut bits = 0;
    // strtok: empty pieces between commas are skipped.
    for f in s.split(',').filter(|f| !f.is_empty()) {
        let Some(n) = sched::flag_number(f) else {
            return fail(format!("invalid scheduler flag `{f}'"));
        };
        if sched::flag_owner(f).is_some_and(|o| o != sched) {
            return fail(format!("incompatible scheduler flag `{f}'"));
        }
        bits |= sched::flag_bit(n);
    }
    Ok(sched::flag_names(sched, bits))
}

/// ipvsadm's `parse_fwmark`: a decimal number 1..=4294967295.
fn parse_fwmark(s: &str) -> Result<u32, ParseError> {
    let t = s.trim_start();
    let t = t.strip_prefix('+').unwrap_or(t);
    match t.parse::<u32>() {
        Ok(n) if n > 0 && t.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => fail(format!("invalid fwmark value `{s}' specified")),
    }
}

/// The message for `--add-mark-rule` without `-t`, `-u` or `--any`.
const MISSING_RULE_PROTOCOL: &str =
    "You need to supply -t, -u or --any with the rule's address[/prefix] for the 'add-mark-rule' command";

/// A mark rule's `ADDR[/PREFIX]`: IPv4, IPv6 bare or in brackets, numeric
/// (a classifier rule should not depend on DNS), no port (ports go in
/// `--ports`), no host bits beyond the prefix. No prefix: one address.
fn parse_rule_net(s: &str) -> Result<(IpAddr, u8), ParseError> {
    let (host, prefix) = match s.rsplit_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let addr = match host.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .and_then(|a| a.parse::<std::net::Ipv6Addr>().ok())
            .map(IpAddr::V6),
        None => host.parse::<IpAddr>().ok(),
    };
    let Some(addr) = addr else {
        // `10.0.0.1:80` or `[2001:db8::1]:80`: a port where none belongs.
        let with_port = host
            .rsplit_once(':')
            .is_some_and(|(h, _)| h.parse::<Ipv4Addr>().is_ok() || h.ends_with(']'));
        return fail(if with_port {
            format!("illegal mark rule address `{s}' specified: no port here, use --ports")
        } else {
            format!("illegal mark rule address `{s}' specified: want a numeric address[/prefix]")
        });
    };
    let max = if addr.is_ipv6() { 128 } else { 32 };
    let prefix_len = match prefix {
        None => max as u8,
        Some(p) => match number(p, 0, max) {
            Some(n) => n as u8,
            None => return fail(format!("illegal prefix length `/{p}' specified (0-{max})")),
        },
    };
    let bits = match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
        IpAddr::V6(a) => u128::from(a),
    };
    // IPv4 sits in the top 32 bits, so one mask shape serves both.
    let mask = u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0);
    if bits & !mask != 0 {
        let net = bits & mask;
        let net = match addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from((net >> 96) as u32)),
            IpAddr::V6(_) => IpAddr::V6(net.into()),
        };
        return fail(format!(
            "mark rule address {addr}/{prefix_len} has host bits set: did you mean {net}/{prefix_len}?"
        ));
    }
    Ok((addr, prefix_len))
}

/// `--ports`: comma-separated ports 1..65535 (or service names, as `-t`
/// takes them), each once, in the given order; empty means all ports.
fn parse_ports(
    s: &str,
    proto: Option<Protocol>,
    lookup: &dyn Lookup,
) -> Result<Vec<u16>, ParseError> {
    let mut ports = Vec::new();
    if s.is_empty() {
        return Ok(ports);
    }
    for p in s.split(',') {
        // Numbers out of range are not names either (see `is_number`).
        let name = || {
            if p.is_empty() || is_number(p) {
                None
            } else {
                lookup.service(p, proto.unwrap_or(Protocol::Tcp))
            }
        };
        let port = match number(p, 1, 65535).map(|n| n as u16).or_else(name) {
            Some(n) if n != 0 => n,
            _ => {
                return fail(format!(
                    "illegal port `{p}' in port list `{s}' specified (1-65535, comma-separated)"
                ))
            }
        };
        if ports.contains(&port) {
            return fail(format!("port {port} given twice in port list `{s}'"));
        }
        ports.push(port);
    }
    Ok(ports)
}

/// The virtual service as given on the command line.
#[derive(Debug, Clone, Copy)]
enum Service {
    Addr(Protocol, IpAddr, Option<u16>),
    Fwmark(u32, Family),
}

/// What the options said, one field per option, before any check that
/// relates one option to another (ipvsadm's `parse_options` loop).
#[derive(Debug)]
struct Collected {
    socket: Option<PathBuf>,
    /// `-h` or `-v` as the first option: answered without further checks.
    early: Option<Action>,
    /// No option other than `--socket` was given.
    bare: bool,
    cmd: Option<Cmd>,
    /// Bits of [`Opt`] given, for ipvsadm's option checks.
    options: u64,
    service: Option<Service>,
    scheduler: Option<String>,
    persistence: Option<u32>,
    netmask_raw: Option<String>,
    flags_raw: Option<String>,
    one_packet: bool,
    /// `--laddr`s in the order given, and `--toa` (FullNAT, RVS's).
    local_addresses: Vec<IpAddr>,
    toa: bool,
    server: Option<(IpAddr, Option<u16>)>,
    method: ForwardMethod,
    /// `--tun-type` (ipvsadm's default: ipip), `--tun-port`, the checksum
    /// flag; combined and checked after all options are read.
    tun_type: &'static str,
    tun_port: Option<u16>,
    tun_checksum: Option<TunnelChecksum>,
    weight: u32,
    upper: u32,
    lower: u32,
    list: ListRequest,
    /// RVS mark rules: the mark, `-t/-u/--any` with its raw prefix, ports.
    rule_mark: u32,
    rule_target: Option<(Option<Protocol>, String)>,
    ports_raw: Option<String>,
    /// `--start-daemon` / `--stop-daemon` and their options.
    sync: SyncDaemon,
    /// `--sysctl` / `--defense KEY=VALUE` settings.
    sysctls: SysctlSettings,
}

impl Default for Collected {
    fn default() -> Self {
        Collected {
            socket: None,
            early: None,
            bare: true,
            cmd: None,
            options: 0,
            service: None,
            scheduler: None,
            persistence: None,
            netmask_raw: None,
            flags_raw: None,
            one_packet: false,
            local_addresses: Vec::new(),
            toa: false,
            server: None,
            method: ForwardMethod::Route,
            tun_type: "ipip",
            tun_port: None,
            tun_checksum: None,
            weight: 1,
            upper: 0,
            lower: 0,
            list: ListRequest::default(),
            rule_mark: 0,
            rule_target: None,
            ports_raw: None,
            sync: SyncDaemon {
                role: SyncRole::Master,
                mcast_interface: String::new(),
                syncid: 0,
                sync_maxlen: None,
                mcast_group: None,
                mcast_port: None,
                mcast_ttl: None,
                sync_refresh_period: None,
                sync_retries: None,
                sync_threshold: None,
            },
            sysctls: SysctlSettings::default(),
        }
    }
}

impl Collected {
    /// Records `opt` (see [`set_option`]).
    fn set(&mut self, opt: Opt) -> Result<(), ParseError> {
        set_option(&mut self.options, opt)
    }

    /// ipvsadm names ports by the service's protocol; a mark service is TCP.
    fn protocol(&self) -> Protocol {
        match self.service {
            Some(Service::Addr(p, _, _)) => p,
            _ => Protocol::Tcp,
        }
    }
}

/// Adds `opt` to `options`, refusing it twice as ipvsadm's `set_option`.
fn set_option(options: &mut u64, opt: Opt) -> Result<(), ParseError> {
    if *options & opt.bit() != 0 {
        return fail(format!("multiple '{}' options specified", opt.name()));
    }
    *options |= opt.bit();
    Ok(())
}

/// The command a long option name stands for, if it is one.
fn command_of(name: &str) -> Option<Cmd> {
    Some(match name {
        "add-service" => Cmd::Add,
        "edit-service" => Cmd::Edit,
        "delete-service" => Cmd::Del,
        "clear" => Cmd::Flush,
        "list" => Cmd::List,
        "zero" => Cmd::Zero,
        "add-server" => Cmd::AddDest,
        "edit-server" => Cmd::EditDest,
        "delete-server" => Cmd::DelDest,
        "set" => Cmd::Timeout,
        "restore" => Cmd::Restore,
        "save" => Cmd::Save,
        "add-mark-rule" => Cmd::AddMarkRule,
        "delete-mark-rule" => Cmd::DelMarkRule,
        "list-mark-rules" => Cmd::ListMarkRules,
        "reload" => Cmd::Reload,
        "start-daemon" => Cmd::StartDaemon,
        "stop-daemon" => Cmd::StopDaemon,
        _ => return None,
    })
}

/// The collect step: every option's value parsed on its own, in the order
/// given, with the checks ipvsadm makes while it reads them.
fn collect(tokens: Vec<Token>, lookup: &dyn Lookup) -> Result<Collected, ParseError> {
    let mut c = Collected::default();
    for tok in tokens {
        let value = tok.value.clone().unwrap_or_default();
        if tok.name == "socket" {
            c.socket = Some(PathBuf::from(value));
            continue;
        }
        if tok.name == "defense" || tok.name == "sysctl" {
            collect_sysctl(&mut c, &tok)?;
            continue;
        }
        let command = command_of(tok.name);
        if c.bare {
            c.bare = false;
            match tok.name {
                "help" => c.early = Some(Action::Help),
                "version" => c.early = Some(Action::Version),
                _ if command.is_none() => return Err(ParseError::TryHelp),
                _ => {}
            }
            if c.early.is_some() {
                return Ok(c);
            }
        }
        if let Some(cmd) = command {
            if c.cmd.is_some() {
                return fail("multiple commands specified");
            }
            c.cmd = Some(cmd);
            if matches!(cmd, Cmd::AddMarkRule | Cmd::DelMarkRule) {
                c.rule_mark = parse_fwmark(&value)?;
            }
            if matches!(cmd, Cmd::StartDaemon | Cmd::StopDaemon) {
                c.sync.role = SyncRole::from_name(&value).ok_or_else(|| {
                    ParseError::Message(format!("illegal {} parameter specified", cmd.name()))
                })?;
            }
            continue;
        }
        collect_option(&mut c, &tok, value, lookup)?;
    }
    Ok(c)
}

/// `--sysctl` and `--defense`: with `KEY=VALUE` a command of its own
/// (repeatable, the two mixed as one change); bare, `-L`'s option to list
/// the sysctls or the defence (alone, it lists too). `--defense` takes the
/// defence's keys only.
fn collect_sysctl(c: &mut Collected, tok: &Token) -> Result<(), ParseError> {
    let defense = tok.name == "defense";
    let (opt, table) = if defense {
        (Opt::Defense, Some(sysctl::DEFENSE_TABLE))
    } else {
        (Opt::Sysctl, None)
    };
    let first = std::mem::replace(&mut c.bare, false);
    let list = |c: &mut Collected| {
        c.set(opt)?;
        if defense {
            c.list.defense = true;
        } else {
            c.list.sysctl = true;
        }
        Ok(())
    };
    match (&tok.value, c.cmd) {
        (Some(v), None | Some(Cmd::Sysctl)) if first || c.cmd == Some(Cmd::Sysctl) => {
            c.cmd = Some(Cmd::Sysctl);
            set_sysctl(&mut c.sysctls, tok.name, table, v)
        }
        (Some(_), _) => fail(format!(
            "--{0} KEY=VALUE is a command of its own; list them with -L --{0}",
            tok.name
        )),
        (None, None) if first => {
            c.cmd = Some(Cmd::List);
            list(c)
        }
        (None, Some(Cmd::List)) => list(c),
        (None, other) => fail(format!(
            "Illegal '{}' option with the '{}' command",
            tok.name,
            other.map_or("", Cmd::name)
        )),
    }
}

/// One `KEY=VALUE` of `--{option}` into `s`, checked against the sysctl's
/// definition (`rvs_vocab::sysctl`); a key given twice is refused.
fn set_sysctl(
    s: &mut SysctlSettings,
    option: &str,
    table: Option<&str>,
    item: &str,
) -> Result<(), ParseError> {
    let (def, value) = sysctl::parse_assignment(item, table)
        .map_err(|e| ParseError::Message(format!("--{option} {e}")))?;
    // Modes are at most 3, switches 0 or 1: checked above.
    let mode = u8::try_from(value).unwrap_or(u8::MAX);
    let on = value == 1;
    let slot_taken = match def.name {
        "drop_entry" => s.drop_entry.replace(mode).is_some(),
        "drop_packet" => s.drop_packet.replace(mode).is_some(),
        "secure_tcp" => s.secure_tcp.replace(mode).is_some(),
        "amemthresh" => s.amemthresh.replace(value).is_some(),
        "am_droprate" => s.am_droprate.replace(value).is_some(),
        "sloppy_tcp" => s.sloppy_tcp.replace(on).is_some(),
        "sloppy_sctp" => s.sloppy_sctp.replace(on).is_some(),
        "sync_persist_mode" => s.sync_persist_mode.replace(on).is_some(),
        other => return fail(format!("--{option} {other}: rvsadm cannot set it yet")),
    };
    if slot_taken {
        return fail(format!("--{option} {} given twice", def.name));
    }
    Ok(())
}

/// One option that is not a command, into `c`.
fn collect_option(
    c: &mut Collected,
    tok: &Token,
    value: String,
    lookup: &dyn Lookup,
) -> Result<(), ParseError> {
    match tok.name {
        "tcp-service" | "udp-service" | "sctp-service" => {
            c.set(Opt::Service)?;
            let proto = match tok.name {
                "tcp-service" => Protocol::Tcp,
                "udp-service" => Protocol::Udp,
                _ => Protocol::Sctp,
            };
            if c.cmd == Some(Cmd::AddMarkRule) {
                // A prefix, parsed once the command line is checked.
                c.rule_target = Some((Some(proto), value));
                return Ok(());
            }
            let (addr, port) = parse_addr_port(&value, proto, lookup).map_or_else(
                || fail("illegal virtual server address[:port] specified"),
                Ok,
            )?;
            c.service = Some(Service::Addr(proto, addr, port));
        }
        "any" => {
            if c.cmd != Some(Cmd::AddMarkRule) {
                return fail(format!(
                    "Illegal 'any' option with the '{}' command",
                    c.cmd.map_or("", Cmd::name)
                ));
            }
            c.set(Opt::Service)?;
            c.rule_target = Some((None, value));
        }
        "ports" => {
            c.set(Opt::Ports)?;
            c.ports_raw = Some(value);
        }
        "fwmark-service" => {
            if c.cmd == Some(Cmd::AddMarkRule) {
                return fail(
                    "-f: a mark rule's mark is the --add-mark-rule value; match with -t, -u or --any",
                );
            }
            c.set(Opt::Service)?;
            c.service = Some(Service::Fwmark(parse_fwmark(&value)?, Family::Ipv4));
        }
        "ipv6" => match &mut c.service {
            // Not an option in ipvsadm's table: no checks, any command.
            Some(Service::Fwmark(_, af)) => *af = Family::Ipv6,
            // ipvsadm's message, newline included.
            _ => return fail("-6 used before -f\n"),
        },
        "scheduler" => {
            c.set(Opt::Scheduler)?;
            c.scheduler = Some(value);
        }
        "persistent" => {
            c.set(Opt::Persistent)?;
            c.persistence = Some(match &tok.value {
                None => DEFAULT_PERSISTENCE,
                Some(v) => timeout(v, 1)?,
            });
        }
        "netmask" => {
            c.set(Opt::Netmask)?;
            c.netmask_raw = Some(value);
        }
        "sched-flags" => {
            c.set(Opt::SchedFlags)?;
            c.flags_raw = Some(value);
        }
        "ops" => {
            c.set(Opt::OnePacket)?;
            c.one_packet = true;
        }
        "real-server" => {
            c.set(Opt::Server)?;
            c.server = Some(
                parse_addr_port(&value, c.protocol(), lookup)
                    .map_or_else(|| fail("illegal real server address[:port] specified"), Ok)?,
            );
        }
        "gatewaying" | "masquerading" | "ipip" | "fullnat" => {
            c.set(Opt::Forward)?;
            c.method = match tok.name {
                "gatewaying" => ForwardMethod::Route,
                "masquerading" => ForwardMethod::Masq,
                "fullnat" => ForwardMethod::FullNat,
                _ => ForwardMethod::Tunnel,
            };
        }
        "laddr" => {
            // Repeatable: one local address each.
            c.options |= Opt::LocalAddress.bit();
            c.local_addresses.push(parse_local_address(&value)?);
        }
        "toa" => {
            c.set(Opt::Toa)?;
            c.toa = true;
        }
        "tun-type" => {
            c.set(Opt::TunType)?;
            c.tun_type = TUNNEL_TYPES
                .into_iter()
                .find(|t| *t == value)
                .map_or_else(|| fail("illegal tunnel type specified"), Ok)?;
        }
        "tun-port" => {
            c.set(Opt::TunPort)?;
            let port = number(&value, 1, 65535)
                .map_or_else(|| fail("illegal tunnel port specified"), Ok)?;
            c.tun_port = u16::try_from(port).ok();
        }
        "tun-nocsum" | "tun-csum" | "tun-remcsum" => {
            let (opt, checksum) = match tok.name {
                "tun-nocsum" => (Opt::TunNocsum, TunnelChecksum::Nocsum),
                "tun-csum" => (Opt::TunCsum, TunnelChecksum::Csum),
                _ => (Opt::TunRemcsum, TunnelChecksum::Remcsum),
            };
            c.set(opt)?;
            c.tun_checksum = Some(checksum);
        }
        "weight" => {
            c.set(Opt::Weight)?;
            c.weight =
                number(&value, 0, INT_MAX).map_or_else(|| fail("illegal weight specified"), Ok)?;
        }
        "u-threshold" => {
            c.set(Opt::UThreshold)?;
            c.upper = number(&value, 0, INT_MAX)
                .map_or_else(|| fail("illegal u_threshold specified"), Ok)?;
        }
        "l-threshold" => {
            c.set(Opt::LThreshold)?;
            c.lower = number(&value, 0, INT_MAX)
                .map_or_else(|| fail("illegal l_threshold specified"), Ok)?;
        }
        "mcast-interface" => {
            c.set(Opt::McastInterface)?;
            if value.len() > 15 {
                return fail("too long mcast-interface name");
            }
            c.sync.mcast_interface = value;
        }
        "syncid" => {
            c.set(Opt::SyncId)?;
            c.sync.syncid = number(&value, 0, 255)
                .map_or_else(|| fail("illegal syncid specified"), |n| Ok(n as u8))?;
        }
        "sync-maxlen" => {
            c.set(Opt::SyncMaxlen)?;
            c.sync.sync_maxlen = Some(
                number(&value, 1, 65535 - 20 - 8)
                    .map_or_else(|| fail("illegal sync-maxlen specified"), |n| Ok(n as u16))?,
            );
        }
        "mcast-group" => {
            c.set(Opt::McastGroup)?;
            match value.parse::<IpAddr>() {
                Ok(a) if a.is_multicast() => c.sync.mcast_group = Some(a),
                _ => return fail("illegal mcast-group specified"),
            }
        }
        "mcast-port" => {
            c.set(Opt::McastPort)?;
            c.sync.mcast_port = Some(
                number(&value, 1, 65535)
                    .map_or_else(|| fail("illegal mcast-port specified"), |n| Ok(n as u16))?,
            );
        }
        "mcast-ttl" => {
            c.set(Opt::McastTtl)?;
            c.sync.mcast_ttl = Some(
                number(&value, 1, 255)
                    .map_or_else(|| fail("illegal mcast-ttl specified"), |n| Ok(n as u8))?,
            );
        }
        // An RVS option (the kernel's sync_refresh_period sysctl).
        "sync-refresh-period" => {
            c.set(Opt::SyncRefreshPeriod)?;
            c.sync.sync_refresh_period = Some(number(&value, 1, 86_400).map_or_else(
                || fail("illegal sync-refresh-period specified (1 to 86400 seconds)"),
                Ok,
            )?);
        }
        // An RVS option (the kernel's sync_retries sysctl).
        "sync-retries" => {
            c.set(Opt::SyncRetries)?;
            c.sync.sync_retries = Some(
                number(&value, 0, u32::from(rvs_vocab::sync::MAX_SYNC_RETRIES)).map_or_else(
                    || fail("illegal sync-retries specified (0 to 3)"),
                    |n| Ok(n as u8),
                )?,
            );
        }
        // An RVS option (the kernel's sync_threshold sysctl).
        "sync-threshold" => {
            c.set(Opt::SyncThreshold)?;
            c.sync.sync_threshold = Some(
                value
                    .parse()
                    .map_err(|e| format!("illegal sync-threshold specified: {e}"))
                    .or_else(fail)?,
            );
        }
        "sort" => {} // ipvsadm: a no-op kept for compatibility
        "help" | "version" => {
            // ipvsadm only honours these as the first option.
            return fail(format!("invalid option `{}'", tok.spelled));
        }
        name => {
            let Some((opt, flag)) = list_flag(&mut c.list, name) else {
                return fail(format!("{}: not supported by rvsadm yet", tok.spelled));
            };
            set_option(&mut c.options, opt)?;
            *flag = true;
        }
    }
    Ok(())
}

/// The `-L` options that only switch something on: their option bit and
/// the field they set.
fn list_flag<'a>(list: &'a mut ListRequest, name: &str) -> Option<(Opt, &'a mut bool)> {
    Some(match name {
        "numeric" => (Opt::Numeric, &mut list.numeric),
        "connection" => (Opt::Connection, &mut list.connections),
        "timeout" => (Opt::Timeout, &mut list.timeouts),
        "stats" => (Opt::Stats, &mut list.stats),
        "rate" => (Opt::Rate, &mut list.rate),
        "thresholds" => (Opt::Thresholds, &mut list.thresholds),
        "persistent-conn" => (Opt::PersistentConn, &mut list.persistent_conn),
        "nosort" => (Opt::NoSort, &mut list.nosort),
        "exact" => (Opt::Exact, &mut list.exact),
        "daemon" => (Opt::Daemon, &mut list.daemon),
        "mark-rules" => (Opt::MarkRules, &mut list.mark_rules),
        "tun-info" => (Opt::TunInfo, &mut list.tun_info),
        _ => return None,
    })
}

/// ipvsadm's `generic_opt_check`: every option against the command's row
/// of `commands_v_options`, in option order.
fn check_options(cmd: Cmd, options: u64) -> Result<(), ParseError> {
    let mut exclusive: Option<Opt> = None;
    for opt in OPTS {
        let given = options & opt.bit() != 0;
        match (opt.rule(cmd), given) {
            ('+', false) => {
                return fail(format!(
                    "You need to supply the '{}' option for the '{}' command",
                    opt.name(),
                    cmd.name()
                ))
            }
            ('x', true) => {
                return fail(format!(
                    "Illegal '{}' option with the '{}' command",
                    opt.name(),
                    cmd.name()
                ))
            }
            ('1', true) => match exclusive {
                None => exclusive = Some(opt),
                Some(last) => {
                    return fail(format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' command",
                        opt.name(),
                        last.name(),
                        cmd.name()
                    ))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// `--set`'s three timeouts from the words after the options; any other
/// word left over is an error.
fn leftovers(cmd: Cmd, positional: Vec<String>) -> Result<Option<(u32, u32, u32)>, ParseError> {
    let mut positional = positional.into_iter();
    let timeouts = if cmd == Cmd::Timeout {
        match (positional.next(), positional.next(), positional.next()) {
            (Some(a), Some(b), Some(c)) => {
                Some((timeout(&a, 0)?, timeout(&b, 0)?, timeout(&c, 0)?))
            }
            _ => return fail("--set option requires 3 timeout values"),
        }
    } else {
        None
    };
    if let Some(extra) = positional.next() {
        return fail(format!("unexpected argument {extra}"));
    }
    Ok(timeouts)
}

/// Parses the arguments after the program name: tokenize, collect each
/// option, check them against the command as ipvsadm does, build.
pub(crate) fn parse(args: &[String], lookup: &dyn Lookup) -> Result<Invocation, ParseError> {
    let (tokens, positional) = tokenize(args)?;
    let mut c = collect(tokens, lookup)?;
    let socket = c.socket.take();
    if let Some(action) = c.early.take() {
        return Ok(Invocation { action, socket });
    }
    let Some(cmd) = c.cmd else {
        // Only `--socket` was given: like no arguments at all, list.
        if c.bare && positional.is_empty() {
            return Ok(Invocation {
                action: Action::List(ListRequest::default()),
                socket,
            });
        }
        return Err(ParseError::TryHelp);
    };
    if cmd == Cmd::AddMarkRule && c.rule_target.is_none() {
        return fail(MISSING_RULE_PROTOCOL);
    }
    // The end of ipvsadm's parse_options: --set values, leftovers, -b.
    let timeouts = leftovers(cmd, positional)?;
    let scheduler = c
        .scheduler
        .take()
        .unwrap_or_else(|| sched::DEFAULT.to_string());
    let flags = match &c.flags_raw {
        Some(f) => parse_sched_flags(&scheduler, f)?,
        None => Vec::new(),
    };
    check_options(cmd, c.options)?;
    let action = build(cmd, c, scheduler, flags, timeouts, lookup)?;
    Ok(Invocation { action, socket })
}

/// The build step: the checked options as the request they make.
fn build(
    cmd: Cmd,
    c: Collected,
    scheduler: String,
    flags: Vec<String>,
    timeouts: Option<(u32, u32, u32)>,
    lookup: &dyn Lookup,
) -> Result<Action, ParseError> {
    let key = c.service.map(|s| match s {
        Service::Addr(protocol, addr, port) => ServiceKey::Addr {
            protocol,
            addr,
            port: port.unwrap_or(0),
        },
        Service::Fwmark(mark, af) => ServiceKey::Fwmark { mark, af },
    });
    Ok(match cmd {
        Cmd::Add | Cmd::Edit => {
            let key = key.expect("checked: service is required");
            let spec = build_service(&c, key, scheduler, flags, lookup)?;
            Action::Command(if cmd == Cmd::Add {
                Command::AddService(spec)
            } else {
                Command::EditService(spec)
            })
        }
        Cmd::Del => Action::Command(Command::DeleteService(key.expect("checked"))),
        Cmd::Flush => Action::Command(Command::Clear),
        Cmd::Zero => Action::Command(Command::ZeroCounters(key)),
        Cmd::Timeout => {
            let (tcp, tcpfin, udp) = timeouts.expect("parsed above");
            Action::Command(Command::SetTimeouts { tcp, tcpfin, udp })
        }
        Cmd::List => {
            let mut list = c.list;
            let output = list.stats || list.rate || list.thresholds || list.mark_rules;
            if ((list.connections || list.timeouts || list.defense || list.sysctl) && output)
                || (list.timeouts && list.persistent_conn)
            {
                return fail("options conflicts in the list command");
            }
            list.service = key;
            Action::List(list)
        }
        Cmd::Save => Action::Save {
            numeric: c.list.numeric,
        },
        Cmd::Restore => Action::Restore,
        Cmd::AddMarkRule => Action::Command(Command::AddFwmarkRule(build_mark_rule(&c, lookup)?)),
        Cmd::DelMarkRule => Action::Command(Command::DeleteFwmarkRule { mark: c.rule_mark }),
        Cmd::ListMarkRules => Action::ListMarkRules,
        Cmd::Reload => Action::Command(Command::Reload),
        Cmd::StartDaemon => {
            // What rvsd would refuse, refused here with the same words.
            c.sync.check().or_else(fail)?;
            Action::Command(Command::StartDaemon(c.sync))
        }
        Cmd::StopDaemon => Action::Command(Command::StopDaemon(c.sync.role)),
        Cmd::Sysctl => Action::Command(Command::SetSysctl(c.sysctls)),
        Cmd::AddDest | Cmd::EditDest | Cmd::DelDest => {
            let service = key.expect("checked: service is required");
            Action::Command(build_dest(cmd, &c, service)?)
        }
    })
}

/// `-A` / `-E`: the service and its scheduling.
fn build_service(
    c: &Collected,
    key: ServiceKey,
    scheduler: String,
    flags: Vec<String>,
    lookup: &dyn Lookup,
) -> Result<ServiceSpec, ParseError> {
    if matches!(key, ServiceKey::Addr { port: 0, .. }) && c.persistence.is_none() {
        return fail("Zero port specified for non-persistent service");
    }
    if c.one_packet && matches!(key, ServiceKey::Addr { protocol, .. } if protocol != Protocol::Udp)
    {
        return fail("One-Packet Scheduling is only for UDP virtual services");
    }
    let netmask = match &c.netmask_raw {
        Some(m) => parse_netmask(m, key.family() == Family::Ipv6, lookup)?,
        None => None,
    };
    Ok(ServiceSpec {
        key,
        scheduler,
        persistence_timeout: c.persistence,
        netmask,
        flags,
        one_packet: c.one_packet,
        local_addresses: c.local_addresses.clone(),
        toa: c.toa,
    })
}

/// `-a` / `-e` / `-d`: the real server of `service`.
fn build_dest(cmd: Cmd, c: &Collected, service: ServiceKey) -> Result<Command, ParseError> {
    let (addr, port) = c.server.expect("checked: real server is required");
    // Without a port on -r, the service port; for DR and TUN always the
    // service port (the packet keeps its destination port), except for mark
    // services, which have no port.
    let mut port = port.unwrap_or(service.port());
    if cmd == Cmd::DelDest {
        return Ok(Command::DeleteDest {
            service,
            addr,
            port,
        });
    }
    if service.fwmark().is_none() && !c.method.translates() {
        port = service.port();
    }
    let dest_family = if addr.is_ipv6() {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    if dest_family != service.family() && c.method != ForwardMethod::Tunnel {
        return fail("Different address family is allowed only for tunneling servers");
    }
    if c.options & TUNNEL_OPTIONS != 0 && c.method != ForwardMethod::Tunnel {
        return fail("Tunnel options conflict with forward method");
    }
    let tunnel = tunnel(c)?;
    let dest = DestSpec {
        addr,
        port,
        weight: c.weight,
        method: c.method,
        tunnel,
        upper_threshold: c.upper,
        lower_threshold: c.lower,
    };
    Ok(if cmd == Cmd::AddDest {
        Command::AddDest { service, dest }
    } else {
        Command::EditDest { service, dest }
    })
}

/// Every `--tun-*` option of a real server.
const TUNNEL_OPTIONS: u64 = (1 << Opt::TunType as u64)
    | (1 << Opt::TunPort as u64)
    | (1 << Opt::TunNocsum as u64)
    | (1 << Opt::TunCsum as u64)
    | (1 << Opt::TunRemcsum as u64);

/// ipvsadm 1.31's `tunnel_opt_check` and what it builds: the options of
/// `--tun-type`'s row of `tunnel_types_v_options` ('+' required, 'x'
/// illegal, '1' at most one), checked in option order, then the tunnel.
fn tunnel(c: &Collected) -> Result<Tunnel, ParseError> {
    const TUN_OPTS: [Opt; 4] = [Opt::TunPort, Opt::TunNocsum, Opt::TunCsum, Opt::TunRemcsum];
    let row: [char; 4] = match c.tun_type {
        "gue" => ['+', '1', '1', '1'],
        "gre" => ['x', '1', '1', 'x'],
        _ => ['x', 'x', 'x', 'x'],
    };
    let mut first_exclusive: Option<Opt> = None;
    for (opt, rule) in TUN_OPTS.into_iter().zip(row) {
        let given = c.options & opt.bit() != 0;
        match (rule, given) {
            ('+', false) => {
                return fail(format!(
                    "You need to supply the '{}' option for the '{}' tunnel type",
                    opt.name(),
                    c.tun_type
                ))
            }
            ('x', true) => {
                return fail(format!(
                    "Illegal '{}' option with the '{}' tunnel type",
                    opt.name(),
                    c.tun_type
                ))
            }
            ('1', true) => match first_exclusive {
                None => first_exclusive = Some(opt),
                Some(first) => {
                    return fail(format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' tunnel type",
                        opt.name(),
                        first.name(),
                        c.tun_type
                    ))
                }
            },
            _ => {}
        }
    }
    let checksum = c.tun_checksum.unwrap_or_default();
    Ok(match c.tun_type {
        "gue" => Tunnel::Gue {
            port: c.tun_port.unwrap_or(0),
            checksum,
        },
        "gre" => Tunnel::Gre { checksum },
        _ => Tunnel::Ipip,
    })
}

/// `--add-mark-rule`: the rule's prefix and ports, parsed now the command
/// line is known to be well formed.
fn build_mark_rule(c: &Collected, lookup: &dyn Lookup) -> Result<FwmarkRuleSpec, ParseError> {
    let (protocol, raw) = c.rule_target.clone().expect("checked in parse");
    let (addr, prefix_len) = parse_rule_net(&raw)?;
    let ports = match &c.ports_raw {
        Some(p) => parse_ports(p, protocol, lookup)?,
        None => Vec::new(),
    };
    Ok(FwmarkRuleSpec {
        mark: c.rule_mark,
        protocol,
        addr,
        prefix_len,
        ports,
    })
}

/// A restore input line rvsadm refused, before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineError {
    /// 1-based line number in the input.
    pub(crate) line: usize,
    /// Why, as for the same words on the command line.
    pub(crate) error: ParseError,
}

/// `-R`: every line of `input` parsed like a command line (ipvsadm's
/// config_stream: words split on blanks, a word `ipvsadm` dropped, blank
/// lines skipped; rvsadm also skips `#` comments). Only changes are
/// allowed. Returns each command with its 1-based line number, or the
/// first bad line; nothing is sent until the whole input parsed.
pub(crate) fn parse_restore(
    input: &str,
    lookup: &dyn Lookup,
) -> Result<Vec<(usize, Command)>, LineError> {
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line_no = i + 1;
        let words: Vec<String> = line
            .split([' ', '\t', '\r'])
            .filter(|w| !w.is_empty() && *w != "ipvsadm")
            .take_while(|w| !w.starts_with('#'))
            .map(String::from)
            .collect();
        if words.is_empty() {
            continue;
        }
        let err = |error| LineError {
            line: line_no,
            error,
        };
        match parse(&words, lookup).map_err(err)?.action {
            Action::Command(Command::Reload) => {
                return Err(err(ParseError::Message(format!(
                    "`{line}': --reload re-reads rvsd's file; it cannot be part of a restore"
                ))))
            }
            Action::Command(c) => out.push((line_no, c)),
            Action::Restore => return Err(err(ParseError::TryHelp)),
            Action::List(_)
            | Action::ListMarkRules
            | Action::Save { .. }
            | Action::Help
            | Action::Version => {
                return Err(err(ParseError::Message(format!(
                    "`{line}': only -A -E -D -a -e -d -C -Z --set --add-mark-rule and --delete-mark-rule can be restored"
                ))))
            }
        }
    }
    Ok(out)
}

/// Whether restoring `lines` touches mark rules, so [`replace_mark_rules`]
/// needs the current rules.
pub(crate) fn adds_mark_rules(lines: &[(usize, Command)]) -> bool {
    lines
        .iter()
        .any(|(_, c)| matches!(c, Command::AddFwmarkRule(_)))
}

/// Makes `-S` → `-R` idempotent for mark rules, which `-C` keeps: a mark
/// whose first rule line in the input adds a rule, and which rvsd has rules
/// for now (`existing`), gets a `DeleteFwmarkRule` just before that line
/// (under its line number), so the input's rules replace that mark's rules
/// instead of piling up behind them. A mark the input first deletes itself
/// is left to the input.
pub(crate) fn replace_mark_rules(
    lines: Vec<(usize, Command)>,
    existing: &[FwmarkRuleSpec],
) -> Vec<(usize, Command)> {
    let mut seen: Vec<u32> = Vec::new();
    let mut out = Vec::with_capacity(lines.len());
    for (line, c) in lines {
        let mark = match &c {
            Command::AddFwmarkRule(r) => Some((r.mark, true)),
            Command::DeleteFwmarkRule { mark } => Some((*mark, false)),
            _ => None,
        };
        if let Some((mark, adds)) = mark {
            if !seen.contains(&mark) {
                seen.push(mark);
                if adds && existing.iter().any(|r| r.mark == mark) {
                    out.push((line, Command::DeleteFwmarkRule { mark }));
                }
            }
        }
        out.push((line, c));
    }
    out
}

#[cfg(test)]
mod tests;
