//! A fake rvsd for the tests of the API and of its clients (rvsadm):
//! the real server ([`crate::serve`]) on a socket, in front of a handler
//! that answers with a fixed listing and connection table, records every
//! command, keeps firewall-mark rules as rvsd keeps them and refuses what
//! the test says. Feature `testing`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{ControlError, Entity};
use crate::server::{ControlHandler, Limits, SocketFile};
use crate::types::{Command, ConnectionEntry, FwmarkRuleSpec, Listing};

/// Which commands to refuse, and why; asked for every command, also for
/// each command inside a restore.
type Refuse = dyn Fn(&Command) -> Option<ControlError> + Send + Sync;

/// The handler: a fixed table, recorded commands, live mark rules.
pub struct FakeHandler {
    listing: Listing,
    connections: Vec<ConnectionEntry>,
    refuse: Box<Refuse>,
    seen: Mutex<Vec<Command>>,
    /// Mark rules as rvsd keeps them: appended, deleted per mark, kept by
    /// `Clear`, and listed in place of the listing's own.
    rules: Mutex<Vec<FwmarkRuleSpec>>,
}

impl FakeHandler {
    /// Answers with `listing` (its mark rules are the starting rules) and
    /// `connections`; refuses nothing but deletes of absent mark rules.
    pub fn new(listing: Listing, connections: Vec<ConnectionEntry>) -> Self {
        FakeHandler {
            rules: Mutex::new(listing.fwmark_rules.clone()),
            listing,
            connections,
            refuse: Box::new(|_| None),
            seen: Mutex::new(Vec::new()),
        }
    }

    /// Refuses the commands `refuse` answers for (a restore at the first
    /// of its commands it answers for).
    pub fn refusing(
        mut self,
        refuse: impl Fn(&Command) -> Option<ControlError> + Send + Sync + 'static,
    ) -> Self {
        self.refuse = Box::new(refuse);
        self
    }

    /// Every command received, refused ones included, in order.
    pub fn seen(&self) -> Vec<Command> {
        lock(&self.seen).clone()
    }

    /// The last command received.
    pub fn last(&self) -> Option<Command> {
        lock(&self.seen).last().cloned()
    }

    /// The mark rules now.
    pub fn rules(&self) -> Vec<FwmarkRuleSpec> {
        lock(&self.rules).clone()
    }

    /// One command against `rules`: the test's refusal first, then rvsd's
    /// handling of mark rules.
    fn apply(&self, rules: &mut Vec<FwmarkRuleSpec>, cmd: &Command) -> Result<(), ControlError> {
        if let Some(e) = (self.refuse)(cmd) {
            return Err(e);
        }
        match cmd {
            Command::AddFwmarkRule(r) => rules.push(r.clone()),
            Command::DeleteFwmarkRule { mark } => {
                let before = rules.len();
                rules.retain(|r| r.mark != *mark);
                if rules.len() == before {
                    return Err(ControlError::NotFound {
                        what: Entity::FwmarkRule { mark: *mark },
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl ControlHandler for FakeHandler {
    fn listing(&self) -> Listing {
        Listing {
            fwmark_rules: self.rules(),
            ..self.listing.clone()
        }
    }

    fn connections(&self) -> Vec<ConnectionEntry> {
        self.connections.clone()
    }

    fn command(&self, cmd: Command) -> Result<(), ControlError> {
        let mut rules = lock(&self.rules);
        let result = match &cmd {
            // All or nothing, like rvsd: against a copy, kept if all pass.
            Command::Restore(cmds) => {
                let mut scratch = rules.clone();
                cmds.iter()
                    .enumerate()
                    .try_for_each(|(index, c)| {
                        self.apply(&mut scratch, c)
                            .map_err(|cause| ControlError::Refused {
                                index,
                                cause: Box::new(cause),
                            })
                    })
                    .map(|()| *rules = scratch)
            }
            c => self.apply(&mut rules, c),
        };
        lock(&self.seen).push(cmd);
        result
    }
}

/// A test's lock: a poisoned one still holds what the test wants to see.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A [`FakeHandler`] served on a socket by the real server, on its own
/// runtime; stopped when dropped.
pub struct Served {
    /// The socket.
    pub path: PathBuf,
    /// The handler, to see what reached it.
    pub handler: Arc<FakeHandler>,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
    server: tokio::task::JoinHandle<std::convert::Infallible>,
    /// Removes the socket when dropped.
    _socket: SocketFile,
}

impl Served {
    /// Binds `path` (with [`crate::bind`]) and serves `handler` on it.
    pub fn start(path: &Path, handler: FakeHandler) -> io::Result<Served> {
        Served::start_with(path, handler, Limits::default())
    }

    /// [`Served::start`] with other [`Limits`] than rvsd's (shorter
    /// timeouts, a smaller cap), for the tests of the limits.
    pub fn start_with(path: &Path, handler: FakeHandler, limits: Limits) -> io::Result<Served> {
        Served::start_with_access(path, handler, limits, crate::Access::default())
    }

    /// [`Served::start_with`] with a read-only group: the socket is bound
    /// with [`crate::bind_with`] and served with that [`crate::Access`].
    pub fn start_with_access(
        path: &Path,
        handler: FakeHandler,
        limits: Limits,
        access: crate::Access,
    ) -> io::Result<Served> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (listener, socket) = {
            let _in_runtime = runtime.enter();
            crate::bind_with(path, access.read_only_group.as_ref().map(|g| g.gid))?
        };
        let handler = Arc::new(handler);
        let server = runtime.spawn(crate::server::serve_with_access(
            listener,
            Arc::clone(&handler),
            limits,
            access,
        ));
        Ok(Served {
            path: path.to_path_buf(),
            handler,
            runtime: Some(runtime),
            server,
            _socket: socket,
        })
    }

    /// Runs `f` inside the serving runtime, for what needs one (a second
    /// [`crate::bind`]).
    pub fn in_runtime<T>(&self, f: impl FnOnce() -> T) -> T {
        let _in_runtime = self.runtime.as_ref().map(|r| r.enter());
        f()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(r) = self.runtime.take() {
            r.shutdown_background();
        }
    }
}

/// A listing with no services, the table size rvsd reports by default:
/// what a fake rvsd that was never configured lists.
pub fn empty_listing() -> Listing {
    Listing {
        conn_table_size: 4096,
        services: Vec::new(),
        counters: Default::default(),
        timeouts: crate::Timeouts::default(),
        health: Vec::new(),
        fwmark_rules: Vec::new(),
        config_file: None,
        config_diverged: false,
        sync_daemons: Vec::new(),
        defense: None,
        sysctl: None,
    }
}
