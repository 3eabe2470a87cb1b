//! FullNAT's local addresses and their ports: the client end a real server
//! sees. Every (local address, protocol, port) belongs to one connection at
//! a time, whatever its real server, so a server's reply names its
//! connection by its destination alone and two connections never share a
//! 5-tuple. Protocols have ports of their own, as the kernel's sockets do:
//! UDP flows do not use up TCP's ports.
//!
//! Each local address has a bitmap of its 65 536 ports (8 KiB) per protocol
//! its services balance, made when a configuration first lists the address
//! and kept while any of its ports is in use (a reload that drops the
//! address lets its connections drain).
//! Ports are handed out next-fit from a cursor that moves on after each
//! one, so a port comes back into use as late as the range allows: a real
//! server may still hold the previous connection on it in TIME_WAIT.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::{Config, Protocol};

const WORDS: usize = 65_536 / 64;

/// The ports of one local address.
#[derive(Debug)]
struct Pool {
    used: Box<[u64; WORDS]>,
    in_use: u32,
    /// The next port to try.
    cursor: u16,
    /// A service of the configuration in force lists the address.
    listed: bool,
}

impl Pool {
    fn new(start: u16) -> Self {
        Pool {
            used: Box::new([0; WORDS]),
            in_use: 0,
            cursor: start,
            listed: true,
        }
    }

    fn is_used(&self, port: u16) -> bool {
        self.used[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }

    fn set(&mut self, port: u16, used: bool) {
        let word = &mut self.used[usize::from(port) / 64];
        if used {
            *word |= 1 << (port % 64);
        } else {
            *word &= !(1 << (port % 64));
        }
    }

    /// The first free port of `lo..=hi` at or after the cursor, wrapping
    /// once; whole words of used ports are skipped 64 at a time.
    fn take(&mut self, lo: u16, hi: u16) -> Option<u16> {
        let start = self.cursor.clamp(lo, hi);
        let found = free_in(self, start, hi).or_else(|| free_in(self, lo, start))?;
        self.set(found, true);
        self.in_use += 1;
        self.cursor = if found == hi { lo } else { found + 1 };
        Some(found)
    }
}

/// The first free port in `from..=to` (empty when `from > to`).
fn free_in(pool: &Pool, from: u16, to: u16) -> Option<u16> {
    let mut port = u32::from(from);
    let to = u32::from(to);
    while port <= to {
        let word = pool.used[port as usize / 64];
        if word == u64::MAX {
            port = (port | 63) + 1;
            continue;
        }
        if word & (1 << (port % 64)) == 0 {
            return Some(port as u16);
        }
        port += 1;
    }
    None
}

/// Every (local address, IP protocol) pool.
#[derive(Debug, Default)]
pub(super) struct LocalPorts {
    pools: HashMap<(IpAddr, u8), Pool>,
}

impl LocalPorts {
    /// A new configuration is in force: pools for the addresses it lists,
    /// one per protocol of the services listing them (a firewall-mark
    /// service balances them all), and those no longer listed go once no
    /// connection holds a port.
    pub(super) fn reconcile(&mut self, config: &Config) {
        for pool in self.pools.values_mut() {
            pool.listed = false;
        }
        let start = config.local_port_range.0;
        for svc in &config.services {
            let protocols: &[Protocol] = if svc.key.is_fwmark() {
                &Protocol::ALL
            } else {
                std::slice::from_ref(&svc.key.protocol)
            };
            for &addr in &svc.local_addresses {
                for proto in protocols {
                    self.pools
                        .entry((addr, proto.number()))
                        .or_insert_with(|| Pool::new(start))
                        .listed = true;
                }
            }
        }
        self.pools.retain(|_, p| p.listed || p.in_use > 0);
    }

