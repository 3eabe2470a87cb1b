//! Network namespaces for RVS's tests and its lab: the one place that
//! creates them, enters them from a thread and removes them again.
//!
//! Every crate whose tests need a network (datapath, rvsd, rvs-decap, the
//! lab) builds it here, so each guarantee is written once:
//!
//! - **Names no other process uses.** [`unique_prefix`] is `rvs`, this
//!   process's pid in five base-36 digits, then a per-process counter in
//!   letters; [`Bed`] names its namespaces `<prefix>-<name>`.
//! - **Removal of exactly what was created.** Only a namespace this process
//!   added ([`Netns::add`]) is ever deleted: on drop (also when a test
//!   panics), and on SIGINT/SIGTERM by a handler that then exits with status
//!   130. Removing one first kills the processes still inside it (nginx, a
//!   capture, a daemon under test) so that nothing keeps it alive unnamed.
//! - **Bounded commands.** Every `ip`/`ethtool` this crate runs is killed
//!   after [`COMMAND_TIMEOUT`]; [`run`] and [`output`] bound any other.
//! - **Threads, not processes, inside a namespace.** Sockets, netlink, XDP
//!   attachments and AF_XDP act on the namespace of the calling *thread*:
//!   [`spawn_in`] / [`run_in`] run a closure on a new thread that has entered
//!   one ([`enter`]), leaving the test's own threads where they are.
//!
//! ```no_run
//! use rvs_netns::{run_in, Bed, End, Veth};
//!
//! let mut bed = Bed::new();
//! let (a, b) = (bed.add("a"), bed.add("b"));
//! Veth::new(
//!     End::new(&a, "eth0").addr("10.99.0.1/24"),
//!     End::new(&b, "eth0").addr("10.99.0.2/24"),
//! )
//! .up()
//! .create()
//! .unwrap();
//! let socket = run_in(&a, || std::net::UdpSocket::bind("10.99.0.1:0").unwrap());
//! // ... the socket stays in `a`; dropping `bed` removes both namespaces.
//! # drop(socket);
//! ```
#![forbid(unsafe_code)]

mod bpffs;
mod cmd;
mod registry;
mod veth;

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use nix::sched::CloneFlags;

pub use bpffs::BpfFs;
pub use cmd::{describe, output, run, wait_until, Error, COMMAND_TIMEOUT};
pub use registry::on_signal;
pub use veth::{End, Veth};

/// Where `ip netns add` pins namespaces (iproute2's NETNS_RUN_DIR; `/var/run`
/// is a link to `/run`).
const NETNS_DIR: &str = "/run/netns";

/// A prefix no other process (and no other caller in this one) uses:
/// `rvs<pid><letters>`, the pid as five base-36 digits (every Linux pid
/// fits), the letters a counter (`a`, `b`, … `z`, `ba`, …). The pid has a
/// fixed width, so two processes can never produce the same prefix; the
/// first 702 prefixes of a process are at most 10 characters.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let mut n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let mut letters = Vec::new();
    loop {
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    letters.reverse();
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut pid = std::process::id();
    let mut base36 = [b'0'; 5];
    for d in base36.iter_mut().rev() {
        *d = DIGITS[(pid % 36) as usize];
        pid /= 36;
    }
    format!(
        "rvs{}{}",
        String::from_utf8_lossy(&base36),
        String::from_utf8_lossy(&letters)
    )
}

/// The namespaces on the machine whose name starts with `<prefix>-`: what a
/// prefix would collide with, or what a test left behind.
pub fn list(prefix: &str) -> Result<Vec<String>, Error> {
    let out = run(Command::new("ip").args(["netns", "list"]), COMMAND_TIMEOUT)?;
    let start = format!("{prefix}-");
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&start))
        .map(String::from)
        .collect())
}

