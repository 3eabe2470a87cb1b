//! `Listing` → text, byte for byte as ipvsadm 1.31 prints `-L` (with
//! `--stats`, `--rate`, `--thresholds`, `--persistent-conn`, `--tun-info`,
//! `--exact`),
//! `-L -c`, `-L --timeout` and `-S`; and RVS's firewall-mark rules
//! (`--list-mark-rules`, `-L --mark-rules`, the rule lines of `-S`).
//!
//! Pure: reverse lookups go through [`Names`]; `-n` uses [`Numeric`].
//! Column widths follow ipvsadm's printf formats (`%-33s` for the stats
//! service column, `%-28s %-7s %-6d %-10u %-10u` for real servers, including
//! the trailing blanks), and IPv4 names are cut at 33/28 bytes as ipvsadm does.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use rvs_api::{
    ConnectionEntry, DestStatus, Family, ForwardMethod, FwmarkRuleSpec, Listing, Protocol,
    ServiceKey, ServiceStatus, Stats, Timeouts, Tunnel,
};

use rvs_vocab::sched;

use crate::parse::ListRequest;

/// The IPVS version ipvsadm reports; rvsd implements that interface.
pub(crate) const IPVS_VERSION: &str = "1.2.1";

/// Reverse lookups for listings without `-n`.
pub(crate) trait Names {
    /// Host name of an address, `None` to print it numerically.
    fn host(&self, addr: IpAddr) -> Option<String>;
    /// Service name of a port (`http`), `None` to print the number.
    fn service(&self, port: u16, proto: Protocol) -> Option<String>;
}

/// No lookups at all: what `-n` means.
pub(crate) struct Numeric;

impl Names for Numeric {
    fn host(&self, _: IpAddr) -> Option<String> {
        None
    }
    fn service(&self, _: u16, _: Protocol) -> Option<String> {
        None
    }
}

/// ipvsadm's `addrport_to_anyname`: `host:port`, `[v6]:port`.
fn addrport(addr: IpAddr, port: u16, proto: Protocol, names: &dyn Names) -> String {
    let host = names.host(addr).unwrap_or_else(|| addr.to_string());
    let port = names
        .service(port, proto)
        .unwrap_or_else(|| port.to_string());
    match addr {
        IpAddr::V4(_) => format!("{host}:{port}"),
        IpAddr::V6(_) => format!("[{host}]:{port}"),
    }
}

