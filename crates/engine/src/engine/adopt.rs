//! Adopting connections a previous rvsd left forwarding in the XDP
//! program's maps (a restart, an upgrade, a crash): the new engine takes
//! each one into its table as the slow path would have it, on the real
//! server the old entry names, so that it keeps flowing and is counted,
//! expired, persisted and drained like any other.
//!
//! Only what a map entry proves is adopted: a flow the old program
//! forwarded on its own, which the slow path had put there only in a state
//! where nothing but timers and counters change (TCP and SCTP ESTABLISHED,
//! UDP).

use std::net::{IpAddr, SocketAddr};

use super::{secs, Engine};
use crate::config::ForwardMethod;
use crate::conn::{addr_bytes, flag, FlowKey, NewConn, NIL};
use crate::proto::established_state;
use crate::time::Time;

/// A connection found forwarding in a previous rvsd's maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adopted {
    /// IP protocol number (TCP 6, UDP 17, SCTP 132).
    pub proto: u8,
    /// The client's address and port.
    pub client: SocketAddr,
    /// The virtual address and port the client talks to.
    pub virtual_addr: SocketAddr,
    /// The real server the entry forwards to.
    pub server: IpAddr,
    /// The real server's port when the entry rewrites it (NAT); `None` when
    /// the packets keep the virtual port (DR, TUN).
    pub server_port: Option<u16>,
    /// The forwarding method the entry applies.
    pub method: ForwardMethod,
    /// FullNAT: the client end the real server sees (the director's local
    /// address and port), which the successor keeps.
    pub local: Option<SocketAddr>,
    /// Seconds since the old program last forwarded a frame of it.
    pub idle_secs: u32,
}

/// Why a connection was not adopted (it is left to end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdoptError {
    /// No service of the configuration takes this flow any more.
    #[error("no virtual service takes this flow")]
    NoService,
    /// The real server is no longer in the service, or forwards another way.
    #[error("the real server is no longer in the service with this forwarding method")]
    NoServer,
    /// The connection is tracked already.
    #[error("the connection is tracked already")]
    Exists,
    /// It would have expired already.
    #[error("idle longer than its timeout")]
    Expired,
    /// The connection table is full.
    #[error("the connection table is full")]
    TableFull,
    /// A FullNAT connection whose local address no service here lists,
    /// or whose local port is taken.
    #[error("its FullNAT local address is not one of the service's, or its port is taken")]
    LocalPort,
    /// Addresses of two families, or a protocol the engine does not track.
    #[error("not a TCP, UDP or SCTP flow of one address family")]
    Malformed,
}

impl Engine {
    /// Takes `a` into the connection table at `now`: established (TCP, SCTP) on
    /// its real server, with the state's timeout less the time it was idle,
    /// under its persistence template (made if the client has none, as a
    /// synced connection makes one in IPVS). It is not counted as a
    /// scheduled connection: no scheduler picked it. The fast-path ops that
    /// put it back in the maps follow from [`Engine::poll_fast_path`].
    pub fn adopt(&mut self, now: Time, a: &Adopted) -> Result<(), AdoptError> {
        let now_s = secs(now);
        if !self.clock_started {
            self.conns.start_clock(now_s);
            self.clock_started = true;
        }
        let v6 = a.client.is_ipv6();
        if ![
            rvs_wire::ip_proto::TCP,
            rvs_wire::ip_proto::UDP,
            rvs_wire::ip_proto::SCTP,
        ]
        .contains(&a.proto)
        {
            return Err(AdoptError::Malformed);
        }
        if a.virtual_addr.is_ipv6() != v6
            || a.server.is_ipv6() != v6
            || a.local.is_some_and(|l| l.is_ipv6() != v6)
            || (a.method == ForwardMethod::FullNat) != a.local.is_some()
        {
            return Err(AdoptError::Malformed);
        }
        let key = FlowKey {
            template: false,
            proto: a.proto,
            v6,
            saddr: addr_bytes(a.client.ip()),
            sport: a.client.port(),
            daddr: addr_bytes(a.virtual_addr.ip()),
            dport: a.virtual_addr.port(),
        };
        if self.conns.find_in(&key).is_some() {
            return Err(AdoptError::Exists);
        }
        let pos = self
            .classify_flow(&key, a.virtual_addr.ip())
            .ok_or(AdoptError::NoService)?;
        let dest = self.adopted_dest(pos, a).ok_or(AdoptError::NoServer)?;
        // TCP and SCTP: ESTABLISHED (UDP has one state, 0).
        let established = established_state(a.proto);
        let state = established.unwrap_or(0);
        let timeout = self.snapshot.config().timeouts.for_state(a.proto, state);
        let left = timeout
            .checked_sub(a.idle_secs)
            .filter(|&l| l > 0)
            .ok_or(AdoptError::Expired)?;
        if self.conns.len() >= self.conns.capacity() {
            return Err(AdoptError::TableFull);
        }
        let local = a.local.map(|l| (l.ip(), l.port()));
        if !self.claim_local_port(a.proto, local) {
            return Err(AdoptError::LocalPort);
        }
        let dest_port = self.dests[dest as usize].port;
        let template = match self.snapshot.config().services[pos].persistence {
            Some(pers) => {
                let tkey = self.template_key(pos, &key, pers);
                match self.conns.find_in(&tkey) {
                    Some(t) => t,
                    None => self
                        .install_conn(
                            tkey,
                            a.server,
                            dest_port,
                            a.method,
                            dest,
                            0,
                            now_s.saturating_add(pers.timeout),
                            NIL,
                            None,
                        )
                        .ok_or(AdoptError::TableFull)
                        .inspect_err(|_| self.release_local_port(a.proto, local))?,
                }
            }
            None => NIL,
        };
        let dport = a.server_port.unwrap_or(a.virtual_addr.port());
        let idx = self
            .install_conn(
                key,
                a.server,
                dport,
                a.method,
                dest,
                state,
                now_s.saturating_add(left),
                template,
                local,
            )
            .ok_or(AdoptError::TableFull)
            .inspect_err(|_| self.release_local_port(a.proto, local))?;
        if established.is_some() {
            self.count_established(idx);
        }
        self.counters.conns_adopted += 1;
        self.fast_sync(idx);
        Ok(())
    }

