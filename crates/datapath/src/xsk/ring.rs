//! The four single-producer/single-consumer rings an AF_XDP socket shares
//! with the kernel. We are the producer of FILL and TX and the consumer of RX
//! and COMPLETION. Indices are free-running u32s; `& mask` picks the slot.
//!
//! Batches: items are written/read against cached indices and made visible
//! with one release store per batch (`submit` / `release`).

use std::marker::PhantomData;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sys::Mmap;

/// Shared part of a mapped ring.
#[derive(Debug)]
struct Raw<T> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    size: u32,
    _map: Mmap,
}

impl<T: Copy> Raw<T> {
    /// Map a ring of `size` entries (a power of two) at `pgoff` using the kernel's offsets.
    fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
    ) -> std::io::Result<Self> {
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = Mmap::ring(fd, len, pgoff)?;
        let base = map.as_ptr();
        let fits = |o: u64, n: usize| (o as usize).checked_add(n).is_some_and(|end| end <= len);
        if !fits(off.producer, 4) || !fits(off.consumer, 4) || !fits(off.flags, 4) {
            return Err(std::io::Error::other(
                "kernel ring offsets outside the mapping",
            ));
        }
        // SAFETY (all four): offsets come from XDP_MMAP_OFFSETS and were checked to lie
        // inside the `len`-byte mapping; the kernel aligns them for u32 / T access.
        Ok(Self {
            producer: unsafe { base.add(off.producer as usize) }.cast(),
            consumer: unsafe { base.add(off.consumer as usize) }.cast(),
            flags: unsafe { base.add(off.flags as usize) }.cast(),
            descs: unsafe { base.add(off.desc as usize) }.cast(),
            mask: size - 1,
            size,
            _map: map,
        })
    }

    fn load_producer(&self, order: Ordering) -> u32 {
        // SAFETY: points into our live mapping (see `map`); the kernel accesses it atomically too.
        unsafe { &*self.producer }.load(order)
    }

    fn load_consumer(&self, order: Ordering) -> u32 {
        // SAFETY: as in `load_producer`.
        unsafe { &*self.consumer }.load(order)
    }

    fn flags(&self) -> u32 {
        // SAFETY: as in `load_producer`.
        unsafe { &*self.flags }.load(Ordering::Relaxed)
    }
}

/// A ring we fill (FILL, TX).
#[derive(Debug)]
pub(crate) struct ProdRing<T> {
    raw: Raw<T>,
    cached_prod: u32,
    cached_cons: u32,
    _t: PhantomData<T>,
}

impl<T: Copy> ProdRing<T> {
    pub(crate) fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
    ) -> std::io::Result<Self> {
        let raw = Raw::<T>::map(fd, off, size, pgoff)?;
        let cached_prod = raw.load_producer(Ordering::Relaxed);
        let cached_cons = raw.load_consumer(Ordering::Acquire).wrapping_add(size);
        Ok(Self {
            raw,
            cached_prod,
            cached_cons,
            _t: PhantomData,
        })
    }

    /// Free slots, refreshing the kernel's consumer index only when fewer than `want` are known.
    pub(crate) fn free(&mut self, want: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= want {
            return free;
        }
        self.cached_cons = self
            .raw
            .load_consumer(Ordering::Acquire)
            .wrapping_add(self.raw.size);
        self.cached_cons.wrapping_sub(self.cached_prod)
    }

    /// Write one item into the next slot (invisible to the kernel until `submit`).
    /// Returns false when the ring is full.
    pub(crate) fn push(&mut self, item: T) -> bool {
        if self.free(1) == 0 {
            return false;
        }
        let idx = (self.cached_prod & self.raw.mask) as usize;
        // SAFETY: idx <= mask < size, so the slot lies inside the mapped descriptor
        // array; the slot is free (the kernel consumed it), so no one reads it now.
        unsafe { self.raw.descs.add(idx).write(item) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
        true
    }

    /// Items pushed but not yet submitted.
    pub(crate) fn unsubmitted(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.raw.load_producer(Ordering::Relaxed))
    }

    /// Make all pushed items visible to the kernel.
    pub(crate) fn submit(&mut self) {
        // SAFETY: points into our live mapping; release orders the descriptor writes before it.
        unsafe { &*self.raw.producer }.store(self.cached_prod, Ordering::Release);
    }

    /// Submitted items the kernel has not consumed yet.
    pub(crate) fn in_kernel(&self) -> u32 {
        self.raw
            .load_producer(Ordering::Relaxed)
            .wrapping_sub(self.raw.load_consumer(Ordering::Acquire))
    }

    /// The kernel asks to be woken (XDP_USE_NEED_WAKEUP).
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.raw.flags() & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

/// A ring the kernel fills (RX, COMPLETION).
#[derive(Debug)]
pub(crate) struct ConsRing<T> {
    raw: Raw<T>,
    cached_prod: u32,
    cached_cons: u32,
    _t: PhantomData<T>,
}

impl<T: Copy> ConsRing<T> {
    pub(crate) fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
    ) -> std::io::Result<Self> {
        let raw = Raw::<T>::map(fd, off, size, pgoff)?;
        let cached_cons = raw.load_consumer(Ordering::Relaxed);
        let cached_prod = raw.load_producer(Ordering::Acquire);
        Ok(Self {
            raw,
            cached_prod,
            cached_cons,
            _t: PhantomData,
        })
    }

    /// Up to `max` entries ready to read, refreshing the producer index when none are cached.
    pub(crate) fn available(&mut self, max: u32) -> u32 {
        let mut n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n == 0 {
            self.cached_prod = self.raw.load_producer(Ordering::Acquire);
            n = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        n.min(max)
    }

    /// Entry `i` of the batch returned by `available` (i < that count).
    pub(crate) fn read(&self, i: u32) -> T {
        let idx = (self.cached_cons.wrapping_add(i) & self.raw.mask) as usize;
        // SAFETY: idx <= mask < size: inside the mapped array. The entry was published
        // by the kernel (acquire load of the producer in `available`) and is ours until `release`.
        unsafe { self.raw.descs.add(idx).read() }
    }

    /// Hand `n` read entries back to the kernel.
    pub(crate) fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        // SAFETY: points into our live mapping; release orders our reads before it.
        unsafe { &*self.raw.consumer }.store(self.cached_cons, Ordering::Release);
    }

    /// Whether anything is waiting, without consuming it.
    pub(crate) fn is_empty(&mut self) -> bool {
        self.available(1) == 0
    }
}
