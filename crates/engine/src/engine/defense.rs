//! SYN-flood defence: eviction of half-open connections when the table is
//! full, and IPVS's three strategies with their sysctl semantics
//! (`ip_vs_ctl.c` `update_defense_level`, `ip_vs_conn.c`
//! `ip_vs_random_dropentry`, `ip_vs_proto_tcp.c`'s secure state table).
//!
//! The kernel measures "available memory" in free pages; RVS has no memory
//! pool, its connection table is reserved whole at start, so available
//! memory is the table's free entries and `amemthresh` counts entries.
//!
//! - **Eviction** (beyond IPVS, always on): a new connection that finds the
//!   table full evicts the oldest half-open TCP entry, or SCTP association
//!   that has seen only its client's INIT, among a bounded scan
//!   ([`crate::conn::ConnTable::evict_candidate`]); ESTABLISHED and other
//!   states, UDP flows, templates and connections whose client has sent an
//!   ACK (a spoofed source never does) are never evicted.
//! - **drop_entry**: while active, once a second, 1/32 of the table (at most
//!   [`DROP_ENTRY_MAX_SCAN`] slots) from a random place is scanned and its
//!   SYN_RECV / SYNACK entries (SCTP: INIT1 / INIT) removed, except those
//!   whose client has sent an ACK (with `secure_tcp` a real NAT client's connection stays in
//!   SYNACK until the server's first answer). The kernel also drops ESTABLISHED
//!   and UDP entries older than 60 s with at most 8 packets in; RVS keeps
//!   no per-connection packet count and never drops established ones.
//! - **drop_packet**: while active, one in `rate` packets that would create
//!   a connection is dropped (`defense_drop_packet`), rate
//!   `amemthresh / (amemthresh - free)` in the automatic modes and
//!   `am_droprate` in mode 3, counted down as the kernel's `ip_vs_todrop`.
//! - **secure_tcp**: while active, TCP transitions use the secure table.

use super::{secs, Engine};
use crate::config::Defense;
use crate::conn::{flag, Conn};
use crate::proto::{tcp as tcp_state, SctpState, TcpState};
use crate::time::Time;

/// Most table slots one `drop_entry` pass looks at (1/32 of a table of
/// 2M entries): bounded work per second whatever the table's size.
pub(super) const DROP_ENTRY_MAX_SCAN: u32 = 65_536;

/// The defence as it stands: the strategies' live modes (the automatic
/// ones move between 1 and 2) and what is active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefenseStatus {
    /// The settings in force; the modes are live: an automatic strategy
    /// reads 2 while active and 1 while not, as the kernel's sysctl does.
    pub settings: Defense,
    /// Free connection-table entries (RVS's "available memory").
    pub free_entries: u32,
    /// Fewer than `amemthresh` entries are free.
    pub low_memory: bool,
    /// `drop_entry` removes half-open entries each second.
    pub drop_entry_active: bool,
    /// `drop_packet` drops one in this many new connections; 0 = inactive.
    pub drop_rate: u32,
    /// TCP transitions use the secure table.
    pub secure_tcp_active: bool,
}

/// The engine's defence state.
#[derive(Debug)]
pub(super) struct DefenseRt {
    /// The configuration's settings when last seen: a change is an
    /// operator's write, which resets the live modes.
    configured: Defense,
    /// Live modes (drop_entry, drop_packet, secure_tcp).
    live: Defense,
    low_memory: bool,
    drop_entry_active: bool,
    drop_rate: u32,
    drop_counter: i64,
    secure_active: bool,
    /// Last second the level was evaluated.
    last_eval: Option<u32>,
    /// xorshift state for where drop_entry scans.
    rng: u64,
}

impl DefenseRt {
    pub(super) fn new(configured: Defense, seed: u64) -> Self {
        DefenseRt {
            configured,
            live: configured,
            low_memory: false,
            drop_entry_active: false,
            drop_rate: 0,
            drop_counter: 0,
            secure_active: false,
            last_eval: None,
            rng: seed | 1,
        }
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Whether TCP transitions use the secure table now.
    pub(super) fn secure(&self) -> bool {
        self.secure_active
    }

    /// The kernel's `ip_vs_todrop`: counts down from the rate and drops
    /// when it runs out.
    pub(super) fn drop_this_one(&mut self) -> bool {
        if self.drop_rate == 0 {
            return false;
        }
        self.drop_counter -= 1;
        if self.drop_counter > 0 {
            return false;
        }
        self.drop_counter = i64::from(self.drop_rate);
        true
    }

    /// The kernel's `update_defense_level` with `free` entries of
    /// available memory.
    fn update(&mut self, free: u32) {
        let thresh = self.live.amemthresh;
        let nomem = free < thresh;
        self.low_memory = nomem;
        // drop_entry
        self.drop_entry_active = match self.live.drop_entry {
            1 | 2 => {
                self.live.drop_entry = if nomem { 2 } else { 1 };
                nomem
            }
            3 => true,
            _ => false,
        };
        // drop_packet
        match self.live.drop_packet {
            1 | 2 => {
                if nomem {
                    let rate = thresh / (thresh - free);
                    self.drop_rate = rate;
                    self.drop_counter = i64::from(rate);
                    self.live.drop_packet = 2;
                } else {
                    self.drop_rate = 0;
                    self.live.drop_packet = 1;
                }
            }
            3 => self.drop_rate = self.live.am_droprate,
            _ => self.drop_rate = 0,
        }
        // secure_tcp
        if matches!(self.live.secure_tcp, 1 | 2) {
            self.live.secure_tcp = if nomem { 2 } else { 1 };
        }
        self.secure_active = self.live.secure_tcp >= 2;
    }
}

impl Engine {
    /// The defence's live state, for listings and metrics.
    pub fn defense(&self) -> DefenseStatus {
        let d = &self.defense;
        DefenseStatus {
            settings: d.live,
            free_entries: self.conns.capacity() - self.conns.len(),
            low_memory: d.low_memory,
            drop_entry_active: d.drop_entry_active,
            drop_rate: d.drop_rate,
            secure_tcp_active: d.secure_active,
        }
    }

