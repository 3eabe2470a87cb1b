//! Connection sync with other directors, as IPVS's sync daemon does it
//! (`ip_vs_sync.c`), the values only: a master engine emits the state of
//! its connections ([`Engine::poll_sync`]), a backup engine installs what
//! it is sent ([`Engine::apply_sync`]); rvsd carries them as IPVS sync
//! datagrams ([`rvs_wire::ipvs_sync`]).
//!
//! When a connection is sent, by the kernel's rules
//! (`ip_vs_sync_conn_needed`) on every packet from the client the engine
//! sees, which it counts (the kernel's `in_pkts`):
//! - a TCP connection entering FIN_WAIT, CLOSE_WAIT, TIME_WAIT or CLOSE,
//!   an SCTP association entering SHUTDOWN_SENT, SHUTDOWN_RECEIVED,
//!   SHUTDOWN_ACK_SENT or CLOSED ("a state change forces a sync");
//! - in ESTABLISHED (TCP, SCTP) and for UDP, the packet whose count is
//!   `sync_threshold` modulo its period (the 3rd, 53rd, 103rd ... by
//!   default; period 0: the threshold's packet only);
//! - its persistence template with every packet of a connection it
//!   controls (the kernel: "templates: rate can be reduced only with
//!   sync_refresh_period"), or only at the threshold with a period of 0;
//! - never a one-packet (`-o`) datagram;
//! - with `sync_persist_mode`, a connection a persistence template
//!   controls is never sent itself, only its template (as the kernel's
//!   `ip_vs_sync_conn` skips to the controller).
//!
//! Where the XDP program forwards, the engine sees few packets and cannot
//! count the others, so it also sends what the kernel would have sent on
//! them:
//! - a connection whose packets the XDP program takes over (a TCP or SCTP
//!   connection entering ESTABLISHED, a UDP one as it starts), unless it
//!   was sent in that state already;
//! - a connection the XDP program keeps alive, each time its activity
//!   check renews it (what its later packets would have sent), so a
//!   backup's copy does not expire while the master's flows;
//! - a state change a server's packet makes (NAT) at once: the kernel
//!   sends it with the client's next packet, which the engine may not see.
//!
//! The timeout sent is the state's (the persistence timeout for a
//! template); a backup's copy expires that long after it was last sent.

use std::net::IpAddr;

use rvs_wire::ipvs_sync::{flags, SyncConn};

use rvs_vocab::sync::SyncThreshold;

use super::{secs, Engine};
use crate::config::{ForwardMethod, ServiceKey};
use crate::conn::{addr_bytes, bytes_addr, fast, flag, Conn, FlowKey, NIL};
use crate::proto::{established_state, valid_state, SctpState, TcpState};
use crate::time::Time;

/// Connections waiting to be sent; beyond, the oldest are dropped (and
/// counted): the next change or refresh sends them again.
pub(super) const SYNC_QUEUE: usize = 16 * 1024;

/// Why a synced connection was not installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncRefused {
    /// No service of this director takes it.
    #[error("no virtual service takes it")]
    NoService,
    /// Its real server is not in the service here.
    #[error("its real server is not in the service here")]
    NoServer,
    /// The connection table is full.
    #[error("the connection table is full")]
    TableFull,
    /// Addresses of two families or a protocol RVS does not track.
    #[error("not a TCP, UDP or SCTP connection of one address family")]
    Malformed,
    /// FullNAT on one director and not on the other: the entry carries a
    /// local end and the real server here is not FullNAT, or the reverse.
    #[error("its real server forwards by FullNAT on one director only")]
    Method,
    /// A FullNAT connection whose local address no service here lists, or
    /// whose local port this director holds already.
    #[error("its FullNAT local address is not one of the service's here, or its port is taken")]
    LocalPort,
}

/// Whether a connection of IP protocol `proto` in `state` is sent
/// (`ip_vs_sync_conn_needed`: TCP ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT,
/// TIME_WAIT; SCTP ESTABLISHED, the three SHUTDOWN states, CLOSED; the
/// one state of UDP).
fn synced_state(proto: u8, state: u8) -> bool {
    match proto {
        rvs_wire::ip_proto::TCP => [
            TcpState::Established,
            TcpState::FinWait,
            TcpState::Close,
            TcpState::CloseWait,
            TcpState::TimeWait,
        ]
        .iter()
        .any(|s| *s as u8 == state),
        rvs_wire::ip_proto::SCTP => [
            SctpState::Established,
            SctpState::ShutdownSent,
            SctpState::ShutdownReceived,
            SctpState::ShutdownAckSent,
            SctpState::Closed,
        ]
        .iter()
        .any(|s| *s as u8 == state),
        _ => true,
    }
}