/// Cuts at a byte length like ipvsadm's `buf[n] = '\0'`, staying on a char
/// boundary (host names are ASCII in practice).
fn truncate(mut s: String, n: usize) -> String {
    if s.len() > n {
        let mut cut = n;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// ipvsadm's `print_largenum`: 9 columns, K/M/G/T suffixes unless `--exact`.
fn largenum(out: &mut String, n: u64, exact: bool) {
    let _ = if exact {
        let len = n.to_string().len();
        let width = if len <= 8 { 9 } else { len + 1 };
        write!(out, "{n:>width$}")
    } else if n < 100_000_000 {
        write!(out, "{n:>9}")
    } else if n < 1_000_000_000 {
        write!(out, "{:>8}K", n / 1000)
    } else if n < 100_000_000_000 {
        write!(out, "{:>8}M", n / 1_000_000)
    } else if n < 100_000_000_000_000 {
        write!(out, "{:>8}G", n / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", n / 1_000_000_000_000)
    };
}

/// libipvs's `ipvs_cmp_services`: mark (address services count as 0),
/// family, protocol, address, port.
fn sort_key(k: &ServiceKey) -> (u32, Family, Protocol, Option<IpAddr>, u16) {
    match *k {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => (0, k.family(), protocol, Some(addr), port),
        ServiceKey::Fwmark { mark, af } => (mark, af, Protocol::Tcp, None, 0),
    }
}

fn cmp_keys(a: &ServiceKey, b: &ServiceKey) -> Ordering {
    sort_key(a).cmp(&sort_key(b))
}

fn cmp_dests(a: &DestStatus, b: &DestStatus) -> Ordering {
    (a.spec.addr.is_ipv6(), a.spec.addr, a.spec.port).cmp(&(
        b.spec.addr.is_ipv6(),
        b.spec.addr,
        b.spec.port,
    ))
}

fn title(out: &mut String, req: &ListRequest) {
    let counters = |out: &mut String, cols: [&str; 5]| {
        let _ = writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", cols[0], cols[1], cols[2], cols[3], cols[4]
        );
    };
    if req.stats {
        counters(out, ["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"]);
    } else if req.rate {
        counters(out, ["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]);
    } else if req.thresholds {
        let _ = writeln!(
            out,
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        );
    } else if req.persistent_conn {
        let _ = writeln!(
            out,
            "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        );
    } else if req.tun_info {
        out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
        );
    } else {
        out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        );
    }
}

/// ipvsadm 1.31's `fwd_tun_info`: the tunnel of a TUN server
/// (`ipip`, `gue:6080:-c`, `gre:+c`), `n/a` for the other methods.
fn tun_info(d: &DestStatus) -> String {
    if d.spec.method == ForwardMethod::Tunnel {
        d.spec.tunnel.listing()
    } else {
        "n/a".to_owned()
    }
}

/// ipvsadm's `print_sched_flags`: the set flags under the scheduler's
/// names, in bit order, comma-separated; `None` when no flag is set.
fn sched_flags(scheduler: &str, flags: &[String]) -> Option<String> {
    let bits = flags
        .iter()
        .filter_map(|f| sched::flag_number(f))
        .fold(0, |bits, n| bits | sched::flag_bit(n));
    let names = sched::flag_names(scheduler, bits);
    (!names.is_empty()).then(|| names.join(","))
}

/// ` mask 255.255.255.0` / ` -M 64` style persistence mask text, or `None`
/// for a single address (/32, /128).
fn mask_text(family: Family, netmask: Option<u8>) -> Option<String> {
    match (family, netmask) {
        (Family::Ipv4, Some(p)) if p < 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
            Some(Ipv4Addr::from(mask).to_string())
        }
        (Family::Ipv6, Some(p)) if p < 128 => Some(p.to_string()),
        _ => None,
    }
}

/// The service column: `TCP  host:port` (IPv4 cut at 33 bytes), `FWM  1`,
/// `FWM  1 IPv6`; or for rules `-t host:port`, `-f 1`, `-f 1 -6`.
fn service_name(key: &ServiceKey, rule: bool, names: &dyn Names) -> String {
    match *key {
        ServiceKey::Fwmark { mark, af } => match (rule, af) {
            (true, Family::Ipv4) => format!("-f {mark}"),
            (true, Family::Ipv6) => format!("-f {mark} -6"),
            (false, Family::Ipv4) => format!("FWM  {mark}"),
            (false, Family::Ipv6) => format!("FWM  {mark} IPv6"),
        },
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let vname = addrport(addr, port, protocol, names);
            if rule {
                format!("{} {vname}", service_option(protocol))
            } else {
                // ipvsadm's "%s  %s": two spaces after TCP, UDP and SCTP.
                let name = format!("{}  {vname}", protocol.name());
                if addr.is_ipv6() {
                    name
                } else {
                    truncate(name, 33)
                }
            }
        }
    }
}

fn counters(out: &mut String, s: &Stats, exact: bool) {
    for n in [
        s.conns,
        s.in_packets,
        s.out_packets,
        s.in_bytes,
        s.out_bytes,
    ] {
        largenum(out, n, exact);
    }
}

fn rates(out: &mut String, s: &Stats, exact: bool) {
    for n in [s.cps, s.in_pps, s.out_pps, s.in_bps, s.out_bps] {
        largenum(out, n, exact);
    }
}

fn sorted_dests(svc: &ServiceStatus, nosort: bool) -> Vec<&DestStatus> {
    let mut dests: Vec<&DestStatus> = svc.dests.iter().collect();
    if !nosort {
        dests.sort_by(|a, b| cmp_dests(a, b));
    }
    dests
}

fn service_entry(out: &mut String, svc: &ServiceStatus, req: &ListRequest, names: &dyn Names) {
    let key = &svc.spec.key;
    let svc_name = service_name(key, false, names);

    if req.stats {
        let _ = write!(out, "{svc_name:<33}");
        counters(out, &svc.stats, req.exact);
    } else if req.rate {
        let _ = write!(out, "{svc_name:<33}");
        rates(out, &svc.stats, req.exact);
    } else {
        let spec = &svc.spec;
        let _ = write!(out, "{svc_name} {}", spec.scheduler);
        if let Some(f) = sched_flags(&spec.scheduler, &spec.flags) {
            let _ = write!(out, " ({f})");
        }
        if let Some(t) = spec.persistence_timeout {
            let _ = write!(out, " persistent {t}");
            if let Some(m) = mask_text(key.family(), spec.netmask) {
                let _ = write!(out, " mask {m}");
            }
        }
        if spec.one_packet {
            out.push_str(" ops");
        }
        if spec.toa {
            out.push_str(" toa");
        }
    }
    out.push('\n');
    // RVS's FullNAT: the local addresses on a line of their own, only for
    // a service that has them (ipvsadm's services have none, and list as
    // ipvsadm lists them), and not among --stats' and --rate's columns.
    let laddrs = spec_laddrs(svc);
    if !laddrs.is_empty() && !req.stats && !req.rate {
        let _ = writeln!(out, "  local addresses: {}", laddrs.join(" "));
    }

    for d in sorted_dests(svc, req.nosort) {
        let mut dname = addrport(d.spec.addr, d.spec.port, key.protocol(), names);
        if !d.spec.addr.is_ipv6() {
            dname = truncate(dname, 28);
        }
        if req.stats {
            let _ = write!(out, "  -> {dname:<28}");
            counters(out, &d.stats, req.exact);
            out.push('\n');
        } else if req.rate {
            let s = &d.stats;
            let _ = write!(
                out,
                "  -> {dname:<28} {:>8} {:>8} {:>8}",
                s.cps, s.in_pps, s.out_pps
            );
            largenum(out, s.in_bps, req.exact);
            largenum(out, s.out_bps, req.exact);
            out.push('\n');
        } else if req.thresholds {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                d.spec.upper_threshold, d.spec.lower_threshold, d.active_conns, d.inactive_conns
            );
        } else if req.persistent_conn {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                d.spec.weight, d.persistent_conns, d.active_conns, d.inactive_conns
            );
        } else if req.tun_info {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                d.spec.method.name(),
                tun_info(d),
                d.spec.weight,
                d.active_conns,
                d.inactive_conns
            );
        } else {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                d.spec.method.name(),
                d.spec.weight,
                d.active_conns,
                d.inactive_conns
            );
        }
    }
}

