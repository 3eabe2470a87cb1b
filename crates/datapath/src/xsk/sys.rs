//! Thin wrappers over the system calls AF_XDP needs: mmap and socket options.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// A memory mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mmap {
    /// Anonymous, page-aligned, pre-faulted memory (the UMEM).
    pub(crate) fn anonymous(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping aliases nothing; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Self::from_raw(p, len)
    }

    /// One of an AF_XDP socket's rings, shared with the kernel.
    pub(crate) fn ring(fd: BorrowedFd<'_>, len: usize, pgoff: u64) -> io::Result<Self> {
        // SAFETY: maps `len` bytes of the socket's ring at the documented page
        // offset; the kernel validates the size and offset; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff as libc::off_t,
            )
        };
        Self::from_raw(p, len)
    }

    fn from_raw(p: *mut libc::c_void, len: usize) -> io::Result<Self> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Self { ptr, len })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we created and nobody else unmaps;
        // all borrows of it are tied to the owner's lifetime, which is ending.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// setsockopt with a plain-data value.
pub(crate) fn setsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    val: &T,
) -> io::Result<()> {
    // SAFETY: `val` points to `size_of::<T>()` readable bytes for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// getsockopt into a zero-initialised plain-data value; returns it and the length the kernel wrote.
///
/// # Safety
/// `T` must be a plain C struct for which all-zero bytes and any bytes the
/// kernel writes are valid values.
pub(crate) unsafe fn getsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
) -> io::Result<(T, usize)> {
    let mut val = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` has room for `len` bytes and `len` is a valid out-pointer.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            val.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised and (partly) overwritten by the kernel; the caller
    // guarantees any such bytes form a valid `T`.
    Ok((unsafe { val.assume_init() }, len as usize))
}
