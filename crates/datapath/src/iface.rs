//! Interface name ↔ index, in the calling thread's network namespace.

use std::ffi::{CStr, CString};

use crate::DatapathError;

/// Resolve an interface name, so errors can name what the operator typed.
pub fn ifindex_by_name(name: &str) -> Result<u32, DatapathError> {
    let c = CString::new(name).map_err(|_| {
        DatapathError::InvalidArgument(format!("interface name {name:?} contains NUL"))
    })?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(DatapathError::InterfaceNotFound(name.to_string()));
    }
    Ok(idx)
}

/// Name of an interface index, for messages and logs.
pub fn name_by_ifindex(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success if_indextoname wrote a NUL-terminated name into `buf`.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// "name" or "ifindex N", for messages.
pub(crate) fn describe(ifindex: u32) -> String {
    name_by_ifindex(ifindex).unwrap_or_else(|| format!("ifindex {ifindex}"))
}
