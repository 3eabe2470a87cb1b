//! The connection table: every tracked flow, found by its 5-tuple from either
//! side, expired by a timing wheel driven by the caller's clock.
//!
//! Memory layout, chosen for the bytes-per-connection budget:
//! - a slab of fixed-size [`Conn`] entries (108 bytes), preallocated to the
//!   configured maximum, with a free list threaded through `next`;
//! - two `HashTable<u32>` indexes holding only slab indices (4 bytes + 1
//!   control byte per bucket): `by_in` keyed by (proto, client, virtual), and
//!   `by_out` keyed by (proto, real server, the client as the server sees
//!   it) for NAT and FullNAT replies;
//! - a timing wheel of 1-second slots, doubly linked through the slab, each
//!   slot in the order its entries were linked (oldest first: a full table
//!   evicts the oldest half-open entry, see `evict_candidate`).
//!
//! Expiry is lazy: a packet only moves `expires` forward, leaving the entry in
//! its slot; when the slot comes due an entry that is not yet expired is
//! relinked at its new time. Only a *shorter* timeout (a state change such as
//! FIN or RST) relinks immediately, so the common per-packet cost is one store.
//!
//! Nothing here allocates after construction.

use std::net::IpAddr;

use ahash::RandomState;
use hashbrown::HashTable;

use crate::config::ForwardMethod;

/// "No entry" in links and indices.
pub(crate) const NIL: u32 = u32::MAX;

/// Wheel slots: a power of two, one second each, spanning more than the
/// default ESTABLISHED timeout so most entries are visited once.
const WHEEL_SLOTS: usize = 4096;

/// Eviction looks at no more than this many entries…
const EVICT_SCAN_ENTRIES: u32 = 64;
/// …and wheel slots, so a full table costs a new connection bounded work.
const EVICT_SCAN_SLOTS: u32 = 1024;

/// Slots from the wheel's clock in which a new entry is queued (the NONE
/// timeout is 2 s): a settled entry found there moves to its real slot.
const EARLY_SLOTS: u32 = 2;

/// An address as stored in the table: IPv4 in the first four bytes.
pub(crate) type AddrBytes = [u8; 16];

pub(crate) fn addr_bytes(a: IpAddr) -> AddrBytes {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => b = v6.octets(),
    }
    b
}

pub(crate) fn bytes_addr(b: &AddrBytes, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::from(*b)
    } else {
        IpAddr::from([b[0], b[1], b[2], b[3]])
    }
}

/// Flag bits of [`Conn::flags`].
pub(crate) mod flag {
    /// IPv6 addresses.
    pub(crate) const V6: u8 = 1 << 0;
    /// Counted as inactive on its real server (IPVS `IP_VS_CONN_F_INACTIVE`).
    pub(crate) const INACTIVE: u8 = 1 << 1;
    /// No reply seen yet (IPVS `IP_VS_CONN_F_NOOUTPUT`): DR/TUN stay so.
    pub(crate) const NO_OUTPUT: u8 = 1 << 2;
    /// Entry in use.
    pub(crate) const LIVE: u8 = 1 << 3;
    /// Indexed in `by_out` (NAT, FullNAT).
    pub(crate) const OUT_INDEXED: u8 = 1 << 4;
    /// Forwarding method, two bits.
    pub(crate) const METHOD_SHIFT: u8 = 5;
    pub(crate) const METHOD_MASK: u8 = 0b11 << METHOD_SHIFT;
    /// A persistence template (IPVS `IP_VS_CONN_F_TEMPLATE`): client network
    /// → real server, with client port 0; `control` counts the connections
    /// it scheduled.
    pub(crate) const TEMPLATE: u8 = 1 << 7;
}

