//! keepalived's LVS model → rvsd TOML (the schema of docs/rvsd.md,
//! "Planned additions").
//!
//! keepalived's defaults and inheritance are resolved here and written out
//! explicitly, so the result does not depend on RVS sharing keepalived's
//! defaults (it does not for the forwarding method: keepalived defaults to
//! NAT, rvsd to DR).

use std::fmt::Write as _;
use std::net::IpAddr;

use rvs_vocab::{sched, ForwardMethod};

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
    let mut body = String::new();
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
    let list: Vec<String> = interfaces.iter().map(|i| quote(i)).collect();
    let _ = writeln!(body, "interfaces = [{}]", list.join(", "));
    if let (None, None, None) = k.lvs_timeouts {
    } else {
        body.push_str("\n[timeouts]\n");
        let (tcp, fin, udp) = k.lvs_timeouts;
        for (name, v) in [("tcp", tcp), ("tcpfin", fin), ("udp", udp)] {
            if let Some(v) = v {
                let _ = writeln!(body, "{name} = {v}");
            }
        }
    }

    let mut fwmarks = String::new();
    let mut services = String::new();
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
            service(vs, t, &mut services, &mut fwmarks, notes);
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# rvsd configuration written by rvs-migrate from {}",
        opts.source_name
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
            let _ = writeln!(out, "#   {n}");
        }
    }
    out.push('\n');
    out.push_str(&body);
    out.push_str(&fwmarks);
    out.push_str(&services);
    Ok(out)
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

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(o, "\\u{:04X}", u32::from(c));
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Whole seconds (extraction already rounded fractional timers up, with a
/// note at their line).
fn secs(v: f64) -> u64 {
    v.ceil() as u64
}

fn service(
    vs: &VirtualServer,
    target: &Target,
    out: &mut String,
    fwmarks: &mut String,
    notes: &mut Vec<Note>,
) {
    let (proto, ploc) = match &vs.protocol {
        Some((p, l)) => (p.as_str(), Some(l)),
        None => ("TCP", None),
    };
    let proto = match proto {
        "TCP" => "tcp",
        "UDP" => "udp",
        other => {
            push(
                notes,
                ploc.unwrap_or(&vs.loc),
                format!(
                    "protocol {other}: RVS supports TCP and UDP only; this virtual server was \
                     not carried over"
                ),
            );
            return;
        }
    };
    out.push_str("\n[[service]]\n");
    let vport = match target {
        Target::Addr(a, p) => {
            let _ = writeln!(out, "protocol = \"{proto}\"");
            let _ = writeln!(out, "address = {}", quote(&a.to_string()));
            let _ = writeln!(out, "port = {}", p.unwrap_or(0));
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
            let _ = writeln!(out, "fwmark = {m}");
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
    let sched = match vs.sched.as_deref().map(str::to_ascii_lowercase) {
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
    let _ = writeln!(out, "scheduler = \"{sched}\"");
    let mut flags: Vec<String> = Vec::new();
    for (f, loc) in &vs.sched_flags {
        // Only what the scheduler gives a meaning (a name of its own) is
        // carried over, under that name.
        let mapped = sched::flag_number(f)
            .filter(|_| sched::flag_owner(f).is_none_or(|o| o == sched))
            .and_then(|n| sched::named_flag(&sched, n));
        match mapped {
            Some(m) if !flags.iter().any(|f| f == m) => flags.push(m.to_string()),
            Some(_) => {}
            None => push(
                notes,
                loc,
                format!("scheduler flag {f} has no meaning for scheduler {sched} in RVS; dropped"),
            ),
        }
    }
    if !flags.is_empty() {
        let l: Vec<String> = flags.iter().map(|f| quote(f)).collect();
        let _ = writeln!(out, "scheduler_flags = [{}]", l.join(", "));
    }
    match vs.persistence_timeout {
        Some(t) if t > 0 => {
            let _ = writeln!(out, "persistence_timeout = {t}");
            if let Some(g) = &vs.persistence_granularity {
                let _ = writeln!(out, "persistence_netmask = {}", quote(g));
            }
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
        if proto == "udp" {
            out.push_str("one_packet = true\n");
        } else {
            push(
                notes,
                &vs.loc,
                "ops (one-packet scheduling) applies to UDP only; dropped for this TCP service",
            );
        }
    }
    let delay_loop = secs(vs.opts.delay_loop.unwrap_or(60.0));
    let _ = writeln!(out, "delay_loop = {delay_loop}");
    let _ = writeln!(out, "quorum = {}", vs.quorum.unwrap_or(1));
    let _ = writeln!(out, "hysteresis = {}", vs.hysteresis.unwrap_or(0));
    let _ = writeln!(out, "inhibit_on_failure = {}", vs.inhibit_on_failure);
    let _ = writeln!(out, "alpha = {}", vs.alpha);
    let _ = writeln!(out, "omega = {}", vs.omega);
    if let Some(q) = &vs.quorum_up {
        let _ = writeln!(out, "quorum_up = {}", quote(q));
    }
    if let Some(q) = &vs.quorum_down {
        let _ = writeln!(out, "quorum_down = {}", quote(q));
    }
    let vs_method = vs.method.unwrap_or(ForwardMethod::Masq);
    if let Some((a, p)) = &vs.sorry_server {
        let m = vs.sorry_server_method.unwrap_or(vs_method);
        out.push_str("\n  [service.sorry_server]\n");
        let _ = writeln!(out, "  address = {}", quote(&a.to_string()));
        if let Some(port) = server_port(*p, vport, m, &vs.loc, "sorry_server", notes) {
            let _ = writeln!(out, "  port = {port}");
        }
        let _ = writeln!(out, "  method = \"{}\"", m.short_name());
    }
    for rs in &vs.real_servers {
        real_server(vs, rs, vport, vs_method, out, notes);
    }
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
    out: &mut String,
    notes: &mut Vec<Note>,
) {
    let m = rs.method.unwrap_or(vs_method);
    out.push_str("\n  [[service.real_server]]\n");
    let _ = writeln!(out, "  address = {}", quote(&rs.address.to_string()));
    let rport = server_port(rs.port, vport, m, &rs.loc, "real_server", notes);
    if let Some(p) = rport {
        let _ = writeln!(out, "  port = {p}");
    }
    let _ = writeln!(out, "  weight = {}", rs.weight.unwrap_or(1));
    let _ = writeln!(out, "  method = \"{}\"", m.short_name());
    if let Some(u) = rs.uthreshold {
        let _ = writeln!(out, "  upper_threshold = {u}");
    }
    if let Some(l) = rs.lthreshold {
        let _ = writeln!(out, "  lower_threshold = {l}");
    }
    let _ = writeln!(
        out,
        "  inhibit_on_failure = {}",
        rs.inhibit_on_failure.unwrap_or(vs.inhibit_on_failure)
    );
    for ck in &rs.checkers {
        checks(vs, rs, ck, out, notes);
    }
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

fn checks(
    vs: &VirtualServer,
    rs: &RealServer,
    ck: &Checker,
    out: &mut String,
    notes: &mut Vec<Note>,
) {
    let r = resolve(vs, rs, ck);
    let head = |out: &mut String, ty: &str| {
        out.push_str("\n    [[service.real_server.check]]\n");
        let _ = writeln!(out, "    type = \"{ty}\"");
    };
    let connect = |out: &mut String| {
        if let Some(ip) = ck.connect_ip {
            let _ = writeln!(out, "    connect_ip = {}", quote(&ip.to_string()));
        }
        if let Some(p) = ck.connect_port {
            let _ = writeln!(out, "    connect_port = {p}");
        }
        let _ = writeln!(out, "    connect_timeout = {}", r.connect_timeout);
    };
    let timing = |out: &mut String| {
        let _ = writeln!(out, "    delay_loop = {}", r.delay_loop);
        let _ = writeln!(out, "    retry = {}", r.retry);
        let _ = writeln!(out, "    delay_before_retry = {}", r.delay_before_retry);
        let _ = writeln!(out, "    warmup = {}", r.warmup);
    };
    let kw = ck.kind.keyword();
    match ck.kind {
        CheckKind::Tcp | CheckKind::Ping => {
            head(
                out,
                if ck.kind == CheckKind::Tcp {
                    "tcp"
                } else {
                    "ping"
                },
            );
            connect(out);
            timing(out);
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
            head(out, "tcp");
            connect(out);
            timing(out);
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
            for u in urls {
                head(out, "http");
                let path = u.path.clone().unwrap_or_else(|| {
                    if !ck.urls.is_empty() {
                        push(notes, &u.loc, "url without path: checking / instead");
                    }
                    "/".to_string()
                });
                let _ = writeln!(out, "    path = {}", quote(&path));
                let ranges = if u.status_codes.is_empty() {
                    vec![(200, 299)]
                } else {
                    u.status_codes.clone()
                };
                let mut codes: Vec<String> = Vec::new();
                for (lo, hi) in ranges {
                    for c in lo..=hi {
                        let s = c.to_string();
                        if !codes.contains(&s) {
                            codes.push(s);
                        }
                    }
                }
                if codes.len() <= 10 {
                    let _ = writeln!(out, "    status_codes = [{}]", codes.join(", "));
                } else {
                    out.push_str("    status_codes = [\n");
                    for row in codes.chunks(10) {
                        let _ = writeln!(out, "      {},", row.join(", "));
                    }
                    out.push_str("    ]\n");
                }
                if let Some(d) = &u.digest {
                    let _ = writeln!(out, "    digest = {}", quote(d));
                }
                connect(out);
                timing(out);
            }
        }
        CheckKind::Misc => {
            let Some(path) = &ck.misc_path else {
                push(notes, &ck.loc, "MISC_CHECK without misc_path dropped");
                return;
            };
            head(out, "misc");
            let _ = writeln!(out, "    script = {}", quote(path));
            let mt = match ck.misc_timeout {
                Some(t) => secs(t),
                None => r.delay_loop,
            };
            let _ = writeln!(out, "    misc_timeout = {mt}");
            let _ = writeln!(out, "    misc_dynamic = {}", ck.misc_dynamic);
            timing(out);
        }
        CheckKind::Udp => {
            head(out, "udp");
            if let Some(p) = &ck.payload {
                let _ = writeln!(out, "    payload = {}", quote(p));
            }
            if let Some(rr) = &ck.require_reply {
                if rr.is_some() {
                    push(
                        notes,
                        &ck.loc,
                        "UDP_CHECK require_reply pattern dropped: RVS only requires that a reply \
                         arrives",
                    );
                }
            }
            let _ = writeln!(out, "    require_reply = {}", ck.require_reply.is_some());
            connect(out);
            timing(out);
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
                return;
            };
            push(
                notes,
                &ck.loc,
                format!(
                    "DNS_CHECK is not supported by RVS yet; written as a UDP check sending the \
                     same query ({ty} {name}) and requiring a reply, whose content is not checked"
                ),
            );
            head(out, "udp");
            let _ = writeln!(out, "    payload = {}", quote(&payload));
            out.push_str("    require_reply = true\n");
            connect(out);
            timing(out);
        }
        CheckKind::Bfd | CheckKind::File => push(
            notes,
            &ck.loc,
            format!("{kw} dropped: RVS has no equivalent checker"),
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }

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
