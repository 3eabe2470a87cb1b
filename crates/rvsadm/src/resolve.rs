//! The system resolver (NSS: /etc/hosts, DNS, /etc/services), as ipvsadm
//! uses it: names accepted on input, reverse lookups in listings without
//! `-n`, falling back to numbers whenever a lookup fails.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use dns_lookup::{getaddrinfo, getnameinfo, AddrInfoHints};
use rvs_api::Protocol;

use crate::format::Names;
use crate::parse::Lookup;

/// Resolution through libc's resolver.
pub(crate) struct System;

fn socktype(proto: Protocol) -> i32 {
    match proto {
        // /etc/services names few SCTP ports; they are read as TCP's.
        Protocol::Tcp | Protocol::Sctp => libc::SOCK_STREAM,
        Protocol::Udp => libc::SOCK_DGRAM,
    }
}

impl Lookup for System {
    fn host(&self, name: &str) -> Option<IpAddr> {
        let addrs: Vec<IpAddr> = (name, 0).to_socket_addrs().ok()?.map(|a| a.ip()).collect();
        // ipvsadm resolves with gethostbyname (IPv4); prefer IPv4 likewise.
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
    }

    /// A service name only, as ipvsadm's getservbyname: getaddrinfo would
    /// also read a number, modulo 65536 (`65617` as 81).
    fn service(&self, name: &str, proto: Protocol) -> Option<u16> {
        if crate::parse::is_number(name) {
            return None;
        }
        let hints = AddrInfoHints {
            flags: libc::AI_NUMERICHOST,
            address: libc::AF_INET,
            socktype: socktype(proto),
            protocol: 0,
        };
        let mut it = getaddrinfo(Some("0.0.0.0"), Some(name), Some(hints)).ok()?;
        it.next()?.ok().map(|ai| ai.sockaddr.port())
    }
}

impl Names for System {
    fn host(&self, addr: IpAddr) -> Option<String> {
        let sa = SocketAddr::new(addr, 0);
        getnameinfo(&sa, libc::NI_NAMEREQD | libc::NI_NUMERICSERV)
            .ok()
            .map(|(h, _)| h)
    }

    fn service(&self, port: u16, proto: Protocol) -> Option<String> {
        let sa = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
        let mut flags = libc::NI_NUMERICHOST;
        if proto == Protocol::Udp {
            flags |= libc::NI_DGRAM;
        }
        let (_, serv) = getnameinfo(&sa, flags).ok()?;
        // getnameinfo falls back to the number itself; treat that as "none".
        (serv != port.to_string()).then_some(serv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// getaddrinfo reads a numeric service as its number, modulo 65536
    /// (65617 became port 81); ipvsadm's getservbyname reads names only.
    #[test]
    fn numbers_are_not_service_names() {
        for n in ["65617", "65536", "-1", " 81", "+80", "80", "0"] {
            for proto in [Protocol::Tcp, Protocol::Udp] {
                assert_eq!(Lookup::service(&System, n, proto), None, "{n:?}");
            }
        }
    }
}
