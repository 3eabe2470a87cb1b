//! rvsadm's commands applied to a configuration: one command, or a whole
//! restore, against one working copy ([`Draft`]) that finds a service by
//! its key and a real server by its address in constant time, and checks
//! each edit as it is made at the cost of that edit (the engine's
//! [`Validator`]). A restore of n commands costs O(n), where a copy and a
//! validation of the whole configuration per command cost O(n²).
//!
//! What only the whole can tell — what the XDP maps hold, the sorry
//! servers health may add — the director checks once, on the result.

use std::collections::HashMap;
use std::net::IpAddr;

use rvs_api::{Command, ControlError, Entity, ServiceSpec};
use rvs_engine::{Config, Dest, Persistence, Service, ServiceKey, Validator};

use super::convert::{engine_dest, engine_key, refused};

/// `ipvsadm -R`: every command against one copy of `base`, in order, each
/// checked as it is made, so the first failure names its index; the
/// result, for the director to validate whole. A `-Z` line is accepted as
/// ipvsadm's restore accepts it (its service must exist at that point of
/// the restore); the counters to zero are returned, for the director to
/// zero once the whole restore is applied (nothing is zeroed if it is
/// refused).
pub(super) fn restore(
    base: &Config,
    cmds: &[Command],
) -> Result<(Config, Vec<Option<ServiceKey>>), ControlError> {
    let mut draft = Draft::new(base)?;
    let mut zero = Vec::new();
    for (index, c) in cmds.iter().enumerate() {
        let at = |cause| ControlError::Refused {
            index,
            cause: Box::new(cause),
        };
        if matches!(c, Command::Restore(_)) {
            return Err(at(ControlError::bad_request("nested restore")));
        }
        if let Command::ZeroCounters(key) = c {
            let only = key.as_ref().map(engine_key);
            if let (Some(k), Some(key)) = (only, key) {
                if !draft.index.contains_key(&k) {
                    return Err(at(ControlError::NotFound {
                        what: Entity::Service(*key),
                    }));
                }
            }
            zero.push(only);
            continue;
        }
        draft.edit(c).map_err(at)?;
    }
    Ok((draft.finish(), zero))
}

/// One command against a copy of `base`; the result, for the director to
/// validate whole.
pub(super) fn edit(base: &Config, cmd: &Command) -> Result<Config, ControlError> {
    let mut draft = Draft::new(base)?;
    draft.edit(cmd)?;
    Ok(draft.finish())
}

/// A configuration being edited.
struct Draft {
    /// Everything but the services.
    rest: Config,
    /// In the order they were added; `None` where one was deleted.
    services: Vec<Option<Entry>>,
    /// Position in `services` of every service there.
    index: HashMap<ServiceKey, usize>,
    /// Checks against `rest`'s interfaces and routes.
    validator: Validator,
}

/// A service being edited.
struct Entry {
    /// Its settings; its real servers are in `dests` meanwhile.
    svc: Service,
    /// In the order they were added; `None` where one was deleted.
    dests: Vec<Option<Dest>>,
    /// Position in `dests` by (address, port), built once the list is
    /// long enough for a linear search to cost more than the map.
    at: Option<HashMap<(IpAddr, u16), usize>>,
}

/// Real servers a service may have before lookups go through a map.
const LINEAR: usize = 8;

impl Entry {
    fn new(mut svc: Service) -> Entry {
        let dests = std::mem::take(&mut svc.dests)
            .into_iter()
            .map(Some)
            .collect();
        Entry {
            svc,
            dests,
            at: None,
        }
    }

