//! Why rvsd refused a request, by kind, as it crosses the control socket.
//!
//! rvsd says *what* went wrong ([`ControlError`]); the tool in front of the
//! operator says it in its own words. rvsadm prints ipvsadm's ("No such
//! service", "Service not defined", …), which depend on the command as well
//! as the kind, exactly as ipvsadm picks them from the command and the
//! kernel's errno. So no tool parses a message back into a kind.
//!
//! On the wire (see [`ErrorBody`]) the kind is a `kind` tag next to a
//! one-line `error` for people reading the raw reply:
//!
//! ```json
//! {"error":"service TCP 10.0.0.1:80 does not exist","kind":"not_found",
//!  "what":{"service":{"protocol":"tcp","addr":"10.0.0.1","port":80}}}
//! {"error":"command 3 of the restore: …","kind":"refused","index":3,
//!  "cause":{"kind":"bad_request","message":"…"}}
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::types::ServiceKey;

/// Why a request was refused. Nothing of a refused command was applied
/// (except where an [`ControlError::Internal`] message says otherwise).
///
/// The kinds follow who must act: the operator's input
/// ([`BadRequest`](Self::BadRequest), [`Exists`](Self::Exists),
/// [`NotFound`](Self::NotFound), [`Refused`](Self::Refused)) or rvsd
/// itself ([`Internal`](Self::Internal)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlError {
    /// The request cannot be applied as written: a value out of range, a
    /// configuration the engine refuses, a broken configuration file. The
    /// message says what to write instead.
    #[error("{message}")]
    BadRequest {
        /// One line for the operator.
        message: String,
    },
    /// What the command adds is there already.
    #[error("{what} already exists")]
    Exists {
        /// The service or real server.
        what: Entity,
    },
    /// What the command changes or removes is not there.
    #[error("{what} does not exist")]
    NotFound {
        /// The service, real server or mark rules.
        what: Entity,
    },
    /// A [`crate::Command::Restore`] was refused at one of its commands;
    /// none of them was applied.
    #[error("command {index} of the restore: {cause}")]
    Refused {
        /// Index of the refused command in the `Restore` list.
        index: usize,
        /// Why, as for that command on its own.
        cause: Box<ControlError>,
    },
    /// The client may not do this on this socket: a member of the
    /// socket's read-only group (`socket_group`) asked for a change, or a
    /// client that is neither root, rvsd's user nor in that group got in.
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// What the client may do, and who may do the rest.
        message: String,
    },
    /// rvsd failed, not the request (see rvsd's log).
    #[error("rvsd internal error: {message}")]
    Internal {
        /// What failed.
        message: String,
    },
}

impl ControlError {
    /// A [`ControlError::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> Self {
        ControlError::BadRequest {
            message: message.into(),
        }
    }

    /// A [`ControlError::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        ControlError::Internal {
            message: message.into(),
        }
    }

    /// A [`ControlError::PermissionDenied`].
    pub fn permission_denied(message: impl Into<String>) -> Self {
        ControlError::PermissionDenied {
            message: message.into(),
        }
    }

    /// The HTTP status it is sent with: 500 for rvsd's own failures, 403
    /// for a client without the right, 400 for every other refusal of the
    /// request (the kind tells them apart).
    pub fn status(&self) -> u16 {
        match self {
            ControlError::Internal { .. } => 500,
            ControlError::PermissionDenied { .. } => 403,
            _ => 400,
        }
    }
}

/// What an [`ControlError::Exists`] or [`ControlError::NotFound`] is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// A virtual service.
    Service(ServiceKey),
    /// A real server of the command's service.
    Destination {
        /// Its address.
        addr: IpAddr,
        /// Its port.
        port: u16,
    },
    /// The firewall-mark classifier's rules of a mark.
    FwmarkRule {
        /// The mark.
        mark: u32,
    },
    /// The master or backup sync daemon.
    SyncDaemon(rvs_vocab::SyncRole),
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entity::Service(key) => write!(f, "service {key}"),
            Entity::Destination { addr, port } => {
                write!(f, "real server {}", SocketAddr::new(*addr, *port))
            }
            Entity::FwmarkRule { mark } => write!(f, "a firewall-mark rule with mark {mark}"),
            Entity::SyncDaemon(role) => write!(f, "the {} sync daemon", role.name()),
        }
    }
}