/// A service's FullNAT local addresses, numeric: they are the director's.
fn spec_laddrs(svc: &ServiceStatus) -> Vec<String> {
    svc.spec
        .local_addresses
        .iter()
        .map(IpAddr::to_string)
        .collect()
}

fn sorted_services(listing: &Listing, nosort: bool) -> Vec<&ServiceStatus> {
    let mut services: Vec<&ServiceStatus> = listing.services.iter().collect();
    if !nosort {
        services.sort_by(|a, b| cmp_keys(&a.spec.key, &b.spec.key));
    }
    services
}

/// Why a single-service listing printed nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NoSuchService;

/// The text of `ipvsadm -L` for `req`: the whole table, or with
/// `req.service` that one service without the version line, as ipvsadm does.
/// (`-c` and `--timeout` are [`connections`] and [`timeouts`].) With
/// `--mark-rules` (RVS only) the firewall-mark rules follow; without it the
/// text is ipvsadm's, byte for byte.
pub(crate) fn listing(
    listing: &Listing,
    req: &ListRequest,
    names: &dyn Names,
) -> Result<String, NoSuchService> {
    let mut out = String::new();
    if let Some(key) = &req.service {
        let svc = listing
            .services
            .iter()
            .find(|s| s.spec.key == *key)
            .ok_or(NoSuchService)?;
        title(&mut out, req);
        service_entry(&mut out, svc, req, names);
        if req.mark_rules {
            out.push_str(&mark_rules(&listing.fwmark_rules));
        }
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "IP Virtual Server version {IPVS_VERSION} (size={})",
        listing.conn_table_size
    );
    title(&mut out, req);
    for svc in sorted_services(listing, req.nosort) {
        service_entry(&mut out, svc, req, names);
    }
    if req.mark_rules {
        out.push_str(&mark_rules(&listing.fwmark_rules));
    }
    Ok(out)
}

