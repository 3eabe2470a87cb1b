//! rvsd out of file descriptors: `accept` fails with EMFILE while the
//! descriptors are gone, and the server answers again once they are back.
//! Alone in its test binary: it lowers the whole process's limit.

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use rvs_api::testing::{empty_listing, FakeHandler, Served};
use rvs_api::Client;

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

/// Puts the descriptor limit back however the test ends.
struct Restore(Rlimit);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = setrlimit(Resource::Nofile, self.0);
    }
}

#[test]
fn serving_survives_running_out_of_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    let listing = empty_listing();
    let _served = Served::start(&path, FakeHandler::new(listing.clone(), Vec::new())).unwrap();
    let client = Client::new(&path);
    assert_eq!(client.listing().unwrap(), listing);

    let before = getrlimit(Resource::Nofile);
    let restore = Restore(before);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(open_fds() + 16),
            maximum: before.maximum,
        },
    )
    .unwrap();
    // Connect until this process (client and server alike) has no
    // descriptor left; the server's accepts then fail with EMFILE.
    let mut held = Vec::new();
    let exhausted = loop {
        match UnixStream::connect(&path) {
            Ok(s) => held.push(s),
            Err(e) => break e,
        }
        assert!(held.len() < 64, "the descriptor limit was never reached");
    };
    assert_eq!(exhausted.raw_os_error(), Some(24), "{exhausted}"); // EMFILE
                                                                   // Leave the server time to fail a few accepts.
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    drop(restore);

    // Answered again, within the accept backoff (at most 1 s).
    let t = Instant::now();
    let again = client.listing();
    assert!(
        again.as_ref().is_ok_and(|l| *l == listing),
        "after running out of descriptors: {again:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}
