//! What the XDP loaders share: the service and VIP keys (their C layout is
//! the same in both programs), taking maps out of a loaded object, and
//! turning aya's errors into [`DatapathError`]s.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::net::IpAddr;

use aya::maps::{HashMap, MapData};
use aya::{Ebpf, Pod};

use crate::fastpath::family_addr;
use crate::DatapathError;

/// Key of `services`: `struct l4_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct L4Key {
    family: u8,
    proto: u8,
    port_be: [u8; 2],
    addr: [u8; 16],
}

// SAFETY: repr(C), only byte fields, no padding: every bit pattern is valid.
unsafe impl Pod for L4Key {}

/// Key of `vip_addrs`: `struct addr_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AddrKey {
    family: u8,
    pad: [u8; 3],
    addr: [u8; 16],
}

// SAFETY: repr(C), only byte fields, no padding: every bit pattern is valid.
unsafe impl Pod for AddrKey {}

impl L4Key {
    pub(crate) fn new(addr: IpAddr, proto: u8, port: u16) -> Self {
        let (family, addr) = family_addr(addr);
        Self {
            family,
            proto,
            port_be: port.to_be_bytes(),
            addr,
        }
    }
}

impl AddrKey {
    pub(crate) fn new(addr: IpAddr) -> Self {
        let (family, addr) = family_addr(addr);
        Self {
            family,
            pad: [0; 3],
            addr,
        }
    }

    /// The address this key was made from.
    pub(crate) fn addr(&self) -> IpAddr {
        addr_of(self.family, &self.addr)
    }
}

impl L4Key {
    /// The (address, protocol, port) this key was made from.
    pub(crate) fn parts(&self) -> (IpAddr, u8, u16) {
        (
            addr_of(self.family, &self.addr),
            self.proto,
            u16::from_be_bytes(self.port_be),
        )
    }
}

/// The inverse of `family_addr`: IPv4 in the first four bytes.
fn addr_of(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == 4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

/// An error and its sources on one line.
pub(crate) fn chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let _ = write!(s, ": {c}");
        cur = c.source();
    }
    s
}

pub(crate) fn map_err(
    map: &'static str,
    op: &'static str,
    e: aya::maps::MapError,
) -> DatapathError {
    DatapathError::Map {
        map,
        op,
        detail: chain(&e),
    }
}

/// Moves map `name` out of the object as a typed map.
pub(crate) fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or_else(|| {
        DatapathError::BpfLoad(format!("map `{name}` missing from the object (build bug)").into())
    })?;
    T::try_from(map).map_err(|e| map_err(name, "open", e))
}

pub(crate) fn is_not_found(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// Deletes `key`; an absent key is fine.
pub(crate) fn remove<K: Pod, V: Pod>(
    map: &mut HashMap<MapData, K, V>,
    key: &K,
    name: &'static str,
) -> Result<(), DatapathError> {
    match map.remove(key) {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(map_err(name, "remove", e)),
    }
}

/// Loading failed: say EPERM in the operator's words, anything else as is.
pub(crate) fn load_err(e: aya::EbpfError) -> DatapathError {
    if let aya::EbpfError::MapError(aya::maps::MapError::CreateError { io_error, .. }) = &e {
        if matches!(io_error.raw_os_error(), Some(libc::EPERM)) {
            return DatapathError::PermissionDenied {
                what: "loading BPF maps",
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            };
        }
    }
    DatapathError::BpfLoad(chain(&e).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_c_layout() {
        assert_eq!(std::mem::size_of::<L4Key>(), 20);
        assert_eq!(std::mem::size_of::<AddrKey>(), 20);
        let k = L4Key::new("10.1.2.3".parse().unwrap(), 17, 0x1234);
        assert_eq!(k.family, 4);
        assert_eq!(k.port_be, [0x12, 0x34]);
        assert_eq!(&k.addr[..4], &[10, 1, 2, 3]);
        assert!(k.addr[4..].iter().all(|&b| b == 0));
        let v = AddrKey::new("2001:db8::1".parse().unwrap());
        assert_eq!(v.family, 6);
        assert_eq!(v.addr[0..2], [0x20, 0x01]);
        assert_eq!(v.addr[15], 1);
        // Read back as written.
        assert_eq!(k.parts(), ("10.1.2.3".parse().unwrap(), 17, 0x1234));
        assert_eq!(v.addr(), "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            AddrKey::new("10.9.8.7".parse().unwrap()).addr(),
            "10.9.8.7".parse::<IpAddr>().unwrap()
        );
    }
}
