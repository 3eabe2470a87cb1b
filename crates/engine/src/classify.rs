//! RVS's firewall-mark classifier, and what the XDP program steers to the
//! engine: one definition for both.
//!
//! XDP sees no skb mark, so the director marks packets itself with the
//! configuration's [`FwmarkRule`]s, validated once into [`FwmarkMatch`]es.
//! The engine classifies a packet with them ([`Snapshot::classify`]). The
//! XDP program must send the first packets of every service to the engine,
//! so rvsd gives it every (address, protocol, port) a service or a rule in
//! use covers ([`Snapshot::steering`]), enumerated from the same matches:
//! what the program steers and what the engine classifies cannot drift
//! apart.
//!
//! [`Snapshot::classify`]: crate::Snapshot::classify
//! [`Snapshot::steering`]: crate::Snapshot::steering

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::{addr_bits, mask_for, ConfigError, FwmarkRule, Protocol, Service};
use crate::limits::{MAX_SERVICES, MAX_VIPS};

/// A firewall-mark rule covers at most 2^12 addresses (a /20 in IPv4): the
/// XDP program lists a rule's addresses one by one.
pub const MAX_FWMARK_HOST_BITS: u32 = 12;

/// A validated [`FwmarkRule`], ready to match packets.
#[derive(Clone, Debug)]
pub(crate) struct FwmarkMatch {
    net: u128,
    mask: u128,
    v6: bool,
    /// Bits of the address the prefix leaves open (at most
    /// [`MAX_FWMARK_HOST_BITS`]).
    host_bits: u32,
    protocol: Option<Protocol>,
    ports: Vec<u16>,
    mark: u32,
}

impl FwmarkMatch {
    /// Validates a rule: a mark, a prefix that fits its address and covers
    /// no more addresses than the XDP program lists.
    pub(crate) fn new(r: &FwmarkRule) -> Result<Self, ConfigError> {
        let (bits, v6) = addr_bits(r.addr);
        let width: u8 = if v6 { 128 } else { 32 };
        if r.mark == 0 {
            return Err(ConfigError::FwmarkRule {
                mark: 0,
                what: "mark 0 means unmarked; use 1 or more".into(),
            });
        }
        if r.prefix_len > width {
            return Err(ConfigError::FwmarkRule {
                mark: r.mark,
                what: format!("prefix /{} is too long for {}", r.prefix_len, r.addr),
            });
        }
        let host_bits = u32::from(width - r.prefix_len);
        if host_bits > MAX_FWMARK_HOST_BITS {
            return Err(ConfigError::FwmarkRule {
                mark: r.mark,
                what: format!(
                    "prefix {}/{} has more than {} addresses; the XDP filter lists them one by one, so use /{} or longer",
                    r.addr,
                    r.prefix_len,
                    1u32 << MAX_FWMARK_HOST_BITS,
                    width - MAX_FWMARK_HOST_BITS as u8
                ),
            });
        }
        // Each (address, protocol, port) is an entry of the services map.
        let protocols: u64 = if r.protocol.is_some() { 1 } else { 2 };
        let ports = r.ports.iter().collect::<HashSet<_>>().len().max(1) as u64;
        let keys = (1u64 << host_bits) * protocols * ports;
        if keys > u64::from(MAX_SERVICES) {
            return Err(ConfigError::FwmarkRule {
                mark: r.mark,
                what: format!(
                    "{}/{} covers {keys} (address, protocol, port) keys, but the XDP filter holds at most {MAX_SERVICES} (MAX_SERVICES); use a longer prefix, fewer ports or one protocol",
                    r.addr, r.prefix_len
                ),
            });
        }
        let mask = mask_for(r.prefix_len, v6);
        Ok(FwmarkMatch {
            net: bits & mask,
            mask,
            v6,
            host_bits,
            protocol: r.protocol,
            ports: r.ports.clone(),
            mark: r.mark,
        })
    }

