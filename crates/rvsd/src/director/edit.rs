//! One rvsadm command applied to a configuration (not yet validated as a
//! whole: the director validates what it applies).

use rvs_api::{Command, ControlError, Entity, ServiceSpec};
use rvs_engine::{Config, Persistence, Service, ServiceKey, Snapshot};

use super::convert::{engine_dest, engine_key, refused};

/// `ipvsadm -R`: every command against `next`, each step validated so the
/// first failure names its index; the director validates the end result
/// as one configuration. A `-Z` line is accepted as ipvsadm's restore
/// accepts it (its service must exist at that point of the restore); the
/// counters to zero are returned, for the director to zero once the whole
/// restore is applied (nothing is zeroed if it is refused).
pub(super) fn restore(
    next: &mut Config,
    cmds: Vec<Command>,
) -> Result<Vec<Option<ServiceKey>>, ControlError> {
    let mut zero = Vec::new();
    for (index, c) in cmds.into_iter().enumerate() {
        let at = |cause| ControlError::Refused {
            index,
            cause: Box::new(cause),
        };
        match c {
            Command::Restore(_) => return Err(at(ControlError::bad_request("nested restore"))),
            Command::ZeroCounters(key) => {
                let only = key.as_ref().map(engine_key);
                if let (Some(k), Some(key)) = (only, key) {
                    if !next.services.iter().any(|s| s.key == k) {
                        return Err(at(ControlError::NotFound {
                            what: Entity::Service(key),
                        }));
                    }
                }
                zero.push(only);
                continue;
            }
            c => edit(next, c).map_err(at)?,
        }
        Snapshot::new(next.clone()).map_err(|e| at(refused(e)))?;
    }
    Ok(zero)
}

/// Applies one command to `next` (not yet validated as a whole).
pub(super) fn edit(next: &mut Config, cmd: Command) -> Result<(), ControlError> {
    let position = |cfg: &Config, key: &rvs_api::ServiceKey| {
        let k = engine_key(key);
        cfg.services
            .iter()
            .position(|s| s.key == k)
            .ok_or(ControlError::NotFound {
                what: Entity::Service(*key),
            })
    };
    let no_dest = |addr, port| ControlError::NotFound {
        what: Entity::Destination { addr, port },
    };
    match cmd {
        Command::AddService(spec) => {
            if position(next, &spec.key).is_ok() {
                return Err(ControlError::Exists {
                    what: Entity::Service(spec.key),
                });
            }
            let mut svc = Service::new(engine_key(&spec.key), &spec.scheduler);
            apply_spec(&mut svc, &spec)?;
            next.services.push(svc);
        }
        Command::EditService(spec) => {
            let pos = position(next, &spec.key)?;
            apply_spec(&mut next.services[pos], &spec)?;
        }
        Command::DeleteService(key) => {
            let pos = position(next, &key)?;
            next.services.remove(pos);
        }
        Command::AddDest { service, dest } => {
            let pos = position(next, &service)?;
            let dests = &mut next.services[pos].dests;
            if dests
                .iter()
                .any(|d| d.addr == dest.addr && d.port == dest.port)
            {
                return Err(ControlError::Exists {
                    what: Entity::Destination {
                        addr: dest.addr,
                        port: dest.port,
                    },
                });
            }
            dests.push(engine_dest(&dest));
        }
        Command::EditDest { service, dest } => {
            let pos = position(next, &service)?;
            let d = next.services[pos]
                .dests
                .iter_mut()
                .find(|d| d.addr == dest.addr && d.port == dest.port)
                .ok_or_else(|| no_dest(dest.addr, dest.port))?;
            *d = engine_dest(&dest);
        }
        Command::DeleteDest {
            service,
            addr,
            port,
        } => {
            let pos = position(next, &service)?;
            let dests = &mut next.services[pos].dests;
            let i = dests
                .iter()
                .position(|d| d.addr == addr && d.port == port)
                .ok_or_else(|| no_dest(addr, port))?;
            dests.remove(i);
        }
        Command::Clear => next.services.clear(),
        Command::AddFwmarkRule(r) => next.fwmarks.push(rvs_engine::FwmarkRule {
            mark: r.mark,
            protocol: r.protocol,
            addr: r.addr,
            prefix_len: r.prefix_len,
            ports: r.ports,
        }),
        Command::DeleteFwmarkRule { mark } => {
            let before = next.fwmarks.len();
            next.fwmarks.retain(|r| r.mark != mark);
            if next.fwmarks.len() == before {
                return Err(ControlError::NotFound {
                    what: Entity::FwmarkRule { mark },
                });
            }
        }
        Command::SetTimeouts { tcp, tcpfin, udp } => next.timeouts.set(tcp, tcpfin, udp),
        Command::ZeroCounters(_) | Command::Restore(_) | Command::Reload => {
            return Err(ControlError::bad_request("not valid inside a restore"))
        }
    }
    Ok(())
}

fn apply_spec(svc: &mut Service, spec: &ServiceSpec) -> Result<(), ControlError> {
    svc.scheduler = spec.scheduler.clone();
    svc.sched_flags = rvs_vocab::sched::flag_bits(&spec.flags)
        .map_err(|e| ControlError::bad_request(e.to_string()))?;
    svc.one_packet = spec.one_packet;
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
    use rvs_api::{Family, ServiceSpec};

    fn fwm(mark: u32) -> rvs_api::ServiceKey {
        rvs_api::ServiceKey::Fwmark {
            mark,
            af: Family::Ipv4,
        }
    }

    fn add(mark: u32) -> Command {
        Command::AddService(ServiceSpec {
            key: fwm(mark),
            scheduler: "rr".into(),
            persistence_timeout: None,
            netmask: None,
            flags: vec![],
            one_packet: false,
        })
    }

    #[test]
    fn a_restore_zeroes_what_exists_at_its_line() {
        let mut next = Config::default();
        let zero = restore(
            &mut next,
            vec![
                Command::ZeroCounters(None),
                add(1),
                Command::ZeroCounters(Some(fwm(1))),
            ],
        )
        .unwrap();
        assert_eq!(zero, vec![None, Some(ServiceKey::fwmark(1, false))]);
        assert_eq!(next.services.len(), 1);

        let mut next = Config::default();
        let e = restore(&mut next, vec![add(1), Command::ZeroCounters(Some(fwm(2)))]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command 1 of the restore: service FWM 2 does not exist"
        );
        let e = restore(&mut next, vec![Command::Restore(vec![])]).unwrap_err();
        assert_eq!(e.to_string(), "command 0 of the restore: nested restore");
    }
}