/// `tcp`, `udp`, `sctp`, or `any` for a rule matching every protocol (its option is `--any`).
fn rule_protocol(p: Option<Protocol>) -> &'static str {
    match p {
        Some(Protocol::Tcp) => "tcp",
        Some(Protocol::Udp) => "udp",
        Some(Protocol::Sctp) => "sctp",
        None => "any",
    }
}

/// The option that names a service of `protocol` in ipvsadm's rules
/// (`-t`, `-u`, `--sctp-service`).
fn service_option(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "-t",
        Protocol::Udp => "-u",
        Protocol::Sctp => "--sctp-service",
    }
}

/// `addr/prefix`, always with the prefix so `/32` is visibly one address.
fn rule_net(r: &FwmarkRuleSpec) -> String {
    format!("{}/{}", r.addr, r.prefix_len)
}

fn port_list(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    ports.join(",")
}

/// `--list-mark-rules`: one line per rule in rvsd's (match) order, never
/// sorted because the first matching rule wins:
/// `MARK 7 tcp 10.0.100.32/30 ports 80,443`; no `ports` part when a rule
/// matches every port. Numeric always: rules are addresses, not names.
pub(crate) fn mark_rules(rules: &[FwmarkRuleSpec]) -> String {
    let mut out = String::new();
    for r in rules {
        let _ = write!(
            out,
            "MARK {} {} {}",
            r.mark,
            rule_protocol(r.protocol),
            rule_net(r)
        );
        if !r.ports.is_empty() {
            let _ = write!(out, " ports {}", port_list(&r.ports));
        }
        out.push('\n');
    }
    out
}

/// ipvsadm's `fwd_switch`.
fn method_switch(m: ForwardMethod) -> &'static str {
    match m {
        ForwardMethod::Route => "-g",
        ForwardMethod::Masq => "-m",
        ForwardMethod::Tunnel => "-i",
        ForwardMethod::FullNat => "--fullnat",
    }
}

