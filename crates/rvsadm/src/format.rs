//! `Listing` → text, byte for byte as ipvsadm 1.31 prints `-L`.
//!
//! Pure: reverse lookups go through [`Names`]; `-n` uses [`Numeric`].
//! Column widths follow ipvsadm's printf formats (`%-33s` for the stats
//! service column, `%-28s %-7s %-6d %-10u %-10u` for real servers, including
//! the trailing blanks), and IPv4 names are cut at 33/28 bytes as ipvsadm does.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use rvs_api::{DestStatus, Listing, Protocol, ServiceKey, ServiceStatus};

use crate::parse::{sched_flag_number, ListRequest};

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

/// libipvs's sort order: family, protocol, address, port.
fn cmp_keys(a: &ServiceKey, b: &ServiceKey) -> Ordering {
    (a.addr.is_ipv6(), a.protocol, a.addr, a.port).cmp(&(
        b.addr.is_ipv6(),
        b.protocol,
        b.addr,
        b.port,
    ))
}

fn cmp_dests(a: &DestStatus, b: &DestStatus) -> Ordering {
    (a.spec.addr.is_ipv6(), a.spec.addr, a.spec.port).cmp(&(
        b.spec.addr.is_ipv6(),
        b.spec.addr,
        b.spec.port,
    ))
}

fn title(out: &mut String, req: &ListRequest) {
    if req.stats {
        let _ = writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        );
    } else if req.thresholds {
        let _ = writeln!(
            out,
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        );
    } else {
        out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        );
    }
}

/// `(sh-fallback,sh-port)` style flag names for the service's scheduler.
fn sched_flags(sched: &str, flags: &[String]) -> Option<String> {
    let mut bits = [false; 3];
    for f in flags {
        if let Some(n) = sched_flag_number(f) {
            bits[usize::from(n - 1)] = true;
        }
    }
    let names: Vec<String> = bits
        .iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(i, _)| match (sched, i) {
            ("sh" | "mh", 0) => format!("{sched}-fallback"),
            ("sh" | "mh", 1) => format!("{sched}-port"),
            _ => format!("flag-{}", i + 1),
        })
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

fn service_entry(out: &mut String, svc: &ServiceStatus, req: &ListRequest, names: &dyn Names) {
    let key = &svc.spec.key;
    let v6 = key.addr.is_ipv6();
    let vname = addrport(key.addr, key.port, key.protocol, names);
    let mut svc_name = format!("{}  {}", key.protocol.name(), vname);
    if !v6 {
        svc_name = truncate(svc_name, 33);
    }

    if req.stats {
        let _ = write!(out, "{svc_name:<33}");
        let s = &svc.stats;
        for n in [
            s.conns,
            s.in_packets,
            s.out_packets,
            s.in_bytes,
            s.out_bytes,
        ] {
            largenum(out, n, req.exact);
        }
    } else {
        let spec = &svc.spec;
        let _ = write!(out, "{svc_name} {}", spec.scheduler);
        if let Some(f) = sched_flags(&spec.scheduler, &spec.flags) {
            let _ = write!(out, " ({f})");
        }
        if let Some(t) = spec.persistence_timeout {
            let _ = write!(out, " persistent {t}");
            match (key.addr, spec.netmask) {
                (IpAddr::V4(_), Some(p)) if p < 32 => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
                    let _ = write!(out, " mask {}", Ipv4Addr::from(mask));
                }
                (IpAddr::V6(_), Some(p)) if p < 128 => {
                    let _ = write!(out, " mask {p}");
                }
                _ => {}
            }
        }
    }
    out.push('\n');

    let mut dests: Vec<&DestStatus> = svc.dests.iter().collect();
    if !req.nosort {
        dests.sort_by(|a, b| cmp_dests(a, b));
    }
    for d in dests {
        let mut dname = addrport(d.spec.addr, d.spec.port, key.protocol, names);
        if !d.spec.addr.is_ipv6() {
            dname = truncate(dname, 28);
        }
        if req.stats {
            let _ = write!(out, "  -> {dname:<28}");
            let s = &d.stats;
            for n in [
                s.conns,
                s.in_packets,
                s.out_packets,
                s.in_bytes,
                s.out_bytes,
            ] {
                largenum(out, n, req.exact);
            }
            out.push('\n');
        } else if req.thresholds {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                d.spec.upper_threshold, d.spec.lower_threshold, d.active_conns, d.inactive_conns
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

/// Why a single-service listing printed nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NoSuchService;

/// The text of `ipvsadm -L` for `req`: the whole table, or with
/// `req.service` that one service without the version line, as ipvsadm does.
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
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "IP Virtual Server version {IPVS_VERSION} (size={})",
        listing.conn_table_size
    );
    title(&mut out, req);
    let mut services: Vec<&ServiceStatus> = listing.services.iter().collect();
    if !req.nosort {
        services.sort_by(|a, b| cmp_keys(&a.spec.key, &b.spec.key));
    }
    for svc in services {
        service_entry(&mut out, svc, req, names);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