/// Bits of [`Conn::fast`]: what the XDP program's connection map holds for it.
pub(crate) mod fast {
    /// Its directions are in the map (to the engine or forwarding).
    pub(crate) const MAPPED: u8 = 1 << 0;
    /// Its entries forward in XDP (the ACKs of an established or closing
    /// TCP connection, every UDP datagram).
    pub(crate) const FORWARD: u8 = 1 << 1;
    /// Its state came from another director's sync, and the XDP program
    /// here has not forwarded a frame of it since: a master's refresh
    /// must not echo it back (only the director that forwards a
    /// connection sends it).
    pub(crate) const PEER: u8 = 1 << 2;
    /// Its NAT reply entry forwards the real server's SYN+ACK (SYN_RECV);
    /// the client's direction still goes to the engine.
    pub(crate) const REPLY_SYN: u8 = 1 << 3;
}

/// One tracked connection (or persistence template). 108 bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conn {
    pub(crate) caddr: AddrBytes,
    pub(crate) vaddr: AddrBytes,
    pub(crate) daddr: AddrBytes,
    /// The client end as the real server sees it: the client itself, or
    /// for FullNAT the local address and port the connection was given.
    pub(crate) laddr: AddrBytes,
    pub(crate) cport: u16,
    pub(crate) vport: u16,
    pub(crate) dport: u16,
    pub(crate) lport: u16,
    pub(crate) proto: u8,
    /// Protocol state (TcpState for TCP; 0 for UDP).
    pub(crate) state: u8,
    pub(crate) flags: u8,
    /// [`fast`] bits.
    pub(crate) fast: u8,
    /// Engine destination slot.
    pub(crate) dest: u32,
    /// Expiry, in whole seconds of engine time.
    pub(crate) expires: u32,
    /// Second of the wheel slot the entry is linked in.
    queued: u32,
    next: u32,
    prev: u32,
    /// For a connection: its template's index (or NIL). For a template: how
    /// many live connections it controls (it does not expire before 0).
    pub(crate) control: u32,
    /// Next hop of the NAT reply direction's fast-path entry, or NIL.
    pub(crate) out_hop: u32,
    /// The client sent an ACK (without SYN or RST): it answered the
    /// handshake, which a spoofed source never does. Kept in what was
    /// padding.
    pub(crate) client_acked: bool,
    /// The kernel's `in_pkts`: packets from the client the engine counted,
    /// modulo the sync period (saturating when the period is 0), for the
    /// sync threshold. In what was padding.
    pub(crate) in_pkts: u16,
    /// The kernel's `old_state`: the state this connection was last sent
    /// to the backups in, or [`NEVER_SENT`]. In what was padding.
    pub(crate) sent_state: u8,
}

/// [`Conn::sent_state`] of a connection never sent (no protocol has a state
/// this high).
pub(crate) const NEVER_SENT: u8 = u8::MAX;

impl Conn {
    pub(crate) fn v6(&self) -> bool {
        self.flags & flag::V6 != 0
    }

    pub(crate) fn method(&self) -> ForwardMethod {
        match (self.flags & flag::METHOD_MASK) >> flag::METHOD_SHIFT {
            0 => ForwardMethod::Route,
            1 => ForwardMethod::Masq,
            2 => ForwardMethod::Tunnel,
            _ => ForwardMethod::FullNat,
        }
    }

    pub(crate) fn is_template(&self) -> bool {
        self.flags & flag::TEMPLATE != 0
    }

    /// A connection value that is never stored: one-packet scheduling
    /// forwards with it and forgets it.
    pub(crate) fn ephemeral(n: &NewConn) -> Conn {
        Conn {
            caddr: n.key.saddr,
            vaddr: n.key.daddr,
            daddr: n.daddr,
            laddr: n.laddr,
            cport: n.key.sport,
            vport: n.key.dport,
            dport: n.dport,
            lport: n.lport,
            proto: n.key.proto,
            state: n.state,
            flags: method_bits(n.method) | if n.key.v6 { flag::V6 } else { 0 },
            fast: 0,
            dest: n.dest,
            expires: n.expires,
            queued: 0,
            next: NIL,
            prev: NIL,
            control: NIL,
            out_hop: NIL,
            client_acked: false,
            in_pkts: 0,
            sent_state: NEVER_SENT,
        }
    }