/// `ipvsadm -S`: the table as the commands that rebuild it, sorted like
/// `-L`. One addition to ipvsadm 1.31's format: real servers with
/// thresholds get ` -x N` / ` -y N` (only when non-zero, so tables without
/// thresholds save byte-identically, and ipvsadm itself reads these lines),
/// because ipvsadm's save silently drops them and a restore then loses them.
///
/// RVS's firewall-mark rules come first, in match order, as
/// `--add-mark-rule 7 -t 10.0.100.32/30 --ports 80,443` lines (`--any` for
/// every protocol), so `-R` brings them back; a table without rules saves
/// exactly as before.
pub(crate) fn save(listing: &Listing, names: &dyn Names) -> String {
    let mut out = String::new();
    for r in &listing.fwmark_rules {
        let opt = r.protocol.map_or("--any", service_option);
        let _ = write!(out, "--add-mark-rule {} {opt} {}", r.mark, rule_net(r));
        if !r.ports.is_empty() {
            let _ = write!(out, " --ports {}", port_list(&r.ports));
        }
        out.push('\n');
    }
    for svc in sorted_services(listing, false) {
        let spec = &svc.spec;
        let key = &spec.key;
        let svc_name = service_name(key, true, names);
        let _ = write!(out, "-A {svc_name} -s {}", spec.scheduler);
        if let Some(t) = spec.persistence_timeout {
            let _ = write!(out, " -p {t}");
            if let Some(m) = mask_text(key.family(), spec.netmask) {
                let _ = write!(out, " -M {m}");
            }
        }
        if spec.one_packet {
            out.push_str(" -o");
        }
        if let Some(f) = sched_flags(&spec.scheduler, &spec.flags) {
            let _ = write!(out, " -b {f}");
        }
        // RVS's FullNAT settings, so a restore brings them back.
        for a in spec_laddrs(svc) {
            let _ = write!(out, " --laddr {a}");
        }
        if spec.toa {
            out.push_str(" --toa");
        }
        out.push('\n');
        for d in sorted_dests(svc, false) {
            let dname = addrport(d.spec.addr, d.spec.port, key.protocol(), names);
            let _ = write!(
                out,
                "-a {svc_name} -r {dname} {} -w {}",
                method_switch(d.spec.method),
                d.spec.weight
            );
            // ipvsadm 1.31's print_tunnel_rule.
            if d.spec.method == ForwardMethod::Tunnel {
                let t = d.spec.tunnel;
                let _ = write!(out, " --tun-type {}", t.type_name());
                if let Tunnel::Gue { port, .. } = t {
                    let _ = write!(out, " --tun-port {port}");
                }
                if t != Tunnel::Ipip {
                    let _ = write!(out, " --tun-{}", t.checksum().name());
                }
            }
            if d.spec.upper_threshold != 0 {
                let _ = write!(out, " -x {}", d.spec.upper_threshold);
            }
            if d.spec.lower_threshold != 0 {
                let _ = write!(out, " -y {}", d.spec.lower_threshold);
            }
            out.push('\n');
        }
    }
    out
}

/// `rvsadm -L --defense` (RVS): the SYN-flood defence's settings, state
/// and counters. Modes are live, as the kernel's sysctls read: an
/// automatic strategy shows 2 while active.
pub(crate) fn defense(l: &Listing) -> String {
    let Some(d) = &l.defense else {
        return "SYN-flood defence: not reported by this rvsd\n".into();
    };
    let yes = |b: bool| if b { "yes" } else { "no" };
    let counter = |name: &str| l.counters.get(name).copied().unwrap_or(0);
    let rate = if d.drop_rate > 0 {
        format!("yes (1 in {})", d.drop_rate)
    } else {
        "no".into()
    };
    let mut out = format!(
        "SYN-flood defence: {} of {} connection entries free, low memory (< amemthresh {}): {}\n",
        d.free_entries,
        l.conn_table_size,
        d.amemthresh,
        yes(d.low_memory)
    );
    out.push_str("Strategy     Mode  Active\n");
    out.push_str(&format!(
        "drop_entry   {:<4}  {}\n",
        d.drop_entry,
        yes(d.drop_entry_active)
    ));
    out.push_str(&format!("drop_packet  {:<4}  {rate}\n", d.drop_packet));
    out.push_str(&format!(
        "secure_tcp   {:<4}  {}\n",
        d.secure_tcp,
        yes(d.secure_tcp_active)
    ));
    out.push_str(&format!(
        "amemthresh {}  am_droprate {}\n",
        d.amemthresh, d.am_droprate
    ));
    out.push_str(&format!(
        "Evicted half-open {}  drop_entry removed {}  drop_packet dropped {}  table full {}\n",
        counter("conns_evicted"),
        counter("defense_entries_dropped"),
        counter("drop_defense_drop_packet"),
        counter("drop_conn_table_full"),
    ));
    out
}