    /// A free port of `range` on `addr` for IP protocol `proto`; `None`
    /// when all are in use (or the address has no pool for it).
    pub(super) fn take(&mut self, addr: IpAddr, proto: u8, range: (u16, u16)) -> Option<u16> {
        self.pools
            .get_mut(&(addr, proto))
            .filter(|p| p.listed)
            .and_then(|p| p.take(range.0, range.1))
    }

    /// Takes `port` itself on `addr` for IP protocol `proto` (a
    /// connection another director or a predecessor made): false when no
    /// service lists the address for the protocol or the port is in use.
    pub(super) fn claim(&mut self, addr: IpAddr, proto: u8, port: u16) -> bool {
        match self.pools.get_mut(&(addr, proto)) {
            Some(pool) if pool.listed && !pool.is_used(port) => {
                pool.set(port, true);
                pool.in_use += 1;
                true
            }
            _ => false,
        }
    }

    /// Gives back a port [`LocalPorts::take`] or [`LocalPorts::claim`]
    /// handed out.
    pub(super) fn give_back(&mut self, addr: IpAddr, proto: u8, port: u16) {
        let key = (addr, proto);
        let Some(pool) = self.pools.get_mut(&key) else {
            return;
        };
        if pool.is_used(port) {
            pool.set(port, false);
            pool.in_use -= 1;
        }
        if pool.in_use == 0 && !pool.listed {
            self.pools.remove(&key);
        }
    }

    /// Ports in use on `addr`, every protocol's.
    pub(super) fn in_use(&self, addr: IpAddr) -> u32 {
        self.pools
            .iter()
            .filter(|((a, _), _)| *a == addr)
            .map(|(_, p)| p.in_use)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Service, ServiceKey};
    use crate::Protocol;
    use proptest::prelude::*;

    fn config(addrs: &[&str], range: (u16, u16)) -> Config {
        let mut svc = Service::new(
            ServiceKey::new(Protocol::Tcp, "10.0.0.100".parse().unwrap(), 80),
            "rr",
        );
        svc.local_addresses = addrs.iter().map(|a| a.parse().unwrap()).collect();
        Config {
            services: vec![svc],
            local_port_range: range,
            ..Config::default()
        }
    }

