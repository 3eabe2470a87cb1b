//! Server side of the control API, for rvsd.
//!
//! rvsd implements [`ControlHandler`] over its configuration and calls
//! [`serve`] with a listener from [`bind`]. All HTTP, routing and JSON
//! handling lives here so that the client and the server cannot drift apart.

use std::convert::Infallible;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The control socket file [`bind`] created. Dropping it removes the file,
/// but only while the path still is that socket: a daemon never deletes a
/// socket another daemon put there.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// (device, inode) of the socket file as created.
    id: (u64, u64),
    removed: bool,
}

impl SocketFile {
    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path still is the socket this daemon created.
    pub fn is_ours(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }

    /// Removes the socket file if it still is ours; returns whether it did.
    pub fn remove(mut self) -> bool {
        self.remove_if_ours()
    }

    fn remove_if_ours(&mut self) -> bool {
        if self.removed || !self.is_ours() {
            return false;
        }
        self.removed = std::fs::remove_file(&self.path).is_ok();
        self.removed
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.remove_if_ours();
    }
}

/// Binds the control socket at `path`, root-only (mode 0600) from the
/// moment it exists: it is created in a fresh directory only this user can
/// enter, made 0600 there and only then linked at `path`, so no other user
/// can connect in between, whatever the umask.
///
/// A leftover socket file from a previous run is removed first, but only if
/// nobody answers on it: a second rvsd must not steal a live daemon's socket.
/// Must be called inside a tokio runtime.
pub fn bind(path: &Path) -> io::Result<(UnixListener, SocketFile)> {
    let in_use = || {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another rvsd is already serving {}", path.display()),
        )
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(in_use());
        }
        std::fs::remove_file(path)?;
    }
    if path.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a path to a file", path.display()),
        ));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Short, so that the inner path fits in sun_path when `path` does;
    // numbered, for binds of one process that overlap (tests).
    static BINDS: AtomicUsize = AtomicUsize::new(0);
    let private = parent.join(format!(
        ".rvsd.{}.{}",
        std::process::id(),
        BINDS.fetch_add(1, Ordering::Relaxed)
    ));
    let inner = private.join("s");
    if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&private) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(io::Error::new(
                e.kind(),
                format!("creating {}: {e}", private.display()),
            ));
        }
        // Left by a process of the same pid that died while binding:
        // remove what it left (never following a link) and try once more.
        let _ = std::fs::remove_file(&inner);
        std::fs::remove_dir(&private)
            .and_then(|()| std::fs::DirBuilder::new().mode(0o700).create(&private))
            .map_err(|e| {
                io::Error::new(e.kind(), format!("creating {}: {e}", private.display()))
            })?;
    }
    let bound = (|| {
        let listener = UnixListener::bind(&inner)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
        // A link, unlike a rename, never replaces what appeared at `path`
        // meanwhile (another rvsd starting at the same time).
        std::fs::hard_link(&inner, path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => in_use(),
            _ => e,
        })?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok((
            listener,
            SocketFile {
                path: path.to_path_buf(),
                id: (meta.dev(), meta.ino()),
                removed: false,
            },
        ))
    })();
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&private);
    bound
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