    /// Takes FullNAT local end `local` (if any) for a connection of IP
    /// protocol `proto` that a predecessor or a master made: false when no
    /// service here lists the address or the port is taken.
    pub(super) fn claim_local_port(&mut self, proto: u8, local: Option<(IpAddr, u16)>) -> bool {
        local.is_none_or(|(addr, port)| self.local_ports.claim(addr, proto, port))
    }

    /// Gives back what [`Engine::claim_local_port`] took.
    pub(super) fn release_local_port(&mut self, proto: u8, local: Option<(IpAddr, u16)>) {
        if let Some((addr, port)) = local {
            self.local_ports.give_back(addr, proto, port);
        }
    }

    /// Puts a connection (or, for a template key, a template) on real
    /// server `dest` into the table, counted on it (inactive; see
    /// [`Engine::count_established`]) and under template `control`; a
    /// FullNAT connection with its local end `local` (claimed already).
    /// `None`: the table is full.
    #[allow(clippy::too_many_arguments)] // reason: one connection's fields, named at each call.
    pub(super) fn install_conn(
        &mut self,
        key: FlowKey,
        server: IpAddr,
        dport: u16,
        method: ForwardMethod,
        dest: u32,
        state: u8,
        expires: u32,
        control: u32,
        local: Option<(IpAddr, u16)>,
    ) -> Option<u32> {
        let (laddr, lport) = local.map_or((key.saddr, key.sport), |(a, p)| (addr_bytes(a), p));
        let idx = self.conns.insert(NewConn {
            key,
            daddr: addr_bytes(server),
            dport,
            laddr,
            lport,
            method,
            dest,
            state,
            expires,
            control,
        })?;
        if !key.template && control != NIL {
            self.conns.get_mut(control).control += 1;
        }
        self.attach_to_dest(dest, key.template);
        Some(idx)
    }

    /// A connection installed established: active on its server, as
    /// `transition` counts it.
    pub(super) fn count_established(&mut self, idx: u32) {
        let c = self.conns.get_mut(idx);
        if c.flags & flag::INACTIVE == 0 {
            return;
        }
        c.flags &= !flag::INACTIVE;
        let d = &mut self.dests[c.dest as usize];
        d.inactive = d.inactive.saturating_sub(1);
        d.active += 1;
    }

    /// The real servers of service `pos`, by slab id.
    pub(super) fn dests_of(&self, pos: usize) -> impl Iterator<Item = u32> + '_ {
        self.services
            .get(pos)
            .into_iter()
            .flat_map(|s| s.dest_ids())
    }

    /// The real server of service `pos` that `a` names: same address and
    /// method, and for NAT the port the entry rewrites to.
    fn adopted_dest(&self, pos: usize, a: &Adopted) -> Option<u32> {
        self.dests_of(pos).find(|&id| {
            let d = &self.dests[id as usize];
            let port = if d.port == 0 {
                a.virtual_addr.port()
            } else {
                d.port
            };
            d.in_config
                && d.addr == a.server
                && d.method == a.method
                && a.server_port.is_none_or(|p| p == port)
        })
    }
}
