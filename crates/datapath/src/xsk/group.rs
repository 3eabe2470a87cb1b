//! [`XskGroup`]: one UMEM shared by AF_XDP sockets on any set of
//! (interface, queue) pairs, owned by one worker thread, so that thread can
//! receive from every queue of every interface and send any frame out of any
//! interface without a copy (XDP_SHARED_UMEM with a FILL and COMPLETION ring
//! per socket, Linux >= 5.10).
//!
//! Frame ownership is tracked per frame (one byte each), so a wrong address
//! from the caller — double release, sending a frame the kernel owns — is
//! refused instead of corrupting the rings.

use std::os::fd::RawFd;
use std::time::Duration;

use rvs_wire::PacketBuf;

use super::socket::{Bind, XskSocket};
use super::umem::Umem;
use super::{
    BindMode, BindPolicy, RxFrame, XskConfig, XskSocketStats, XskStats, FRAME_SIZE, KERNEL_HEADROOM,
};
use crate::iface::name_by_ifindex;
use crate::DatapathError;

/// Most sockets one group can hold: every queue of every interface the XDP
/// program can redirect to.
const MAX_SLOTS: usize =
    (rvs_engine::limits::MAX_INTERFACES * rvs_engine::limits::MAX_QUEUES_PER_INTERFACE) as usize;
/// Frames each socket's FILL ring gets when `XskConfig::frame_count` is 0.
const AUTO_FRAMES_PER_SOCKET: u32 = 1024;
/// Frames per spare socket (`XskConfig::spare_sockets`) when the count is 0.
const AUTO_FRAMES_PER_SPARE: u32 = 256;
/// Frames on top of those, for frames in flight on TX and with the caller.
const AUTO_FRAMES_SPARE: u32 = 2048;
/// Bounds of the automatic UMEM size (16 MiB .. 1 GiB of 4 KiB frames).
const AUTO_FRAMES_MIN: u32 = 4096;
const AUTO_FRAMES_MAX: u32 = 1 << 18;
const CHUNK_MASK: u64 = !(FRAME_SIZE as u64 - 1);

/// Who may touch a frame right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// In the group's free pool.
    Free,
    /// On a FILL ring or being received into by the kernel.
    Kernel,
    /// Handed to the caller by `recv` / `alloc_frame`.
    User,
    /// On a TX ring until the COMPLETION ring returns it.
    Tx,
}

#[derive(Debug)]
struct Slot {
    sock: XskSocket,
    /// Frames given to the kernel through this FILL ring and not yet received.
    in_fill: u32,
    /// Frames queued on TX and not yet completed.
    tx_outstanding: u32,
    rx_packets: u64,
    tx_packets: u64,
    tx_ring_full: u64,
}

impl Slot {
    fn new(sock: XskSocket) -> Slot {
        Slot {
            sock,
            in_fill: 0,
            tx_outstanding: 0,
            rx_packets: 0,
            tx_packets: 0,
            tx_ring_full: 0,
        }
    }
}

