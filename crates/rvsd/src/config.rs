//! The configuration file (TOML, `rvs_vocab::schema`, docs/rvsd.md) →
//! the engine's configuration: [`engine_config`], the one conversion that
//! starting rvsd ([`start`]), `--check-config` ([`check`]) and a reload
//! (`Director::reload`) all use.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::{anyhow, bail};
use rvs_engine::{
    Config, Defense, Dest, FwmarkRule, Interface, Persistence, Service, ServiceKey, Snapshot,
    Timeouts, Validator,
};
use rvs_health::spec::{RealServerHealthSpec, ServiceHealthSpec};
use rvs_vocab::{schema, Protocol};

use crate::health::{Health, HealthPlan, ServiceHealth};
use crate::kernel;

/// Reads and parses `path` (returning its text too, for line numbers);
/// errors name the file and the TOML location.
pub(crate) fn load(path: &Path) -> anyhow::Result<(schema::Config, String)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    let file = schema::Config::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok((file, text))
}

/// The engine configuration `file` (parsed from `text`) describes, on the
/// interfaces `interface` gives the facts of, with the kernel's routes;
/// its health plan; and for each engine service the index of the
/// `[[service]]` it comes from (a group gives one per member). Or every
/// error found, each service's with the line of its `[[service]]`.
pub(crate) fn engine_config(
    file: &schema::Config,
    text: &str,
    interface: impl Fn(&str) -> anyhow::Result<Interface>,
) -> Result<(Config, HealthPlan, Vec<usize>), Vec<String>> {
    let mut errors = Vec::new();
    let mut services = Vec::new();
    let mut origins = Vec::new();
    let mut plan = HealthPlan::new();
    let lines = Lines::new(text);
    // Who defines each service key so far, to refuse a group member that
    // another service or group defines too, naming both.
    let mut defined: std::collections::HashMap<ServiceKey, (String, bool)> = Default::default();
    let mut groups: std::collections::HashMap<&str, usize> = Default::default();
    for (i, s) in file.services.iter().enumerate() {
        let line = lines.of(s.span().start);
        let at = |e: String| format!("line {line}: {e}");
        let f = s.get_ref();
        let keys = match service_keys(f, i) {
            Ok(k) => k,
            Err(e) => {
                errors.push(at(e.to_string()));
                continue;
            }
        };
        let who = match &f.group {
            Some(name) => format!("[[service]] group = \"{name}\" (line {line})"),
            None => format!("[[service]] {} (line {line})", keys[0]),
        };
        if let Some(name) = &f.group {
            if let Some(first) = groups.insert(name, line) {
                errors.push(at(format!(
                    "[[service]] group = \"{name}\": a group of that name is defined at line \
                     {first} already; give each group its own name"
                )));
            }
        }
        for k in &keys {
            match defined.get(k) {
                Some((other, in_group)) if f.group.is_some() || *in_group => {
                    errors.push(at(format!(
                        "{who}: service {k} is defined by {other} already; a service belongs \
                         to one [[service]] or group only: remove one of them"
                    )))
                }
                // Two plain services of one key: the engine says so.
                _ => {
                    defined.insert(*k, (who.clone(), f.group.is_some()));
                }
            }
        }
        let members = match keys
            .iter()
            .map(|k| to_engine(f, *k, i))
            .collect::<anyhow::Result<Vec<Service>>>()
        {
            Ok(m) => m,
            Err(e) => {
                errors.push(at(e.to_string()));
                continue;
            }
        };
        match health(f, &members[0]) {
            Ok(mut h) => {
                h.group = f.group.clone();
                for m in &members {
                    if f.group.is_some() {
                        // A member's real server may differ in port (DR
                        // takes the member's): health knows it as one.
                        h.checked_as = f
                            .real_servers
                            .iter()
                            .zip(&m.dests)
                            .map(|(r, d)| {
                                let port = if d.port == 0 { m.key.port } else { d.port };
                                (
                                    SocketAddr::new(d.addr, port),
                                    checked_server(r, members[0].key),
                                )
                            })
                            .collect();
                    }
                    plan.insert(m.key, h.clone());
                }
            }
            Err(e) => errors.push(at(format!("{who}: {e}"))),
        }
        origins.extend(std::iter::repeat_n(i, members.len()));
        services.extend(members);
    }
    for (i, d) in file.sync_daemons.iter().enumerate() {
        if let Err(e) = d.check() {
            errors.push(format!("[[sync_daemon]] {}: {e}", d.role.name()));
        }
        if file.sync_daemons[..i].iter().any(|o| o.role == d.role) {
            errors.push(format!(
                "[[sync_daemon]] {}: listed twice; one master and one backup at most",
                d.role.name()
            ));
        }
    }
    let fwmarks = engine_fwmarks(file).unwrap_or_else(|e| {
        errors.push(e.to_string());
        Vec::new()
    });
    let mut interfaces = Vec::new();
    for name in &file.interfaces {
        match interface(name) {
            Ok(i) => interfaces.push(i),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let routes = kernel::routes(&interfaces).map_err(|e| vec![format!("reading routes: {e:#}")])?;
    let config = Config {
        routes,
        interfaces,
        services,
        fwmarks,
        timeouts: timeouts(file),
        max_connections: file
            .max_connections
            .unwrap_or(Config::default().max_connections),
        max_fragment_datagrams: file
            .max_fragment_datagrams
            .unwrap_or(Config::default().max_fragment_datagrams),
        fast_path: fast_path(file),
        fast_path_slots: file.fast_path_slots,
        defense: defense(file),
        sloppy_tcp: sysctl_switch(file, |s| s.sloppy_tcp),
        sloppy_sctp: sysctl_switch(file, |s| s.sloppy_sctp),
        sync_persist_mode: sysctl_switch(file, |s| s.sync_persist_mode),
        local_port_range: local_port_range(file),
    };
    Ok((config, plan, origins))
}

/// What rvsd starts with.
pub(crate) struct Start {
    /// The engine's configuration.
    pub(crate) config: Config,
    /// Its health checks.
    pub(crate) plan: HealthPlan,
    /// Where to serve metrics, if anywhere.
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// Who rvsd, its scripts and its socket's readers are.
    pub(crate) privileges: crate::privilege::Plan,
    /// `[[sync_daemon]]`s to start.
    pub(crate) sync_daemons: Vec<rvs_vocab::SyncDaemon>,
}

/// The configuration rvsd starts with: the file at `path`, or without one
/// an empty configuration (the API answers, no interface carries traffic).
pub(crate) fn start(path: Option<&Path>) -> anyhow::Result<Start> {
    let (file, text) = match path {
        Some(p) => load(p)?,
        None => (schema::Config::default(), String::new()),
    };
    let shown = path.map(|p| p.display().to_string()).unwrap_or_default();
    let (config, plan, _) = engine_config(&file, &text, kernel::interface)
        .map_err(|errs| anyhow!("{shown}: {}", errs.join(&format!("\n{shown}: "))))?;
    if file.interfaces.is_empty() {
        if path.is_some() {
            bail!("no interfaces to work on: list them in the configuration file, e.g. interfaces = [\"eth0\"] (see docs/rvsd.md)");
        }
        tracing::warn!("started without a configuration file: the control API answers, but no interface carries traffic until rvsd runs with --config");
    }
    let privileges = crate::privilege::plan(&file).map_err(|e| anyhow!("{shown}: {e:#}"))?;
    for w in fwmark_warnings(&file, &text)
        .into_iter()
        .chain(local_address_warnings(&file, &text, &config))
    {
        tracing::warn!("{shown}: {w}");
    }
    Ok(Start {
        config,
        plan,
        metrics_listen: file.metrics_listen,
        privileges,
        sync_daemons: file.sync_daemons.clone(),
    })
}

/// `--check-config`: every error of the file, each with its line and what
/// to write instead; exit status 0 only for a file rvsd would run with.
pub(crate) fn check(path: &Path) -> i32 {
    let shown = path.display();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{shown}: cannot read: {e}");
            return 1;
        }
    };
    let file = match schema::Config::parse(&text) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{shown}: {e}");
            return 1;
        }
    };
    let no_interfaces = file
        .interfaces
        .is_empty()
        .then(|| NO_INTERFACES.to_string());
    let mut local_warnings = Vec::new();
    let (errors, services) = match engine_config(&file, &text, kernel::interface) {
        Err(errors) => (
            errors.into_iter().chain(no_interfaces).collect(),
            Vec::new(),
        ),
        Ok((config, _, _)) if no_interfaces.is_some() => {
            (no_interfaces.into_iter().collect(), config.services)
        }
        Ok((config, plan, origins)) => {
            local_warnings = local_address_warnings(&file, &text, &config);
            (
                validate(&file, &text, &config, plan, &origins),
                config.services,
            )
        }
    };
    let errors: Vec<String> = errors
        .into_iter()
        .chain(
            crate::privilege::plan(&file)
                .err()
                .map(|e| format!("{e:#}")),
        )
        .collect();
    // Warnings change nothing of the verdict: the file runs, but does
    // not do what it seems to.
    let mut warnings = fwmark_warnings(&file, &text);
    warnings.extend(local_warnings);
    for w in &warnings {
        eprintln!("{shown}: warning: {w}");
    }
    if errors.is_empty() {
        let servers: usize = services.iter().map(|s| s.dests.len()).sum();
        let warned = match warnings.len() {
            0 => String::new(),
            1 => ", 1 warning".into(),
            n => format!(", {n} warnings"),
        };
        println!(
            "{shown}: OK ({} services, {servers} real servers){warned}",
            services.len()
        );
        0
    } else {
        for e in &errors {
            eprintln!("{shown}: {e}");
        }
        eprintln!("{shown}: {} error(s); nothing was applied", errors.len());
        1
    }
}

