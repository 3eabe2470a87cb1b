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
use rvs_vocab::{sched, ForwardMethod, Protocol, Tunnel, TunnelChecksum};
use toml::Value;

use crate::firewall;
use crate::keepalived::{
    CheckKind, CheckOpts, Checker, GroupEntry, Keepalived, RealServer, TrackFile, VirtualServer,
    VsAddr,
};
use crate::parse::{Loc, Note, ParseError};

/// Operator choices the keepalived file cannot tell.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--interfaces`; `None` = take them from `vrrp_instance … interface`.
    pub interfaces: Option<Vec<String>>,
    /// Shown in the header comment as the source.
    pub source_name: String,
    /// The firewall's marking rules (`--iptables-save`, `--nft`), one
    /// ruleset per file; empty: none given.
    pub firewall: Vec<firewall::Ruleset>,
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

    // The fwmark services' marks, each with the first virtual server using
    // it (for notes) and the protocol of its placeholder rule.
    let mut marks: Vec<(firewall::Wanted, Loc, Protocol)> = Vec::new();
    for vs in &k.virtual_servers {
        // The virtual_server_group this virtual server is, if it is one.
        let mut group: Option<&str> = None;
        let targets: Vec<Target> = match &vs.addr {
            VsAddr::Ip(a, p) => vec![Target::Addr(*a, *p)],
            VsAddr::Fwmark(m) => vec![Target::Mark(*m, fwmark_family(vs, None))],
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
                        GroupEntry::Addrs(addrs, p, _) => {
                            t.extend(addrs.iter().map(|a| Target::Addr(*a, *p)))
                        }
                        GroupEntry::Fwmark(m, family, _) => {
                            t.push(Target::Mark(*m, fwmark_family(vs, *family)))
                        }
                    }
                }
                group = Some(name.as_str());
                push(
                    notes,
                    &vs.loc,
                    if t.is_empty() {
                        format!(
                            "virtual_server group {name}: virtual_server_group {name} ({}) has no \
                             address or fwmark RVS can take; this virtual server was not carried \
                             over",
                            g.loc
                        )
                    } else {
                        format!(
                            "virtual_server group {name}: one RVS service group of {} member \
                             service(s), one per address and fwmark of virtual_server_group \
                             {name} ({}), with one health check per real server and one quorum \
                             state, as keepalived runs it",
                            t.len(),
                            g.loc
                        )
                    },
                );
                t
            }
        };
        // keepalived makes a virtual server persistent (360 s) when one
        // of its addresses has no port (check_data.c), every member of
        // its group included.
        let portless = targets.iter().any(|t| matches!(t, Target::Addr(_, None)));
        // A group's settings are those of its address services when it
        // has any (protocol, persistence), as keepalived's virtual server.
        let shown: Vec<&Target> = match group {
            Some(_) => targets
                .iter()
                .find(|t| matches!(t, Target::Addr(..)))
                .or(targets.first())
                .into_iter()
                .collect(),
            None => targets.iter().collect(),
        };
        for t in shown {
            let members = group.map(|_| targets.as_slice());
            let Some(mut svc) = service(vs, t, portless, members, &k.track_files, notes) else {
                continue;
            };
            let marked: Vec<(u32, bool)> = match group {
                Some(_) => targets
                    .iter()
                    .filter_map(|t| match t {
                        Target::Mark(m, v6) => Some((*m, *v6)),
                        Target::Addr(..) => None,
                    })
                    .collect(),
                None => match t {
                    Target::Mark(m, v6) => vec![(*m, *v6)],
                    Target::Addr(..) => Vec::new(),
                },
            };
            for (mark, v6) in marked {
                let protocol = placeholder_protocol(vs);
                let w = firewall::Wanted { mark, v6 };
                if !marks.iter().any(|(x, _, _)| *x == w) {
                    marks.push((w, vs.loc.clone(), protocol));
                }
            }
            if let Some(name) = group {
                let protocol = svc.protocol;
                svc.members = targets.iter().map(|t| member(t, protocol)).collect();
                svc.group = Some(name.to_string());
                (svc.protocol, svc.address, svc.port) = (None, None, None);
                (svc.fwmark, svc.family) = (None, None);
            }
            // rvsd reads a span here; a written file has none yet.
            file.services.push(toml::Spanned::new(0..0, svc));
        }
    }

    // rvsd marks packets itself ([[fwmark]] rules): from the firewall's
    // rules when given, else commented placeholders to complete, which
    // the layout places before the services.
    let wanted: Vec<firewall::Wanted> = marks.iter().map(|(w, _, _)| *w).collect();
    let chosen = firewall::select(&opts.firewall, &wanted, notes);
    let mut placeholders = String::new();
    for (w, loc, protocol) in &marks {
        let covered = chosen
            .iter()
            .any(|c| c.rule.mark == w.mark && c.rule.address.contains(':') == w.v6);
        if covered {
            continue;
        }
        let family = if w.v6 { "IPv6" } else { "IPv4" };
        let m = w.mark;
        let why = if opts.firewall.is_empty() {
            "no firewall rules were given to carry over (--iptables-save / --nft)".to_string()
        } else {
            format!(
                "none of the firewall rules given sets mark {m} on {family} packets in a way \
                 rvsd can express (see the notes on them)"
            )
        };
        push(
            notes,
            loc,
            format!(
                "fwmark {m}: NO [[fwmark]] rule, so this service gets NO traffic: rvsd marks \
                 packets only by its own [[fwmark]] rules (XDP sees no firewall marks), and \
                 {why}; complete the commented rule for mark {m} (rvsd --check-config warns \
                 until then)"
            ),
        );
        let _ = write!(
            placeholders,
            "\n# NO rule gives {family} packets mark {m}: rvsd sends the fwmark {m} service no\n\
             # traffic until one does. Fill in from your firewall's rules and uncomment\n\
             # (rvsd refuses the address as it stands):\n\
             # [[fwmark]]\n# mark = {m}\n# protocol = \"{}\"\n\
             # address = \"FILL IN: the {family} destination address or prefix marked\"\n\
             # ports = []                   # empty = all ports\n",
            protocol.short_name()
        );
    }
    let rule_comments: Vec<String> = chosen
        .iter()
        .map(|c| {
            c.comment
                .iter()
                .map(|l| format!("# {}\n", comment_safe(l)))
                .collect()
        })
        .collect();
    file.fwmarks = chosen.into_iter().map(|c| c.rule).collect();

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
    out.push_str(&crate::render::render(&file, &placeholders, &rule_comments));
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
    /// A mark and its service's family (`true`: IPv6).
    Mark(u32, bool),
}

