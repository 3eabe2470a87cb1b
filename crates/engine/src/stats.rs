//! Counters. Each engine shard counts on its own (no atomics, no sharing);
//! the control plane sums shards when it reads.

use crate::verdict::DropReason;

/// Per-service and per-real-server traffic counters, as IPVS keeps them
/// (`ipvsadm -L --stats`). Bytes are IP bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → server.
    pub in_packets: u64,
    /// Packets server → client (NAT only; DR/TUN replies bypass us).
    pub out_packets: u64,
    /// Bytes client → server.
    pub in_bytes: u64,
    /// Bytes server → client.
    pub out_bytes: u64,
}

impl Stats {
    /// Adds another shard's counters.
    pub fn add(&mut self, o: &Stats) {
        self.conns += o.conns;
        self.in_packets += o.in_packets;
        self.out_packets += o.out_packets;
        self.in_bytes += o.in_bytes;
        self.out_bytes += o.out_bytes;
    }
}

/// Engine-wide counters: every frame lands in exactly one of `forwarded`,
/// `unresolved`, `untracked` or a drop reason (`replies` counts the ICMP
/// errors sent in place of some dropped frames, a subset of the drops).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames handed to `process`.
    pub rx_packets: u64,
    /// Frames forwarded to a real server or client.
    pub forwarded: u64,
    /// ICMP errors sent back in place of a dropped frame (already counted
    /// under its drop reason).
    pub replies: u64,
    /// ICMP errors about a tracked connection relayed unchanged to its real
    /// server (DR, TUN; counted in `forwarded`).
    pub icmp_relayed: u64,
    /// ICMP errors about a NAT connection relayed with their addresses
    /// translated, either way (counted in `forwarded`).
    pub icmp_translated: u64,
    /// First fragments whose datagram was recorded for its later fragments.
    pub fragments_tracked: u64,
    /// Later fragments forwarded after their first (counted in `forwarded`).
    pub fragments_followed: u64,
    /// Datagrams dropped from the full fragment table for a newer one.
    pub fragments_evicted: u64,
    /// Frames made beyond the one of their verdict: the outer fragments
    /// after the first of tunnelled packets over the MTU without DF.
    pub extra_frames: u64,
    /// Frames whose next-hop MAC was unknown.
    pub unresolved: u64,
    /// Frames that were neither part of a tracked connection nor a new flow
    /// of a virtual service (a connection that ended while its frame was on
    /// the way; the XDP program sends no others).
    pub untracked: u64,
    /// Drops by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    /// Connections created.
    pub conns_created: u64,
    /// Connections expired (also a closed one a new SYN on its tuple
    /// replaced): with `conns_evicted` and `defense_entries_dropped`, every
    /// connection created and no longer tracked.
    pub conns_expired: u64,
    /// Connections taken over from a previous rvsd's maps at start.
    pub conns_adopted: u64,
    /// Connection states queued for backups (sync master).
    pub sync_sent: u64,
    /// Queued states dropped because the queue was full.
    pub sync_dropped: u64,
    /// Connection states installed from a master (sync backup), new or
    /// updates.
    pub sync_received: u64,
    /// New connections (not templates) those made in the table.
    pub sync_installed: u64,
    /// Half-open connections evicted to make room for a new one when the
    /// table was full.
    pub conns_evicted: u64,
    /// Half-open connections the `drop_entry` defence removed.
    pub defense_entries_dropped: u64,
}

impl Counters {
    /// Drops for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Frames accounted for: equals `rx_packets`, each frame counted once.
    pub fn accounted(&self) -> u64 {
        self.forwarded + self.unresolved + self.untracked + self.total_drops()
    }

    /// Adds another shard's counters.
    pub fn add(&mut self, o: &Counters) {
        self.rx_packets += o.rx_packets;
        self.forwarded += o.forwarded;
        self.replies += o.replies;
        self.icmp_relayed += o.icmp_relayed;
        self.fragments_tracked += o.fragments_tracked;
        self.extra_frames += o.extra_frames;
        self.fragments_followed += o.fragments_followed;
        self.fragments_evicted += o.fragments_evicted;
        self.icmp_translated += o.icmp_translated;
        self.unresolved += o.unresolved;
        self.untracked += o.untracked;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
        self.conns_created += o.conns_created;
        self.conns_expired += o.conns_expired;
        self.conns_adopted += o.conns_adopted;
        self.sync_sent += o.sync_sent;
        self.sync_dropped += o.sync_dropped;
        self.sync_received += o.sync_received;
        self.sync_installed += o.sync_installed;
        self.conns_evicted += o.conns_evicted;
        self.defense_entries_dropped += o.defense_entries_dropped;
    }
}
