//! One AF_XDP socket: creation, ring setup, bind, wakeups and statistics.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::ring::{ConsRing, ProdRing};
use super::sys::{getsockopt, setsockopt};
use super::umem::Umem;
use super::{BindMode, XskConfig};
use crate::iface::describe;
use crate::DatapathError;

/// How long a bind waits for a queue a previous socket still holds.
const BUSY_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A bound AF_XDP socket with its own FILL/COMPLETION rings (so sockets on
/// different devices can share one UMEM) and RX/TX rings.
#[derive(Debug)]
pub(crate) struct XskSocket {
    pub(crate) rx: ConsRing<libc::xdp_desc>,
    pub(crate) tx: ProdRing<libc::xdp_desc>,
    pub(crate) fill: ProdRing<u64>,
    pub(crate) comp: ConsRing<u64>,
    pub(crate) mode: BindMode,
    pub(crate) ifindex: u32,
    pub(crate) queue: u32,
    // Last: closed after the rings are unmapped.
    fd: OwnedFd,
}

/// How to bind: the first socket of a UMEM chooses the mode; the others inherit it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Bind {
    /// Owner of the UMEM registration, in this mode.
    Owner(BindMode),
    /// Shares the UMEM registered on this socket.
    Shared(RawFd),
}

impl XskSocket {
    pub(crate) fn new(
        umem: &Umem,
        ifindex: u32,
        queue: u32,
        cfg: &XskConfig,
        bind: Bind,
    ) -> Result<Self, DatapathError> {
        // SAFETY: plain socket(2); the result is checked before being owned.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EAFNOSUPPORT) => DatapathError::XskUnsupported(e),
                Some(libc::EPERM) | Some(libc::EACCES) => DatapathError::PermissionDenied {
                    what: "AF_XDP socket",
                    source: e,
                },
                _ => DatapathError::syscall("socket(AF_XDP)", e),
            });
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sfd = fd.as_fd();

        if let Bind::Owner(_) = bind {
            umem.register(sfd)?;
        }
        let opt = |name, size: u32, what| {
            setsockopt(sfd, libc::SOL_XDP, name, &size).map_err(|e| DatapathError::syscall(what, e))
        };
        opt(
            libc::XDP_UMEM_FILL_RING,
            cfg.fill_size,
            "setsockopt(XDP_UMEM_FILL_RING)",
        )?;
        opt(
            libc::XDP_UMEM_COMPLETION_RING,
            cfg.comp_size,
            "setsockopt(XDP_UMEM_COMPLETION_RING)",
        )?;
        opt(libc::XDP_RX_RING, cfg.rx_size, "setsockopt(XDP_RX_RING)")?;
        opt(libc::XDP_TX_RING, cfg.tx_size, "setsockopt(XDP_TX_RING)")?;

        // SAFETY: xdp_mmap_offsets is plain u64 fields.
        let (off, len) = unsafe {
            getsockopt::<libc::xdp_mmap_offsets>(sfd, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS)
        }
        .map_err(|e| DatapathError::syscall("getsockopt(XDP_MMAP_OFFSETS)", e))?;
        if len != size_of::<libc::xdp_mmap_offsets>() {
            return Err(DatapathError::Syscall {
                call: "getsockopt(XDP_MMAP_OFFSETS)",
                source: io::Error::other("kernel too old (no ring flags; need Linux >= 5.4)"),
            });
        }
        let mmap_err = |e| DatapathError::syscall("mmap(AF_XDP ring)", e);
        let rx = ConsRing::map(sfd, &off.rx, cfg.rx_size, libc::XDP_PGOFF_RX_RING as u64)
            .map_err(mmap_err)?;
        let tx = ProdRing::map(sfd, &off.tx, cfg.tx_size, libc::XDP_PGOFF_TX_RING as u64)
            .map_err(mmap_err)?;
        let fill = ProdRing::map(sfd, &off.fr, cfg.fill_size, libc::XDP_UMEM_PGOFF_FILL_RING)
            .map_err(mmap_err)?;
        let comp = ConsRing::map(
            sfd,
            &off.cr,
            cfg.comp_size,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
        )
        .map_err(mmap_err)?;

        let (flags, shared_fd) = match bind {
            Bind::Owner(BindMode::ZeroCopy) => (libc::XDP_ZEROCOPY | wakeup_flag(cfg), 0),
            Bind::Owner(BindMode::Copy) => (libc::XDP_COPY | wakeup_flag(cfg), 0),
            // Shared sockets may not pass mode flags: they inherit the owner's.
            Bind::Shared(owner) => (libc::XDP_SHARED_UMEM, owner as u32),
        };
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: shared_fd,
        };
        // A queue a previous process's socket was bound to stays busy until
        // the kernel's deferred release of that socket's buffer pool has
        // run (a restarted rvsd meets it): EBUSY is retried for a while.
        let busy_until = std::time::Instant::now() + BUSY_QUEUE_WAIT;
        let r = loop {
            // SAFETY: `sa` is a valid sockaddr_xdp and its exact size is passed.
            let r = unsafe {
                libc::bind(
                    sfd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_xdp).cast(),
                    size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            let busy = r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EBUSY);
            if !busy || std::time::Instant::now() >= busy_until {
                break r;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => DatapathError::PermissionDenied {
                    what: "AF_XDP bind",
                    source: e,
                },
                _ => DatapathError::XskBind {
                    iface: describe(ifindex),
                    queue,
                    source: e,
                },
            });
        }

        // SAFETY: xdp_options is a single u32.
        let mode =
            match unsafe { getsockopt::<libc::xdp_options>(sfd, libc::SOL_XDP, libc::XDP_OPTIONS) }
            {
                Ok((o, _)) if o.flags & libc::XDP_OPTIONS_ZEROCOPY != 0 => BindMode::ZeroCopy,
                _ => BindMode::Copy,
            };
        tracing::debug!(iface = %describe(ifindex), queue, ?mode, "AF_XDP socket bound");
        Ok(Self {
            rx,
            tx,
            fill,
            comp,
            mode,
            ifindex,
            queue,
            fd,
        })
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Ask the kernel to process the TX ring. Copy mode sends at most a small
    /// batch per call and answers EAGAIN when more remain, hence the bounded
    /// loop; EAGAIN also means a full COMPLETION ring, so the caller reaps
    /// and kicks again.
    pub(crate) fn kick_tx(&self) {
        for _ in 0..16 {
            // SAFETY: a zero-length sendto with no buffer and no address is the
            // documented AF_XDP TX wakeup; the fd is ours.
            let r = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r >= 0 {
                return;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) if self.tx.in_kernel() > 0 => continue,
                _ => return,
            }
        }
    }

    /// Wake the driver to take buffers from the FILL ring (zero-copy drivers with need_wakeup).
    pub(crate) fn kick_rx(&self) {
        // SAFETY: a zero-length non-blocking recvfrom with no buffer is the documented
        // AF_XDP RX wakeup; the fd is ours.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }

    /// The kernel's XDP_STATISTICS for this socket.
    pub(crate) fn kernel_stats(&self) -> libc::xdp_statistics {
        // SAFETY: xdp_statistics is plain u64 fields; a shorter answer from an
        // older kernel leaves the rest zero.
        match unsafe {
            getsockopt::<libc::xdp_statistics>(self.fd.as_fd(), libc::SOL_XDP, libc::XDP_STATISTICS)
        } {
            Ok((s, _)) => s,
            // SAFETY: all-zero is a valid xdp_statistics.
            Err(_) => unsafe { std::mem::zeroed() },
        }
    }
}

fn wakeup_flag(cfg: &XskConfig) -> u16 {
    if cfg.need_wakeup {
        libc::XDP_USE_NEED_WAKEUP
    } else {
        0
    }
}