    fn matches_in(&self, k: &FlowKey) -> bool {
        self.is_template() == k.template
            && self.proto == k.proto
            && self.cport == k.sport
            && self.vport == k.dport
            && self.caddr == k.saddr
            && self.vaddr == k.daddr
            && self.v6() == k.v6
    }

    fn matches_out(&self, k: &FlowKey) -> bool {
        self.proto == k.proto
            && self.dport == k.sport
            && self.lport == k.dport
            && self.daddr == k.saddr
            && self.laddr == k.daddr
            && self.v6() == k.v6
    }

    /// Whether a FullNAT local port was taken for it (to give back when it
    /// goes).
    pub(crate) fn holds_local_port(&self) -> bool {
        !self.is_template() && self.method() == ForwardMethod::FullNat
    }
}

fn method_bits(m: ForwardMethod) -> u8 {
    (match m {
        ForwardMethod::Route => 0u8,
        ForwardMethod::Masq => 1,
        ForwardMethod::Tunnel => 2,
        ForwardMethod::FullNat => 3,
    }) << flag::METHOD_SHIFT
}

/// A packet's 5-tuple as it appears on the wire (or a template's key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlowKey {
    /// Looking for a persistence template rather than a connection.
    pub(crate) template: bool,
    pub(crate) proto: u8,
    pub(crate) v6: bool,
    pub(crate) saddr: AddrBytes,
    pub(crate) sport: u16,
    pub(crate) daddr: AddrBytes,
    pub(crate) dport: u16,
}

/// What a new connection is created with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewConn {
    pub(crate) key: FlowKey,
    pub(crate) daddr: AddrBytes,
    pub(crate) dport: u16,
    /// The client end the real server sees: `key`'s source, or FullNAT's
    /// local address and port.
    pub(crate) laddr: AddrBytes,
    pub(crate) lport: u16,
    pub(crate) method: ForwardMethod,
    pub(crate) dest: u32,
    pub(crate) state: u8,
    pub(crate) expires: u32,
    /// Template index for a connection (NIL if none); ignored for templates.
    pub(crate) control: u32,
}

/// The table. See the module doc for the layout.
pub(crate) struct ConnTable {
    slab: Vec<Conn>,
    free: u32,
    len: u32,
    max: u32,
    by_in: HashTable<u32>,
    by_out: HashTable<u32>,
    hasher: RandomState,
    wheel: Box<[u32]>,
    /// Last entry of each slot (entries are appended).
    wheel_tail: Box<[u32]>,
    /// Last second the wheel processed.
    wheel_now: u32,
}

fn hash_tuple(h: &RandomState, proto: u8, a: &AddrBytes, ap: u16, b: &AddrBytes, bp: u16) -> u64 {
    let a_hi = u64::from_ne_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
    let a_lo = u64::from_ne_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]);
    let b_hi = u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let b_lo = u64::from_ne_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
    let ports = u64::from(proto) << 32 | u64::from(ap) << 16 | u64::from(bp);
    h.hash_one((
        a_hi ^ b_lo.rotate_left(17),
        a_lo ^ b_hi.rotate_left(31),
        ports,
    ))
}

impl ConnTable {
    /// A table for at most `max` connections, all memory reserved now.
    pub(crate) fn new(max: u32, seeds: [u64; 4]) -> Self {
        let cap = max as usize;
        ConnTable {
            slab: Vec::with_capacity(cap),
            free: NIL,
            len: 0,
            max,
            by_in: HashTable::with_capacity(cap),
            by_out: HashTable::with_capacity(cap),
            hasher: RandomState::with_seeds(seeds[0], seeds[1], seeds[2], seeds[3]),
            wheel: vec![NIL; WHEEL_SLOTS].into_boxed_slice(),
            wheel_tail: vec![NIL; WHEEL_SLOTS].into_boxed_slice(),
            wheel_now: 0,
        }
    }