    /// Whether a packet of `protocol` (IP number) to `dst`:`dport` matches.
    fn matches(&self, protocol: u8, dst: (u128, bool), dport: u16) -> bool {
        let (bits, v6) = dst;
        self.v6 == v6
            && bits & self.mask == self.net
            && self.protocol.is_none_or(|p| p.number() == protocol)
            && (self.ports.is_empty() || self.ports.contains(&dport))
    }

    /// Every (address, protocol, port) the rule matches; port 0 for all.
    fn keys(&self) -> impl Iterator<Item = SteeringKey> + '_ {
        let protocols: &[Protocol] = match &self.protocol {
            Some(p) => std::slice::from_ref(p),
            None => &Protocol::ALL,
        };
        let ports: &[u16] = if self.ports.is_empty() {
            &[0]
        } else {
            &self.ports
        };
        self.addrs().flat_map(move |addr| {
            protocols.iter().flat_map(move |p| {
                ports.iter().map(move |&port| SteeringKey {
                    addr,
                    protocol: p.number(),
                    port,
                })
            })
        })
    }

    /// Every address of the prefix.
    fn addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        (0..1u128 << self.host_bits).map(move |i| {
            let bits = self.net | i;
            if self.v6 {
                IpAddr::V6(Ipv6Addr::from(bits))
            } else {
                // The prefix leaves at most 32 bits of an IPv4 address.
                IpAddr::V4(Ipv4Addr::from(bits as u32))
            }
        })
    }
}

/// The mark of the first rule matching a packet; 0 = none.
pub(crate) fn mark(rules: &[FwmarkMatch], protocol: u8, dst: IpAddr, dport: u16) -> u32 {
    if rules.is_empty() {
        return 0;
    }
    let dst = addr_bits(dst);
    rules
        .iter()
        .find(|r| r.matches(protocol, dst, dport))
        .map_or(0, |r| r.mark)
}

/// One entry of the XDP program's service map: the first packets to this
/// address, protocol and port go to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SteeringKey {
    /// The destination address (a VIP).
    pub addr: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port; 0 = every port.
    pub port: u16,
}

/// What the XDP program's maps must hold for a configuration: which first
/// packets go to the engine, and which addresses are VIPs (malformed frames
/// to them are the engine's to count). Frames of tracked connections (NAT
/// replies included) are found through the connection map the engine
/// writes itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Steering {
    /// Service keys, as the engine classifies (a persistent port-0 service
    /// and a rule without ports cover every port: port 0).
    pub services: BTreeSet<SteeringKey>,
    /// Every VIP.
    pub vips: BTreeSet<IpAddr>,
}

/// The steering of `services` and the `rules` some service uses; refused
/// if the XDP program's maps cannot hold it ([`crate::limits`]).
pub(crate) fn steering(
    services: &[Service],
    rules: &[FwmarkMatch],
) -> Result<Steering, ConfigError> {
    let mut s = Steering::default();
    let mut marks = HashSet::new();
    for svc in services {
        if svc.key.is_fwmark() {
            marks.insert(svc.key.fwmark);
            continue;
        }
        s.services.insert(SteeringKey {
            addr: svc.key.addr,
            protocol: svc.key.protocol.number(),
            port: svc.key.port,
        });
        s.vips.insert(svc.key.addr);
    }
    fits(&s)?;
    // A mark service's addresses are its rules'; a rule no service uses
    // steers nothing. Checked rule by rule, so a configuration far beyond
    // the maps is refused before it is all enumerated.
    for r in rules.iter().filter(|r| marks.contains(&r.mark)) {
        s.services.extend(r.keys());
        s.vips.extend(r.addrs());
        fits(&s)?;
    }
    Ok(s)
}