/// The fwmark services no `[[fwmark]]` rule marks packets for (of their
/// mark and address family), each with the line of its `[[service]]`:
/// XDP sees no firewall marks and rvsd marks packets only by its own
/// rules, so such a service is valid yet receives no traffic (a migrated
/// keepalived fwmark virtual server whose rule was not filled in).
pub(crate) fn fwmark_warnings(file: &schema::Config, text: &str) -> Vec<String> {
    let lines = Lines::new(text);
    file.services
        .iter()
        .flat_map(|s| {
            let f = s.get_ref();
            let own = (f.fwmark, f.family.as_deref());
            let members = f.members.iter().map(|m| (m.fwmark, m.family.as_deref()));
            std::iter::once(own)
                .chain(members)
                .map(move |(mark, family)| (s, mark, family))
        })
        .filter_map(|(s, mark, family)| {
            let mark = mark?;
            let v6 = family == Some("ipv6");
            let covered = file.fwmarks.iter().any(|r| {
                r.mark == mark && parse_prefix(&r.address).is_some_and(|(a, _)| a.is_ipv6() == v6)
            });
            let family = if v6 { "IPv6" } else { "IPv4" };
            let what = match &s.get_ref().group {
                Some(g) => format!("[[service]] group = \"{g}\": member fwmark = {mark}"),
                None => format!("[[service]] fwmark = {mark}"),
            };
            (!covered).then(|| {
                format!(
                    "line {}: {what} has no [[fwmark]] rule with mark = \
                     {mark} for {family} addresses: rvsd marks packets only by its [[fwmark]] \
                     rules (XDP sees no firewall marks), so this service receives NO traffic; \
                     add one (docs/rvsd.md, \"Persistence, firewall marks\")",
                    lines.of(s.span().start)
                )
            })
        })
        .collect()
}