    /// Tracked connections.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Configured maximum.
    pub(crate) fn capacity(&self) -> u32 {
        self.max
    }

    /// Starts the wheel's clock (the first `now` the engine sees).
    pub(crate) fn start_clock(&mut self, now_secs: u32) {
        if self.len == 0 {
            self.wheel_now = now_secs;
        }
    }

    pub(crate) fn get(&self, idx: u32) -> &Conn {
        &self.slab[idx as usize]
    }

    pub(crate) fn get_mut(&mut self, idx: u32) -> &mut Conn {
        &mut self.slab[idx as usize]
    }

    /// Looks a packet up as client → virtual (input direction).
    pub(crate) fn find_in(&self, k: &FlowKey) -> Option<u32> {
        let h = hash_tuple(&self.hasher, k.proto, &k.saddr, k.sport, &k.daddr, k.dport);
        let slab = &self.slab;
        self.by_in
            .find(h, |&i| slab[i as usize].matches_in(k))
            .copied()
    }

    /// Looks a packet up as real server → client (NAT output direction).
    pub(crate) fn find_out(&self, k: &FlowKey) -> Option<u32> {
        let h = hash_tuple(&self.hasher, k.proto, &k.saddr, k.sport, &k.daddr, k.dport);
        let slab = &self.slab;
        self.by_out
            .find(h, |&i| slab[i as usize].matches_out(k))
            .copied()
    }

    /// Adds a connection; `None` when the table is full.
    pub(crate) fn insert(&mut self, n: NewConn) -> Option<u32> {
        if self.len >= self.max {
            return None;
        }
        let mut flags = flag::LIVE | method_bits(n.method);
        if n.key.v6 {
            flags |= flag::V6;
        }
        if n.key.template {
            flags |= flag::TEMPLATE;
        } else if !n.method.translates() {
            flags |= flag::INACTIVE | flag::NO_OUTPUT;
        } else {
            flags |= flag::INACTIVE | flag::OUT_INDEXED;
        }
        let conn = Conn {
            flags,
            control: if n.key.template { 0 } else { n.control },
            ..Conn::ephemeral(&n)
        };
        let idx = if self.free != NIL {
            let idx = self.free;
            self.free = self.slab[idx as usize].next;
            self.slab[idx as usize] = conn;
            idx
        } else {
            // Within the reserved capacity: no reallocation.
            self.slab.push(conn);
            (self.slab.len() - 1) as u32
        };
        self.len += 1;
        let hasher = &self.hasher;
        let slab = &self.slab;
        let h_in = hash_tuple(
            hasher,
            conn.proto,
            &conn.caddr,
            conn.cport,
            &conn.vaddr,
            conn.vport,
        );
        self.by_in.insert_unique(h_in, idx, |&i| {
            let c = &slab[i as usize];
            hash_tuple(hasher, c.proto, &c.caddr, c.cport, &c.vaddr, c.vport)
        });
        if flags & flag::OUT_INDEXED != 0 {
            let h_out = hash_tuple(
                hasher,
                conn.proto,
                &conn.daddr,
                conn.dport,
                &conn.laddr,
                conn.lport,
            );
            self.by_out.insert_unique(h_out, idx, |&i| {
                let c = &slab[i as usize];
                hash_tuple(hasher, c.proto, &c.daddr, c.dport, &c.laddr, c.lport)
            });
        }
        self.link(idx, n.expires);
        Some(idx)
    }

    /// Sets a new expiry; relinks only when it moved earlier than the slot.
    pub(crate) fn set_expiry(&mut self, idx: u32, expires: u32) {
        let c = &mut self.slab[idx as usize];
        c.expires = expires;
        if expires < c.queued {
            self.unlink(idx);
            self.link(idx, expires);
        }
    }