    /// Evaluates the level now (at start, before the first tick).
    pub(super) fn defense_evaluate(&mut self) {
        let free = self.conns.capacity() - self.conns.len();
        self.defense.update(free);
    }

    /// A new configuration: changed settings are an operator's write and
    /// take effect at once (the kernel re-evaluates on a sysctl write).
    pub(super) fn defense_config_changed(&mut self) {
        let configured = self.snapshot.config().defense;
        if configured != self.defense.configured {
            self.defense.configured = configured;
            self.defense.live = configured;
            self.defense_evaluate();
        }
    }

    /// Once a second (from [`Engine::handle_timeout`]): re-evaluates the
    /// level and runs a `drop_entry` pass while it is active.
    pub(super) fn defense_tick(&mut self, now: Time) {
        let now_s = secs(now);
        if self.defense.last_eval.is_some_and(|t| t >= now_s) {
            return;
        }
        self.defense.last_eval = Some(now_s);
        let free = self.conns.capacity() - self.conns.len();
        self.defense.update(free);
        if self.defense.drop_entry_active {
            self.random_drop_entry();
        }
    }

    /// One `drop_entry` pass: 1/32 of the table's slots (at least one, at
    /// most [`DROP_ENTRY_MAX_SCAN`]) from a random start; SYN_RECV and
    /// SYNACK connections found there are removed.
    fn random_drop_entry(&mut self) {
        let used = self.conns.slots_used();
        if used == 0 {
            return;
        }
        let span = (used / 32).clamp(1, DROP_ENTRY_MAX_SCAN);
        let start = (self.defense.next_random() % u64::from(used)) as u32;
        for i in 0..span {
            let idx = (start + i) % used;
            if !self.conns.is_live(idx) || !drop_entry_target(self.conns.get(idx)) {
                continue;
            }
            let c = self.conns.remove(idx);
            self.forget(&c);
            self.counters.defense_entries_dropped += 1;
        }
    }

    /// The table is full: evicts the oldest half-open connection among a
    /// bounded scan. False if there is none (the new connection is then
    /// refused as `conn_table_full`).
    pub(super) fn evict_half_open(&mut self) -> bool {
        let Some(idx) = self.conns.evict_candidate(evictable) else {
            return false;
        };
        let c = self.conns.remove(idx);
        self.forget(&c);
        self.counters.conns_evicted += 1;
        true
    }
}

/// Eviction may take TCP connections whose handshake is not complete and
/// whose client never acknowledged (a spoofed source never does; the
/// secure table keeps a real NAT client's connection in SYNACK until the
/// server answers it), and SCTP associations that have seen nothing but
/// their client's INIT ([`sctp_init_only`]); never a template, an
/// established connection or another protocol's flow.
pub(super) fn evictable(c: &Conn) -> bool {
    c.flags & flag::TEMPLATE == 0
        && match c.proto {
            rvs_wire::ip_proto::TCP => {
                !c.client_acked && TcpState::from_u8(c.state).is_some_and(tcp_state::half_open)
            }
            rvs_wire::ip_proto::SCTP => sctp_init_only(c),
            _ => false,
        }
}

/// An SCTP association in INIT1 or INIT: only the client's INIT seen, all
/// a spoofed INIT flood leaves (the states the kernel's drop_entry takes
/// for SCTP). A client that goes on sends a COOKIE ECHO, which moves it on.
fn sctp_init_only(c: &Conn) -> bool {
    c.state == SctpState::Init1 as u8 || c.state == SctpState::Init as u8
}

/// What `drop_entry` removes: the kernel's SYN_RECV and SYNACK entries,
/// sparing, as eviction does, those whose client acknowledged, and its
/// SCTP INIT1 and INIT ones.
fn drop_entry_target(c: &Conn) -> bool {
    c.flags & flag::TEMPLATE == 0
        && match c.proto {
            rvs_wire::ip_proto::TCP => {
                !c.client_acked
                    && (c.state == TcpState::SynRecv as u8 || c.state == TcpState::SynAck as u8)
            }
            rvs_wire::ip_proto::SCTP => sctp_init_only(c),
            _ => false,
        }
}