/// Whether the XDP program forwards `c`'s packets from the client (the
/// engine counts no more of them) and `c` was not sent in its state yet.
fn taken_over_unsent(c: &Conn) -> bool {
    c.fast & fast::FORWARD != 0 && c.state != c.sent_state && synced_state(c.proto, c.state)
}

/// IPVS's flags for a method. FullNAT, which IPVS does not have, is sent
/// as NAT with its local end in [`rvs_wire::ipvs_sync::LOCAL_PARAM`] (a
/// parameter the kernel's backup does not know, so it skips the entry).
fn method_flags(m: ForwardMethod) -> u32 {
    match m {
        ForwardMethod::Masq | ForwardMethod::FullNat => flags::MASQ,
        ForwardMethod::Tunnel => flags::TUNNEL,
        ForwardMethod::Route => flags::DROUTE,
    }
}

/// `count` (a connection's `in_pkts`) after one more packet: modulo the
/// period, so that "the count modulo the period is the threshold" is a
/// comparison; up to `u16::MAX` with a period of 0. (No division: this
/// runs for every packet the engine sees; a count left from a longer
/// period starts over.)
fn next_count(t: SyncThreshold, count: u16) -> u16 {
    let next = count.saturating_add(1);
    match t.period {
        0 => next,
        p if next >= p => 0,
        _ => next,
    }
}

impl Engine {
    /// Start emitting connection state for backups with the master's
    /// `sync_threshold` (`--start-daemon master`), or stop (`None`,
    /// `--stop-daemon master`).
    pub fn set_sync_master(&mut self, threshold: Option<SyncThreshold>) {
        self.sync_master = threshold.is_some();
        match threshold {
            Some(t) => self.sync_threshold = t,
            None => self.sync_out.clear(),
        }
    }

    /// After a packet from the client (the kernel's `ip_vs_in`, which
    /// counts it and calls `ip_vs_sync_conn`): counts it and sends the
    /// connection and its template by the rules of the module doc.
    pub(super) fn sync_after_input(&mut self, idx: u32) {
        let t = self.sync_threshold;
        let c = self.conns.get_mut(idx);
        c.in_pkts = next_count(t, c.in_pkts);
        if !self.sync_master {
            return;
        }
        let c = *c;
        if !self.templates_only(&c) && (self.due(&c) || taken_over_unsent(&c)) {
            self.send(idx);
        }
        if c.control != NIL {
            let tpl = self.conns.get_mut(c.control);
            tpl.in_pkts = next_count(t, tpl.in_pkts);
            if t.period > 0 || tpl.in_pkts == t.threshold {
                self.send(c.control);
            }
        }
    }

    /// `ip_vs_sync_conn_needed` for a connection after a packet from the
    /// client (the refresh period's timing is rvsd's rounds here).
    fn due(&self, c: &Conn) -> bool {
        let counted = c.in_pkts == self.sync_threshold.threshold;
        match established_state(c.proto) {
            None => counted,
            Some(_) if !synced_state(c.proto, c.state) => false,
            Some(established) => (c.state != c.sent_state && c.state != established) || counted,
        }
    }

    /// Queues connection (or template) `idx` and notes the state sent.
    fn send(&mut self, idx: u32) {
        let c = self.conns.get_mut(idx);
        c.sent_state = c.state;
        let c = *c;
        self.queue_sync(&c);
    }

    /// The next connection to send to the backups, in order. Drain after
    /// each batch (rvsd batches them into datagrams).
    pub fn poll_sync(&mut self) -> Option<SyncConn> {
        self.sync_out.pop_front()
    }

    /// A server's packet changed a TCP or SCTP connection's state from
    /// `old` (NAT): send it at once if the new state is one IPVS sends,
    /// with its template (the kernel waits for the client's next packet).
    pub(super) fn sync_on_transition(&mut self, idx: u32, old: u8) {
        if !self.sync_master {
            return;
        }
        let c = *self.conns.get(idx);
        if c.state == old || c.state == c.sent_state || !synced_state(c.proto, c.state) {
            return;
        }
        self.send_with_template(idx, &c);
    }