/// `rvsadm -L --sysctl` (RVS): every IPVS sysctl RVS takes, one
/// `name = value` a line in the kernel's order, as `sysctl net.ipv4.vs`
/// prints them (defence modes live, as there).
pub(crate) fn sysctls(l: &Listing) -> String {
    let (Some(d), Some(s)) = (&l.defense, &l.sysctl) else {
        return "sysctls: not reported by this rvsd\n".into();
    };
    let mut out = String::new();
    for def in rvs_vocab::sysctl::SYSCTLS {
        let value = match def.name {
            "am_droprate" => d.am_droprate,
            "amemthresh" => d.amemthresh,
            "drop_entry" => u32::from(d.drop_entry),
            "drop_packet" => u32::from(d.drop_packet),
            "secure_tcp" => u32::from(d.secure_tcp),
            "sloppy_sctp" => u32::from(s.sloppy_sctp),
            "sloppy_tcp" => u32::from(s.sloppy_tcp),
            "sync_persist_mode" => u32::from(s.sync_persist_mode),
            _ => continue,
        };
        out.push_str(&format!("{} = {value}\n", def.name));
    }
    out
}

/// `ipvsadm -L --timeout`.
/// `-L --daemon`: one line per running sync daemon, as ipvsadm prints them.
pub(crate) fn daemons(d: &[rvs_api::SyncDaemonStatus]) -> String {
    d.iter()
        .map(|s| s.daemon.listing_line(s.maxlen) + "\n")
        .collect()
}

pub(crate) fn timeouts(t: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp, t.tcpfin, t.udp
    )
}

/// The address the kernel shows as "virtual" for a mark service's
/// template: the mark itself in the first 32 bits, port 0.
fn fwmark_addr(mark: u32, v6: bool) -> IpAddr {
    if v6 {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&mark.to_be_bytes());
        IpAddr::from(b)
    } else {
        IpAddr::from(Ipv4Addr::from(mark))
    }
}

/// `ipvsadm -L -c`: the connection table in rvsd's order, as ipvsadm
/// prints /proc/net/ip_vs_conn (templates included, as the kernel lists
/// them; `--persistent-conn` only adds the persistence-engine columns,
/// which stay empty because rvsd has no persistence engines).
pub(crate) fn connections(
    conns: &[ConnectionEntry],
    persistent_conn: bool,
    names: &dyn Names,
) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if persistent_conn {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        );
    } else {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        );
    }
    for c in conns {
        // A mark template has protocol IPPROTO_IP: "IP", no service names.
        let (proto, vaddr, vport, named) = match c.fwmark {
            Some(mark) if c.template => {
                let v = fwmark_addr(mark, c.client.0.is_ipv6());
                ("IP", v, 0, false)
            }
            _ => (c.protocol.name(), c.virtual_.0, c.virtual_.1, true),
        };
        let name = |addr: IpAddr, port: u16| {
            if named {
                addrport(addr, port, c.protocol, names)
            } else {
                addrport(addr, port, c.protocol, &HostsOnly(names))
            }
        };
        let expire = format!("{:02}:{:02}", c.expires_secs / 60, c.expires_secs % 60);
        let _ = write!(
            out,
            "{proto:<3} {expire:<6} {:<11} {:<18} {:<18} {}",
            c.state,
            name(c.client.0, c.client.1),
            name(vaddr, vport),
            name(c.dest.0, c.dest.1),
        );
        // RVS's FullNAT: the client end the server sees, after ipvsadm's
        // columns, on FullNAT entries only.
        if let Some((addr, port)) = c.local {
            let _ = write!(out, " local {}", name(addr, port));
        }
        out.push('\n');
    }
    out
}

/// Host names from the inner resolver, ports always numeric (ipvsadm finds
/// no service name for protocol `IP`).
struct HostsOnly<'a>(&'a dyn Names);

impl Names for HostsOnly<'_> {
    fn host(&self, addr: IpAddr) -> Option<String> {
        self.0.host(addr)
    }
    fn service(&self, _: u16, _: Protocol) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests;