    /// Position of the real server (`addr`, `port`).
    fn find(&mut self, addr: IpAddr, port: u16) -> Option<usize> {
        if self.at.is_none() && self.dests.len() > LINEAR {
            let at = self
                .dests
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.as_ref().map(|d| ((d.addr, d.port), i)))
                .collect();
            self.at = Some(at);
        }
        match &self.at {
            Some(at) => at.get(&(addr, port)).copied(),
            None => self
                .dests
                .iter()
                .position(|d| d.as_ref().is_some_and(|d| d.addr == addr && d.port == port)),
        }
    }

    fn push(&mut self, d: Dest) {
        if let Some(at) = &mut self.at {
            at.insert((d.addr, d.port), self.dests.len());
        }
        self.dests.push(Some(d));
    }

    fn remove(&mut self, i: usize) {
        if let Some(d) = self.dests[i].take() {
            if let Some(at) = &mut self.at {
                at.remove(&(d.addr, d.port));
            }
        }
    }

    fn finish(self) -> Service {
        let mut svc = self.svc;
        svc.dests = self.dests.into_iter().flatten().collect();
        svc
    }
}

impl Draft {
    fn new(base: &Config) -> Result<Draft, ControlError> {
        let validator = Validator::new(base).map_err(refused)?;
        let rest = Config {
            interfaces: base.interfaces.clone(),
            routes: base.routes.clone(),
            services: Vec::new(),
            fwmarks: base.fwmarks.clone(),
            timeouts: base.timeouts,
            max_connections: base.max_connections,
            fast_path: base.fast_path,
            fast_path_slots: base.fast_path_slots,
            defense: base.defense,
            sloppy_tcp: base.sloppy_tcp,
            sloppy_sctp: base.sloppy_sctp,
            local_port_range: base.local_port_range,
            sync_persist_mode: base.sync_persist_mode,
            max_fragment_datagrams: base.max_fragment_datagrams,
        };
        let services: Vec<Option<Entry>> = base
            .services
            .iter()
            .map(|s| Some(Entry::new(s.clone())))
            .collect();
        let index = base
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.key, i))
            .collect();
        Ok(Draft {
            rest,
            services,
            index,
            validator,
        })
    }

    fn finish(self) -> Config {
        let mut config = self.rest;
        config.services = self
            .services
            .into_iter()
            .flatten()
            .map(Entry::finish)
            .collect();
        config
    }

    /// Applies `cmd` and checks what it changed.
    fn edit(&mut self, cmd: &Command) -> Result<(), ControlError> {
        let Draft {
            rest,
            services,
            index,
            validator,
        } = self;
        let no_dest = |addr, port| ControlError::NotFound {
            what: Entity::Destination { addr, port },
        };
        match cmd {
            Command::AddService(spec) => {
                let key = engine_key(&spec.key);
                if index.contains_key(&key) {
                    return Err(ControlError::Exists {
                        what: Entity::Service(spec.key),
                    });
                }
                let mut svc = Service::new(key, &spec.scheduler);
                apply_spec(&mut svc, spec)?;
                validator.settings(&svc).map_err(refused)?;
                index.insert(key, services.len());
                services.push(Some(Entry::new(svc)));
            }
            Command::EditService(spec) => {
                let entry = entry(services, index, &spec.key)?;
                apply_spec(&mut entry.svc, spec)?;
                // Its real servers depend on the key only, which stays,
                // but for FullNAT's on the local addresses the spec set.
                validator.settings(&entry.svc).map_err(refused)?;
                for d in entry.dests.iter().flatten() {
                    fullnat_dest(&entry.svc, d)?;
                }
            }
            Command::DeleteService(key) => {
                let pos = index
                    .remove(&engine_key(key))
                    .ok_or(ControlError::NotFound {
                        what: Entity::Service(*key),
                    })?;
                services[pos] = None;
            }
            Command::AddDest { service, dest } => {
                let entry = entry(services, index, service)?;
                let d = engine_dest(dest);
                if entry.find(d.addr, d.port).is_some() {
                    return Err(ControlError::Exists {
                        what: Entity::Destination {
                            addr: dest.addr,
                            port: dest.port,
                        },
                    });
                }
                fullnat_dest(&entry.svc, &d)?;
                validator.dest(entry.svc.key, &d).map_err(refused)?;
                entry.push(d);
            }
            Command::EditDest { service, dest } => {
                let entry = entry(services, index, service)?;
                let d = engine_dest(dest);
                let i = entry
                    .find(d.addr, d.port)
                    .ok_or_else(|| no_dest(dest.addr, dest.port))?;
                fullnat_dest(&entry.svc, &d)?;
                validator.dest(entry.svc.key, &d).map_err(refused)?;
                entry.dests[i] = Some(d);
            }
            Command::DeleteDest {
                service,
                addr,
                port,
            } => {
                let entry = entry(services, index, service)?;
                let i = entry
                    .find(*addr, *port)
                    .ok_or_else(|| no_dest(*addr, *port))?;
                entry.remove(i);
            }
            Command::Clear => {
                services.clear();
                index.clear();
            }
            Command::AddFwmarkRule(r) => {
                let rule = rvs_engine::FwmarkRule {
                    mark: r.mark,
                    protocol: r.protocol,
                    addr: r.addr,
                    prefix_len: r.prefix_len,
                    ports: r.ports.clone(),
                };
                validator.fwmark_rule(&rule).map_err(refused)?;
                rest.fwmarks.push(rule);
            }
            Command::DeleteFwmarkRule { mark } => {
                let before = rest.fwmarks.len();
                rest.fwmarks.retain(|r| r.mark != *mark);
                if rest.fwmarks.len() == before {
                    return Err(ControlError::NotFound {
                        what: Entity::FwmarkRule { mark: *mark },
                    });
                }
            }
            Command::SetTimeouts { tcp, tcpfin, udp } => rest.timeouts.set(*tcp, *tcpfin, *udp),
            Command::SetSysctl(set) => {
                rest.sloppy_tcp = set.sloppy_tcp.unwrap_or(rest.sloppy_tcp);
                rest.sloppy_sctp = set.sloppy_sctp.unwrap_or(rest.sloppy_sctp);
                rest.sync_persist_mode = set.sync_persist_mode.unwrap_or(rest.sync_persist_mode);
                let d = &mut rest.defense;
                d.drop_entry = set.drop_entry.unwrap_or(d.drop_entry);
                d.drop_packet = set.drop_packet.unwrap_or(d.drop_packet);
                d.secure_tcp = set.secure_tcp.unwrap_or(d.secure_tcp);
                d.amemthresh = set.amemthresh.unwrap_or(d.amemthresh);
                d.am_droprate = set.am_droprate.unwrap_or(d.am_droprate);
                d.validate().map_err(refused)?;
            }
            Command::ZeroCounters(_)
            | Command::Restore(_)
            | Command::Reload
            | Command::StartDaemon(_)
            | Command::StopDaemon(_) => {
                return Err(ControlError::bad_request("not valid inside a restore"))
            }
        }
        Ok(())
    }
}