/// The processes inside namespace `ns` (`ip netns pids`): what a removal
/// kills, or what a measurement accounts to it.
pub fn pids(ns: &str) -> Result<Vec<u32>, Error> {
    let out = run(
        Command::new("ip").args(["netns", "pids", ns]),
        COMMAND_TIMEOUT,
    )?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// One network namespace this process created; dropping it removes it
/// (killing what still runs inside first).
#[derive(Debug)]
pub struct Netns {
    /// Empty once removed.
    name: String,
}

impl Netns {
    /// Creates namespace `name` with `lo` up. It is removed on drop, or by
    /// the SIGINT/SIGTERM handler this installs (see [`on_signal`]). Fails
    /// if the name exists already: someone else's namespace is never
    /// adopted.
    pub fn add(name: &str) -> Result<Netns, Error> {
        registry::add(name)?;
        let ns = Netns {
            name: name.to_owned(),
        };
        // On error `ns` drops, which removes the namespace again.
        ip(name, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, for `ip -n` and [`spawn_in`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Removes the namespace now, reporting what failed (dropping it does the
    /// same and ignores errors).
    pub fn remove(mut self) -> Result<(), Error> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<(), Error> {
        let name = std::mem::take(&mut self.name);
        if name.is_empty() {
            return Ok(());
        }
        let r = registry::remove(&name);
        registry::forget(&name);
        r
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.remove_now();
    }
}

/// The namespaces of one test, `<prefix>-<name>` with a [`unique_prefix`],
/// removed in reverse order of creation on drop. For tests: creating one
/// panics with the failing command and its output.
#[derive(Debug)]
pub struct Bed {
    prefix: String,
    namespaces: Vec<Netns>,
}

impl Bed {
    /// An empty bed with a fresh prefix.
    pub fn new() -> Bed {
        Bed {
            prefix: unique_prefix(),
            namespaces: Vec::new(),
        }
    }

    /// The prefix every namespace of this bed starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of this bed's namespace `name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Creates namespace `<prefix>-<name>` with `lo` up and returns its full
    /// name; panics if that fails.
    pub fn add(&mut self, name: &str) -> String {
        let full = self.name(name);
        let ns = Netns::add(&full).unwrap_or_else(|e| panic!("{e}"));
        self.namespaces.push(ns);
        full
    }

    /// `ip -n <ns> <args>` ([`ip`]) in one of this bed's namespaces; panics
    /// with the command's stderr if it fails. Returns stdout.
    pub fn ip(&self, ns: &str, args: &[&str]) -> String {
        self.check(ns);
        ip(ns, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `args` inside one of this bed's namespaces ([`exec_output`]) and
    /// returns the output whatever the exit status; panics only if it cannot
    /// run or does not finish within [`COMMAND_TIMEOUT`].
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        self.check(ns);
        exec_output(ns, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A test touches only namespaces it created.
    fn check(&self, ns: &str) {
        assert!(
            self.namespaces.iter().any(|n| n.name() == ns),
            "{ns} is not a namespace of this bed ({}-*)",
            self.prefix
        );
    }
}

impl Default for Bed {
    fn default() -> Bed {
        Bed::new()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        while let Some(ns) = self.namespaces.pop() {
            drop(ns);
        }
    }
}

/// `ip -n <ns> <args>`, bounded; a non-zero exit is an error with its
/// stderr. Returns stdout.
pub fn ip(ns: &str, args: &[&str]) -> Result<String, Error> {
    run(
        Command::new("ip").args(["-n", ns]).args(args),
        COMMAND_TIMEOUT,
    )
}

/// A command that runs `args` inside `ns` (`ip netns exec`), to spawn or to
/// run with a bound of the caller's choice. `args` must not be empty.
pub fn command(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// Runs `args` inside `ns`, bounded by [`COMMAND_TIMEOUT`]; a non-zero exit
/// is an error with its stderr. Returns stdout.
pub fn exec(ns: &str, args: &[&str]) -> Result<String, Error> {
    run(&mut command(ns, args), COMMAND_TIMEOUT)
}

/// Runs `args` inside `ns`, bounded by [`COMMAND_TIMEOUT`], and returns its
/// output whatever its exit status (for commands whose failure is the
/// result, such as a ping that must not be answered).
pub fn exec_output(ns: &str, args: &[&str]) -> Result<Output, Error> {
    output(&mut command(ns, args), COMMAND_TIMEOUT)
}

/// Moves the calling thread (only) into network namespace `ns`. Call it on
/// a thread you spawned for the purpose: the thread cannot go back.
pub fn enter(ns: &str) -> Result<(), Error> {
    let path = Path::new(NETNS_DIR).join(ns);
    let f = File::open(&path).map_err(cmd::io_error(format!("opening {}", path.display())))?;
    nix::sched::setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Io {
        what: format!("entering network namespace {}", path.display()),
        source: e.into(),
    })
}

/// Runs `f` on a new thread inside namespace `ns`; sockets it creates stay
/// in `ns` when handed back. The thread panics if it cannot enter `ns`.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns).unwrap_or_else(|e| panic!("{e}"));
        f()
    })
}

/// [`spawn_in`] and wait for the result; a panic of `f` is the caller's.
pub fn run_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in(ns, f)
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_short_and_name_safe() {
        let a = unique_prefix();
        let b = unique_prefix();
        assert_ne!(a, b);
        for p in [&a, &b] {
            assert!(p.len() <= 10, "{p}");
            assert!(p.starts_with("rvs"), "{p}");
            assert!(
                p.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                "{p}"
            );
        }
        // The pid part has a fixed width: the counter starts at index 8.
        assert_eq!(a[..8], b[..8]);
    }
}