    /// As [`ConnTable::set_expiry`]; a `settled` entry (one eviction may
    /// not take) still queued in the wheel's first slots, where eviction
    /// looks, moves to its real slot now (once: it is then queued there).
    pub(crate) fn set_expiry_settled(&mut self, idx: u32, expires: u32, settled: bool) {
        let c = &self.slab[idx as usize];
        if settled && c.queued <= self.wheel_now.saturating_add(EARLY_SLOTS) && expires > c.queued {
            self.slab[idx as usize].expires = expires;
            self.unlink(idx);
            self.link(idx, expires);
        } else {
            self.set_expiry(idx, expires);
        }
    }

    /// Removes a connection now (e.g. a SYN reusing a TIME_WAIT tuple).
    pub(crate) fn remove(&mut self, idx: u32) -> Conn {
        self.unlink(idx);
        self.unindex(idx)
    }

    /// Expires every connection due at `now_secs`, handing each to
    /// `on_expire`; an entry for which `keep` returns a new expiry lives on
    /// (a template that still controls connections). Work is proportional to
    /// the seconds elapsed (at most one wheel turn) plus the visited entries.
    pub(crate) fn expire(
        &mut self,
        now_secs: u32,
        mut keep: impl FnMut(u32, &Conn) -> Option<u32>,
        mut on_expire: impl FnMut(&Conn),
    ) -> usize {
        let mut expired = 0;
        if now_secs <= self.wheel_now {
            return 0;
        }
        let steps = (now_secs - self.wheel_now).min(WHEEL_SLOTS as u32);
        for s in 1..=steps {
            let slot = (self.wheel_now.wrapping_add(s) as usize) & (WHEEL_SLOTS - 1);
            let mut idx = std::mem::replace(&mut self.wheel[slot], NIL);
            self.wheel_tail[slot] = NIL;
            while idx != NIL {
                let next = self.slab[idx as usize].next;
                let expires = self.slab[idx as usize].expires;
                if expires <= now_secs {
                    if let Some(later) = keep(idx, &self.slab[idx as usize]) {
                        let later = later.max(now_secs.saturating_add(1));
                        self.slab[idx as usize].expires = later;
                        self.link(idx, later);
                    } else {
                        let conn = self.unindex(idx);
                        on_expire(&conn);
                        expired += 1;
                    }
                } else {
                    self.link(idx, expires);
                }
                idx = next;
            }
        }
        self.wheel_now = now_secs;
        expired
    }

    /// The entry to evict for a new connection when the table is full: of
    /// the first entries in expiry order (the wheel from its next slot,
    /// bounded by `EVICT_SCAN_ENTRIES` entries and `EVICT_SCAN_SLOTS`
    /// slots), the `eligible` one that expires first, so the oldest
    /// half-open entry goes and one whose handshake just started stays.
    /// `None` if none of them is eligible.
    pub(crate) fn evict_candidate(&self, eligible: impl Fn(&Conn) -> bool) -> Option<u32> {
        // (index, expiry) of the best so far. Slots come in time order and
        // list their entries oldest first, so on equal expiry the first
        // found is the oldest.
        let mut best: Option<(u32, u32)> = None;
        let mut seen = 0;
        for s in 1..=EVICT_SCAN_SLOTS {
            let slot = (self.wheel_now.wrapping_add(s) as usize) & (WHEEL_SLOTS - 1);
            let mut idx = self.wheel[slot];
            while idx != NIL {
                let c = &self.slab[idx as usize];
                if best.is_none_or(|(_, e)| c.expires < e) && eligible(c) {
                    best = Some((idx, c.expires));
                }
                seen += 1;
                if seen >= EVICT_SCAN_ENTRIES {
                    return best.map(|(i, _)| i);
                }
                idx = c.next;
            }
        }
        best.map(|(i, _)| i)
    }