    /// Sends connection `idx` (`c`), unless `sync_persist_mode` sends its
    /// template alone, then its template.
    fn send_with_template(&mut self, idx: u32, c: &Conn) {
        if !self.templates_only(c) {
            self.send(idx);
        }
        if c.control != NIL {
            self.send(c.control);
        }
    }

    /// `sync_persist_mode`: `c` is controlled by a template, which is sent
    /// in its place.
    fn templates_only(&self, c: &Conn) -> bool {
        self.snapshot.config().sync_persist_mode && c.control != NIL
    }

    /// A connection the XDP program forwards was renewed by its activity:
    /// send it and its template (what its packets would have sent).
    pub(super) fn sync_now(&mut self, idx: u32) {
        if !self.sync_master {
            return;
        }
        let c = *self.conns.get(idx);
        if !synced_state(c.proto, c.state) {
            return;
        }
        self.send_with_template(idx, &c);
    }

    /// Queues `c` for the backups.
    fn queue_sync(&mut self, c: &Conn) {
        let entry = self.sync_entry(c);
        if self.sync_out.len() >= SYNC_QUEUE {
            self.sync_out.pop_front();
            self.counters.sync_dropped += 1;
        }
        self.sync_out.push_back(entry);
        self.counters.sync_sent += 1;
    }

    /// `c` as a sync entry.
    fn sync_entry(&self, c: &Conn) -> SyncConn {
        let v6 = c.v6();
        let svc = self
            .dests
            .get(c.dest as usize)
            .map(|d| d.service)
            .filter(ServiceKey::is_fwmark);
        let timeouts = &self.snapshot.config().timeouts;
        let timeout = if c.is_template() {
            self.dests
                .get(c.dest as usize)
                .and_then(|d| self.snapshot.config().services.get(d.service_pos as usize))
                .and_then(|s| s.persistence)
                .map_or(300, |p| p.timeout)
        } else {
            timeouts.for_state(c.proto, c.state)
        };
        let mut fl = method_flags(c.method());
        if c.is_template() {
            fl |= flags::TEMPLATE;
        } else {
            if c.flags & flag::NO_OUTPUT != 0 {
                fl |= flags::NOOUTPUT;
            }
            if c.flags & flag::INACTIVE != 0 {
                fl |= flags::INACTIVE;
            }
        }
        SyncConn {
            protocol: c.proto,
            flags: fl,
            state: if c.is_template() {
                0
            } else {
                u16::from(c.state)
            },
            client: (bytes_addr(&c.caddr, v6), c.cport),
            virtual_addr: (bytes_addr(&c.vaddr, v6), c.vport),
            dest: (bytes_addr(&c.daddr, v6), c.dport),
            fwmark: svc.map_or(0, |k| k.fwmark),
            timeout,
            local: c
                .holds_local_port()
                .then(|| (bytes_addr(&c.laddr, v6), c.lport)),
        }
    }

