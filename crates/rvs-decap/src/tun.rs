//! A layer-3 TUN device, opened with one `TUNSETIFF` ioctl.
//!
//! Written against libc directly: it is one ioctl, and the TUN crates bring an
//! async runtime or a wider API than this helper needs. The device is not
//! made persistent, so the kernel removes it when the file is closed; dropping
//! [`Tun`] is the cleanup.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// An open TUN interface (IFF_TUN | IFF_NO_PI): every write is one IP packet
/// that the kernel receives as if it arrived on the interface.
pub(crate) struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Creates (or attaches to) the TUN interface `name`.
    pub(crate) fn open(name: &str) -> io::Result<Tun> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {name:?} must be 1..15 characters without '/' or spaces"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("open /dev/net/tun: {e}")))?;

        // SAFETY: ifreq is a plain C struct (arrays and a union of integers and
        // pointers); all-zero bytes are a valid value for it.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: the fd is an open /dev/net/tun descriptor owned by `file`,
        // and `req` is a valid, initialised ifreq that lives across the call;
        // TUNSETIFF reads and writes only within that struct.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
        }
        Ok(Tun {
            file,
            name: name.to_owned(),
        })
    }

    /// Another handle on the same device (a second receive loop writes
    /// through it; each write is one whole packet).
    pub(crate) fn try_clone(&self) -> io::Result<Tun> {
        Ok(Tun {
            file: self.file.try_clone()?,
            name: self.name.clone(),
        })
    }

    /// The interface name, for `ip` and sysctl paths.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Hands one IP packet to the kernel as received on this interface.
    pub(crate) fn inject(&mut self, packet: &[u8]) -> io::Result<()> {
        let n = self.file.write(packet)?;
        if n != packet.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to TUN",
            ));
        }
        Ok(())
    }
}
