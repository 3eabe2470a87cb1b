//! keepalived's LVS model → rvsd's configuration, as rvsd's own schema
//! types (`rvs_vocab::schema`, docs/rvsd.md), laid out by [`crate::render`].
//!
//! keepalived's defaults and inheritance are resolved here and written out
//! explicitly, so the result does not depend on RVS sharing keepalived's
//! defaults (it does not for the forwarding method: keepalived defaults to
//! NAT, rvsd to DR).

use std::fmt::Write as _;
use std::net::IpAddr;

use rvs_vocab::schema;
use rvs_vocab::{sched, ForwardMethod, Protocol};
use toml::Value;

use crate::keepalived::{
    CheckKind, CheckOpts, Checker, GroupEntry, Keepalived, RealServer, VirtualServer, VsAddr,
};
use crate::parse::{Loc, Note, ParseError};

/// Operator choices the keepalived file cannot tell.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--interfaces`; `None` = take them from `vrrp_instance … interface`.
    pub interfaces: Option<Vec<String>>,
    /// Shown in the header comment as the source.
    pub source_name: String,
}

/// Renders the RVS configuration and adds a note for everything not carried
/// over.
pub fn to_toml(
    k: &Keepalived,
    opts: &Options,
    notes: &mut Vec<Note>,
) -> Result<String, ParseError> {
    let interfaces = match &opts.interfaces {
        Some(i) => i.clone(),
        None => {
            let found: Vec<String> = k.vrrp_interfaces.iter().map(|(i, _)| i.clone()).collect();
            if let Some((_, loc)) = k.vrrp_interfaces.first() {
                push(
                    notes,
                    loc,
                    format!(
                        "no --interfaces given: using the vrrp_instance interface(s) {}",
                        found.join(", ")
                    ),
                );
            }
            found
        }
    };
    let mut file = schema::Config {
        interfaces,
        ..Default::default()
    };
    if let Some((user, group)) = &k.script_user {
        file.script_user = Some(user.clone());
        file.script_group = group.clone();
    }
    if let Some(sync) = &k.sync_daemon {
        file.sync_daemons.push(backup_sync_daemon(sync, notes));
    }
    if k.lvs_timeouts != (None, None, None) {
        let (tcp, tcpfin, udp) = k.lvs_timeouts;
        file.timeouts = Some(schema::Timeouts { tcp, tcpfin, udp });
    }

    // Commented [[fwmark]] rules for the operator to complete: not part of
    // the configuration, so text the layout places before the services.
    let mut fwmarks = String::new();
    for vs in &k.virtual_servers {
        let targets: Vec<(Target, Option<Loc>)> = match &vs.addr {
            VsAddr::Ip(a, p) => vec![(Target::Addr(*a, *p), None)],
            VsAddr::Fwmark(m) => vec![(Target::Mark(*m), None)],
            VsAddr::Group(name) => {
                let g = k.groups.iter().find(|g| &g.name == name).ok_or_else(|| {
                    ParseError::Syntax {
                        loc: vs.loc.clone(),
                        msg: format!(
                            "virtual_server group {name}: no virtual_server_group {name} is defined"
                        ),
                    }
                })?;
                let mut t = Vec::new();
                for e in &g.entries {
                    match e {
                        GroupEntry::Addrs(addrs, p, loc) => t.extend(
                            addrs
                                .iter()
                                .map(|a| (Target::Addr(*a, *p), Some(loc.clone()))),
                        ),
                        GroupEntry::Fwmark(m, loc) => t.push((Target::Mark(*m), Some(loc.clone()))),
                    }
                }
                push(
                    notes,
                    &vs.loc,
                    format!(
                        "virtual_server group {name} expanded into {} RVS service(s), one per \
                         address and fwmark of virtual_server_group {name} ({}), each with the \
                         same real servers and checks",
                        t.len(),
                        g.loc
                    ),
                );
                t
            }
        };
        for (t, _) in &targets {
            if let Some(svc) = service(vs, t, &mut fwmarks, notes) {
                // rvsd reads a span here; a written file has none yet.
                file.services.push(toml::Spanned::new(0..0, svc));
            }
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# rvsd configuration written by rvs-migrate from {}",
        comment_safe(&opts.source_name)
    );
    out.push_str(
        "# (schema: docs/rvsd.md). keepalived's defaults are written out explicitly;\n\
         # its default forwarding method is NAT, rvsd's is DR.\n",
    );
    sort_notes(notes);
    if notes.is_empty() {
        out.push_str("# Everything was carried over.\n");
    } else {
        out.push_str("# Not carried over, or carried over differently:\n");
        for n in notes.iter() {
            let _ = writeln!(out, "#   {}", comment_safe(&n.to_string()));
        }
    }
    out.push('\n');
    out.push_str(&crate::render::render(&file, &fwmarks));
    Ok(out)
}

/// `text` as it may stand in a TOML comment: control characters (which a
/// keepalived.conf may hold, and TOML refuses in comments, newlines
/// included) written as escapes, so the file rvsd reads stays valid.
fn comment_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Orders notes by file (main file first) and line, dropping repeats, so the
/// list reads top to bottom like the keepalived file.
pub fn sort_notes(notes: &mut Vec<Note>) {
    notes.sort_by(|a, b| {
        (a.loc.file.is_some(), &a.loc.file, a.loc.line).cmp(&(
            b.loc.file.is_some(),
            &b.loc.file,
            b.loc.line,
        ))
    });
    notes.dedup();
}

enum Target {
    Addr(IpAddr, Option<u16>),
    Mark(u32),
}

fn push(notes: &mut Vec<Note>, loc: &Loc, msg: impl Into<String>) {
    notes.push(Note {
        loc: loc.clone(),
        msg: msg.into(),
    });
}

/// Whole seconds (extraction already rounded fractional timers up, with a
/// note at their line).
fn secs(v: f64) -> u64 {
    v.ceil() as u64
}

fn service(
    vs: &VirtualServer,
    target: &Target,
    fwmarks: &mut String,
    notes: &mut Vec<Note>,
) -> Option<schema::Service> {
    let (name, ploc) = match &vs.protocol {
        Some((p, l)) => (p.as_str(), Some(l)),
        None => ("TCP", None),
    };
    let Some(protocol) = Protocol::from_name(name) else {
        push(
            notes,
            ploc.unwrap_or(&vs.loc),
            format!(
                "protocol {name}: RVS supports TCP and UDP only; this virtual server was \
                 not carried over"
            ),
        );
        return None;
    };
    let proto = protocol.short_name();
    let mut s = schema::Service::default();
    let vport = match target {
        Target::Addr(a, p) => {
            s.protocol = Some(protocol);
            s.address = Some(*a);
            s.port = Some(p.unwrap_or(0));
            if p.is_none() && vs.persistence_timeout.unwrap_or(0) == 0 {
                push(
                    notes,
                    &vs.loc,
                    "virtual server without a port is only valid with persistence_timeout; \
                     written as port 0",
                );
            }
            *p
        }
        Target::Mark(m) => {
            s.fwmark = Some(*m);
            if !fwmarks.contains(&format!("# mark = {m}\n")) {
                push(
                    notes,
                    &vs.loc,
                    format!(
                        "fwmark {m}: keepalived relied on firewall rules to set the mark; RVS \
                         classifies traffic itself: complete the commented [[fwmark]] rule for \
                         mark {m} from your iptables/nftables rules"
                    ),
                );
                let _ = write!(
                    fwmarks,
                    "\n# Traffic keepalived's firewall rules marked with {m}: fill in and uncomment.\n\
                     # [[fwmark]]\n# mark = {m}\n# protocol = \"{proto}\"\n\
                     # address = \"10.0.0.1\"       # the marked destination address or prefix\n\
                     # ports = []                   # empty = all ports\n"
                );
            }
            None
        }
    };
    s.scheduler = match vs.sched.as_deref().map(str::to_ascii_lowercase) {
        None => sched::DEFAULT.to_string(),
        Some(s) if sched::NAMES.contains(&s.as_str()) => s,
        Some(s) => {
            push(
                notes,
                &vs.loc,
                format!(
                    "unknown scheduler '{s}' (IPVS would refuse it); {} written instead",
                    sched::DEFAULT
                ),
            );
            sched::DEFAULT.to_string()
        }
    };
    let scheduler = s.scheduler.as_str();
    for (f, loc) in &vs.sched_flags {
        // Only what the scheduler gives a meaning (a name of its own) is
        // carried over, under that name.
        let mapped = sched::flag_number(f)
            .filter(|_| sched::flag_owner(f).is_none_or(|o| o == scheduler))
            .and_then(|n| sched::named_flag(scheduler, n));
        match mapped {
            Some(m) if !s.scheduler_flags.iter().any(|f| f == m) => {
                s.scheduler_flags.push(m.to_string())
            }
            Some(_) => {}
            None => push(
                notes,
                loc,
                format!(
                    "scheduler flag {f} has no meaning for scheduler {scheduler} in RVS; dropped"
                ),
            ),
        }
    }
    match vs.persistence_timeout {
        Some(t) if t > 0 => {
            s.persistence_timeout = Some(t);
            s.persistence_netmask = vs.persistence_granularity.clone();
        }
        _ => {
            if vs.persistence_granularity.is_some() {
                push(
                    notes,
                    &vs.loc,
                    "persistence_granularity without persistence_timeout has no effect; dropped",
                );
            }
        }
    }
    if vs.ops {
        if protocol == Protocol::Udp {
            s.one_packet = true;
        } else {
            push(
                notes,
                &vs.loc,
                "ops (one-packet scheduling) applies to UDP only; dropped for this TCP service",
            );
        }
    }
    s.delay_loop = Some(int(secs(vs.opts.delay_loop.unwrap_or(60.0))));
    s.quorum = Some(int(vs.quorum.unwrap_or(1)));
    s.hysteresis = Some(int(vs.hysteresis.unwrap_or(0)));
    s.inhibit_on_failure = Some(Value::Boolean(vs.inhibit_on_failure));
    s.alpha = Some(Value::Boolean(vs.alpha));
    s.omega = Some(Value::Boolean(vs.omega));
    s.quorum_up = vs.quorum_up.clone().map(Value::String);
    s.quorum_down = vs.quorum_down.clone().map(Value::String);
    let vs_method = vs.method.unwrap_or(ForwardMethod::Masq);
    if let Some((a, p)) = &vs.sorry_server {
        let m = vs.sorry_server_method.unwrap_or(vs_method);
        let mut t = toml::Table::new();
        t.insert("address".into(), Value::String(a.to_string()));
        if let Some(port) = server_port(*p, vport, m, &vs.loc, "sorry_server", notes) {
            t.insert("port".into(), int(port));
        }
        t.insert("method".into(), Value::String(m.short_name().into()));
        s.sorry_server = Some(Value::Table(t));
    }
    s.real_servers = vs
        .real_servers
        .iter()
        .map(|rs| real_server(vs, rs, vport, vs_method, notes))
        .collect();
    Some(s)
}

/// A TOML integer (the values here are seconds, ports and weights).
fn int(v: impl Into<u64>) -> Value {
    Value::Integer(i64::try_from(v.into()).unwrap_or(i64::MAX))
}

fn server_port(
    port: Option<u16>,
    vport: Option<u16>,
    m: ForwardMethod,
    loc: &Loc,
    what: &str,
    notes: &mut Vec<Note>,
) -> Option<u16> {
    match (port, vport) {
        (Some(p), Some(v)) if p != v && v != 0 && m != ForwardMethod::Masq => {
            push(
                notes,
                loc,
                format!(
                    "{what} port {p} ignored: with {} the server receives the service port {v}",
                    m.short_name().to_ascii_uppercase()
                ),
            );
            Some(v)
        }
        (Some(p), _) => Some(p),
        (None, v) => v,
    }
}

fn real_server(
    vs: &VirtualServer,
    rs: &RealServer,
    vport: Option<u16>,
    vs_method: ForwardMethod,
    notes: &mut Vec<Note>,
) -> schema::RealServer {
    let m = rs.method.unwrap_or(vs_method);
    let mut r = schema::RealServer::new(rs.address);
    r.port = server_port(rs.port, vport, m, &rs.loc, "real_server", notes);
    r.weight = rs.weight.unwrap_or(1);
    r.method = m;
    r.upper_threshold = rs.uthreshold;
    r.lower_threshold = rs.lthreshold;
    r.inhibit_on_failure = Some(rs.inhibit_on_failure.unwrap_or(vs.inhibit_on_failure));
    r.check = rs
        .checkers
        .iter()
        .flat_map(|ck| checks(vs, rs, ck, notes))
        .collect();
    r
}

/// Checker options resolved through keepalived's inheritance.
struct Resolved {
    connect_timeout: u64,
    delay_loop: u64,
    retry: u32,
    delay_before_retry: u64,
    warmup: u64,
}

fn resolve(vs: &VirtualServer, rs: &RealServer, ck: &Checker) -> Resolved {
    fn pick<T: Copy>(f: impl Fn(&CheckOpts) -> Option<T>, levels: [&CheckOpts; 3]) -> Option<T> {
        levels.iter().find_map(|o| f(o))
    }
    let levels = [&ck.opts, &rs.opts, &vs.opts];
    let dl = pick(|o| o.delay_loop, levels).unwrap_or(60.0);
    let retry_default = match ck.kind {
        CheckKind::Misc => 0,
        CheckKind::Dns => 3,
        _ => 1,
    };
    let dbr_default = match ck.kind {
        CheckKind::Http | CheckKind::Ssl => 3.0,
        CheckKind::Dns => dl,
        _ => 1.0,
    };
    Resolved {
        connect_timeout: secs(pick(|o| o.connect_timeout, levels).unwrap_or(5.0)),
        delay_loop: secs(dl),
        retry: pick(|o| o.retry, levels).unwrap_or(retry_default),
        delay_before_retry: secs(pick(|o| o.delay_before_retry, levels).unwrap_or(dbr_default)),
        warmup: secs(pick(|o| o.warmup, levels).unwrap_or(dl)),
    }
}

/// The rvsd checks (check tables) one keepalived checker becomes: none if
/// it has no equivalent, several for an HTTP_GET with several urls.
fn checks(vs: &VirtualServer, rs: &RealServer, ck: &Checker, notes: &mut Vec<Note>) -> Vec<Value> {
    let r = resolve(vs, rs, ck);
    let head = |ty: &str| {
        let mut t = toml::Table::new();
        t.insert("type".into(), Value::String(ty.into()));
        t
    };
    let connect = |t: &mut toml::Table| {
        if let Some(ip) = ck.connect_ip {
            t.insert("connect_ip".into(), Value::String(ip.to_string()));
        }
        if let Some(p) = ck.connect_port {
            t.insert("connect_port".into(), int(p));
        }
        t.insert("connect_timeout".into(), int(r.connect_timeout));
    };
    let timing = |mut t: toml::Table| {
        t.insert("delay_loop".into(), int(r.delay_loop));
        t.insert("retry".into(), int(r.retry));
        t.insert("delay_before_retry".into(), int(r.delay_before_retry));
        t.insert("warmup".into(), int(r.warmup));
        Value::Table(t)
    };
    let kw = ck.kind.keyword();
    match ck.kind {
        CheckKind::Tcp | CheckKind::Ping => {
            let mut t = head(if ck.kind == CheckKind::Tcp {
                "tcp"
            } else {
                "ping"
            });
            connect(&mut t);
            vec![timing(t)]
        }
        CheckKind::Ssl | CheckKind::Smtp => {
            push(
                notes,
                &ck.loc,
                format!(
                    "{kw} is not supported by RVS yet; the server is checked with TCP_CHECK \
                     (connection only) instead"
                ),
            );
            let mut t = head("tcp");
            connect(&mut t);
            vec![timing(t)]
        }
        CheckKind::Http => {
            if ck.urls.is_empty() {
                push(
                    notes,
                    &ck.loc,
                    "HTTP_GET without a url block: checking path / instead",
                );
            }
            let default_url = [crate::keepalived::Url {
                loc: ck.loc.clone(),
                path: None,
                digest: None,
                status_codes: Vec::new(),
            }];
            let urls = if ck.urls.is_empty() {
                &default_url[..]
            } else {
                &ck.urls[..]
            };
            if urls.len() > 1 {
                push(
                    notes,
                    &ck.loc,
                    format!(
                        "HTTP_GET with {} urls written as {} http checks (all must pass, as in \
                         keepalived)",
                        urls.len(),
                        urls.len()
                    ),
                );
            }
            let mut out = Vec::new();
            for u in urls {
                let mut t = head("http");
                let path = u.path.clone().unwrap_or_else(|| {
                    if !ck.urls.is_empty() {
                        push(notes, &u.loc, "url without path: checking / instead");
                    }
                    "/".to_string()
                });
                t.insert("path".into(), Value::String(path));
                let ranges = if u.status_codes.is_empty() {
                    vec![(200, 299)]
                } else {
                    u.status_codes.clone()
                };
                let mut codes: Vec<u16> = Vec::new();
                for (lo, hi) in ranges {
                    for c in lo..=hi {
                        if !codes.contains(&c) {
                            codes.push(c);
                        }
                    }
                }
                t.insert(
                    "status_codes".into(),
                    Value::Array(codes.into_iter().map(int).collect()),
                );
                if let Some(d) = &u.digest {
                    t.insert("digest".into(), Value::String(d.clone()));
                }
                connect(&mut t);
                out.push(timing(t));
            }
            out
        }
        CheckKind::Misc => {
            let Some(path) = &ck.misc_path else {
                push(notes, &ck.loc, "MISC_CHECK without misc_path dropped");
                return Vec::new();
            };
            let mut t = head("misc");
            t.insert("script".into(), Value::String(path.clone()));
            let mt = match ck.misc_timeout {
                Some(t) => secs(t),
                None => r.delay_loop,
            };
            t.insert("misc_timeout".into(), int(mt));
            t.insert("misc_dynamic".into(), Value::Boolean(ck.misc_dynamic));
            vec![timing(t)]
        }
        CheckKind::Udp => {
            let mut t = head("udp");
            if let Some(p) = &ck.payload {
                t.insert("payload".into(), Value::String(p.clone()));
            }
            if let Some(Some(_)) = &ck.require_reply {
                push(
                    notes,
                    &ck.loc,
                    "UDP_CHECK require_reply pattern dropped: RVS only requires that a reply \
                     arrives",
                );
            }
            t.insert(
                "require_reply".into(),
                Value::Boolean(ck.require_reply.is_some()),
            );
            connect(&mut t);
            vec![timing(t)]
        }
        CheckKind::Dns => {
            let ty = ck.dns_type.as_deref().unwrap_or("SOA");
            let name = ck.dns_name.as_deref().unwrap_or(".");
            let Some(payload) = dns_query(ty, name) else {
                push(
                    notes,
                    &ck.loc,
                    format!("DNS_CHECK type {ty} / name {name} not understood; check dropped"),
                );
                return Vec::new();
            };
            push(
                notes,
                &ck.loc,
                format!(
                    "DNS_CHECK is not supported by RVS yet; written as a UDP check sending the \
                     same query ({ty} {name}) and requiring a reply, whose content is not checked"
                ),
            );
            let mut t = head("udp");
            t.insert("payload".into(), Value::String(payload));
            t.insert("require_reply".into(), Value::Boolean(true));
            connect(&mut t);
            vec![timing(t)]
        }
        CheckKind::Bfd | CheckKind::File => {
            push(
                notes,
                &ck.loc,
                format!("{kw} dropped: RVS has no equivalent checker"),
            );
            Vec::new()
        }
    }
}

/// A DNS query (id 0x4b41, recursion desired) as space-separated hex bytes.
fn dns_query(ty: &str, name: &str) -> Option<String> {
    let code: u16 = match ty.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        _ => return None,
    };
    let mut b: Vec<u8> = vec![0x4b, 0x41, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let len = u8::try_from(label.len()).ok().filter(|l| *l <= 63)?;
        b.push(len);
        b.extend_from_slice(label.as_bytes());
    }
    b.push(0);
    b.extend_from_slice(&code.to_be_bytes());
    b.extend_from_slice(&[0, 1]);
    Some(
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// keepalived's `lvs_sync_daemon` as rvsd's backup daemon, on all the time:
/// the VRRP hooks start and stop the master (crate::vrrp).
fn backup_sync_daemon(
    s: &crate::vrrp::SyncSettings,
    notes: &mut Vec<Note>,
) -> rvs_vocab::SyncDaemon {
    let mut d = rvs_vocab::SyncDaemon {
        role: rvs_vocab::SyncRole::Backup,
        mcast_interface: s.interface.clone(),
        syncid: s.syncid,
        sync_maxlen: None,
        mcast_group: None,
        mcast_port: None,
        mcast_ttl: None,
        sync_refresh_period: None,
    };
    for (k, v) in &s.extra {
        let ok = match k.as_str() {
            "--sync-maxlen" => v.parse().map(|x| d.sync_maxlen = Some(x)).is_ok(),
            "--mcast-port" => v.parse().map(|x| d.mcast_port = Some(x)).is_ok(),
            "--mcast-ttl" => v.parse().map(|x| d.mcast_ttl = Some(x)).is_ok(),
            "--mcast-group" => v.parse().map(|x| d.mcast_group = Some(x)).is_ok(),
            _ => false,
        };
        if !ok {
            push(
                notes,
                &s.loc,
                format!("lvs_sync_daemon: {k} {v} not carried over"),
            );
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_payload() {
        assert_eq!(
            dns_query("SOA", ".").unwrap(),
            "4b 41 01 00 00 01 00 00 00 00 00 00 00 00 06 00 01"
        );
        assert_eq!(
            dns_query("a", "ex.org").unwrap(),
            "4b 41 01 00 00 01 00 00 00 00 00 00 02 65 78 03 6f 72 67 00 00 01 00 01"
        );
        assert!(dns_query("PTR", ".").is_none());
    }
}
