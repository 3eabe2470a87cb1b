//! The API's types ↔ the engine's: keys, services, real servers, counters
//! and connection entries.

use std::net::IpAddr;

use rvs_api::{ConnectionEntry, ControlError, DestSpec, Family, ServiceSpec};
use rvs_engine::{ConfigError, ConnInfo, Dest, Protocol, Service, ServiceKey, Stats};

use crate::estimator::Rates;

pub(super) fn api_spec(s: &Service) -> ServiceSpec {
    let full = if s.key.addr.is_ipv4() { 32 } else { 128 };
    // sh/mh flags are shown under their scheduler's names, as ipvsadm does.
    let flags = rvs_vocab::sched::flag_names(&s.scheduler, s.sched_flags);
    ServiceSpec {
        key: api_key(&s.key),
        scheduler: s.scheduler.clone(),
        persistence_timeout: s.persistence.map(|p| p.timeout),
        netmask: s
            .persistence
            .and_then(|p| (p.prefix_len != full).then_some(p.prefix_len)),
        flags,
        one_packet: s.one_packet,
        local_addresses: s.local_addresses.clone(),
        toa: s.toa,
    }
}

pub(super) fn engine_key(k: &rvs_api::ServiceKey) -> ServiceKey {
    match *k {
        rvs_api::ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => ServiceKey::new(protocol, addr, port),
        rvs_api::ServiceKey::Fwmark { mark, af } => ServiceKey::fwmark(mark, af == Family::Ipv6),
    }
}

pub(super) fn api_key(k: &ServiceKey) -> rvs_api::ServiceKey {
    if k.is_fwmark() {
        return rvs_api::ServiceKey::Fwmark {
            mark: k.fwmark,
            af: if k.addr.is_ipv6() {
                Family::Ipv6
            } else {
                Family::Ipv4
            },
        };
    }
    rvs_api::ServiceKey::addr(k.protocol, k.addr, k.port)
}

pub(super) fn engine_dest(d: &DestSpec) -> Dest {
    Dest {
        addr: d.addr,
        port: d.port,
        weight: d.weight,
        method: d.method,
        tunnel: d.tunnel,
        upper_threshold: d.upper_threshold,
        lower_threshold: d.lower_threshold,
    }
}

pub(super) fn api_dest(d: &Dest) -> DestSpec {
    DestSpec {
        addr: d.addr,
        port: d.port,
        weight: d.weight,
        method: d.method,
        tunnel: d.tunnel,
        upper_threshold: d.upper_threshold,
        lower_threshold: d.lower_threshold,
    }
}

pub(super) fn api_stats(s: &Stats, r: Rates) -> rvs_api::Stats {
    rvs_api::Stats {
        conns: s.conns,
        in_packets: s.in_packets,
        out_packets: s.out_packets,
        in_bytes: s.in_bytes,
        out_bytes: s.out_bytes,
        cps: r.cps,
        in_pps: r.in_pps,
        out_pps: r.out_pps,
        in_bps: r.in_bps,
        out_bps: r.out_bps,
    }
}

/// The engine's refusal of a configuration, for the operator.
pub(super) fn refused(e: ConfigError) -> ControlError {
    ControlError::bad_request(e.to_string())
}

/// A connection or template as `ipvsadm -Lc` lists it. A template of a
/// mark service (protocol 0) carries its mark as its IPv4 virtual address.
pub(super) fn api_connection(c: &ConnInfo) -> ConnectionEntry {
    let fwmark = (c.template && c.protocol == 0).then(|| match c.virtual_.0 {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(_) => 0,
    });
    ConnectionEntry {
        protocol: Protocol::from_number(c.protocol).unwrap_or(Protocol::Tcp),
        client: c.client,
        virtual_: c.virtual_,
        dest: c.dest,
        state: c.state.to_string(),
        expires_secs: c.expires_in_secs,
        template: c.template,
        fwmark,
        local: c.local,
    }
}
