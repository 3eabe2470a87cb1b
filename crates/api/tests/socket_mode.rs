//! The control socket is root-only from the moment it exists, even under
//! umask 000: another user never finds it connectable. Alone in its test
//! binary: it sets the whole process's umask.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustix::fs::Mode;
use rustix::process::umask;

#[test]
fn socket_never_exists_with_a_wider_mode_than_0600() {
    umask(Mode::empty());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _in_runtime = runtime.enter();

    // Watches the path as fast as it can while the socket is created again
    // and again, and keeps every mode it saw.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (path, stop) = (path.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = std::fs::symlink_metadata(&path) {
                    if m.file_type().is_socket() {
                        seen.insert(m.permissions().mode() & 0o777);
                    }
                }
            }
            seen
        })
    };
    for _ in 0..2000 {
        // Bound, then closed and removed (or left for the next bind to
        // remove, as nobody answers on it).
        drop(rvs_api::bind(&path).unwrap());
        let _ = std::fs::remove_file(&path);
    }
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert!(seen.contains(&0o600), "the watcher never saw the socket");
    let modes: Vec<String> = seen.iter().map(|m| format!("{m:o}")).collect();
    assert_eq!(
        seen,
        [0o600].into(),
        "modes the control socket had at some moment: {modes:?}"
    );
    // Nothing of the creation is left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
