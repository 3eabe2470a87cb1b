//! Persistence templates (`-p timeout -M netmask`), as the kernel's
//! `ip_vs_sched_persist` keeps them: one template per (client network,
//! service) points at a real server; connections it schedules count on it,
//! and it lives while it controls any.

use super::{Engine, Parsed};
use crate::config::Persistence;
use crate::conn::{addr_bytes, FlowKey, NewConn, NIL};
use crate::verdict::DropReason;

impl Engine {
    /// The persistence template for this client, creating it (and scheduling
    /// its server) if needed. Returns the template index and its server;
    /// `Err(None)` when no server is available.
    pub(super) fn persistent_dest(
        &mut self,
        now_s: u32,
        pos: usize,
        p: &Parsed,
        pers: Persistence,
    ) -> Result<(u32, u32), Option<DropReason>> {
        let tkey = self.template_key(pos, &p.key, pers);
        let expires = now_s.saturating_add(pers.timeout);
        if let Some(t) = self.conns.find_in(&tkey) {
            let dest = self.conns.get(t).dest;
            // ip_vs_check_template: a server still configured keeps its
            // clients, even at weight 0 (expire_quiescent_template = 0).
            if self.dests[dest as usize].in_config {
                self.conns.set_expiry(t, expires);
                return Ok((t, dest));
            }
            // Its server is gone: re-point the template at a new pick.
            let new = self.schedule(now_s, pos, p).ok_or(None)?;
            let old = *self.conns.get(t);
            self.unbind(&old);
            let (daddr, dport) = {
                let d = &self.dests[new as usize];
                (addr_bytes(d.addr), d.port)
            };
            let c = self.conns.get_mut(t);
            c.dest = new;
            c.daddr = daddr;
            c.dport = dport;
            self.bind(new, true);
            self.conns.set_expiry(t, expires);
            return Ok((t, new));
        }
        let dest = self.schedule(now_s, pos, p).ok_or(None)?;
        if self.conns.len() >= self.conns.capacity() && !self.evict_half_open() {
            return Err(Some(DropReason::ConnTableFull));
        }
        let (daddr, dport, method) = {
            let d = &self.dests[dest as usize];
            (addr_bytes(d.addr), d.port, d.method)
        };
        let t = self
            .conns
            .insert(NewConn {
                key: tkey,
                daddr,
                dport,
                laddr: tkey.saddr,
                lport: tkey.sport,
                method,
                dest,
                state: 0,
                expires,
                control: NIL,
            })
            .ok_or(Some(DropReason::ConnTableFull))?;
        self.bind(dest, true);
        Ok((t, dest))
    }
}

impl Engine {
    /// The key of the template that persists `flow`'s client on service `pos`.
    pub(super) fn template_key(&self, pos: usize, flow: &FlowKey, pers: Persistence) -> FlowKey {
        let key = self.snapshot.config().services[pos].key;
        let mut tkey = FlowKey {
            template: true,
            proto: if key.is_fwmark() { 0 } else { flow.proto },
            v6: flow.v6,
            saddr: masked(flow.saddr, flow.v6, pers.prefix_len),
            sport: 0,
            daddr: flow.daddr,
            dport: if key.port == 0 { 0 } else { flow.dport },
        };
        if key.is_fwmark() {
            tkey.daddr = [0; 16];
            tkey.daddr[..4].copy_from_slice(&key.fwmark.to_be_bytes());
        }
        tkey
    }
}

/// `addr` with only its first `prefix_len` bits kept (the `-M` netmask).
fn masked(addr: [u8; 16], v6: bool, prefix_len: u8) -> [u8; 16] {
    let width = if v6 { 128 } else { 32 };
    let keep = u32::from(prefix_len.min(width));
    let mut out = [0u8; 16];
    for (i, b) in addr.iter().enumerate().take(width as usize / 8) {
        let bits_before = i as u32 * 8;
        out[i] = if bits_before + 8 <= keep {
            *b
        } else if bits_before >= keep {
            0
        } else {
            b & (0xffu8 << (8 - (keep - bits_before)))
        };
    }
    out
}