/// FullNAT local addresses that no interface of `config` holds, each with
/// the line of its `[[service]]`: the real servers answer them, and the
/// kernel answers ARP and neighbour solicitations only for its own
/// addresses, so replies reach the director only if a router routes the
/// address to it. Valid, so a warning.
pub(crate) fn local_address_warnings(
    file: &schema::Config,
    text: &str,
    config: &Config,
) -> Vec<String> {
    let lines = Lines::new(text);
    let held = |a: &IpAddr| {
        config
            .interfaces
            .iter()
            .any(|i| i.addrs.iter().any(|(b, _)| b == a))
    };
    let mut warned: Vec<IpAddr> = Vec::new();
    let mut out = Vec::new();
    for s in &file.services {
        for a in &s.get_ref().local_addresses {
            if held(a) || warned.contains(a) {
                continue;
            }
            warned.push(*a);
            out.push(format!(
                "line {}: local address {a} is not an address of any interface rvsd works \
                 on ({}): real servers answer it, so unless a router routes it to the director \
                 their replies are lost; add it to the servers' side, e.g. \
                 ip addr add {a}/{} dev {}",
                lines.of(s.span().start),
                file.interfaces.join(", "),
                if a.is_ipv4() { 24 } else { 64 },
                file.interfaces.last().map_or("eth1", String::as_str),
            ));
        }
    }
    out
}

const NO_INTERFACES: &str =
    "no interfaces: add interfaces = [\"eth0\"] (the interfaces rvsd receives and sends on)";

/// The engine's errors of `config`: each service on its own (with every
/// sorry server it may fall back to), so every faulty one is reported with
/// its line, then the whole (services defined twice, what the XDP maps
/// hold). Each service costs its own size: a large file is checked in
/// linear time. `origins` gives each service's `[[service]]` index.
fn validate(
    file: &schema::Config,
    text: &str,
    config: &Config,
    plan: HealthPlan,
    origins: &[usize],
) -> Vec<String> {
    let mut health = Health::new(None);
    health.replace_plan(plan);
    let config = health.with_sorry_servers(config);
    let validator = match Validator::new(&config) {
        Ok(v) => v,
        Err(e) => return vec![e.to_string()],
    };
    let lines = Lines::new(text);
    let mut errors = Vec::new();
    for (svc, &i) in config.services.iter().zip(origins) {
        if let Err(e) = validator.service(svc) {
            let line = file.services.get(i).map_or(0, |s| lines.of(s.span().start));
            errors.push(format!("line {line}: {e}"));
        }
    }
    if errors.is_empty() {
        if let Err(e) = Snapshot::new(config) {
            errors.push(e.to_string());
        }
    }
    errors
}

/// Where the lines of a text start, to turn a byte offset into a line
/// number in O(log n) (counting newlines from the start for each of n
/// services is O(n²) in a large file).
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Lines {
        Lines(
            text.bytes()
                .enumerate()
                .filter_map(|(i, b)| (b == b'\n').then_some(i))
                .collect(),
        )
    }

    /// The line (1-based) of byte `offset`.
    fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

/// `fast_path`, or the engine's default (on).
fn fast_path(file: &schema::Config) -> bool {
    file.fast_path
        .unwrap_or_else(|| Config::default().fast_path)
}

/// The `[defense]` table over the engine's defaults (validated with the
/// rest by the engine).
fn defense(file: &schema::Config) -> Defense {
    let mut d = Defense::default();
    if let Some(f) = file.defense {
        d.drop_entry = f.drop_entry.unwrap_or(d.drop_entry);
        d.drop_packet = f.drop_packet.unwrap_or(d.drop_packet);
        d.secure_tcp = f.secure_tcp.unwrap_or(d.secure_tcp);
        d.amemthresh = f.amemthresh.unwrap_or(d.amemthresh);
        d.am_droprate = f.am_droprate.unwrap_or(d.am_droprate);
    }
    d
}

/// A switch of the `[sysctl]` table, off when absent (the kernel's
/// default; the schema already refused anything but 0 and 1).
fn sysctl_switch(
    file: &schema::Config,
    key: impl Fn(&schema::Sysctl) -> Option<schema::Switch>,
) -> bool {
    file.sysctl.as_ref().and_then(key).is_some_and(|s| s.0)
}

/// The `[timeouts]` as the engine keeps them.
fn timeouts(file: &schema::Config) -> Timeouts {
    let mut t = Timeouts::default();
    if let Some(f) = file.timeouts {
        t.set(
            f.tcp.unwrap_or(0),
            f.tcpfin.unwrap_or(0),
            f.udp.unwrap_or(0),
        );
    }
    t
}

/// The services in engine terms (the engine validates them further).
#[cfg(test)]
fn engine_services(file: &schema::Config) -> anyhow::Result<Vec<Service>> {
    let mut services = Vec::new();
    for (i, s) in file.services.iter().enumerate() {
        for key in service_keys(s.get_ref(), i)? {
            services.push(to_engine(s.get_ref(), key, i)?);
        }
    }
    Ok(services)
}

/// The firewall-mark classifier rules.
fn engine_fwmarks(file: &schema::Config) -> anyhow::Result<Vec<FwmarkRule>> {
    file.fwmarks
        .iter()
        .map(|r| {
            let (addr, prefix_len) = parse_prefix(&r.address).ok_or_else(|| {
                anyhow!("[[fwmark]] mark {}: address '{}' is not an address or prefix like 10.0.100.0/24", r.mark, r.address)
            })?;
            Ok(FwmarkRule {
                mark: r.mark,
                protocol: r.protocol,
                addr,
                prefix_len,
                ports: r.ports.clone(),
            })
        })
        .collect()
}