    /// Installs or updates a connection (or template) a master sent, as
    /// the kernel's backup does: in the state sent, expiring `timeout`
    /// seconds from `now` (the state's own timeout when 0), counted active
    /// or inactive on its real server, with its fast-path entries, so that
    /// its packets are forwarded from the first one after a takeover.
    pub fn apply_sync(&mut self, now: Time, c: &SyncConn) -> Result<(), SyncRefused> {
        let now_s = secs(now);
        if !self.clock_started {
            self.conns.start_clock(now_s);
            self.clock_started = true;
        }
        let v6 = c.client.0.is_ipv6();
        if c.virtual_addr.0.is_ipv6() != v6 || c.dest.0.is_ipv6() != v6 {
            return Err(SyncRefused::Malformed);
        }
        let template = c.flags & flags::TEMPLATE != 0;
        if !template && crate::config::Protocol::from_number(c.protocol).is_none() {
            return Err(SyncRefused::Malformed);
        }
        let stateful = established_state(c.protocol).is_some();
        let key = FlowKey {
            template,
            proto: c.protocol,
            v6,
            saddr: addr_bytes(c.client.0),
            sport: c.client.1,
            daddr: addr_bytes(c.virtual_addr.0),
            dport: c.virtual_addr.1,
        };
        let state = if template || !stateful {
            0
        } else {
            u8::try_from(c.state).map_err(|_| SyncRefused::Malformed)?
        };
        if !template && !valid_state(c.protocol, state) {
            return Err(SyncRefused::Malformed);
        }
        let timeouts = self.snapshot.config().timeouts;
        let timeout = match c.timeout {
            0 if template => 180,
            0 => timeouts.for_state(c.protocol, state),
            t => t,
        };
        let expires = now_s.saturating_add(timeout);
        if let Some(idx) = self.conns.find_in(&key) {
            if !template {
                self.set_synced_state(idx, state);
            }
            self.conns.set_expiry(idx, expires);
            self.conns.get_mut(idx).fast |= fast::PEER;
            self.count_as_synced(idx);
            self.counters.sync_received += 1;
            return Ok(());
        }
        let pos = self.synced_service(c, &key).ok_or(SyncRefused::NoService)?;
        let dest = self
            .dests_of(pos)
            .find(|&id| {
                let d = &self.dests[id as usize];
                let port = if d.port == 0 {
                    c.virtual_addr.1
                } else {
                    d.port
                };
                d.in_config && d.addr == c.dest.0 && (template || port == c.dest.1)
            })
            .ok_or(SyncRefused::NoServer)?;
        let method = self.dests[dest as usize].method;
        let local = if template {
            None
        } else {
            match (method, c.local) {
                (ForwardMethod::FullNat, Some((addr, _))) if addr.is_ipv6() != v6 => {
                    return Err(SyncRefused::Malformed)
                }
                (ForwardMethod::FullNat, Some(local)) => Some(local),
                (ForwardMethod::FullNat, None) | (_, Some(_)) => return Err(SyncRefused::Method),
                (_, None) => None,
            }
        };
        if !self.claim_local_port(c.protocol, local) {
            return Err(SyncRefused::LocalPort);
        }
        let control = if template {
            NIL
        } else {
            match self.snapshot.config().services[pos].persistence {
                Some(p) => self
                    .conns
                    .find_in(&self.template_key(pos, &key, p))
                    .unwrap_or(NIL),
                None => NIL,
            }
        };
        let idx = self
            .install_conn(
                key, c.dest.0, c.dest.1, method, dest, state, expires, control, local,
            )
            .ok_or(SyncRefused::TableFull)
            .inspect_err(|_| self.release_local_port(c.protocol, local))?;
        if !template && Some(state) == established_state(c.protocol) {
            self.count_established(idx);
        }
        if !template {
            self.counters.sync_installed += 1;
        }
        self.counters.sync_received += 1;
        self.fast_sync(idx);
        self.conns.get_mut(idx).fast |= fast::PEER;
        self.count_as_synced(idx);
        Ok(())
    }

    /// As the kernel's backup leaves a connection it was sent: counted at
    /// the threshold and sent in its state, so that as a master this
    /// director sends it again at the next period or state change.
    fn count_as_synced(&mut self, idx: u32) {
        let threshold = self.sync_threshold.threshold;
        let c = self.conns.get_mut(idx);
        c.in_pkts = threshold;
        c.sent_state = c.state;
    }

    /// The service a synced entry belongs to: its firewall mark's, or by
    /// (protocol, address, port), then a port-0 service of the address.
    fn synced_service(&self, c: &SyncConn, key: &FlowKey) -> Option<usize> {
        let v6 = key.v6;
        if c.fwmark != 0 {
            return self
                .snapshot
                .service_position(&ServiceKey::fwmark(c.fwmark, v6));
        }
        let proto = crate::config::Protocol::from_number(c.protocol)?;
        let addr: IpAddr = c.virtual_addr.0;
        self.snapshot
            .service_position(&ServiceKey::new(proto, addr, c.virtual_addr.1))
            .or_else(|| {
                self.snapshot
                    .service_position(&ServiceKey::new(proto, addr, 0))
            })
    }

    /// A synced TCP or SCTP connection moves to `state`, counted on its
    /// server as the kernel's backup recounts it.
    fn set_synced_state(&mut self, idx: u32, state: u8) {
        let c = self.conns.get_mut(idx);
        let Some(established) = established_state(c.proto) else {
            return;
        };
        if c.state == state {
            return;
        }
        c.state = state;
        let inactive = c.flags & flag::INACTIVE != 0;
        let d = &mut self.dests[c.dest as usize];
        if !inactive && state != established {
            d.active = d.active.saturating_sub(1);
            d.inactive += 1;
            c.flags |= flag::INACTIVE;
        } else if inactive && state == established {
            d.inactive = d.inactive.saturating_sub(1);
            d.active += 1;
            c.flags &= !flag::INACTIVE;
        }
        self.fast_sync(idx);
    }
}
