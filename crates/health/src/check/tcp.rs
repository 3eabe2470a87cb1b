//! TCP_CHECK: the server is up when it accepts a connection in time.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::{fmt_duration, CheckResult};

pub(super) async fn check(target: SocketAddr, timeout: Duration) -> CheckResult {
    match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
        Ok(Ok(_stream)) => CheckResult::up(format!("tcp {target}: connected")),
        Ok(Err(e)) => CheckResult::down(format!("tcp {target}: {e}")),
        Err(_) => CheckResult::down(format!(
            "tcp {target}: no connection within {}",
            fmt_duration(timeout)
        )),
    }
}