fn parse_prefix(s: &str) -> Option<(IpAddr, u8)> {
    match s.split_once('/') {
        Some((a, l)) => Some((a.parse().ok()?, l.parse().ok()?)),
        None => {
            let a: IpAddr = s.parse().ok()?;
            Some((a, if a.is_ipv4() { 32 } else { 128 }))
        }
    }
}

/// `-M`: a dotted IPv4 netmask (contiguous) or a prefix length.
fn parse_netmask(s: &str) -> Option<u8> {
    if let Ok(m) = s.parse::<std::net::Ipv4Addr>() {
        let bits = u32::from(m);
        let ones = bits.leading_ones();
        return (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8);
    }
    s.trim_start_matches('/').parse().ok()
}

/// The health configuration of this service.
fn health(file: &schema::Service, svc: &Service) -> Result<ServiceHealth, String> {
    let spec: ServiceHealthSpec = toml::Value::Table(file.health_table())
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())?;
    let mut servers = std::collections::HashMap::new();
    for r in &file.real_servers {
        let mut t = toml::Table::new();
        if let Some(i) = r.inhibit_on_failure {
            t.insert("inhibit_on_failure".into(), toml::Value::Boolean(i));
        }
        for (key, command) in [("notify_up", &r.notify_up), ("notify_down", &r.notify_down)] {
            if let Some(c) = command {
                t.insert(key.into(), toml::Value::String(c.clone()));
            }
        }
        // Each check on its own first, so an error names which one.
        for (n, c) in r.check.iter().enumerate() {
            let one: Result<rvs_health::CheckSpec, _> = c.clone().try_into();
            if let Err(e) = one {
                let kind = c.get("type").and_then(|t| t.as_str()).unwrap_or("?");
                return Err(format!(
                    "real server {}, check #{} ({kind}): {}",
                    r.address,
                    n + 1,
                    e.message()
                ));
            }
        }
        t.insert("check".into(), toml::Value::Array(r.check.clone()));
        let rs: RealServerHealthSpec = toml::Value::Table(t)
            .try_into()
            .map_err(|e: toml::de::Error| format!("real server {}: {}", r.address, e.message()))?;
        servers.insert(checked_server(r, svc.key), rs);
    }
    Ok(ServiceHealth {
        spec,
        servers,
        group: None,
        checked_as: Default::default(),
    })
}

/// The address and port real server `r` of a `[[service]]` whose (first)
/// service is `first` is checked at and known to health by: its port, else
/// the service's. A group's real server is one whatever the members.
fn checked_server(r: &schema::RealServer, first: ServiceKey) -> SocketAddr {
    SocketAddr::new(r.address, r.port.unwrap_or(first.port))
}

/// The virtual services a `[[service]]` defines: its own, or each member
/// of its group.
fn service_keys(file: &schema::Service, index: usize) -> anyhow::Result<Vec<ServiceKey>> {
    let which = || format!("[[service]] #{}", index + 1);
    let Some(name) = &file.group else {
        if !file.members.is_empty() {
            bail!(
                "{}: [[service.member]] tables need group = \"NAME\" in their [[service]] \
                 (or write a [[service]] per member)",
                which()
            );
        }
        return Ok(vec![key_of(
            (file.fwmark, file.protocol, file.address, file.port),
            file.family.as_deref(),
            &which(),
        )?]);
    };
    let which = || format!("[[service]] group = \"{name}\"");
    if name.trim().is_empty() {
        bail!("{}: the group's name is empty; name it", which());
    }
    if file.fwmark.is_some()
        || file.protocol.is_some()
        || file.address.is_some()
        || file.port.is_some()
        || file.family.is_some()
    {
        bail!(
            "{}: a group's services are its [[service.member]] tables: move protocol, \
             address, port, fwmark and family into one",
            which()
        );
    }
    if file.members.is_empty() {
        bail!(
            "{}: the group has no members; add [[service.member]] tables (protocol, address \
             and port, or fwmark)",
            which()
        );
    }
    let mut keys: Vec<ServiceKey> = Vec::with_capacity(file.members.len());
    for (n, m) in file.members.iter().enumerate() {
        let key = key_of(
            (m.fwmark, m.protocol, m.address, m.port),
            m.family.as_deref(),
            &format!("{}, member #{}", which(), n + 1),
        )?;
        if keys.contains(&key) {
            bail!(
                "{}: member #{} is {key} again; list each member once",
                which(),
                n + 1
            );
        }
        keys.push(key);
    }
    Ok(keys)
}

/// The key of a service or group member from what it names.
fn key_of(
    (fwmark, protocol, address, port): (Option<u32>, Option<Protocol>, Option<IpAddr>, Option<u16>),
    family: Option<&str>,
    which: &str,
) -> anyhow::Result<ServiceKey> {
    Ok(match (fwmark, protocol, address, port) {
        (Some(mark), None, None, None) => {
            let v6 = match family {
                None | Some("ipv4") => false,
                Some("ipv6") => true,
                Some(other) => {
                    bail!("{which}: family '{other}' must be ipv4 or ipv6")
                }
            };
            ServiceKey::fwmark(mark, v6)
        }
        (None, Some(p), Some(a), Some(port)) => ServiceKey::new(p, a, port),
        _ => bail!("{which}: give either protocol, address and port, or fwmark (not both)"),
    })
}