/// Body of every non-2xx reply: the error's text for whoever reads the raw
/// reply (curl, older clients), and the error itself, flattened beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One line for the operator: the error's `Display`.
    pub error: String,
    /// The typed error.
    #[serde(flatten)]
    pub detail: ControlError,
}

impl From<ControlError> for ErrorBody {
    fn from(detail: ControlError) -> Self {
        ErrorBody {
            error: detail.to_string(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Protocol;

    fn key() -> ServiceKey {
        ServiceKey::addr(Protocol::Tcp, "10.0.0.1".parse().unwrap(), 80)
    }

    #[test]
    fn json_carries_the_text_and_the_kind() {
        let e = ControlError::NotFound {
            what: Entity::Service(key()),
        };
        let j = serde_json::to_string(&ErrorBody::from(e.clone())).unwrap();
        assert_eq!(
            j,
            r#"{"error":"service TCP 10.0.0.1:80 does not exist","kind":"not_found","what":{"service":{"protocol":"tcp","addr":"10.0.0.1","port":80}}}"#
        );
        let back: ErrorBody = serde_json::from_str(&j).unwrap();
        assert_eq!(back.detail, e);
    }

    #[test]
    fn a_refused_restore_names_its_command_and_nests_the_cause() {
        let e = ControlError::Refused {
            index: 12,
            cause: Box::new(ControlError::Exists {
                what: Entity::Destination {
                    addr: "10.0.0.2".parse().unwrap(),
                    port: 8080,
                },
            }),
        };
        assert_eq!(
            e.to_string(),
            "command 12 of the restore: real server 10.0.0.2:8080 already exists"
        );
        let j = serde_json::to_string(&ErrorBody::from(e.clone())).unwrap();
        assert_eq!(
            j,
            r#"{"error":"command 12 of the restore: real server 10.0.0.2:8080 already exists","kind":"refused","index":12,"cause":{"kind":"exists","what":{"destination":{"addr":"10.0.0.2","port":8080}}}}"#
        );
        assert_eq!(serde_json::from_str::<ErrorBody>(&j).unwrap().detail, e);
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn bad_requests_and_internal_errors_read_as_their_message() {
        let e = ControlError::bad_request("scheduler 'x' is not available");
        assert_eq!(e.to_string(), "scheduler 'x' is not available");
        let j = serde_json::to_string(&ErrorBody::from(e.clone())).unwrap();
        assert_eq!(
            j,
            r#"{"error":"scheduler 'x' is not available","kind":"bad_request","message":"scheduler 'x' is not available"}"#
        );
        let i = ControlError::internal("the worker has stopped");
        assert_eq!(i.to_string(), "rvsd internal error: the worker has stopped");
        assert_eq!((i.status(), e.status()), (500, 400));
        let denied = ControlError::permission_denied(
            "this socket grants read-only access to group rvs-read; run the command as root",
        );
        assert_eq!(denied.status(), 403);
        assert_eq!(
            serde_json::to_string(&ErrorBody::from(denied)).unwrap(),
            r#"{"error":"permission denied: this socket grants read-only access to group rvs-read; run the command as root","kind":"permission_denied","message":"this socket grants read-only access to group rvs-read; run the command as root"}"#
        );
        let mark = ControlError::NotFound {
            what: Entity::FwmarkRule { mark: 8 },
        };
        assert_eq!(
            mark.to_string(),
            "a firewall-mark rule with mark 8 does not exist"
        );
    }
}
