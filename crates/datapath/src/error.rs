//! One error type for the control side of the datapath (setup, map updates).
//! The packet path itself never returns errors: it counts.

use std::io;

/// Why setting up or configuring the datapath failed, phrased for the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatapathError {
    /// The interface name does not exist in this network namespace.
    #[error("interface {0} not found (check `ip link`; the datapath runs in the calling thread's network namespace)")]
    InterfaceNotFound(String),

    /// The interface index does not exist in this network namespace.
    #[error("interface index {0} not found (check `ip link`; the datapath runs in the calling thread's network namespace)")]
    InterfaceIndexNotFound(u32),

    /// The kernel said EPERM/EACCES.
    #[error("{what} needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF (run rvsd as root): {source}")]
    PermissionDenied {
        /// What we were doing.
        what: &'static str,
        /// The kernel's answer.
        source: io::Error,
    },

    /// Loading the embedded BPF object failed (verifier, BTF, memlock).
    #[error("loading the RVS XDP program failed (kernel without BPF/BTF support, or the verifier rejected it): {0}")]
    BpfLoad(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// Neither native nor generic XDP attach worked.
    #[error("kernel refused XDP attach on {iface}: {detail}")]
    XdpAttach {
        /// Interface name (or index).
        iface: String,
        /// What each attempted mode said.
        detail: String,
    },

    /// A BPF map operation failed.
    #[error("updating BPF map `{map}` failed ({op}): {detail} (map full? the sizes are rvs_engine::limits and 2 × max_connections)")]
    Map {
        /// Map name.
        map: &'static str,
        /// insert / remove / read.
        op: &'static str,
        /// The error from the BPF layer.
        detail: String,
    },

    /// An argument cannot be represented in the datapath.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The kernel has no AF_XDP support.
    #[error("kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS): {0}")]
    XskUnsupported(#[source] io::Error),

    /// Registering the UMEM (packet memory) failed.
    #[error("registering {bytes} bytes of AF_XDP packet memory failed (raise RLIMIT_MEMLOCK or lower frame_count): {source}")]
    UmemRegister {
        /// Size of the area.
        bytes: usize,
        /// The kernel's answer.
        source: io::Error,
    },

    /// bind() of an AF_XDP socket failed.
    #[error("binding AF_XDP socket to {iface} queue {queue} failed (does the interface have that queue? is another socket bound to it?): {source}")]
    XskBind {
        /// Interface name (or index).
        iface: String,
        /// Queue id.
        queue: u32,
        /// The kernel's answer.
        source: io::Error,
    },

    /// The directory for state that outlives rvsd is not on a BPF file system.
    #[error("{} is not on a BPF file system, so connections cannot outlive a restart (mount one: `mount -t bpf bpf /sys/fs/bpf`, or choose another --pin-dir)", .0.display())]
    NotBpfFs(std::path::PathBuf),

    /// Any other system call that failed during setup.
    #[error("{call} failed: {source}")]
    Syscall {
        /// The call and its purpose.
        call: &'static str,
        /// The kernel's answer.
        source: io::Error,
    },
}

impl DatapathError {
    /// Map a setup syscall's error, turning EPERM into the operator-facing hint.
    pub(crate) fn syscall(call: &'static str, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Self::PermissionDenied { what: call, source },
            _ => Self::Syscall { call, source },
        }
    }
}