/// The service `key` of a draft, or the operator's "no such service".
fn entry<'a>(
    services: &'a mut [Option<Entry>],
    index: &HashMap<ServiceKey, usize>,
    key: &rvs_api::ServiceKey,
) -> Result<&'a mut Entry, ControlError> {
    let missing = || ControlError::NotFound {
        what: Entity::Service(*key),
    };
    let pos = *index.get(&engine_key(key)).ok_or_else(missing)?;
    services
        .get_mut(pos)
        .and_then(Option::as_mut)
        .ok_or_else(missing)
}

/// A real server's demands on its whole service (FullNAT: local addresses,
/// no `-o`), checked as the edit is made, so a restore names the line at
/// fault.
fn fullnat_dest(svc: &Service, d: &Dest) -> Result<(), ControlError> {
    Validator::dest_in_service(svc, d).map_err(refused)
}

fn apply_spec(svc: &mut Service, spec: &ServiceSpec) -> Result<(), ControlError> {
    svc.scheduler = spec.scheduler.clone();
    svc.sched_flags = rvs_vocab::sched::flag_bits(&spec.flags)
        .map_err(|e| ControlError::bad_request(e.to_string()))?;
    svc.one_packet = spec.one_packet;
    // -E replaces every setting the spec names, as ipvsadm's -E does: a
    // spec without local addresses leaves the service none (rvsadm -E
    // without --laddr), so a FullNAT server left on it is refused by name.
    svc.local_addresses = spec.local_addresses.clone();
    svc.toa = spec.toa;
    let full = if svc.key.addr.is_ipv4() { 32 } else { 128 };
    svc.persistence = spec.persistence_timeout.map(|timeout| Persistence {
        timeout,
        prefix_len: spec.netmask.unwrap_or(full),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_api::{DestSpec, ForwardMethod, Protocol};
    use rvs_engine::{IfIndex, Interface};

    /// One interface on 10.0.2.0/24, no services.
    fn base() -> Config {
        Config {
            interfaces: vec![Interface {
                index: IfIndex(2),
                name: "back".into(),
                mac: rvs_wire::EthernetAddress([2, 0, 0, 0, 0, 2]),
                addrs: vec![("10.0.2.1".parse().unwrap(), 24)],
                mtu: 1500,
            }],
            ..Config::default()
        }
    }

    fn key(port: u16) -> rvs_api::ServiceKey {
        rvs_api::ServiceKey::addr(Protocol::Tcp, "10.0.100.1".parse().unwrap(), port)
    }

    fn spec(port: u16, scheduler: &str) -> ServiceSpec {
        ServiceSpec {
            key: key(port),
            scheduler: scheduler.into(),
            persistence_timeout: None,
            netmask: None,
            flags: vec![],
            one_packet: false,
            local_addresses: vec![],
            toa: false,
        }
    }

    fn dest(host: u8, weight: u32) -> DestSpec {
        DestSpec {
            addr: IpAddr::from([10, 0, 2, host]),
            port: 80,
            weight,
            method: ForwardMethod::Route,
            tunnel: rvs_api::Tunnel::Ipip,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    fn add_dest(port: u16, host: u8) -> Command {
        Command::AddDest {
            service: key(port),
            dest: dest(host, 1),
        }
    }

    fn ports(c: &Config) -> Vec<u16> {
        c.services.iter().map(|s| s.key.port).collect()
    }

    #[test]
    fn set_defense_changes_only_the_keys_named_and_refuses_bad_modes() {
        let set = |s: rvs_api::SysctlSettings| Command::SetSysctl(s);
        let c = edit(
            &base(),
            &set(rvs_api::SysctlSettings {
                drop_entry: Some(1),
                amemthresh: Some(64),
                ..Default::default()
            }),
        )
        .unwrap();
        let d = c.defense;
        assert_eq!(
            (
                d.drop_entry,
                d.drop_packet,
                d.secure_tcp,
                d.amemthresh,
                d.am_droprate
            ),
            (1, 0, 0, 64, 10)
        );
        let c = edit(
            &c,
            &set(rvs_api::SysctlSettings {
                secure_tcp: Some(3),
                ..Default::default()
            }),
        )
        .unwrap();
        assert_eq!((c.defense.drop_entry, c.defense.secure_tcp), (1, 3));
        let e = edit(
            &c,
            &set(rvs_api::SysctlSettings {
                drop_packet: Some(4),
                ..Default::default()
            }),
        )
        .unwrap_err();
        assert!(e.to_string().contains("drop_packet = 4"), "{e}");
        let e = edit(
            &c,
            &set(rvs_api::SysctlSettings {
                am_droprate: Some(0),
                ..Default::default()
            }),
        )
        .unwrap_err();
        assert!(e.to_string().contains("am_droprate"), "{e}");
    }

    #[test]
    fn set_sysctl_switches_sloppy_scheduling_and_a_refusal_changes_nothing() {
        let set = |s: rvs_api::SysctlSettings| Command::SetSysctl(s);
        let c = edit(
            &base(),
            &set(rvs_api::SysctlSettings {
                sloppy_tcp: Some(true),
                ..Default::default()
            }),
        )
        .unwrap();
        assert!(c.sloppy_tcp && !c.sloppy_sctp);
        let c = edit(
            &c,
            &set(rvs_api::SysctlSettings {
                sloppy_sctp: Some(true),
                ..Default::default()
            }),
        )
        .unwrap();
        assert!(c.sloppy_tcp && c.sloppy_sctp, "keys not named stay");
        // One bad key refuses the whole command: sloppy_tcp is not switched off.
        let e = edit(
            &c,
            &set(rvs_api::SysctlSettings {
                sloppy_tcp: Some(false),
                drop_entry: Some(9),
                ..Default::default()
            }),
        )
        .unwrap_err();
        assert!(e.to_string().contains("drop_entry = 9"), "{e}");
        assert!(c.sloppy_tcp);
    }

    #[test]
    fn services_and_real_servers_keep_the_order_they_were_added_in() {
        let mut cmds: Vec<Command> = [80, 81, 82]
            .iter()
            .map(|&p| Command::AddService(spec(p, "rr")))
            .collect();
        cmds.push(Command::DeleteService(key(81)));
        cmds.push(Command::AddService(spec(81, "wlc")));
        // Enough real servers for lookups by map.
        cmds.extend((10..22).map(|h| add_dest(80, h)));
        cmds.push(Command::DeleteDest {
            service: key(80),
            addr: IpAddr::from([10, 0, 2, 13]),
            port: 80,
        });
        cmds.push(Command::EditDest {
            service: key(80),
            dest: dest(15, 7),
        });
        cmds.push(add_dest(80, 13));
        cmds.push(Command::EditService(spec(82, "sh")));
        let (c, _) = restore(&base(), &cmds).unwrap();
        assert_eq!(ports(&c), [80, 82, 81]);
        assert_eq!(c.services[1].scheduler, "sh");
        assert_eq!(c.services[2].scheduler, "wlc");
        let hosts: Vec<(IpAddr, u32)> = c.services[0]
            .dests
            .iter()
            .map(|d| (d.addr, d.weight))
            .collect();
        let mut want: Vec<(IpAddr, u32)> = (10..22)
            .filter(|&h| h != 13)
            .map(|h| (IpAddr::from([10, 0, 2, h]), if h == 15 { 7 } else { 1 }))
            .collect();
        want.push((IpAddr::from([10, 0, 2, 13]), 1));
        assert_eq!(hosts, want);
        // -C in the middle: what follows builds on nothing.
        let (c, _) = restore(&c, &[Command::Clear, Command::AddService(spec(90, "rr"))]).unwrap();
        assert_eq!(ports(&c), [90]);
    }

    #[test]
    fn the_first_refused_command_is_named_and_says_why() {
        let refused_at = |cmds: &[Command]| match restore(&base(), cmds) {
            Err(ControlError::Refused { index, cause }) => (index, *cause),
            other => panic!("{other:?}"),
        };
        let add = |p| Command::AddService(spec(p, "rr"));
        let (i, e) = refused_at(&[add(80), add(81), add(80)]);
        assert_eq!(i, 2);
        assert!(matches!(e, ControlError::Exists { .. }), "{e:?}");
        // An edit the engine refuses, found when it is made.
        let (i, e) = refused_at(&[add(80), Command::AddService(spec(81, "xyz")), add(82)]);
        assert_eq!(i, 1);
        assert!(
            e.to_string().contains("scheduler 'xyz' is not available"),
            "{e}"
        );
        let unreachable = Command::AddDest {
            service: key(80),
            dest: DestSpec {
                addr: "10.9.9.9".parse().unwrap(),
                ..dest(1, 1)
            },
        };
        let (i, e) = refused_at(&[add(80), add_dest(80, 5), unreachable]);
        assert_eq!(i, 2);
        assert!(
            e.to_string().contains("no route to real server 10.9.9.9"),
            "{e}"
        );
        let (i, e) = refused_at(&[add(80), add_dest(80, 5), add_dest(80, 5)]);
        assert_eq!(i, 2);
        assert!(matches!(e, ControlError::Exists { .. }), "{e:?}");
        let (i, e) = refused_at(&[add(80), Command::DeleteService(key(80)), add_dest(80, 5)]);
        assert_eq!(i, 2);
        assert!(matches!(e, ControlError::NotFound { .. }), "{e:?}");
        let (i, e) = refused_at(&[add(80), Command::Restore(vec![])]);
        assert_eq!(i, 1);
        assert!(e.to_string().contains("nested restore"), "{e}");
        // One command on its own: its error as is.
        let e = edit(&base(), &Command::DeleteService(key(80))).unwrap_err();
        assert!(matches!(e, ControlError::NotFound { .. }), "{e:?}");
    }

    #[test]
    fn a_restore_zeroes_what_exists_at_its_line() {
        let fwm = |mark| rvs_api::ServiceKey::Fwmark {
            mark,
            af: rvs_api::Family::Ipv4,
        };
        let add_fwm = |mark| {
            Command::AddService(ServiceSpec {
                key: fwm(mark),
                scheduler: "rr".into(),
                persistence_timeout: None,
                netmask: None,
                flags: vec![],
                one_packet: false,
                local_addresses: vec![],
                toa: false,
            })
        };
        let (next, zero) = restore(
            &base(),
            &[
                Command::ZeroCounters(None),
                add_fwm(1),
                Command::ZeroCounters(Some(fwm(1))),
            ],
        )
        .unwrap();
        assert_eq!(zero, vec![None, Some(ServiceKey::fwmark(1, false))]);
        assert_eq!(next.services.len(), 1);
        let e = restore(&base(), &[add_fwm(1), Command::ZeroCounters(Some(fwm(2)))]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command 1 of the restore: service FWM 2 does not exist"
        );
    }

    #[test]
    fn fullnat_servers_need_the_local_addresses_their_service_is_given() {
        let laddr: IpAddr = "10.0.2.200".parse().unwrap();
        let fullnat = |port| Command::AddDest {
            service: key(port),
            dest: DestSpec {
                method: ForwardMethod::FullNat,
                port: 8080,
                ..dest(5, 1)
            },
        };
        let with_laddr = |toa| ServiceSpec {
            local_addresses: vec![laddr],
            toa,
            ..spec(80, "rr")
        };
        // -A carries the local addresses and TOA into the engine's service.
        let (c, _) = restore(
            &base(),
            &[Command::AddService(with_laddr(true)), fullnat(80)],
        )
        .unwrap();
        assert_eq!(c.services[0].local_addresses, [laddr]);
        assert!(c.services[0].toa);
        assert_eq!(c.services[0].dests[0].method, ForwardMethod::FullNat);
        // -E replaces them as it replaces every setting: without --laddr a
        // FullNAT server would be left without any, which is refused.
        let e = edit(&c, &Command::EditService(spec(80, "wlc"))).unwrap_err();
        assert!(
            e.to_string().contains("no local address to connect from"),
            "{e}"
        );
        let c2 = edit(&c, &Command::EditService(with_laddr(false))).unwrap();
        assert_eq!(c2.services[0].local_addresses, [laddr]);
        assert!(!c2.services[0].toa);
        // A FullNAT server on a service without local addresses is refused
        // at its line of a restore.
        match restore(&base(), &[Command::AddService(spec(81, "rr")), fullnat(81)]) {
            Err(ControlError::Refused { index: 1, cause }) => assert!(
                cause
                    .to_string()
                    .contains("add local_addresses (rvsadm --laddr)"),
                "{cause}"
            ),
            other => panic!("{other:?}"),
        }
        // A local address of the wrong family is the engine's to refuse.
        let v6 = ServiceSpec {
            local_addresses: vec!["2001:db8::1".parse().unwrap()],
            ..spec(82, "rr")
        };
        let e = edit(&base(), &Command::AddService(v6)).unwrap_err();
        assert!(e.to_string().contains("address family"), "{e}");
    }
}