/// FullNAT's port range: the file's, or the engine's default (1024–32767).
/// A reversed or zero range is the engine's to refuse, with its message.
fn local_port_range(file: &schema::Config) -> (u16, u16) {
    file.local_port_range
        .map_or(rvs_engine::config::DEFAULT_LOCAL_PORT_RANGE, |r| (r.0, r.1))
}

/// The engine service `file` describes under `key` (its own, or one of
/// its group's members).
fn to_engine(file: &schema::Service, key: ServiceKey, index: usize) -> anyhow::Result<Service> {
    let which = || format!("[[service]] #{}", index + 1);
    let full = if key.addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match &file.persistence_netmask {
        None => full,
        Some(m) => parse_netmask(m).ok_or_else(|| {
            anyhow!("{}: persistence_netmask '{m}' must be a contiguous netmask like 255.255.255.0 or a prefix length", which())
        })?,
    };
    if file.persistence_netmask.is_some() && file.persistence_timeout.is_none() {
        bail!("{}: persistence_netmask needs persistence_timeout", which());
    }
    let flags = rvs_vocab::sched::flag_bits(&file.scheduler_flags)
        .map_err(|e| anyhow!("{}: {e}", which()))?;
    let svc_port = key.port;
    Ok(Service {
        key,
        scheduler: file.scheduler.clone(),
        sched_flags: flags,
        persistence: file.persistence_timeout.map(|timeout| Persistence {
            timeout,
            prefix_len,
        }),
        one_packet: file.one_packet,
        // A group's members all connect from the group's local addresses.
        local_addresses: file.local_addresses.clone(),
        toa: file.toa,
        dests: file
            .real_servers
            .iter()
            .map(|r| {
                let tunnel = r
                    .tunnel()
                    .map_err(|e| anyhow!("{}: real server {}: {e}", which(), r.address))?;
                Ok(Dest {
                    addr: r.address,
                    // DR and TUN cannot change the port: in a group each
                    // member's real server gets the member's, as the kernel
                    // gets it from keepalived (a service of its own is
                    // refused with a wrong one instead). NAT and FullNAT
                    // translate it.
                    port: match (&file.group, r.method) {
                        (Some(_), m) if !m.translates() => svc_port,
                        _ => r.port.unwrap_or(svc_port),
                    },
                    weight: r.weight,
                    method: r.method,
                    tunnel,
                    upper_threshold: r.upper_threshold.unwrap_or(0),
                    lower_threshold: r.lower_threshold.unwrap_or(0),
                })
            })
            .collect::<anyhow::Result<_>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_engine::ForwardMethod;

    #[test]
    fn documented_example_parses() {
        let c = schema::Config::parse(
            r#"
interfaces = ["front", "back"]
max_connections = 1000
[timeouts]
tcp = 600
[[service]]
protocol = "tcp"
address = "10.0.100.1"
port = 80
scheduler = "rr"
  [[service.real_server]]
  address = "10.0.2.11"
  method = "nat"
  port = 8080
  weight = 3
  [[service.real_server]]
  address = "10.0.2.12"
"#,
        )
        .unwrap();
        assert_eq!(c.interfaces, vec!["front", "back"]);
        assert_eq!(timeouts(&c).tcp[1], 600);
        let s = engine_services(&c).unwrap();
        assert_eq!(s[0].dests[0].method, ForwardMethod::Masq);
        assert_eq!((s[0].dests[0].port, s[0].dests[0].weight), (8080, 3));
        assert_eq!((s[0].dests[1].port, s[0].dests[1].weight), (80, 1));
        assert_eq!(s[0].dests[1].method, ForwardMethod::Route);
    }

    #[test]
    fn tunnel_keys_reach_the_engine_and_mistakes_name_the_server() {
        let file = |keys: &str| {
            schema::Config::parse(&format!(
                "interfaces = [\"eth0\"]\n[[service]]\nprotocol = \"tcp\"\naddress = \"10.0.100.1\"\nport = 80\n[[service.real_server]]\naddress = \"10.0.2.11\"\n{keys}\n"
            ))
            .unwrap()
        };
        let s = engine_services(&file(
            "method = \"tun\"\ntun_type = \"gue\"\ntun_port = 6080\ntun_checksum = \"csum\"",
        ))
        .unwrap();
        assert_eq!(
            s[0].dests[0].tunnel,
            rvs_engine::Tunnel::Gue {
                port: 6080,
                checksum: rvs_engine::TunnelChecksum::Csum
            }
        );
        let s = engine_services(&file("method = \"tun\"\ntun_type = \"gre\"")).unwrap();
        assert_eq!(
            s[0].dests[0].tunnel,
            rvs_engine::Tunnel::Gre {
                checksum: rvs_engine::TunnelChecksum::Nocsum
            }
        );
        let e = engine_services(&file(
            "method = \"tun\"\ntun_type = \"gre\"\ntun_checksum = \"remcsum\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("real server 10.0.2.11") && e.contains("GUE tunnels only"),
            "{e}"
        );
        let e = engine_services(&file("tun_type = \"gue\"\ntun_port = 1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("need method = \"tun\""), "{e}");
    }

    #[test]
    fn lines_are_counted_as_the_schema_counts_them() {
        let text =
            "interfaces = [\"eth0\"]\n\n[[service]]\nfwmark = 1\n\n\n[[service]]\nfwmark = 2\n";
        let c = schema::Config::parse(text).unwrap();
        let lines = Lines::new(text);
        for (i, s) in c.services.iter().enumerate() {
            assert_eq!(lines.of(s.span().start), c.service_line(text, i));
        }
        assert_eq!((lines.of(0), lines.of(text.len())), (1, 9));
    }

    #[test]
    fn defense_table_sets_what_it_names_and_refuses_unknown_keys() {
        let base = "interfaces = [\"eth0\"]\n";
        assert_eq!(
            defense(&schema::Config::parse(base).unwrap()),
            Defense::default()
        );
        let c = schema::Config::parse(&format!(
            "{base}[defense]\ndrop_entry = 1\nsecure_tcp = 3\namemthresh = 500\n"
        ))
        .unwrap();
        let d = defense(&c);
        assert_eq!(
            (
                d.drop_entry,
                d.drop_packet,
                d.secure_tcp,
                d.amemthresh,
                d.am_droprate
            ),
            (1, 0, 3, 500, 10)
        );
        let e = schema::Config::parse(&format!("{base}[defense]\ndrop_entries = 1\n")).unwrap_err();
        assert!(e.to_string().contains("drop_entries"), "{e}");
        let e = schema::Config::parse(&format!("{base}[defense]\nsecure_tcp = -1\n")).unwrap_err();
        assert!(e.to_string().contains("secure_tcp"), "{e}");
        // In range for the file, refused by the engine with the fix.
        let c = schema::Config::parse(&format!("{base}[defense]\ndrop_packet = 4\n")).unwrap();
        let cfg = Config {
            defense: defense(&c),
            ..Config::default()
        };
        let e = rvs_engine::Snapshot::new(cfg).unwrap_err().to_string();
        assert!(
            e.contains("drop_packet = 4") && e.contains("0 (off)"),
            "{e}"
        );
    }

    #[test]
    fn sysctl_table_sets_sloppy_scheduling_and_refuses_bad_values() {
        let base = "interfaces = [\"eth0\"]\n";
        let parse = |extra: &str| schema::Config::parse(&format!("{base}{extra}"));
        let c = parse("").unwrap();
        assert!(!sysctl_switch(&c, |s| s.sloppy_tcp));
        let c = parse("[sysctl]\nsloppy_tcp = 1\n").unwrap();
        assert!(sysctl_switch(&c, |s| s.sloppy_tcp));
        assert!(!sysctl_switch(&c, |s| s.sloppy_sctp));
        let c =
            parse("[sysctl]\nsloppy_tcp = 0\nsloppy_sctp = 1\nsync_persist_mode = 1\n").unwrap();
        assert!(!sysctl_switch(&c, |s| s.sloppy_tcp));
        assert!(sysctl_switch(&c, |s| s.sync_persist_mode));
        assert!(sysctl_switch(&c, |s| s.sloppy_sctp));
        let e = parse("[sysctl]\nsloppy_tcp = 2\n").unwrap_err().to_string();
        assert!(
            e.contains("use 0 (off) or 1 (on)") && e.contains("line 3"),
            "{e}"
        );
        let e = parse("[sysctl]\nsloppy = 1\n").unwrap_err().to_string();
        assert!(e.contains("sloppy_tcp"), "{e}");
    }

    #[test]
    fn fast_path_switch_defaults_on_and_takes_only_a_boolean() {
        let base = "interfaces = [\"eth0\"]\n";
        assert!(fast_path(&schema::Config::parse(base).unwrap()));
        let off = schema::Config::parse(&format!("{base}fast_path = false\n")).unwrap();
        assert!(!fast_path(&off));
        let e = schema::Config::parse(&format!("{base}fast_path = \"off\"\n")).unwrap_err();
        assert!(e.to_string().contains("fast_path"), "{e}");
    }

    #[test]
    fn persistence_fwmark_and_flags() {
        let c = schema::Config::parse(
            r#"
interfaces = ["eth0"]
[[fwmark]]
mark = 3
protocol = "tcp"
address = "10.0.100.1"
ports = [80, 443]
[[service]]
fwmark = 3
scheduler = "sh"
scheduler_flags = ["sh-port", "sh-fallback"]
persistence_timeout = 600
persistence_netmask = "255.255.255.0"
[[service]]
protocol = "udp"
address = "10.0.100.1"
port = 53
scheduler = "rr"
one_packet = true
"#,
        )
        .unwrap();
        let s = engine_services(&c).unwrap();
        assert_eq!(s[0].key, ServiceKey::fwmark(3, false));
        assert_eq!(s[0].sched_flags, 0x18);
        assert_eq!(
            s[0].persistence,
            Some(Persistence {
                timeout: 600,
                prefix_len: 24
            })
        );
        assert!(s[1].one_packet);
        let f = engine_fwmarks(&c).unwrap();
        assert_eq!(
            (f[0].mark, f[0].prefix_len, f[0].ports.clone()),
            (3, 32, vec![80, 443])
        );
        let bad = schema::Config::parse("[[service]]\nfwmark = 1\nport = 80\n").unwrap();
        let e = engine_services(&bad).unwrap_err().to_string();
        assert!(
            e.contains("either protocol, address and port, or fwmark"),
            "{e}"
        );
        let bad = schema::Config::parse(
            "[[service]]\nfwmark = 1\npersistence_timeout = 5\npersistence_netmask = \"255.0.255.0\"\n",
        )
        .unwrap();
        assert!(engine_services(&bad)
            .unwrap_err()
            .to_string()
            .contains("contiguous"));
    }

    #[test]
    fn fwmark_services_without_a_rule_of_their_mark_and_family_are_warned_about() {
        let text = r#"interfaces = ["eth0"]
[[fwmark]]
mark = 1
address = "10.0.100.1"
[[fwmark]]
mark = 2
address = "2001:db8::1"
[[service]]
fwmark = 1
[[service]]
fwmark = 2
[[service]]
fwmark = 2
family = "ipv6"
[[service]]
fwmark = 3
family = "ipv6"
[[service]]
protocol = "tcp"
address = "10.0.100.1"
port = 80
[[service]]
group = "g"
  [[service.member]]
  fwmark = 1
  [[service.member]]
  fwmark = 4
"#;
        let c = schema::Config::parse(text).unwrap();
        let w = fwmark_warnings(&c, text);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[2].starts_with("line 22: [[service]] group = \"g\": member fwmark = 4 has no"),
            "{w:?}"
        );
        assert!(
            w[0].starts_with("line 10: [[service]] fwmark = 2 has no [[fwmark]] rule with mark = 2 for IPv4 addresses"),
            "{w:?}"
        );
        assert!(
            w[1].starts_with(
                "line 15: [[service]] fwmark = 3 has no [[fwmark]] rule with mark = 3 for IPv6"
            ),
            "{w:?}"
        );
        assert!(w[1].contains("receives NO traffic"), "{w:?}");
    }

    /// The errors `engine_config` finds in `text` (no interfaces).
    fn errors_of(text: &str) -> Vec<String> {
        let file = schema::Config::parse(text).unwrap_or_else(|e| panic!("{e}"));
        match engine_config(&file, text, |_| unreachable!("no interfaces")) {
            Ok(_) => Vec::new(),
            Err(e) => e,
        }
    }

    #[test]
    fn a_masters_sync_threshold_is_read_and_checked() {
        let daemon = |extra: &str| {
            format!("[[sync_daemon]]\nrole = \"master\"\nmcast_interface = \"eth2\"\n{extra}\n")
        };
        let text = daemon("sync_threshold = [10, 20]");
        let file = schema::Config::parse(&text).unwrap();
        assert_eq!(
            file.sync_daemons[0].threshold(),
            rvs_vocab::sync::SyncThreshold {
                threshold: 10,
                period: 20
            }
        );
        assert!(errors_of(&text).is_empty());
        assert_eq!(
            schema::Config::parse(&daemon("")).unwrap().sync_daemons[0].threshold(),
            rvs_vocab::sync::SyncThreshold::DEFAULT
        );
        assert_eq!(
            errors_of(&daemon("sync_threshold = [50, 50]")),
            vec![
                "[[sync_daemon]] master: sync_threshold = [50, 50]: the threshold must be \
                  below the period (or the period 0)"
            ]
        );
        assert!(schema::Config::parse(&daemon("sync_threshold = [3]")).is_err());
    }

    const MEMBERS: &str = "  [[service.member]]\n  protocol = \"tcp\"\n  address = \"10.0.100.1\"\n  port = 80\n  [[service.member]]\n  fwmark = 7\n";
    const SERVER: &str =
        "  [[service.real_server]]\n  address = \"10.0.2.11\"\n  port = 8080\n  method = \"nat\"\n";

    #[test]
    fn a_group_is_one_engine_service_per_member_with_one_health_plan() {
        let text = format!(
            "[[service]]\nprotocol = \"udp\"\naddress = \"10.0.100.9\"\nport = 53\n\
             [[service]]\ngroup = \"web\"\nscheduler = \"rr\"\npersistence_timeout = 60\n\
             quorum = 1\n{MEMBERS}{SERVER}"
        );
        let file = schema::Config::parse(&text).unwrap();
        let (config, plan, origins) = engine_config(&file, &text, |_| unreachable!()).unwrap();
        let keys: Vec<String> = config.services.iter().map(|s| s.key.to_string()).collect();
        assert_eq!(keys, ["UDP 10.0.100.9:53", "TCP 10.0.100.1:80", "FWM 7"]);
        assert_eq!(origins, [0, 1, 1]);
        for s in &config.services[1..] {
            assert_eq!(
                (s.scheduler.as_str(), s.persistence.unwrap().timeout),
                ("rr", 60)
            );
            assert_eq!(s.dests.len(), 1);
            assert_eq!(s.dests[0].port, 8080);
            assert_eq!(plan[&s.key].group.as_deref(), Some("web"));
        }
        assert_eq!(plan[&config.services[0].key].group, None);
    }

    #[test]
    fn bad_groups_are_refused_whole_with_what_to_write() {
        let tcp80 = "[[service]]\nprotocol = \"tcp\"\naddress = \"10.0.100.1\"\nport = 80\n";
        for (text, says) in [
            (
                format!("[[service]]\ngroup = \"web\"\n{SERVER}"),
                "group = \"web\": the group has no members",
            ),
            (
                format!("[[service]]\nfwmark = 3\n{MEMBERS}"),
                "[[service.member]] tables need group = \"NAME\"",
            ),
            (
                format!("[[service]]\ngroup = \"web\"\nfwmark = 3\n{MEMBERS}"),
                "move protocol, address, port, fwmark and family into one",
            ),
            (
                format!("[[service]]\ngroup = \" \"\n{MEMBERS}"),
                "the group's name is empty",
            ),
            (
                format!("[[service]]\ngroup = \"web\"\n{MEMBERS}  [[service.member]]\n  fwmark = 7\n"),
                "member #3 is FWM 7 again",
            ),
            (
                "[[service]]\ngroup = \"web\"\n  [[service.member]]\n  fwmark = 7\n  port = 3\n".to_string(),
                "member #1: give either protocol, address and port, or fwmark",
            ),
            (
                format!("{tcp80}[[service]]\ngroup = \"web\"\n{MEMBERS}"),
                "line 5: [[service]] group = \"web\" (line 5): service TCP 10.0.100.1:80 is defined by [[service]] TCP 10.0.100.1:80 (line 1) already",
            ),
            (
                format!("[[service]]\ngroup = \"web\"\n{MEMBERS}{tcp80}"),
                "service TCP 10.0.100.1:80 is defined by [[service]] group = \"web\" (line 1) already",
            ),
            (
                format!("[[service]]\ngroup = \"a\"\n{MEMBERS}[[service]]\ngroup = \"b\"\n{MEMBERS}"),
                "is defined by [[service]] group = \"a\"",
            ),
            (
                format!("[[service]]\ngroup = \"a\"\n{MEMBERS}[[service]]\ngroup = \"a\"\n  [[service.member]]\n  fwmark = 9\n"),
                "a group of that name is defined at line 1 already",
            ),
        ] {
            let e = errors_of(&text);
            assert!(e.iter().any(|e| e.contains(says)), "{text}\n→ {e:?}\nwanted: {says}");
        }
    }

    #[test]
    fn a_dr_group_s_real_server_takes_each_member_s_port_and_is_checked_once() {
        let text = "[[service]]\ngroup = \"web\"\n  [[service.member]]\n  protocol = \"tcp\"\n  address = \"10.0.100.1\"\n  port = 80\n  [[service.member]]\n  protocol = \"tcp\"\n  address = \"10.0.100.1\"\n  port = 443\n  [[service.real_server]]\n  address = \"10.0.2.11\"\n  port = 80\n  [[service.real_server]]\n  address = \"10.0.2.12\"\n  port = 8080\n  method = \"nat\"\n";
        let file = schema::Config::parse(text).unwrap();
        let (config, plan, _) = engine_config(&file, text, |_| unreachable!()).unwrap();
        let ports: Vec<Vec<u16>> = config
            .services
            .iter()
            .map(|s| s.dests.iter().map(|d| d.port).collect())
            .collect();
        assert_eq!(
            ports,
            [[80, 8080], [443, 8080]],
            "DR keeps the member's port, NAT its own"
        );
        let https = &plan[&config.services[1].key];
        let as_checked = |a: &str| https.checked_as[&a.parse().unwrap()].to_string();
        assert_eq!(as_checked("10.0.2.11:443"), "10.0.2.11:80");
        assert_eq!(as_checked("10.0.2.12:8080"), "10.0.2.12:8080");
        let mut keys: Vec<String> = https.servers.keys().map(ToString::to_string).collect();
        keys.sort();
        assert_eq!(keys, ["10.0.2.11:80", "10.0.2.12:8080"]);
        assert!(errors_of(text).is_empty());
    }

    #[test]
    fn fullnat_keys_reach_the_engine_and_a_group_s_members_take_the_group_s() {
        let text = "local_port_range = [2000, 2999]\n[[service]]\ngroup = \"web\"\n\
                    local_addresses = [\"10.0.2.200\", \"10.0.2.201\"]\ntoa = true\n\
                    [[service.member]]\nprotocol = \"tcp\"\naddress = \"10.0.100.1\"\nport = 80\n\
                    [[service.member]]\nprotocol = \"tcp\"\naddress = \"10.0.100.1\"\nport = 443\n\
                    [[service.real_server]]\naddress = \"10.0.2.11\"\nport = 8080\nmethod = \"fullnat\"\n";
        let file = schema::Config::parse(text).unwrap();
        let (config, _, _) = engine_config(&file, text, |_| unreachable!()).unwrap();
        assert_eq!(config.local_port_range, (2000, 2999));
        let laddrs: Vec<IpAddr> =
            vec!["10.0.2.200".parse().unwrap(), "10.0.2.201".parse().unwrap()];
        assert_eq!(config.services.len(), 2);
        for s in &config.services {
            assert_eq!(s.local_addresses, laddrs, "{}", s.key);
            assert!(s.toa, "{}", s.key);
            // FullNAT translates the port: the server's own, not the member's.
            assert_eq!(s.dests[0].method, ForwardMethod::FullNat);
            assert_eq!(s.dests[0].port, 8080, "{}", s.key);
        }
        // Without the keys: none, off, the engine's default range.
        let text = "[[service]]\nfwmark = 1\n";
        let file = schema::Config::parse(text).unwrap();
        let (config, _, _) = engine_config(&file, text, |_| unreachable!()).unwrap();
        assert_eq!(
            config.local_port_range,
            rvs_engine::config::DEFAULT_LOCAL_PORT_RANGE
        );
        assert!(config.services[0].local_addresses.is_empty() && !config.services[0].toa);
    }

    #[test]
    fn a_local_address_no_interface_holds_is_warned_about_once_with_its_line() {
        let text = "interfaces = [\"front\", \"back\"]\n\
                    [[service]]\nfwmark = 1\nlocal_addresses = [\"10.0.2.1\", \"10.0.2.200\"]\n\
                    [[service]]\nfwmark = 2\nlocal_addresses = [\"10.0.2.200\", \"fd00::200\"]\n";
        let file = schema::Config::parse(text).unwrap();
        let config = Config {
            interfaces: vec![rvs_engine::Interface {
                index: rvs_engine::IfIndex(3),
                name: "back".into(),
                mac: rvs_wire::EthernetAddress([2, 0, 0, 0, 0, 3]),
                addrs: vec![("10.0.2.1".parse().unwrap(), 24)],
                mtu: 1500,
            }],
            ..Config::default()
        };
        let w = local_address_warnings(&file, text, &config);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("line 2: local address 10.0.2.200 is not an address of any interface rvsd works on (front, back)"),
            "{w:?}"
        );
        assert!(
            w[0].ends_with("ip addr add 10.0.2.200/24 dev back"),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("line 5: local address fd00::200")
                && w[1].ends_with("ip addr add fd00::200/64 dev back"),
            "{w:?}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_a_location() {
        let e = schema::Config::parse("interfaces = [\"a\"]\nmax_conections = 5\n").unwrap_err();
        assert!(e.to_string().contains("max_conections"), "{e}");
        let e = schema::Config::parse(
            "[[service]]\nprotocol = \"icmp\"\naddress = \"10.0.0.1\"\nport = 1\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
