//! The UMEM: one mmap'd area of fixed 4 KiB frames that all sockets of a
//! group share, so frames move between interfaces without copies.

use std::os::fd::BorrowedFd;

use super::sys::{setsockopt, Mmap};
use super::FRAME_SIZE;
use crate::DatapathError;

#[derive(Debug)]
pub(crate) struct Umem {
    area: Mmap,
    frame_count: u32,
    headroom: u32,
}

impl Umem {
    pub(crate) fn new(frame_count: u32, headroom: u32) -> Result<Self, DatapathError> {
        let bytes = frame_count as usize * FRAME_SIZE as usize;
        let area = Mmap::anonymous(bytes)
            .map_err(|source| DatapathError::UmemRegister { bytes, source })?;
        Ok(Self {
            area,
            frame_count,
            headroom,
        })
    }

    /// Register the area with an AF_XDP socket (the group's first socket).
    pub(crate) fn register(&self, fd: BorrowedFd<'_>) -> Result<(), DatapathError> {
        let reg = libc::xdp_umem_reg {
            addr: self.area.as_ptr() as u64,
            len: self.area.len() as u64,
            chunk_size: FRAME_SIZE,
            headroom: self.headroom,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg).map_err(|source| {
            match source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => DatapathError::PermissionDenied {
                    what: "AF_XDP UMEM registration",
                    source,
                },
                _ => DatapathError::UmemRegister {
                    bytes: self.area.len(),
                    source,
                },
            }
        })
    }

    pub(crate) fn frame_count(&self) -> u32 {
        self.frame_count
    }

    /// The whole chunk at `base` (a multiple of FRAME_SIZE inside the area).
    ///
    /// # Safety
    /// The caller must own the chunk exclusively: the kernel must not be
    /// writing it (it is not on a FILL/RX/TX/COMPLETION ring) and no other
    /// slice of it may be alive.
    pub(crate) unsafe fn chunk_mut(&mut self, base: u64) -> &mut [u8] {
        debug_assert!(base & (u64::from(FRAME_SIZE) - 1) == 0 && base < self.area.len() as u64);
        // SAFETY: the caller guarantees `base` is a chunk start inside the area
        // and exclusive ownership; the borrow is tied to `&mut self`.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.area.as_ptr().add(base as usize),
                FRAME_SIZE as usize,
            )
        }
    }
}
