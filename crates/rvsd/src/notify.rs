//! systemd's readiness protocol (`Type=notify`): `systemctl start` returns
//! once the control socket answers, `systemctl reload` once the file is
//! applied or refused, and `systemctl status` shows what rvsd is doing.
//! Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing.

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    // Keep NOTIFY_SOCKET: rvsd notifies again at every reload.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "systemd notification not sent");
    }
}

/// Startup is finished: the socket is bound and the data path runs.
pub(crate) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins; systemd waits for [`reloaded`].
pub(crate) fn reloading() {
    // RELOADING=1 must carry CLOCK_MONOTONIC, so systemd can tell this
    // reload from an earlier one.
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading the configuration"),
        ]),
        Err(e) => tracing::debug!(error = %e, "reading CLOCK_MONOTONIC for systemd"),
    }
}

/// A reload ended, applied or refused (said in `status`).
pub(crate) fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// rvsd is stopping.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}