/// What `poll` waits on for a socket: frames to receive.
fn pollfd(sock: &XskSocket) -> libc::pollfd {
    libc::pollfd {
        fd: sock.raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// One UMEM plus one AF_XDP socket per (interface, queue) pair.
///
/// Sockets are numbered in the order given to [`with_queues`](Self::with_queues)
/// (the *slot*): [`RxFrame::iface`] is the slot a frame arrived on, and
/// [`send`](Self::send) takes the slot to transmit on; [`tx_slot`](Self::tx_slot)
/// finds one for an egress interface.
///
/// Call order in a worker: [`recv`](Self::recv) a batch; per frame
/// [`frame_mut`](Self::frame_mut) to rewrite it, then [`send_at`](Self::send_at)
/// (on any slot) or [`release`](Self::release); then [`flush`](Self::flush)
/// once per batch; [`poll`](Self::poll) when `recv` returned nothing.
/// Every frame handed out by `recv` must come back through `send` or
/// `release`, or it is lost to the pool.
#[derive(Debug)]
pub struct XskGroup {
    // Sockets first: they are closed before the UMEM is unmapped.
    slots: Vec<Slot>,
    umem: Umem,
    free: Vec<u64>,
    owner: Vec<Owner>,
    fill_target: u32,
    next_rx: usize,
    /// One per slot, reused by every `poll`.
    pollfds: Vec<libc::pollfd>,
    /// (ifindex, first slot on it), in slot order: where to transmit.
    tx_slots: Vec<(u32, usize)>,
    alloc_offset: u32,
    kick_always: bool,
    /// Sockets the FILL share is sized for: those bound and the spare ones.
    room: u32,
    /// What the sockets were made with, for those added later.
    cfg: XskConfig,
}

// SAFETY: the raw pointers inside point into mappings owned by this value
// (rings, UMEM); nothing else aliases them in user space, so moving the group
// to another thread (the worker) is sound. It is not Sync: all use takes &mut.
unsafe impl Send for XskGroup {}

/// Frames each of `sockets` keeps on its FILL ring: as many as it can
/// take, leaving one socket's share for frames in flight on TX.
fn fill_target(cfg: &XskConfig, frames: u32, sockets: u32) -> u32 {
    cfg.fill_size.min(frames / (sockets + 1)).max(1)
}

fn check_pow2(name: &str, v: u32) -> Result<(), DatapathError> {
    if v == 0 || !v.is_power_of_two() {
        return Err(DatapathError::InvalidArgument(format!(
            "{name} = {v}: must be a power of two"
        )));
    }
    Ok(())
}

impl XskGroup {
    /// Create the UMEM and one socket per interface, all on `queue_id`
    /// (slot `i` is `ifindexes[i]`): [`with_queues`](Self::with_queues) with
    /// `(ifindexes[i], queue_id)`.
    pub fn new(ifindexes: &[u32], queue_id: u32, cfg: &XskConfig) -> Result<Self, DatapathError> {
        let pairs: Vec<(u32, u32)> = ifindexes.iter().map(|&i| (i, queue_id)).collect();
        Self::with_queues(&pairs, cfg)
    }

    /// Create the UMEM and one socket per `(ifindex, queue)` pair; slot `i`
    /// is `sockets[i]`. Pairs must be distinct.
    ///
    /// With [`BindPolicy::Auto`] it tries zero-copy for all sockets, then
    /// copy mode for all (a shared UMEM has one mode). With
    /// `cfg.frame_count == 0` the UMEM holds 1024 frames per socket plus 2048
    /// (at least 4096, at most 262144 frames of 4 KiB).
    pub fn with_queues(sockets: &[(u32, u32)], cfg: &XskConfig) -> Result<Self, DatapathError> {
        if sockets.is_empty() || sockets.len() > MAX_SLOTS {
            return Err(DatapathError::InvalidArgument(format!(
                "an XskGroup needs 1..={MAX_SLOTS} sockets, got {}",
                sockets.len()
            )));
        }
        for (i, &(ifindex, queue)) in sockets.iter().enumerate() {
            if sockets[..i].contains(&(ifindex, queue)) {
                return Err(DatapathError::InvalidArgument(format!(
                    "{} queue {queue} is listed twice: one socket per queue",
                    crate::iface::describe(ifindex)
                )));
            }
            if !sockets[..i].iter().any(|&(x, _)| x == ifindex)
                && name_by_ifindex(ifindex).is_none()
            {
                return Err(DatapathError::InterfaceIndexNotFound(ifindex));
            }
        }
        check_pow2("rx_size", cfg.rx_size)?;
        check_pow2("tx_size", cfg.tx_size)?;
        check_pow2("fill_size", cfg.fill_size)?;
        check_pow2("comp_size", cfg.comp_size)?;
        let n = sockets.len() as u32;
        let spare = cfg.spare_sockets.min(MAX_SLOTS as u32 - n);
        let frame_count = if cfg.frame_count == 0 {
            (n * AUTO_FRAMES_PER_SOCKET + spare * AUTO_FRAMES_PER_SPARE + AUTO_FRAMES_SPARE)
                .clamp(AUTO_FRAMES_MIN, AUTO_FRAMES_MAX)
        } else {
            cfg.frame_count
        };
        if frame_count < 2 * n || frame_count > (1 << 22) {
            return Err(DatapathError::InvalidArgument(format!(
                "frame_count = {frame_count}: need at least 2 per socket ({n} sockets) and at most 4194304"
            )));
        }
        if cfg.headroom > FRAME_SIZE / 2 {
            return Err(DatapathError::InvalidArgument(format!(
                "headroom = {}: at most {} (frames are {FRAME_SIZE} bytes)",
                cfg.headroom,
                FRAME_SIZE / 2
            )));
        }

        let modes: &[BindMode] = match cfg.bind {
            BindPolicy::Auto => &[BindMode::ZeroCopy, BindMode::Copy],
            BindPolicy::ZeroCopy => &[BindMode::ZeroCopy],
            BindPolicy::Copy => &[BindMode::Copy],
        };
        let umem = Umem::new(frame_count, cfg.headroom)?;
        let mut last_err = None;
        for &mode in modes {
            match Self::bind_all(&umem, sockets, cfg, mode) {
                Ok(socks) => return Ok(Self::assemble(socks, umem, cfg, n + spare)),
                Err(e @ DatapathError::PermissionDenied { .. }) => return Err(e),
                Err(e) => {
                    tracing::debug!(?mode, error = %e, "AF_XDP bind mode unavailable");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err
            .unwrap_or_else(|| DatapathError::InvalidArgument("no bind mode to try".into())))
    }

    fn bind_all(
        umem: &Umem,
        sockets: &[(u32, u32)],
        cfg: &XskConfig,
        mode: BindMode,
    ) -> Result<Vec<XskSocket>, DatapathError> {
        let mut socks: Vec<XskSocket> = Vec::with_capacity(sockets.len());
        for &(ifindex, queue_id) in sockets {
            let bind = match socks.first() {
                None => Bind::Owner(mode),
                Some(owner) => Bind::Shared(owner.raw_fd()),
            };
            socks.push(XskSocket::new(umem, ifindex, queue_id, cfg, bind)?);
        }
        Ok(socks)
    }

    /// The group over `socks`, its FILL shares sized for `room` sockets.
    fn assemble(socks: Vec<XskSocket>, umem: Umem, cfg: &XskConfig, room: u32) -> Self {
        let frames = umem.frame_count();
        let pollfds = socks.iter().map(pollfd).collect();
        let mut tx_slots: Vec<(u32, usize)> = Vec::new();
        for (i, s) in socks.iter().enumerate() {
            if !tx_slots.iter().any(|&(x, _)| x == s.ifindex) {
                tx_slots.push((s.ifindex, i));
            }
        }
        let fill_target = fill_target(cfg, frames, room);
        let free: Vec<u64> = (0..u64::from(frames))
            .rev()
            .map(|i| i * u64::from(FRAME_SIZE))
            .collect();
        let kick_always = !cfg.need_wakeup;
        let mut g = Self {
            slots: socks.into_iter().map(Slot::new).collect(),
            umem,
            free,
            owner: vec![Owner::Free; frames as usize],
            fill_target,
            next_rx: 0,
            pollfds,
            tx_slots,
            alloc_offset: cfg.headroom + KERNEL_HEADROOM,
            kick_always,
            room,
            cfg: cfg.clone(),
        };
        for i in 0..g.slots.len() {
            g.refill(i);
        }
        g
    }

    /// Binds one more socket, on `(ifindex, queue)`, to the group's UMEM
    /// and returns its slot: for an RX queue an interface gained while the
    /// group runs (`ethtool -L`). The UMEM keeps its size: the new socket
    /// takes its FILL share from the free pool, which
    /// [`XskConfig::spare_sockets`] kept for it; past those, every
    /// socket's share shrinks.
    pub fn add_queue(&mut self, ifindex: u32, queue: u32) -> Result<usize, DatapathError> {
        if self.slot_of(ifindex, queue).is_some() {
            return Err(DatapathError::InvalidArgument(format!(
                "{} queue {queue} has a socket already",
                crate::iface::describe(ifindex)
            )));
        }
        if self.slots.len() >= MAX_SLOTS {
            return Err(DatapathError::InvalidArgument(format!(
                "an XskGroup holds at most {MAX_SLOTS} sockets"
            )));
        }
        let owner = self.slots[0].sock.raw_fd();
        let sock = XskSocket::new(&self.umem, ifindex, queue, &self.cfg, Bind::Shared(owner))?;
        self.pollfds.push(pollfd(&sock));
        let slot = self.slots.len();
        if !self.tx_slots.iter().any(|&(x, _)| x == ifindex) {
            self.tx_slots.push((ifindex, slot));
        }
        self.slots.push(Slot::new(sock));
        // Beyond the room made at the start, every socket's share shrinks.
        self.room = self.room.max(self.slots.len() as u32);
        self.fill_target = fill_target(&self.cfg, self.umem.frame_count(), self.room);
        self.refill(slot);
        Ok(slot)
    }

    /// The interfaces the group has sockets on, in slot order.
    pub fn ifindexes(&self) -> Vec<u32> {
        self.tx_slots.iter().map(|&(ifindex, _)| ifindex).collect()
    }

    /// The slot bound to `(ifindex, queue)`, if any.
    pub fn slot_of(&self, ifindex: u32, queue: u32) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.sock.ifindex == ifindex && s.sock.queue == queue)
    }

    /// Number of sockets (slots).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: a group has at least one socket (for clippy's `len` convention).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Queue id of slot 0; for groups made by [`new`](Self::new), the queue
    /// of every socket.
    pub fn queue_id(&self) -> u32 {
        self.slots.first().map_or(0, |s| s.sock.queue)
    }

    /// Interface index of a slot (None if out of range).
    pub fn ifindex(&self, iface_slot: usize) -> Option<u32> {
        self.slots.get(iface_slot).map(|s| s.sock.ifindex)
    }

    /// RX queue of a slot (None if out of range).
    pub fn queue(&self, slot: usize) -> Option<u32> {
        self.slots.get(slot).map(|s| s.sock.queue)
    }

    /// The slot to [`send`](Self::send) on to transmit out of interface
    /// `ifindex`: its first socket in slot order (None if the group has no
    /// socket on it). Any socket of an interface can transmit any frame of
    /// the UMEM.
    pub fn tx_slot(&self, ifindex: u32) -> Option<usize> {
        self.tx_slots
            .iter()
            .find(|&&(x, _)| x == ifindex)
            .map(|&(_, slot)| slot)
    }

    /// Zero-copy or copy, per slot (all slots share the UMEM's mode).
    pub fn mode(&self, iface_slot: usize) -> Option<BindMode> {
        self.slots.get(iface_slot).map(|s| s.sock.mode)
    }

    /// The socket to register for that slot's interface and queue
    /// ([`crate::XdpDatapath::register_socket`]); -1 for an unknown slot.
    pub fn socket_fd(&self, iface_slot: usize) -> RawFd {
        self.slots.get(iface_slot).map_or(-1, |s| s.sock.raw_fd())
    }

    /// Frames in the free pool (neither with the kernel nor with the caller).
    pub fn free_frames(&self) -> u32 {
        self.free.len() as u32
    }

    fn frame_index(&self, addr: u64) -> Option<usize> {
        let idx = usize::try_from(addr / u64::from(FRAME_SIZE)).ok()?;
        (idx < self.owner.len()).then_some(idx)
    }

    /// Chunk base of `addr` if the caller currently owns that frame.
    fn user_chunk(&self, addr: u64) -> Option<u64> {
        let idx = self.frame_index(addr)?;
        (self.owner[idx] == Owner::User).then_some(addr & CHUNK_MASK)
    }

    fn return_to_pool(&mut self, base: u64) {
        if let Some(idx) = self.frame_index(base) {
            if self.owner[idx] != Owner::Free {
                self.owner[idx] = Owner::Free;
                // Capacity is frame_count and each frame is in the pool at most once: no allocation.
                self.free.push(base);
            }
        }
    }

    /// Receive up to `out.len()` frames from all sockets, starting with a
    /// different socket each call and giving each an equal share first.
    pub fn recv(&mut self, out: &mut [RxFrame]) -> usize {
        let n = self.slots.len();
        if out.is_empty() || n == 0 {
            return 0;
        }
        let share = (out.len() / n).max(1);
        let mut got = 0;
        for pass in 0..2 {
            for k in 0..n {
                if got == out.len() {
                    break;
                }
                let i = (self.next_rx + k) % n;
                let room = out.len() - got;
                let max = if pass == 0 { share.min(room) } else { room };
                got += self.recv_slot(i, &mut out[got..got + max]);
            }
        }
        self.next_rx = (self.next_rx + 1) % n;
        got
    }

    fn recv_slot(&mut self, i: usize, out: &mut [RxFrame]) -> usize {
        let max = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let slot = &mut self.slots[i];
        let n = slot.sock.rx.available(max);
        for (j, o) in out.iter_mut().enumerate().take(n as usize) {
            let d = slot.sock.rx.read(j as u32);
            *o = RxFrame {
                iface: i,
                addr: d.addr,
                len: d.len,
            };
            let idx = d.addr / u64::from(FRAME_SIZE);
            if let Some(own) = usize::try_from(idx)
                .ok()
                .and_then(|x| self.owner.get_mut(x))
            {
                *own = Owner::User;
            }
        }
        slot.sock.rx.release(n);
        slot.in_fill = slot.in_fill.saturating_sub(n);
        slot.rx_packets += u64::from(n);
        n as usize
    }

    /// The frame at `addr` (as given by `recv` or `alloc_frame`) for reading
    /// and rewriting: its whole UMEM chunk as a [`PacketBuf`], the packet
    /// after its headroom (room to prepend an encapsulation header). `None`
    /// for a frame the caller does not own. Send the result with
    /// [`send_at`](Self::send_at).
    pub fn frame_mut(&mut self, addr: u64, len: u32) -> Option<PacketBuf<'_>> {
        let base = self.user_chunk(addr)?;
        let offset = (addr - base) as usize;
        let len = (len as usize).min(FRAME_SIZE as usize - offset);
        // SAFETY: the frame is marked User: it is on no ring, so the kernel does
        // not touch it, and `&mut self` makes this the only live view into the UMEM.
        let chunk = unsafe { self.umem.chunk_mut(base) };
        PacketBuf::new(chunk, offset, len)
    }

    /// [`send`](Self::send) for a frame rewritten through
    /// [`frame_mut`](Self::frame_mut): `addr` is any address in its chunk
    /// (the one `recv` gave), `start` and `len` the packet's place in the
    /// chunk afterwards ([`PacketBuf::start`], [`PacketBuf::len`]).
    pub fn send_at(&mut self, iface_slot: usize, addr: u64, start: usize, len: usize) -> bool {
        let (Ok(start), Ok(len)) = (u64::try_from(start), u32::try_from(len)) else {
            self.release(addr);
            return false;
        };
        self.send(iface_slot, (addr & CHUNK_MASK) + start, len)
    }

    /// Take a frame from the free pool to build a packet from scratch; its
    /// data starts after the same headroom as received frames.
    pub fn alloc_frame(&mut self) -> Option<u64> {
        let base = self.free.pop()?;
        if let Some(idx) = self.frame_index(base) {
            self.owner[idx] = Owner::User;
        }
        Some(base + u64::from(self.alloc_offset))
    }

    /// Queue the frame at `addr` (data `len` bytes) for transmission on
    /// `iface_slot`. The frame may have arrived on any slot. Returns false if
    /// it could not be queued (TX ring full, bad slot or length); the frame is
    /// then back in the pool. Nothing leaves before [`flush`](Self::flush).
    pub fn send(&mut self, iface_slot: usize, addr: u64, len: u32) -> bool {
        let Some(base) = self.user_chunk(addr) else {
            return false;
        };
        let offset = addr - base;
        if iface_slot >= self.slots.len()
            || len == 0
            || offset + u64::from(len) > u64::from(FRAME_SIZE)
        {
            self.return_to_pool(base);
            return false;
        }
        let desc = libc::xdp_desc {
            addr,
            len,
            options: 0,
        };
        let slot = &mut self.slots[iface_slot];
        if !slot.sock.tx.push(desc) {
            // Full: hand what we queued to the kernel, reap, try once more.
            slot.sock.tx.submit();
            slot.sock.kick_tx();
            self.reap(iface_slot);
            let slot = &mut self.slots[iface_slot];
            if !slot.sock.tx.push(desc) {
                slot.tx_ring_full += 1;
                self.return_to_pool(base);
                return false;
            }
        }
        self.slots[iface_slot].tx_outstanding += 1;
        if let Some(idx) = self.frame_index(base) {
            self.owner[idx] = Owner::Tx;
        }
        true
    }

    /// Give a frame back without sending it (dropped). Unknown or not-owned
    /// addresses are ignored.
    pub fn release(&mut self, addr: u64) {
        if let Some(base) = self.user_chunk(addr) {
            self.return_to_pool(base);
        }
    }

    /// Publish queued TX and kick the kernel where needed, reap COMPLETION
    /// rings into the free pool, refill every FILL ring. Once per batch.
    pub fn flush(&mut self) {
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if slot.sock.tx.unsubmitted() > 0 {
                slot.sock.tx.submit();
            }
            let must_kick = self.kick_always || slot.sock.mode == BindMode::Copy;
            // Bounded: kick, reap the completions that made room, repeat while TX remains.
            for _ in 0..8 {
                let slot = &self.slots[i];
                if slot.sock.tx.in_kernel() == 0 || !(must_kick || slot.sock.tx.needs_wakeup()) {
                    break;
                }
                slot.sock.kick_tx();
                self.reap(i);
            }
            self.reap(i);
        }
        for i in 0..self.slots.len() {
            self.refill(i);
        }
    }

    fn reap(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let n = slot.sock.comp.available(u32::MAX);
        for j in 0..n {
            let addr = self.slots[i].sock.comp.read(j);
            let base = addr & CHUNK_MASK;
            if let Some(idx) = self.frame_index(base) {
                if self.owner[idx] == Owner::Tx {
                    self.owner[idx] = Owner::Free;
                    self.free.push(base);
                }
            }
        }
        let slot = &mut self.slots[i];
        slot.sock.comp.release(n);
        slot.tx_outstanding = slot.tx_outstanding.saturating_sub(n);
        slot.tx_packets += u64::from(n);
    }

    fn refill(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let want = self
            .fill_target
            .saturating_sub(slot.in_fill)
            .min(self.free.len() as u32);
        let n = want.min(slot.sock.fill.free(want));
        for _ in 0..n {
            let Some(base) = self.free.pop() else { break };
            if let Some(idx) = usize::try_from(base / u64::from(FRAME_SIZE))
                .ok()
                .filter(|&x| x < self.owner.len())
            {
                self.owner[idx] = Owner::Kernel;
            }
            // Cannot fail: `n` slots were free.
            let _ = slot.sock.fill.push(base);
            slot.in_fill += 1;
        }
        if n > 0 {
            slot.sock.fill.submit();
        }
        if slot.sock.mode == BindMode::ZeroCopy
            && (self.kick_always || slot.sock.fill.needs_wakeup())
        {
            slot.sock.kick_rx();
        }
    }

    /// Wait up to `timeout` until any socket has frames to receive.
    pub fn poll(&mut self, timeout: Duration) -> bool {
        if self.slots.iter_mut().any(|s| !s.sock.rx.is_empty()) {
            return true;
        }
        for p in &mut self.pollfds {
            p.revents = 0;
        }
        let ms = i32::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
        // SAFETY: `pollfds` holds `pollfds.len()` initialised pollfds of our own
        // sockets and stays borrowed mutably for the duration of the call.
        let r = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                ms,
            )
        };
        r > 0 && self.pollfds.iter().any(|p| p.revents & libc::POLLIN != 0)
    }

    /// Counters per socket (ours and the kernel's XDP_STATISTICS).
    pub fn stats(&self) -> XskStats {
        XskStats {
            sockets: self
                .slots
                .iter()
                .map(|s| {
                    let k = s.sock.kernel_stats();
                    XskSocketStats {
                        ifindex: s.sock.ifindex,
                        queue: s.sock.queue,
                        mode: Some(s.sock.mode),
                        rx_packets: s.rx_packets,
                        tx_packets: s.tx_packets,
                        tx_ring_full: s.tx_ring_full,
                        rx_dropped: k.rx_dropped,
                        rx_ring_full: k.rx_ring_full,
                        fill_ring_empty: k.rx_fill_ring_empty_descs,
                        tx_invalid: k.tx_invalid_descs,
                    }
                })
                .collect(),
            free_frames: self.free.len() as u32,
        }
    }
}