/// Whether the maps hold `s`.
fn fits(s: &Steering) -> Result<(), ConfigError> {
    if s.services.len() > MAX_SERVICES as usize {
        return Err(ConfigError::TooMany {
            what: "service keys (one per address-based service, one per address, protocol and port of a firewall-mark rule in use)",
            count: s.services.len(),
            max: MAX_SERVICES,
            limit: "MAX_SERVICES",
            fix: "remove services, or narrow firewall-mark rules (longer prefixes, fewer ports)",
        });
    }
    if s.vips.len() > MAX_VIPS as usize {
        return Err(ConfigError::TooMany {
            what: "virtual addresses",
            count: s.vips.len(),
            max: MAX_VIPS,
            limit: "MAX_VIPS",
            fix: "remove services, narrow firewall-mark rules (longer prefixes), or spread the addresses over several directors",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Persistence, ServiceKey, Snapshot};

    fn a(x: &str) -> IpAddr {
        x.parse().unwrap()
    }

    fn key(addr: &str, protocol: u8, port: u16) -> SteeringKey {
        SteeringKey {
            addr: a(addr),
            protocol,
            port,
        }
    }

    #[test]
    fn steering_covers_port_zero_services_and_fwmark_prefixes() {
        let mut cfg = Config::default();
        let mut port0 = Service::new(ServiceKey::new(Protocol::Tcp, a("10.0.100.1"), 0), "rr");
        port0.persistence = Some(Persistence {
            timeout: 60,
            prefix_len: 32,
        });
        cfg.services.push(port0);
        cfg.services
            .push(Service::new(ServiceKey::fwmark(7, false), "dh"));
        cfg.fwmarks.push(FwmarkRule {
            mark: 7,
            protocol: Some(Protocol::Tcp),
            addr: a("10.0.100.33"),
            prefix_len: 30,
            ports: vec![80],
        });
        // A rule no service uses installs nothing.
        cfg.fwmarks.push(FwmarkRule {
            mark: 9,
            protocol: None,
            addr: a("10.0.200.0"),
            prefix_len: 24,
            ports: vec![],
        });
        let s = Snapshot::new(cfg).unwrap().steering();
        assert!(
            s.services.contains(&key("10.0.100.1", 6, 0)),
            "port 0 = every port"
        );
        for host in 32..36 {
            assert!(s
                .services
                .contains(&key(&format!("10.0.100.{host}"), 6, 80)));
        }
        assert_eq!(s.services.len(), 1 + 4);
        assert_eq!(s.vips.len(), 1 + 4);
    }

    #[test]
    fn a_rule_without_protocol_or_ports_steers_every_protocol_on_every_port() {
        let mut cfg = Config::default();
        cfg.services
            .push(Service::new(ServiceKey::fwmark(3, true), "rr"));
        cfg.fwmarks.push(FwmarkRule {
            mark: 3,
            protocol: None,
            addr: a("2001:db8::10"),
            prefix_len: 127,
            ports: vec![],
        });
        let snap = Snapshot::new(cfg).unwrap();
        let s = snap.steering();
        let want: BTreeSet<SteeringKey> = ["2001:db8::10", "2001:db8::11"]
            .iter()
            .flat_map(|h| [key(h, 6, 0), key(h, 17, 0), key(h, 132, 0)])
            .collect();
        assert_eq!(s.services, want);
        // The classifier marks exactly what is steered.
        assert_eq!(snap.classify(17, a("2001:db8::11"), 53), 3);
        assert_eq!(snap.classify(132, a("2001:db8::10"), 2905), 3);
        assert_eq!(snap.classify(6, a("2001:db8::12"), 53), 0);
    }

    #[test]
    fn a_prefix_wider_than_the_xdp_map_lists_is_refused() {
        let mut cfg = Config::default();
        cfg.fwmarks.push(FwmarkRule {
            mark: 1,
            protocol: None,
            addr: a("10.0.0.0"),
            prefix_len: 8,
            ports: vec![],
        });
        let e = Snapshot::new(cfg.clone()).unwrap_err().to_string();
        assert!(e.contains("more than 4096 addresses"), "{e}");
        cfg.fwmarks[0].prefix_len = 32 - MAX_FWMARK_HOST_BITS as u8;
        let snap = Snapshot::new(cfg).unwrap();
        let rule = FwmarkMatch::new(&snap.config().fwmarks[0]).unwrap();
        assert_eq!(rule.addrs().count(), 4096, "capped at the largest prefix");
    }
}