    /// Slab slots ever used (live or free): the range a scan of the whole
    /// table walks.
    pub(crate) fn slots_used(&self) -> u32 {
        self.slab.len() as u32
    }

    /// Whether slab slot `idx` holds a live entry.
    pub(crate) fn is_live(&self, idx: u32) -> bool {
        self.slab
            .get(idx as usize)
            .is_some_and(|c| c.flags & flag::LIVE != 0)
    }

    /// Seconds of the earliest slot that may hold work, if any connection exists.
    pub(crate) fn next_tick(&self) -> Option<u32> {
        (self.len > 0).then(|| self.wheel_now.saturating_add(1))
    }

    /// Calls `f` for every live connection (listing; not for the hot path).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Conn)) {
        self.slab
            .iter()
            .filter(|c| c.flags & flag::LIVE != 0)
            .for_each(&mut f);
    }

    /// Calls `f` with the index of every live connection (control path).
    pub(crate) fn for_each_index(&self, mut f: impl FnMut(u32)) {
        for (idx, c) in self.slab.iter().enumerate() {
            if c.flags & flag::LIVE != 0 {
                f(idx as u32);
            }
        }
    }

    /// Removes every connection, handing each to `on_remove`.
    pub(crate) fn clear(&mut self, mut on_remove: impl FnMut(&Conn)) {
        for idx in 0..self.slab.len() as u32 {
            if self.slab[idx as usize].flags & flag::LIVE != 0 {
                let c = self.remove(idx);
                on_remove(&c);
            }
        }
    }

    fn link(&mut self, idx: u32, at: u32) {
        // An entry is never queued in the past: that slot was already visited.
        let at = at.max(self.wheel_now.saturating_add(1));
        let slot = (at as usize) & (WHEEL_SLOTS - 1);
        let tail = self.wheel_tail[slot];
        {
            let c = &mut self.slab[idx as usize];
            c.queued = at;
            c.next = NIL;
            c.prev = tail;
        }
        if tail != NIL {
            self.slab[tail as usize].next = idx;
        } else {
            self.wheel[slot] = idx;
        }
        self.wheel_tail[slot] = idx;
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next, queued) = {
            let c = &self.slab[idx as usize];
            (c.prev, c.next, c.queued)
        };
        let slot = (queued as usize) & (WHEEL_SLOTS - 1);
        if prev != NIL {
            self.slab[prev as usize].next = next;
        } else if self.wheel[slot] == idx {
            self.wheel[slot] = next;
        }
        if next != NIL {
            self.slab[next as usize].prev = prev;
        } else if self.wheel_tail[slot] == idx {
            self.wheel_tail[slot] = prev;
        }
    }

    /// Drops the indexes and frees the slab entry (already unlinked from the wheel).
    fn unindex(&mut self, idx: u32) -> Conn {
        let conn = self.slab[idx as usize];
        let h_in = hash_tuple(
            &self.hasher,
            conn.proto,
            &conn.caddr,
            conn.cport,
            &conn.vaddr,
            conn.vport,
        );
        if let Ok(e) = self.by_in.find_entry(h_in, |&i| i == idx) {
            e.remove();
        }
        if conn.flags & flag::OUT_INDEXED != 0 {
            let h_out = hash_tuple(
                &self.hasher,
                conn.proto,
                &conn.daddr,
                conn.dport,
                &conn.laddr,
                conn.lport,
            );
            if let Ok(e) = self.by_out.find_entry(h_out, |&i| i == idx) {
                e.remove();
            }
        }
        let c = &mut self.slab[idx as usize];
        c.flags = 0;
        c.next = self.free;
        self.free = idx;
        self.len -= 1;
        conn
    }

    /// Bytes of memory reserved per connection slot at the configured
    /// maximum: slab entry plus both indexes' buckets and control bytes.
    pub(crate) fn bytes_per_connection(&self) -> f64 {
        let slab = self.slab.capacity() * std::mem::size_of::<Conn>();
        let idx = |t: &HashTable<u32>| {
            // hashbrown: buckets = next_pow2(cap * 8 / 7); 4-byte slot + 1 control byte.
            let buckets = (t.capacity() * 8 / 7).next_power_of_two().max(1);
            buckets * (std::mem::size_of::<u32>() + 1)
        };
        (slab + idx(&self.by_in) + idx(&self.by_out)) as f64 / f64::from(self.max.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(client_port: u16) -> FlowKey {
        FlowKey {
            template: false,
            proto: 6,
            v6: false,
            saddr: addr_bytes(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2))),
            sport: client_port,
            daddr: addr_bytes(IpAddr::V4(Ipv4Addr::new(10, 0, 100, 1))),
            dport: 80,
        }
    }

    fn new_conn(port: u16, method: ForwardMethod, expires: u32) -> NewConn {
        let key = key(port);
        NewConn {
            key,
            daddr: addr_bytes(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 11))),
            dport: 8080,
            laddr: key.saddr,
            lport: key.sport,
            method,
            dest: 7,
            state: 0,
            expires,
            control: NIL,
        }
    }

    #[test]
    fn conn_entry_is_108_bytes() {
        assert_eq!(std::mem::size_of::<Conn>(), 108);
    }

    #[test]
    fn insert_find_both_directions_and_remove() {
        let mut t = ConnTable::new(16, [1, 2, 3, 4]);
        let i = t.insert(new_conn(1000, ForwardMethod::Masq, 10)).unwrap();
        assert_eq!(t.find_in(&key(1000)), Some(i));
        assert_eq!(t.find_in(&key(1001)), None);
        let reply = FlowKey {
            template: false,
            proto: 6,
            v6: false,
            saddr: addr_bytes("10.0.2.11".parse().unwrap()),
            sport: 8080,
            daddr: key(1000).saddr,
            dport: 1000,
        };
        assert_eq!(t.find_out(&reply), Some(i));
        // DR connections are not found from the server side.
        let j = t.insert(new_conn(1001, ForwardMethod::Route, 10)).unwrap();
        assert_eq!(t.get(j).method(), ForwardMethod::Route);
        assert_eq!(
            t.find_out(&FlowKey {
                dport: 1001,
                ..reply
            }),
            None
        );
        let c = t.remove(i);
        assert_eq!(c.cport, 1000);
        assert_eq!(t.find_in(&key(1000)), None);
        assert_eq!(t.find_out(&reply), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn full_table_refuses_and_frees_reuse_slots() {
        let mut t = ConnTable::new(2, [0; 4]);
        assert!(t.insert(new_conn(1, ForwardMethod::Route, 5)).is_some());
        let b = t.insert(new_conn(2, ForwardMethod::Route, 5)).unwrap();
        assert!(t.insert(new_conn(3, ForwardMethod::Route, 5)).is_none());
        t.remove(b);
        let c = t.insert(new_conn(3, ForwardMethod::Route, 5)).unwrap();
        assert_eq!(b, c, "freed slot reused");
        assert_eq!(t.slab.capacity(), 2, "no growth beyond the reservation");
    }

    #[test]
    fn lazy_expiry_with_refresh_and_shortening() {
        let mut t = ConnTable::new(8, [0; 4]);
        t.start_clock(100);
        let a = t.insert(new_conn(1, ForwardMethod::Route, 110)).unwrap();
        let b = t.insert(new_conn(2, ForwardMethod::Route, 110)).unwrap();
        let c = t.insert(new_conn(3, ForwardMethod::Route, 1000)).unwrap();
        t.set_expiry(a, 200); // refreshed: stays queued at 110, relinked lazily
        t.set_expiry(c, 105); // shortened: relinked now
        let mut gone = Vec::new();
        assert_eq!(t.expire(104, |_, _| None, |x| gone.push(x.cport)), 0);
        assert_eq!(t.expire(105, |_, _| None, |x| gone.push(x.cport)), 1);
        assert_eq!(t.expire(150, |_, _| None, |x| gone.push(x.cport)), 1);
        assert_eq!(gone, vec![3, 2]);
        assert_eq!(t.find_in(&key(1)), Some(a));
        assert_eq!(t.find_in(&key(2)), None);
        let _ = b;
        assert_eq!(t.expire(199, |_, _| None, |x| gone.push(x.cport)), 0);
        assert_eq!(t.expire(200, |_, _| None, |x| gone.push(x.cport)), 1);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn long_idle_jump_and_long_timeouts() {
        let mut t = ConnTable::new(8, [0; 4]);
        t.start_clock(0);
        // Longer than one wheel turn.
        t.insert(new_conn(1, ForwardMethod::Route, 10_000)).unwrap();
        t.insert(new_conn(2, ForwardMethod::Route, 20)).unwrap();
        let mut n = 0;
        n += t.expire(5000, |_, _| None, |_| {});
        assert_eq!(n, 1);
        n += t.expire(9_999, |_, _| None, |_| {});
        assert_eq!(n, 1);
        n += t.expire(1_000_000, |_, _| None, |_| {});
        assert_eq!(n, 2);
    }

    #[test]
    fn templates_are_separate_keys_and_can_be_kept_alive() {
        let mut t = ConnTable::new(8, [0; 4]);
        t.start_clock(0);
        let mut tk = key(0);
        tk.template = true;
        let tpl = t
            .insert(NewConn {
                key: tk,
                ..new_conn(0, ForwardMethod::Route, 10)
            })
            .unwrap();
        // A connection with client port 0 is not the template.
        assert_eq!(t.find_in(&key(0)), None);
        assert_eq!(t.find_in(&tk), Some(tpl));
        assert!(t.get(tpl).is_template());
        let mut kept = 0;
        let n = t.expire(
            10,
            |_, c| {
                kept += 1;
                (kept == 1 && c.is_template()).then_some(20)
            },
            |_| {},
        );
        assert_eq!((n, t.len()), (0, 1), "kept alive once");
        assert_eq!(t.expire(20, |_, _| None, |_| {}), 1);
    }

    #[test]
    fn eviction_takes_the_oldest_eligible_entry_of_a_slot() {
        let mut t = ConnTable::new(16, [0; 4]);
        t.start_clock(100);
        // Same slot, same expiry: linked in this order.
        let ids: Vec<u32> = (1..=5)
            .map(|p| t.insert(new_conn(p, ForwardMethod::Route, 160)).unwrap())
            .collect();
        assert_eq!(t.evict_candidate(|_| true), Some(ids[0]));
        assert_eq!(t.evict_candidate(|c| c.cport >= 3), Some(ids[2]));
        t.remove(ids[0]);
        assert_eq!(t.evict_candidate(|_| true), Some(ids[1]));
        // An earlier expiry wins whatever its place.
        t.set_expiry(ids[4], 150);
        assert_eq!(t.evict_candidate(|_| true), Some(ids[4]));
        assert_eq!(t.evict_candidate(|_| false), None);
        // Expiry keeps working with appended slots.
        let mut gone = Vec::new();
        t.expire(150, |_, _| None, |c| gone.push(c.cport));
        assert_eq!(gone, vec![5]);
        t.expire(160, |_, _| None, |c| gone.push(c.cport));
        assert_eq!(gone, vec![5, 2, 3, 4]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn clear_removes_all() {
        let mut t = ConnTable::new(8, [0; 4]);
        for p in 0..5 {
            t.insert(new_conn(p, ForwardMethod::Masq, 50)).unwrap();
        }
        let mut n = 0;
        t.clear(|_| n += 1);
        assert_eq!((n, t.len()), (5, 0));
        assert_eq!(t.expire(100, |_, _| None, |_| panic!("already removed")), 0);
    }
}
