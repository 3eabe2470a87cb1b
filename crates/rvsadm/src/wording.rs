//! ipvsadm's words for rvsd's refusals, in one place.
//!
//! rvsd answers with a kind ([`ControlError`]); ipvsadm words the kernel's
//! errno by the command that got it (`ipvs_strerror`): a missing service is
//! "No such service" to `-E`, `-D` and `-Z`, but "Service not defined" to
//! `-a`, `-e` and `-d`. rvsadm does the same with rvsd's kinds.

use rvs_api::{Command, ControlError, Entity};

/// What `-L` of a service that is not there prints (ipvsadm's words).
pub(crate) const NO_SUCH_SERVICE: &str = "No such service";

/// The line rvsadm prints when rvsd refuses `cmd` with `error`.
pub(crate) fn refusal(cmd: &Command, error: &ControlError) -> String {
    let words = match error {
        ControlError::Exists {
            what: Entity::Service(_),
        } => "Service already exists",
        ControlError::Exists {
            what: Entity::Destination { .. },
        } => "Destination already exists",
        ControlError::NotFound {
            what: Entity::Service(_),
        } => match cmd {
            Command::AddDest { .. } | Command::EditDest { .. } | Command::DeleteDest { .. } => {
                "Service not defined"
            }
            _ => NO_SUCH_SERVICE,
        },
        ControlError::NotFound {
            what: Entity::Destination { .. },
        } => "No such destination",
        // RVS's own rules; ipvsadm has none.
        ControlError::NotFound {
            what: Entity::FwmarkRule { mark },
        } => return format!("no firewall-mark rule with mark {mark}"),
        ControlError::Refused { index, cause } => {
            return match cmd {
                Command::Restore(cmds) if *index < cmds.len() => {
                    format!(
                        "command {index} of the restore: {}",
                        refusal(&cmds[*index], cause)
                    )
                }
                _ => error.to_string(),
            }
        }
        // ipvsadm's words for the kernel's EEXIST / ESRCH.
        ControlError::Exists {
            what: Entity::SyncDaemon(_),
        } => "Daemon has already run",
        ControlError::NotFound {
            what: Entity::SyncDaemon(_),
        } => "No daemon is running",
        ControlError::BadRequest { message } => return message.clone(),
        ControlError::Exists {
            what: Entity::FwmarkRule { .. },
        }
        | ControlError::PermissionDenied { .. }
        | ControlError::Internal { .. } => return error.to_string(),
    };
    words.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_api::{DestSpec, ForwardMethod, Protocol, ServiceKey, ServiceSpec};

    fn key() -> ServiceKey {
        ServiceKey::addr(Protocol::Tcp, "10.0.0.1".parse().unwrap(), 80)
    }

    fn dest() -> DestSpec {
        DestSpec {
            addr: "10.0.0.2".parse().unwrap(),
            port: 80,
            weight: 1,
            method: ForwardMethod::Route,
            tunnel: rvs_api::Tunnel::Ipip,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    #[test]
    fn ipvsadm_words_by_command_and_kind() {
        let service = ControlError::NotFound {
            what: Entity::Service(key()),
        };
        let spec = ServiceSpec {
            key: key(),
            scheduler: "rr".into(),
            persistence_timeout: None,
            netmask: None,
            flags: vec![],
            one_packet: false,
            local_addresses: vec![],
            toa: false,
        };
        let add_dest = Command::AddDest {
            service: key(),
            dest: dest(),
        };
        for (cmd, error, words) in [
            (
                Command::AddService(spec.clone()),
                ControlError::Exists {
                    what: Entity::Service(key()),
                },
                "Service already exists",
            ),
            (
                Command::EditService(spec),
                service.clone(),
                "No such service",
            ),
            (
                Command::DeleteService(key()),
                service.clone(),
                "No such service",
            ),
            (
                Command::ZeroCounters(Some(key())),
                service.clone(),
                "No such service",
            ),
            (add_dest.clone(), service.clone(), "Service not defined"),
            (
                Command::DeleteDest {
                    service: key(),
                    addr: dest().addr,
                    port: 80,
                },
                service.clone(),
                "Service not defined",
            ),
            (
                add_dest.clone(),
                ControlError::Exists {
                    what: Entity::Destination {
                        addr: dest().addr,
                        port: 80,
                    },
                },
                "Destination already exists",
            ),
            (
                Command::EditDest {
                    service: key(),
                    dest: dest(),
                },
                ControlError::NotFound {
                    what: Entity::Destination {
                        addr: dest().addr,
                        port: 80,
                    },
                },
                "No such destination",
            ),
            (
                Command::DeleteFwmarkRule { mark: 8 },
                ControlError::NotFound {
                    what: Entity::FwmarkRule { mark: 8 },
                },
                "no firewall-mark rule with mark 8",
            ),
            (
                Command::Clear,
                ControlError::bad_request("Scheduler not found: nosuch"),
                "Scheduler not found: nosuch",
            ),
            (
                Command::Clear,
                ControlError::internal("the worker has stopped"),
                "rvsd internal error: the worker has stopped",
            ),
            (
                Command::Restore(vec![Command::Clear, add_dest]),
                ControlError::Refused {
                    index: 1,
                    cause: Box::new(service),
                },
                "command 1 of the restore: Service not defined",
            ),
        ] {
            assert_eq!(refusal(&cmd, &error), words, "{cmd:?}");
        }
    }
}