    fn la(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const TCP: u8 = 6;
    const UDP: u8 = 17;

    #[test]
    fn a_claimed_port_is_not_handed_out_and_a_taken_one_cannot_be_claimed() {
        let mut lp = LocalPorts::default();
        lp.reconcile(&config(&["10.0.1.2"], (1000, 1001)));
        assert!(lp.claim(la("10.0.1.2"), TCP, 1000));
        assert!(!lp.claim(la("10.0.1.2"), TCP, 1000), "held twice");
        assert!(!lp.claim(la("10.0.1.3"), TCP, 5000), "not a local address");
        assert!(!lp.claim(la("10.0.1.2"), UDP, 5000), "no UDP service");
        // Outside the range too: another director may have another.
        assert!(lp.claim(la("10.0.1.2"), TCP, 40000));
        assert_eq!(lp.take(la("10.0.1.2"), TCP, (1000, 1001)), Some(1001));
        assert_eq!(lp.take(la("10.0.1.2"), TCP, (1000, 1001)), None);
        assert_eq!(lp.in_use(la("10.0.1.2")), 3);
        lp.give_back(la("10.0.1.2"), TCP, 1000);
        assert_eq!(lp.take(la("10.0.1.2"), TCP, (1000, 1001)), Some(1000));
    }

    #[test]
    fn hands_out_every_port_of_the_range_once_then_refuses() {
        let mut lp = LocalPorts::default();
        lp.reconcile(&config(&["10.0.1.2"], (1000, 1199)));
        let mut got: Vec<u16> = (0..200)
            .map(|_| lp.take(la("10.0.1.2"), TCP, (1000, 1199)).unwrap())
            .collect();
        assert_eq!(lp.take(la("10.0.1.2"), TCP, (1000, 1199)), None);
        got.sort_unstable();
        assert_eq!(got, (1000..1200).collect::<Vec<_>>());
        assert_eq!(lp.in_use(la("10.0.1.2")), 200);
        lp.give_back(la("10.0.1.2"), TCP, 1077);
        assert_eq!(lp.take(la("10.0.1.2"), TCP, (1000, 1199)), Some(1077));
    }

    #[test]
    fn a_freed_port_comes_back_only_after_the_rest_of_the_range() {
        let mut lp = LocalPorts::default();
        lp.reconcile(&config(&["10.0.1.2"], (2000, 2009)));
        let a = la("10.0.1.2");
        let first = lp.take(a, TCP, (2000, 2009)).unwrap();
        lp.give_back(a, TCP, first);
        let next: Vec<u16> = (0..9)
            .map(|_| lp.take(a, TCP, (2000, 2009)).unwrap())
            .collect();
        assert_eq!(next, (2001..2010).collect::<Vec<_>>());
        assert_eq!(lp.take(a, TCP, (2000, 2009)), Some(first));
    }

    #[test]
    fn an_unlisted_address_drains_then_goes() {
        let mut lp = LocalPorts::default();
        lp.reconcile(&config(&["10.0.1.2", "10.0.1.3"], (1024, 32767)));
        let b = la("10.0.1.3");
        let port = lp.take(b, TCP, (1024, 32767)).unwrap();
        lp.reconcile(&config(&["10.0.1.2"], (1024, 32767)));
        assert_eq!(
            lp.take(b, TCP, (1024, 32767)),
            None,
            "no new port once unlisted"
        );
        assert_eq!(lp.in_use(b), 1);
        lp.give_back(b, TCP, port);
        assert!(!lp.pools.contains_key(&(b, TCP)));
        assert_eq!(
            lp.take(la("10.0.1.9"), TCP, (1024, 32767)),
            None,
            "never listed"
        );
    }

    #[test]
    fn protocols_have_ports_of_their_own() {
        let mut lp = LocalPorts::default();
        let mut cfg = config(&["10.0.1.2"], (3000, 3000));
        let mut udp = cfg.services[0].clone();
        udp.key.protocol = Protocol::Udp;
        cfg.services.push(udp);
        lp.reconcile(&cfg);
        let a = la("10.0.1.2");
        assert_eq!(lp.take(a, TCP, (3000, 3000)), Some(3000));
        assert_eq!(lp.take(a, TCP, (3000, 3000)), None);
        assert_eq!(lp.take(a, UDP, (3000, 3000)), Some(3000), "UDP's own");
        assert_eq!(lp.take(a, 132, (3000, 3000)), None, "no SCTP service");
        assert_eq!(lp.in_use(a), 2);
    }

    proptest! {
        /// Whatever the order of takes and give-backs, a port in use is
        /// never handed out again, and the count matches the bitmap.
        #[test]
        fn never_twice_in_use(ops in proptest::collection::vec(any::<(bool, u8)>(), 1..400),
                              lo in 1u16..65_000, width in 0u16..300) {
            let hi = lo.saturating_add(width);
            let mut lp = LocalPorts::default();
            lp.reconcile(&config(&["10.0.1.2"], (lo, hi)));
            let a = la("10.0.1.2");
            let mut held: Vec<u16> = Vec::new();
            for (take, pick) in ops {
                if take || held.is_empty() {
                    match lp.take(a, TCP, (lo, hi)) {
                        Some(p) => {
                            prop_assert!((lo..=hi).contains(&p));
                            prop_assert!(!held.contains(&p));
                            held.push(p);
                        }
                        None => prop_assert_eq!(held.len(), usize::from(hi - lo) + 1),
                    }
                } else {
                    let p = held.swap_remove(usize::from(pick) % held.len());
                    lp.give_back(a, TCP, p);
                }
                prop_assert_eq!(lp.in_use(a) as usize, held.len());
            }
        }
    }
}