/// A group's member for `target` (`protocol`: the group's, for addresses).
fn member(target: &Target, protocol: Option<Protocol>) -> schema::GroupMember {
    match target {
        Target::Addr(a, p) => schema::GroupMember {
            protocol,
            address: Some(*a),
            port: Some(p.unwrap_or(0)),
            ..Default::default()
        },
        Target::Mark(m, v6) => schema::GroupMember {
            fwmark: Some(*m),
            family: v6.then(|| "ipv6".to_string()),
            ..Default::default()
        },
    }
}

/// The protocol of a fwmark service's placeholder rule: the one its
/// virtual server names (keepalived ignores it for a fwmark), else TCP.
fn placeholder_protocol(vs: &VirtualServer) -> Protocol {
    match vs.protocol.as_ref().map(|(p, _)| p.as_str()) {
        Some("UDP") => Protocol::Udp,
        _ => Protocol::Tcp,
    }
}

/// A fwmark service's address family (`true`: IPv6), as keepalived picks
/// it: the group entry's `inet6`, else `ip_family`, else that of the real
/// and sorry servers not tunnelled (they must share the service's), else
/// that of the tunnelled ones if they all agree, else IPv4.
fn fwmark_family(vs: &VirtualServer, entry: Option<bool>) -> bool {
    if let Some(v6) = entry.or(vs.ip_family) {
        return v6;
    }
    let vs_method = vs.method.unwrap_or(ForwardMethod::Masq);
    let mut servers: Vec<(IpAddr, ForwardMethod)> = vs
        .real_servers
        .iter()
        .map(|rs| (rs.address, rs.method.unwrap_or(vs_method)))
        .collect();
    if let Some((a, _)) = vs.sorry_server {
        servers.push((a, vs.sorry_server_method.unwrap_or(vs_method)));
    }
    if let Some((a, _)) = servers.iter().find(|(_, m)| *m != ForwardMethod::Tunnel) {
        return a.is_ipv6();
    }
    match servers.first() {
        Some((a, _)) if servers.iter().all(|(b, _)| b.is_ipv6() == a.is_ipv6()) => a.is_ipv6(),
        _ => false,
    }
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

/// One service of `vs` (`portless`: one of its addresses has no port;
/// `members`: those of its group if it is one, each with its own port, so
/// its real servers keep the port written).
fn service(
    vs: &VirtualServer,
    target: &Target,
    portless: bool,
    members: Option<&[Target]>,
    track_files: &[TrackFile],
    notes: &mut Vec<Note>,
) -> Option<schema::Service> {
    // keepalived takes TCP, UDP and SCTP (any case) and ignores anything
    // else; an address service without one is UDP (the kernel's default
    // for protocol 0, which keepalived sets explicitly since 1.3.6). A
    // fwmark service has no protocol.
    let (name, ploc) = match &vs.protocol {
        Some((p, l)) if matches!(p.as_str(), "TCP" | "UDP" | "SCTP") => (p.as_str(), Some(l)),
        Some((p, l)) => {
            push(
                notes,
                l,
                format!("protocol {p}: not TCP, UDP or SCTP, so keepalived ignores it"),
            );
            ("UDP", None)
        }
        None => ("UDP", None),
    };
    if ploc.is_none() && matches!(target, Target::Addr(..)) {
        push(
            notes,
            &vs.loc,
            "no protocol: keepalived makes this a UDP service (the kernel's default), and so \
             does the migration: protocol = \"udp\"; add protocol TCP to the virtual_server if \
             TCP was meant",
        );
    }
    let Some(protocol) = Protocol::from_name(name) else {
        push(
            notes,
            ploc.unwrap_or(&vs.loc),
            format!(
                "protocol {name}: RVS supports TCP, UDP and SCTP only; this virtual server \
                 was not carried over"
            ),
        );
        return None;
    };
    let mut s = schema::Service::default();
    let vport = match target {
        Target::Addr(a, p) => {
            s.protocol = Some(protocol);
            s.address = Some(*a);
            s.port = Some(p.unwrap_or(0));
            *p
        }
        Target::Mark(m, v6) => {
            s.fwmark = Some(*m);
            if *v6 {
                s.family = Some("ipv6".into());
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
                vs.at(if vs.keyword_locs.contains_key("lvs_sched") {
                    "lvs_sched"
                } else {
                    "lb_algo"
                }),
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
    let persistence = match vs.persistence_timeout {
        Some(t) if t > 0 => Some(t),
        _ if portless && !matches!(target, Target::Mark(..)) => {
            push(
                notes,
                &vs.loc,
                "an address without a port is only valid for a persistent service: \
                 persistence_timeout 360 written, as keepalived sets it",
            );
            Some(360)
        }
        _ => None,
    };
    match persistence {
        Some(t) => {
            s.persistence_timeout = Some(t);
            s.persistence_netmask = vs.persistence_granularity.clone();
        }
        _ => {
            if vs.persistence_granularity.is_some() {
                push(
                    notes,
                    vs.at("persistence_granularity"),
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
                vs.at("ops"),
                "ops (one-packet scheduling) applies to UDP only; dropped for this TCP service",
            );
        }
    }
    s.delay_loop = Some(int(secs(vs.opts.delay_loop.unwrap_or(60.0))));
    // A group's real server is one for all its members: no one member's
    // port is its (rvsd gives DR and TUN members' copies their own).
    let group = members.is_some();
    let vport = if group { None } else { vport };
    let member_ports: Vec<u16> = members
        .unwrap_or_default()
        .iter()
        .filter_map(|t| match t {
            Target::Addr(_, Some(p)) if *p != 0 => Some(*p),
            _ => None,
        })
        .collect();
    // keepalived drops a real server listed twice (same address and port)
    // and keeps the first.
    let mut kept: Vec<(&RealServer, (IpAddr, Option<u16>))> = Vec::new();
    for rs in &vs.real_servers {
        let m = rs
            .method
            .unwrap_or(vs.method.unwrap_or(ForwardMethod::Masq));
        let key = (
            rs.address,
            if m == ForwardMethod::Masq {
                rs.port.or(vport)
            } else {
                vport.or(rs.port)
            },
        );
        if let Some((first, _)) = kept.iter().find(|(_, k)| *k == key) {
            push(
                notes,
                &rs.loc,
                format!(
                    "real_server {} listed twice (first at line {}): the second is dropped, as \
                     keepalived does",
                    rs.address, first.loc.line
                ),
            );
            continue;
        }
        kept.push((rs, key));
    }
    let (quorum, hysteresis) = clamp_quorum(vs, &kept, notes);
    s.quorum = Some(int(quorum));
    s.hysteresis = Some(int(hysteresis));
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
        let port = server_port(*p, vport, m, vs.at("sorry_server"), "sorry_server", notes);
        match port {
            // DR and TUN keep each member's port (one here would be refused).
            Some(p) if group && m != ForwardMethod::Masq => push(
                notes,
                vs.at("sorry_server"),
                format!(
                    "sorry_server port {p} ignored: with {} the sorry server receives each \
                     member's port",
                    m.short_name().to_ascii_uppercase()
                ),
            ),
            Some(p) => {
                t.insert("port".into(), int(p));
            }
            None => {}
        }
        t.insert("method".into(), Value::String(m.short_name().into()));
        let tunnel = vs.sorry_server_tunnel.or(vs.tunnel);
        if let Some((kind, _, _)) = tunnel.and_then(|t| tunnel_fields(m, t)) {
            push(
                notes,
                vs.at("sorry_server"),
                format!(
                    "sorry_server: its {kind} tunnel is not carried over; rvsd's sorry server \
                     tunnels with ipip"
                ),
            );
        }
        s.sorry_server = Some(Value::Table(t));
    }
    s.real_servers = kept
        .iter()
        .map(|(rs, _)| real_server(vs, rs, vport, vs_method, track_files, notes))
        .collect();
    for (r, (rs, _)) in s.real_servers.iter().zip(&kept) {
        let other = r
            .port
            .and_then(|p| member_ports.iter().find(|q| **q != p).map(|q| (p, *q)));
        if let (Some((p, q)), true) = (other, r.method != ForwardMethod::Masq) {
            push(
                notes,
                &rs.loc,
                format!(
                    "real_server port {p}: with {} each member's copy receives the member's \
                     port ({q} and others), as in keepalived; its checks connect to port {p} \
                     unless they say otherwise",
                    r.method.short_name().to_ascii_uppercase()
                ),
            );
        }
    }
    Some(s)
}

/// A TUN server's tunnel as the file's `tun_type`, `tun_port` and
/// `tun_checksum`, each written only when it says more than the default
/// (IPIP, no checksum); `None` for IPIP or another method.
fn tunnel_fields(
    method: ForwardMethod,
    tunnel: Tunnel,
) -> Option<(&'static str, Option<u16>, Option<TunnelChecksum>)> {
    if method != ForwardMethod::Tunnel || tunnel == Tunnel::Ipip {
        return None;
    }
    let port = match tunnel {
        Tunnel::Gue { port, .. } => Some(port),
        _ => None,
    };
    let checksum = Some(tunnel.checksum()).filter(|c| *c != TunnelChecksum::Nocsum);
    Some((tunnel.type_name(), port, checksum))
}

/// keepalived's validation (check_data.c): a quorum above the real
/// servers' total weight is lowered to it (it could never be reached), and
/// a hysteresis not below the quorum is lowered to quorum − 1. Each change
/// gets a note at its keyword.
fn clamp_quorum(
    vs: &VirtualServer,
    kept: &[(&RealServer, (IpAddr, Option<u16>))],
    notes: &mut Vec<Note>,
) -> (u32, u32) {
    let total: u64 = kept
        .iter()
        .map(|(rs, _)| u64::from(rs.weight.or(vs.weight).unwrap_or(1)))
        .sum();
    let mut quorum = vs.quorum.unwrap_or(1);
    if u64::from(quorum) > total && total > 0 {
        push(
            notes,
            vs.at("quorum"),
            format!(
                "quorum {quorum} exceeds the real servers' total weight {total}: lowered to \
                 {total}, as keepalived does (it could never be reached)"
            ),
        );
        quorum = total as u32;
    }
    let mut hysteresis = vs.hysteresis.unwrap_or(0);
    if hysteresis >= quorum && hysteresis > 0 {
        let lowered = quorum.saturating_sub(1);
        push(
            notes,
            vs.at("hysteresis"),
            format!(
                "hysteresis {hysteresis} is not below quorum {quorum}: lowered to {lowered}, as \
                 keepalived does"
            ),
        );
        hysteresis = lowered;
    }
    (quorum, hysteresis)
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
    track_files: &[TrackFile],
    notes: &mut Vec<Note>,
) -> schema::RealServer {
    let m = rs.method.unwrap_or(vs_method);
    let mut r = schema::RealServer::new(rs.address);
    r.port = server_port(rs.port, vport, m, &rs.loc, "real_server", notes);
    r.weight = rs.weight.or(vs.weight).unwrap_or(1);
    r.method = m;
    // A real server's own lvs_method sets its tunnel (IPIP without a
    // type); without one it takes the virtual server's, as in keepalived.
    let tunnel = if rs.method.is_some() {
        rs.tunnel
    } else {
        vs.tunnel
    };
    if let Some((kind, port, checksum)) = tunnel.and_then(|t| tunnel_fields(m, t)) {
        r.tun_type = Some(kind.to_owned());
        r.tun_port = port;
        r.tun_checksum = checksum;
    }
    r.upper_threshold = rs.uthreshold;
    r.lower_threshold = rs.lthreshold;
    r.inhibit_on_failure = Some(rs.inhibit_on_failure.unwrap_or(vs.inhibit_on_failure));
    r.notify_up = rs.notify_up.clone();
    r.notify_down = rs.notify_down.clone();
    r.check = rs
        .checkers
        .iter()
        .flat_map(|ck| checks(vs, rs, ck, track_files, notes))
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
fn checks(
    vs: &VirtualServer,
    rs: &RealServer,
    ck: &Checker,
    track_files: &[TrackFile],
    notes: &mut Vec<Note>,
) -> Vec<Value> {
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
        CheckKind::Smtp => {
            let helo = |t: &mut toml::Table| {
                let name = ck
                    .helo_name
                    .clone()
                    .unwrap_or_else(|| "smtpchecker.keepalived.org".into());
                t.insert("helo_name".into(), Value::String(name));
            };
            let mut out = Vec::new();
            // keepalived checks the server itself when the checker has
            // connection options of its own or no host blocks; each host
            // block is one more checker.
            if ck.own_connection || ck.smtp_hosts.is_empty() {
                let mut t = head("smtp");
                helo(&mut t);
                connect(&mut t);
                out.push(timing(t));
            }
            if !ck.smtp_hosts.is_empty() {
                push(
                    notes,
                    &ck.loc,
                    format!(
                        "SMTP_CHECK host blocks (deprecated in keepalived) written as {} smtp \
                         check(s), one per host, all of which must pass",
                        ck.smtp_hosts.len()
                    ),
                );
            }
            for h in &ck.smtp_hosts {
                let mut t = head("smtp");
                helo(&mut t);
                if let Some(ip) = h.connect_ip {
                    t.insert("connect_ip".into(), Value::String(ip.to_string()));
                }
                if let Some(p) = h.connect_port {
                    t.insert("connect_port".into(), int(p));
                }
                let ct = h.connect_timeout.map(secs).unwrap_or(r.connect_timeout);
                t.insert("connect_timeout".into(), int(ct));
                out.push(timing(t));
            }
            out
        }
        CheckKind::Http | CheckKind::Ssl => {
            let ty = if ck.kind == CheckKind::Ssl {
                "ssl"
            } else {
                "http"
            };
            if ck.urls.is_empty() {
                push(
                    notes,
                    &ck.loc,
                    format!("{kw} without a url block: checking path / instead"),
                );
            }
            let default_url = [crate::keepalived::Url {
                loc: ck.loc.clone(),
                path: None,
                digest: None,
                status_codes: Vec::new(),
                virtualhost: None,
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
                        "{kw} with {} urls written as {} {ty} checks (all must pass, as in \
                         keepalived)",
                        urls.len(),
                        urls.len()
                    ),
                );
            }
            if ck.kind == CheckKind::Http && (ck.enable_sni || ck.sni_name.is_some()) {
                push(
                    notes,
                    &ck.loc,
                    "HTTP_GET enable_sni / sni_name dropped: SNI is a TLS setting (SSL_GET)",
                );
            }
            let credentials = match (&ck.username, &ck.password) {
                (Some(u), Some(p)) => Some((u.clone(), p.clone())),
                (None, None) => None,
                _ => {
                    push(
                        notes,
                        &ck.loc,
                        format!("{kw}: username without password (or the reverse) dropped"),
                    );
                    None
                }
            };
            let mut out = Vec::new();
            for u in urls {
                let mut t = head(ty);
                let path = u.path.clone().unwrap_or_else(|| {
                    if !ck.urls.is_empty() {
                        push(notes, &u.loc, "url without path: checking / instead");
                    }
                    "/".to_string()
                });
                t.insert("path".into(), Value::String(path));
                // keepalived's default: any 2xx.
                let ranges = if u.status_codes.is_empty() {
                    vec![(200, 299)]
                } else {
                    u.status_codes.clone()
                };
                t.insert(
                    "status_codes".into(),
                    Value::Array(
                        ranges
                            .into_iter()
                            .map(|(lo, hi)| {
                                if lo == hi {
                                    int(lo)
                                } else {
                                    Value::String(format!("{lo}-{hi}"))
                                }
                            })
                            .collect(),
                    ),
                );
                if let Some(d) = &u.digest {
                    t.insert("digest".into(), Value::String(d.clone()));
                }
                // keepalived's order: url, checker, real server, virtual server.
                let vhost = u
                    .virtualhost
                    .as_ref()
                    .or(ck.virtualhost.as_ref())
                    .or(rs.virtualhost.as_ref())
                    .or(vs.virtualhost.as_ref());
                if let Some(v) = vhost {
                    t.insert("virtualhost".into(), Value::String(v.clone()));
                }
                if let Some((user, password)) = &credentials {
                    t.insert("username".into(), Value::String(user.clone()));
                    t.insert("password".into(), Value::String(password.clone()));
                }
                if ck.kind == CheckKind::Ssl && ck.enable_sni {
                    t.insert("enable_sni".into(), Value::Boolean(true));
                    if let Some(n) = &ck.sni_name {
                        t.insert("sni_name".into(), Value::String(n.clone()));
                    }
                } else if ck.kind == CheckKind::Ssl && ck.sni_name.is_some() {
                    push(
                        notes,
                        &ck.loc,
                        "SSL_GET sni_name without enable_sni has no effect in keepalived; dropped",
                    );
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
            // keepalived: unset or 0 means the virtual server's delay_loop
            // (not the checker's).
            let mt = match ck.misc_timeout {
                Some(t) if t > 0.0 => secs(t),
                _ => secs(vs.opts.delay_loop.unwrap_or(60.0)),
            };
            t.insert("misc_timeout".into(), int(mt));
            t.insert("misc_dynamic".into(), Value::Boolean(ck.misc_dynamic));
            vec![timing(t)]
        }
        CheckKind::Udp => {
            let mut t = head("udp");
            if let Some(p) = &ck.payload {
                match keepalived_hex(p, false) {
                    Some(h) => {
                        t.insert("payload".into(), Value::String(h));
                    }
                    None => push(
                        notes,
                        &ck.loc,
                        format!(
                            "UDP_CHECK payload '{p}' is not a hex string keepalived reads; \
                             keepalived ignores it, and so does this migration (an empty \
                             datagram is sent)"
                        ),
                    ),
                }
            }
            let pattern = match &ck.require_reply {
                Some(Some(p)) => match keepalived_hex(p, true) {
                    Some(h) => Some(h),
                    None => {
                        push(
                            notes,
                            &ck.loc,
                            format!(
                                "UDP_CHECK require_reply '{p}' is not a hex string keepalived \
                                 reads; keepalived ignores the pattern, and so does this \
                                 migration (any reply will do)"
                            ),
                        );
                        None
                    }
                },
                _ => None,
            };
            t.insert(
                "require_reply".into(),
                Value::Boolean(ck.require_reply.is_some()),
            );
            let (min, max) = ck.reply_lengths;
            if let Some(p) = pattern {
                t.insert("reply_pattern".into(), Value::String(p));
                if let Some(m) = min {
                    t.insert("min_reply_length".into(), int(m));
                }
                if let Some(m) = max {
                    t.insert("max_reply_length".into(), int(m));
                }
                if min.unwrap_or(0) > max.unwrap_or(255) {
                    push(
                        notes,
                        &ck.loc,
                        "UDP_CHECK min_reply_length above max_reply_length: keepalived's check \
                         always fails; rvsd refuses it, fix the lengths",
                    );
                }
            } else if min.is_some() || max.is_some() {
                push(
                    notes,
                    &ck.loc,
                    "UDP_CHECK min/max_reply_length without a require_reply pattern have no \
                     effect in keepalived; dropped",
                );
            }
            connect(&mut t);
            vec![timing(t)]
        }
        CheckKind::Dns => {
            let mut t = head("dns");
            t.insert(
                "query_type".into(),
                Value::String(ck.dns_type.as_deref().unwrap_or("SOA").to_ascii_uppercase()),
            );
            t.insert(
                "query_name".into(),
                Value::String(ck.dns_name.clone().unwrap_or_else(|| ".".into())),
            );
            connect(&mut t);
            vec![timing(t)]
        }
        CheckKind::Bfd => {
            push(
                notes,
                &ck.loc,
                "BFD_CHECK not carried over: RVS has no BFD; this real server loses that \
                 check (add a ping or tcp check if it had no other)",
            );
            Vec::new()
        }
        CheckKind::File => file_check(ck, track_files, notes).into_iter().collect(),
    }
}

/// FILE_CHECK → a file check: the track_file's path, with the checker's
/// weight or else the track_file's (keepalived's default 1).
fn file_check(ck: &Checker, track_files: &[TrackFile], notes: &mut Vec<Note>) -> Option<Value> {
    let Some((name, loc)) = &ck.track_file else {
        push(
            notes,
            &ck.loc,
            "FILE_CHECK without track_file dropped (keepalived ignores it too)",
        );
        return None;
    };
    let Some(tf) = track_files.iter().find(|t| &t.name == name) else {
        push(
            notes,
            loc,
            format!(
                "FILE_CHECK: no track_file {name} is defined; dropped (keepalived ignores it too)"
            ),
        );
        return None;
    };
    let Some(file) = &tf.file else {
        push(
            notes,
            &tf.loc,
            format!("track_file {name} has no file; its FILE_CHECK dropped"),
        );
        return None;
    };
    let (weight, reverse) = ck.file_weight.or(tf.weight).unwrap_or((1, false));
    if let Some(l) = &ck.file_dynamic {
        push(
            notes,
            l,
            "FILE_CHECK dynamic is not a keyword keepalived's parser takes (it warns and goes \
             on); dropped: the weighted file's share is added to the weight either way",
        );
    }
    push(
        notes,
        &ck.loc,
        "FILE_CHECK: keepalived reacts to file changes at once (inotify); RVS reads the file \
         every second (delay_loop = 1)",
    );
    let mut t = toml::Table::new();
    t.insert("type".into(), Value::String("file".into()));
    t.insert("file".into(), Value::String(file.clone()));
    t.insert("weight".into(), Value::Integer(weight));
    t.insert("reverse".into(), Value::Boolean(reverse));
    t.insert("delay_loop".into(), int(1u64));
    Some(Value::Table(t))
}

/// keepalived's hex strings (read_hex_str): digits in pairs, a lone digit
/// before a space or the end is one byte, spaces and tabs between; with
/// `wildcards`, `x`/`X` stands for any half byte. Written as RVS reads it:
/// lower-case pairs, `x` for wildcards. `None` where keepalived refuses.
fn keepalived_hex(s: &str, wildcards: bool) -> Option<String> {
    let digit = |c: char| {
        if c.is_ascii_hexdigit() {
            Some(c.to_ascii_lowercase())
        } else if wildcards && (c == 'x' || c == 'X') {
            Some('x')
        } else {
            None
        }
    };
    let mut bytes: Vec<String> = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ' | '\t')) {
            chars.next();
        }
        let Some(first) = chars.next() else { break };
        let first = digit(first)?;
        match chars.peek() {
            Some(&c) if c != ' ' => {
                chars.next();
                bytes.push(format!("{first}{}", digit(c)?));
            }
            _ => bytes.push(format!("0{first}")),
        }
    }
    (!bytes.is_empty()).then(|| bytes.join(" "))
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
        sync_retries: None,
        sync_threshold: None,
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
    fn hex_strings_as_keepalived_reads_them() {
        // keepalived.conf(5)'s own example.
        assert_eq!(
            keepalived_hex("Ab12f 3 456 546443123", false).as_deref(),
            Some("ab 12 0f 03 45 06 54 64 43 12 03")
        );
        assert_eq!(
            keepalived_hex("0a0b\t0c", false).as_deref(),
            Some("0a 0b 0c")
        );
        assert_eq!(keepalived_hex("xX 1x", true).as_deref(), Some("xx 1x"));
        assert_eq!(
            keepalived_hex("1x", false),
            None,
            "no wildcard in a payload"
        );
        assert_eq!(keepalived_hex("zz", true), None);
        assert_eq!(keepalived_hex("  ", false), None);
    }
}
