//! `BPF_PROG_TEST_RUN` for the XDP program: run it once on a frame given as
//! bytes, in the kernel, with the real maps, and get the action and the
//! frame as the program left it. aya has no wrapper, so this is the raw
//! `bpf(2)` call.
//!
//! No `BPF_F_TEST_XDP_LIVE_FRAMES`: `XDP_TX` and `XDP_REDIRECT` are reported,
//! not carried out, so a test sees exactly what would have been sent.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd as _, AsRawFd, BorrowedFd, OwnedFd};

use crate::DatapathError;

/// `BPF_PROG_TEST_RUN` in `enum bpf_cmd`.
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// Largest output frame accepted back: a page is more than XDP can hand out.
const OUT_CAPACITY: usize = 4096;

/// The `test` member of `union bpf_attr` (kernel ≥ 5.10 layout).
#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// `struct xdp_md` as the kernel takes it for a test run.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// What an XDP program returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAction {
    /// XDP_ABORTED: a program error.
    Aborted,
    /// XDP_DROP.
    Drop,
    /// XDP_PASS: to the kernel's stack.
    Pass,
    /// XDP_TX: back out of the interface it came in on.
    Tx,
    /// XDP_REDIRECT: to a device (`tx_ports`) or an AF_XDP socket (`xsks`).
    Redirect,
    /// Anything else (not returned by the RVS program).
    Other(u32),
}

impl XdpAction {
    fn from_retval(v: u32) -> Self {
        match v {
            0 => Self::Aborted,
            1 => Self::Drop,
            2 => Self::Pass,
            3 => Self::Tx,
            4 => Self::Redirect,
            v => Self::Other(v),
        }
    }
}

/// The result of one [`crate::XdpDatapath::test_run`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The program's verdict.
    pub action: XdpAction,
    /// The frame as the program left it (rewritten, encapsulated, trimmed).
    pub frame: Vec<u8>,
}

/// Runs the program `prog` once on `frame` as if it arrived on
/// `ingress_ifindex` queue `rx_queue` (both must exist in the calling
/// thread's network namespace).
pub(crate) fn run(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ingress_ifindex: u32,
    rx_queue: u32,
) -> Result<TestRun, DatapathError> {
    let len = u32::try_from(frame.len())
        .map_err(|_| DatapathError::InvalidArgument("test frame too long".into()))?;
    let mut out = vec![0u8; OUT_CAPACITY.max(frame.len() + 256)];
    let ctx = XdpMd {
        data: 0,
        data_end: len,
        ingress_ifindex,
        rx_queue_index: rx_queue,
        ..XdpMd::default()
    };
    let mut attr = TestAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: len,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ctx_size_in: size_of::<XdpMd>() as u32,
        ctx_in: (&ctx as *const XdpMd) as u64,
        ..TestAttr::default()
    };
    // SAFETY: `attr` is a valid `bpf_attr.test` prefix (the rest of the union
    // is treated as zero); `data_in` points to `len` readable bytes, `data_out`
    // to `data_size_out` writable bytes and `ctx_in` to a `struct xdp_md`, all
    // alive until the call returns; the kernel writes only into `out` and `attr`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestAttr,
            size_of::<TestAttr>() as libc::c_uint,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        let hint = match e.raw_os_error() {
            Some(libc::ENODEV) => " (ingress ifindex not in this thread's network namespace)",
            Some(libc::EINVAL) => " (rx queue beyond the interface's queues, or a bad frame)",
            _ => "",
        };
        return Err(DatapathError::Syscall {
            call: "bpf(BPF_PROG_TEST_RUN)",
            source: io::Error::new(e.kind(), format!("{e}{hint}")),
        });
    }
    out.truncate((attr.data_size_out as usize).min(out.len()));
    Ok(TestRun {
        action: XdpAction::from_retval(attr.retval),
        frame: out,
    })
}

/// The program, to test-run from any thread while the datapath that loaded
/// it is used elsewhere (say, one thread rewriting entries while another
/// runs frames): it holds its own descriptor of the program.
#[derive(Debug)]
pub struct TestRunner {
    prog: OwnedFd,
}

impl TestRunner {
    pub(crate) fn new(prog: OwnedFd) -> Self {
        Self { prog }
    }

    /// As [`crate::XdpDatapath::test_run`].
    pub fn run(
        &self,
        frame: &[u8],
        ingress_ifindex: u32,
        rx_queue: u32,
    ) -> Result<TestRun, DatapathError> {
        run(self.prog.as_fd(), frame, ingress_ifindex, rx_queue)
    }
}
