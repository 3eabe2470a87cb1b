//! Read-outs and resets for the control plane (listings, `-Lc`, `-Z`, `-C`).
//! None of this runs per packet; it may allocate.

use rvs_wire::ip_proto;

use super::{secs, Engine};
use crate::config::ServiceKey;
use crate::conn::{bytes_addr, Conn};
use crate::proto::TcpState;
use crate::stats::{Counters, Stats};
use crate::status::{ConnInfo, DestStatus, ServiceStatus};
use crate::time::Time;

impl Engine {
    /// Engine-wide counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Tracked connections.
    pub fn connection_count(&self) -> u32 {
        self.conns.len()
    }

    /// The connection limit this engine was built with.
    pub fn connection_capacity(&self) -> u32 {
        self.conns.capacity()
    }

    /// Memory reserved per connection slot (slab + both indexes), in bytes.
    pub fn bytes_per_connection(&self) -> f64 {
        self.conns.bytes_per_connection()
    }

    /// Services, their real servers (configured ones in `ipvsadm -a` order,
    /// then draining ones) and counters.
    pub fn status(&self) -> Vec<ServiceStatus> {
        let mut out = Vec::with_capacity(self.services.len());
        for (pos, svc) in self.services.iter().enumerate() {
            let cfg = &self.snapshot.config().services[pos];
            let mut dests: Vec<DestStatus> = cfg
                .dests
                .iter()
                .filter_map(|d| {
                    let id = *self.dest_index.get(&(svc.key, d.addr, d.port))?;
                    Some(self.dest_status(id))
                })
                .collect();
            for (id, rt) in self.dests.iter().enumerate() {
                if rt.live && !rt.in_config && rt.service == svc.key {
                    dests.push(self.dest_status(id as u32));
                }
            }
            out.push(ServiceStatus {
                key: svc.key,
                scheduler: svc.scheduler_name.clone(),
                dests,
                stats: svc.stats,
            });
        }
        out
    }

    fn dest_status(&self, id: u32) -> DestStatus {
        let d = &self.dests[id as usize];
        DestStatus {
            addr: d.addr,
            port: d.port,
            weight: d.weight,
            method: d.method,
            active: d.active,
            inactive: d.inactive,
            persistent: d.persistent,
            overloaded: d.overloaded,
            draining: !d.in_config,
            stats: d.stats,
        }
    }

    /// Every tracked connection (`ipvsadm -Lc`). Expiry of connections the
    /// XDP program forwards is as of their last answered activity check; ask
    /// for fresh ones first with [`Engine::refresh_fast_path_activity`].
    pub fn connections(&self, now: Time) -> Vec<ConnInfo> {
        let now_s = secs(now);
        let mut out = Vec::with_capacity(self.conns.len() as usize);
        self.conns.for_each(|c| out.push(conn_info(c, now_s)));
        out
    }

    /// Zeroes the traffic counters of one service and its real servers, or
    /// of all (`ipvsadm -Z [service]`); connection counts are state, not
    /// counters, and stay.
    pub fn zero_stats(&mut self, only: Option<ServiceKey>) {
        let hit = |k: &ServiceKey| only.is_none_or(|o| o == *k);
        for s in self.services.iter_mut().filter(|s| hit(&s.key)) {
            s.stats = Stats::default();
        }
        for d in self.dests.iter_mut().filter(|d| hit(&d.service)) {
            d.stats = Stats::default();
        }
    }

    /// FullNAT ports in use on local address `addr`.
    pub fn local_ports_in_use(&self, addr: std::net::IpAddr) -> u32 {
        self.local_ports.in_use(addr)
    }

    /// Drops every tracked connection (e.g. `ipvsadm -C` semantics).
    pub fn clear_connections(&mut self) {
        let mut bound: Vec<Conn> = Vec::with_capacity(self.conns.len() as usize);
        self.conns.clear(|c| bound.push(*c));
        for c in &bound {
            self.forget(c);
        }
    }
}

fn conn_info(c: &Conn, now_s: u32) -> ConnInfo {
    let v6 = c.v6();
    ConnInfo {
        protocol: c.proto,
        template: c.is_template(),
        client: (bytes_addr(&c.caddr, v6), c.cport),
        virtual_: (bytes_addr(&c.vaddr, v6), c.vport),
        dest: (bytes_addr(&c.daddr, v6), c.dport),
        state: if c.is_template() {
            "NONE"
        } else if c.proto == ip_proto::TCP {
            TcpState::from_u8(c.state).unwrap_or(TcpState::None).name()
        } else if c.proto == ip_proto::SCTP {
            crate::proto::SctpState::from_u8(c.state)
                .unwrap_or(crate::proto::SctpState::None)
                .name()
        } else {
            crate::proto::udp::STATE_NAME
        },
        expires_in_secs: c.expires.saturating_sub(now_s),
        method: c.method(),
        local: c
            .holds_local_port()
            .then(|| (bytes_addr(&c.laddr, v6), c.lport)),
    }
}
