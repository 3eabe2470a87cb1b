//! Server side of the control API, for rvsd.
//!
//! rvsd implements [`ControlHandler`] over its configuration and calls
//! [`serve`] with a listener from [`bind`]. All HTTP, routing and JSON
//! handling lives here so that the client and the server cannot drift apart.

use std::convert::Infallible;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::UnixListener;

use crate::error::{ControlError, ErrorBody};
use crate::types::{Command, ConnectionEntry, Listing};
use crate::{COMMANDS_PATH, CONNECTIONS_PATH, SERVICES_PATH};

/// Largest command body accepted: a command is a few hundred bytes, but a
/// `Restore` carries a whole rule file (100k real servers ≈ 25 MB).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// What rvsd provides to answer the API; called once per request.
///
/// Methods are synchronous and run on tokio's blocking pool, so they may take
/// locks; they should not wait on the network.
pub trait ControlHandler: Send + Sync + 'static {
    /// The current table, for `GET /v1/services`.
    fn listing(&self) -> Listing;
    /// The connection table (connections and persistence templates), for
    /// `GET /v1/connections`, in any order (rvsadm prints it as given).
    fn connections(&self) -> Vec<ConnectionEntry>;
    /// Applies one command, or refuses it whole with the reason's kind
    /// (sent as an [`ErrorBody`]). [`Command::Restore`] must be applied
    /// whole or not at all; its refusal is a [`ControlError::Refused`]
    /// naming the failing command.
    fn command(&self, cmd: Command) -> Result<(), ControlError>;
}

/// Binds the control socket at `path`, root-only (mode 0600).
///
/// A leftover socket file from a previous run is removed first, but only if
/// nobody answers on it: a second rvsd must not steal a live daemon's socket.
/// Must be called inside a tokio runtime.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another rvsd is already serving {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the control API on `listener` until the task is dropped or
/// accepting fails; each connection runs on its own task.
pub async fn serve<H: ControlHandler>(listener: UnixListener, handler: Arc<H>) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let svc = service_fn(move |req| route(Arc::clone(&handler), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!("control connection ended with error: {e}");
            }
        });
    }
}

type Reply = Response<Full<Bytes>>;

async fn route<H: ControlHandler>(
    handler: Arc<H>,
    req: Request<Incoming>,
) -> Result<Reply, Infallible> {
    let path = req.uri().path().to_owned();
    let reply = match (req.method(), path.as_str()) {
        (&Method::GET, SERVICES_PATH) => {
            match tokio::task::spawn_blocking(move || handler.listing()).await {
                Ok(listing) => json(StatusCode::OK, &listing),
                Err(e) => internal(e),
            }
        }
        (&Method::GET, CONNECTIONS_PATH) => {
            match tokio::task::spawn_blocking(move || handler.connections()).await {
                Ok(conns) => json(StatusCode::OK, &conns),
                Err(e) => internal(e),
            }
        }
        (&Method::POST, COMMANDS_PATH) => command(handler, req).await,
        (_, SERVICES_PATH) | (_, CONNECTIONS_PATH) | (_, COMMANDS_PATH) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            ControlError::bad_request(format!("method {} not allowed on {path}", req.method())),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            ControlError::bad_request(format!("no such endpoint: {path}")),
        ),
    };
    Ok(reply)
}

async fn command<H: ControlHandler>(handler: Arc<H>, req: Request<Incoming>) -> Reply {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return refusal(ControlError::bad_request(format!(
                "cannot read command: {e}"
            )))
        }
    };
    let cmd: Command = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return refusal(ControlError::bad_request(format!("malformed command: {e}"))),
    };
    match &cmd {
        // One line per restore, not the whole rule file.
        Command::Restore(cmds) => tracing::info!(commands = cmds.len(), "control restore"),
        _ => tracing::info!(?cmd, "control command"),
    }
    match tokio::task::spawn_blocking(move || handler.command(cmd)).await {
        Ok(Ok(())) => json(StatusCode::OK, &serde_json::json!({ "ok": true })),
        Ok(Err(e)) => refusal(e),
        Err(e) => internal(e),
    }
}

fn internal(e: tokio::task::JoinError) -> Reply {
    tracing::error!("control handler failed: {e}");
    refusal(ControlError::internal(
        "the request failed (see rvsd's log)",
    ))
}

/// A refusal with the status of its kind.
fn refusal(e: ControlError) -> Reply {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, e)
}

fn error(status: StatusCode, e: ControlError) -> Reply {
    json(status, &ErrorBody::from(e))
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    // Serializing our own plain-data types cannot fail; fall back to an empty
    // object rather than panic if it ever did.
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
