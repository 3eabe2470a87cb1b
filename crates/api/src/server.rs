//! Server side of the control API, for rvsd.
//!
//! rvsd implements [`ControlHandler`] over its configuration and calls
//! [`serve`] with a listener from [`bind`]. All HTTP, routing and JSON
//! handling lives here so that the client and the server cannot drift apart.
//!
//! The server outlives any client: an error accepting a connection (out of
//! file descriptors, say) is logged and retried, never the end of serving,
//! and [`Limits`] bound what idle, slow or huge clients can hold.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore};

use crate::error::{ControlError, ErrorBody};
use crate::types::{Command, ConnectionEntry, Listing};
use crate::{COMMANDS_PATH, CONNECTIONS_PATH, SERVICES_PATH};

/// Largest command body accepted: a command is a few hundred bytes, but a
/// `Restore` carries a whole rule file. 100,000 IPv6 services with two real
/// servers each encode to about 57 MiB (see the test below), so 64 MiB.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

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

/// How much of rvsd idle, slow or huge clients may hold, so that they
/// cannot starve the operator's rvsadm or the daemon itself.
///
/// With the defaults, command bodies in memory stay below
/// `large_bodies × max_body + max_connections × small_body` = 192 MiB, plus
/// the parsed commands of the at most two large ones (about 45 MB for a
/// 60 MB restore). Measured: eight concurrent 60 MB restores took rvsd
/// (debug build) to a peak of 266 MB resident, where before these limits
/// they took it to 710 MB.
/// The handler's own time is not bounded here (it cannot be interrupted);
/// its lock makes commands wait for each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once. When a new one arrives beyond it, the
    /// longest-idle connection (no request in progress) is closed to make
    /// room; if every connection is busy with a request, the new one is
    /// closed at once.
    pub max_connections: usize,
    /// Time a connection has to send a request's headers, counted from
    /// when rvsd starts waiting for them: an idle connection (also an idle
    /// keep-alive one) and a client sending its headers slowly are cut off
    /// after it.
    pub header_timeout: Duration,
    /// Time a request's body has to arrive once rvsd starts reading it.
    pub body_timeout: Duration,
    /// Time a write of a reply may make no progress (a client that stops
    /// reading) before the connection is closed.
    pub write_timeout: Duration,
    /// Largest command body, in bytes.
    pub max_body: usize,
    /// Bodies up to this size (by their `Content-Length`) are read at once;
    /// larger ones, and ones of unknown length, wait for one of
    /// `large_bodies` turns, kept until their command is answered.
    pub small_body: usize,
    /// Large bodies read, parsed or applied at once (at least 1).
    pub large_bodies: usize,
}

impl Default for Limits {
    /// 64 connections, 10 s for headers, 30 s for a body or a stalled
    /// write, [`MAX_BODY`], two large bodies at a time above 1 MiB.
    fn default() -> Self {
        Limits {
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_body: MAX_BODY,
            small_body: 1024 * 1024,
            large_bodies: 2,
        }
    }
}

/// Largest number of header fields a request may have: rvsadm sends four.
/// A request with more is answered `431 Request Header Fields Too Large`
/// and its connection closed (the bytes of the headers are bounded too,
/// by hyper's read buffer, and their time by [`Limits::header_timeout`]).
pub const MAX_HEADERS: usize = 64;

/// Who may do what on the socket, decided per connection from the
/// client's credentials (`SO_PEERCRED`): root and rvsd's own user may do
/// everything; with a [`ReadOnlyGroup`], members of that group may read
/// (list services, connections, counters) and are refused every command
/// with [`ControlError::PermissionDenied`]. Anyone else is refused
/// everything (the socket's mode keeps them out already; this is the
/// second lock).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// The group given read-only access (the socket is then 0660 with it).
    pub read_only_group: Option<ReadOnlyGroup>,
}

/// A group whose members may read but not change rvsd's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOnlyGroup {
    /// Its id, as the kernel reports the client's groups.
    pub gid: u32,
    /// Its name, for the refusal's message.
    pub name: String,
}

/// What one connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Root or rvsd's user.
    Full,
    /// A member of the read-only group.
    ReadOnly,
    /// Nobody we know.
    None,
}

impl Access {
    /// The role of a client with credentials `cred`.
    fn role(&self, cred: Option<&tokio::net::unix::UCred>) -> Role {
        let Some(cred) = cred else {
            return Role::None;
        };
        let uid = cred.uid();
        if uid == 0 || uid == rustix::process::geteuid().as_raw() {
            return Role::Full;
        }
        match &self.read_only_group {
            Some(g)
                if cred.gid() == g.gid
                    || cred.pid().is_some_and(|p| in_group(p, g.gid))
                    || member(uid, g.gid) =>
            {
                Role::ReadOnly
            }
            _ => Role::None,
        }
    }

    fn refusal(&self, role: Role, what: &str) -> Option<ControlError> {
        match (role, &self.read_only_group) {
            (Role::Full, _) => None,
            (Role::ReadOnly, _) if what == "read" => None,
            (Role::ReadOnly, Some(g)) => Some(ControlError::permission_denied(format!(
                "this socket grants read-only access to group {}; run the command as root",
                g.name
            ))),
            _ => Some(ControlError::permission_denied(
                "this socket serves root and rvsd's user only (and a socket_group, read-only, if one is configured)",
            )),
        }
    }
}

/// Whether user `uid` is a member of group `gid` in the user database:
/// where rvsd cannot see the client's process (systemd's
/// `ProtectProc=invisible` hides other users' processes).
fn member(uid: u32, gid: u32) -> bool {
    use nix::unistd::{Gid, Group, Uid, User};
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    user.gid == Gid::from_raw(gid)
        || Group::from_gid(Gid::from_raw(gid))
            .ok()
            .flatten()
            .is_some_and(|g| g.mem.contains(&user.name))
}

/// Whether process `pid` has `gid` among its supplementary groups (read
/// from /proc: `SO_PEERCRED` carries the primary group only).
fn in_group(pid: i32, gid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|n| n.parse() == Ok(gid)))
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
    bind_with(path, None)
}

/// [`bind`], and with `group` the socket is mode 0660 and of that group
/// (for [`Access::read_only_group`]), set as privately as the mode.
pub fn bind_with(path: &Path, group: Option<u32>) -> io::Result<(UnixListener, SocketFile)> {
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
    // The default lives in /run/rvs (systemd's RuntimeDirectory=rvs);
    // started by hand, rvsd makes the directory itself.
    if !parent.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
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
        let mode = match group {
            Some(gid) => {
                std::os::unix::fs::chown(&inner, None, Some(gid))?;
                0o660
            }
            None => 0o600,
        };
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(mode))?;
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

/// Serves the control API on `listener` with the default [`Limits`]; see
/// [`serve_with`].
pub async fn serve<H: ControlHandler>(listener: UnixListener, handler: Arc<H>) -> Infallible {
    serve_with(listener, handler, Limits::default()).await
}

/// Serves the control API on `listener` until the task is dropped; each
/// connection runs on its own task. Never ends by itself: a failed
/// `accept` (EMFILE when rvsd is out of file descriptors, say) is logged at
/// most once every 10 s and retried with a backoff of up to a second.
pub async fn serve_with<H: ControlHandler>(
    listener: UnixListener,
    handler: Arc<H>,
    limits: Limits,
) -> Infallible {
    serve_with_access(listener, handler, limits, Access::default()).await
}

/// [`serve_with`], with who may do what decided by `access`.
pub async fn serve_with_access<H: ControlHandler>(
    listener: UnixListener,
    handler: Arc<H>,
    limits: Limits,
    access: Access,
) -> Infallible {
    let shared = Arc::new(Shared {
        access,
        large: Semaphore::new(limits.large_bodies.max(1)),
        limits,
        conns: Mutex::new(Vec::new()),
    });
    let mut backoff = Duration::ZERO;
    let mut accept_errors = Throttle::default();
    let mut turned_away = Throttle::default();
    loop {
        while shared.closing() >= shared.limits.max_connections.max(1) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                stream
            }
            Err(e) => {
                backoff = (backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
                if let Some(also) = accept_errors.allow() {
                    tracing::warn!(
                        error = %e,
                        also_failed = also,
                        "accepting a control connection failed; retrying (out of file descriptors? raise LimitNOFILE)"
                    );
                }
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let Some(conn) = shared.admit() else {
            if let Some(also) = turned_away.allow() {
                tracing::warn!(
                    max_connections = shared.limits.max_connections,
                    also_turned_away = also,
                    "control connection closed at once: every connection is busy with a request"
                );
            }
            continue;
        };
        let cred = stream.peer_cred().ok();
        let handler = Arc::clone(&handler);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _registered = Registered(Arc::clone(&shared), Arc::clone(&conn));
            // The user database may be slow (LDAP): off the accept loop.
            let role = if shared.access.read_only_group.is_some() {
                let s = Arc::clone(&shared);
                tokio::task::spawn_blocking(move || s.access.role(cred.as_ref()))
                    .await
                    .unwrap_or(Role::None)
            } else {
                shared.access.role(cred.as_ref())
            };
            let svc = {
                let (shared, conn) = (Arc::clone(&shared), Arc::clone(&conn));
                service_fn(move |req| {
                    route(
                        Arc::clone(&handler),
                        Arc::clone(&shared),
                        role,
                        Busy::new(&conn),
                        req,
                    )
                })
            };
            let io = WriteDeadline::new(stream, shared.limits.write_timeout);
            let serving = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(shared.limits.header_timeout)
                .max_headers(MAX_HEADERS)
                .serve_connection(TokioIo::new(io), svc);
            tokio::pin!(serving);
            loop {
                tokio::select! {
                    r = &mut serving => {
                        if let Err(e) = r {
                            tracing::debug!("control connection ended with error: {e}");
                        }
                        break;
                    }
                    () = conn.close.notified() => {
                        if conn.busy.load(Ordering::Acquire) == 0 {
                            tracing::debug!("closed an idle control connection to admit a new one");
                            break;
                        }
                        // A request began since: it is served, the cap
                        // exceeded by one meanwhile.
                        conn.evicted.store(false, Ordering::Relaxed);
                    }
                }
            }
        });
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// At most one log line per [`Throttle::EVERY`], counting the rest.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    const EVERY: Duration = Duration::from_secs(10);

    /// `Some(events not logged since the last line)` if this one may be.
    fn allow(&mut self) -> Option<u64> {
        if self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// What every connection of one server shares.
struct Shared {
    limits: Limits,
    access: Access,
    /// Turns for large bodies.
    large: Semaphore,
    /// Live connections, oldest first.
    conns: Mutex<Vec<Arc<Conn>>>,
}

/// One live connection, as the cap sees it.
#[derive(Default)]
struct Conn {
    /// Requests in progress (from their headers until their reply is
    /// written); a connection with none is idle and may be closed.
    busy: AtomicUsize,
    /// Already told to close.
    evicted: AtomicBool,
    close: Notify,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Vec<Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection: free, or made by closing the
    /// longest-idle one. `None`: every connection is busy with a request.
    fn admit(&self) -> Option<Arc<Conn>> {
        let mut conns = self.conns();
        let open = conns
            .iter()
            .filter(|c| !c.evicted.load(Ordering::Relaxed))
            .count();
        if open >= self.limits.max_connections.max(1) {
            let idle = conns.iter().find(|c| {
                !c.evicted.load(Ordering::Relaxed) && c.busy.load(Ordering::Acquire) == 0
            })?;
            idle.evicted.store(true, Ordering::Relaxed);
            idle.close.notify_one();
        }
        let conn = Arc::new(Conn::default());
        conns.push(Arc::clone(&conn));
        Some(conn)
    }

    /// Connections told to close that have not yet: accepting waits while
    /// there are as many as the cap, so that at most twice the cap of
    /// descriptors are held.
    fn closing(&self) -> usize {
        self.conns()
            .iter()
            .filter(|c| c.evicted.load(Ordering::Relaxed))
            .count()
    }
}

/// Removes its connection from [`Shared::conns`] when the connection's
/// task ends.
struct Registered(Arc<Shared>, Arc<Conn>);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.conns().retain(|c| !Arc::ptr_eq(c, &self.1));
    }
}

/// A request in progress on its connection, until dropped with the reply.
struct Busy(Arc<Conn>);

impl Busy {
    fn new(conn: &Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(conn))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The stream of a connection whose writes fail once one has made no
/// progress for `limit`: a client that stops reading its reply does not
/// hold its connection (and the reply) forever.
struct WriteDeadline {
    inner: UnixStream,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl WriteDeadline {
    fn new(inner: UnixStream, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
        }
    }

    fn check<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing of its reply for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, r)
    }
}

/// A reply's body: JSON, holding its request's [`Busy`] until written
/// (hyper drops it then); its length known, so sent with Content-Length.
struct ReplyBody {
    json: Full<Bytes>,
    _busy: Busy,
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.json).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.json.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.json.size_hint()
    }
}
type Reply = Response<Full<Bytes>>;

async fn route<H: ControlHandler>(
    handler: Arc<H>,
    shared: Arc<Shared>,
    role: Role,
    busy: Busy,
    req: Request<Incoming>,
) -> Result<Response<ReplyBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let wants = if req.method() == Method::GET {
        "read"
    } else {
        "change"
    };
    if let Some(denied) = shared.access.refusal(role, wants) {
        return Ok(refusal(denied).map(|json| ReplyBody { json, _busy: busy }));
    }
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
        (&Method::POST, COMMANDS_PATH) => command(handler, &shared, req).await,
        (_, SERVICES_PATH) | (_, CONNECTIONS_PATH) | (_, COMMANDS_PATH) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            ControlError::bad_request(format!("method {} not allowed on {path}", req.method())),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            ControlError::bad_request(format!("no such endpoint: {path}")),
        ),
    };
    Ok(reply.map(|json| ReplyBody { json, _busy: busy }))
}

async fn command<H: ControlHandler>(
    handler: Arc<H>,
    shared: &Shared,
    req: Request<Incoming>,
) -> Reply {
    let limits = &shared.limits;
    let declared = req.body().size_hint().exact();
    if let Some(n) = declared.filter(|&n| n > limits.max_body as u64) {
        return refusal(too_large(Some(n), limits.max_body));
    }
    // A large body waits for its turn and keeps it until answered, so at
    // most `large_bodies` of them (and their parsed commands) are in memory.
    let _turn = if declared.is_none_or(|n| n > limits.small_body as u64) {
        match shared.large.acquire().await {
            Ok(turn) => Some(turn),
            Err(_) => return refusal(ControlError::internal("the control server is stopping")),
        }
    } else {
        None
    };
    let body = match tokio::time::timeout(
        limits.body_timeout,
        read_body(req.into_body(), declared, limits.max_body),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return refusal(e),
        Err(_) => {
            return refusal(ControlError::bad_request(format!(
                "the command did not arrive within {} s: send the whole request at once",
                limits.body_timeout.as_secs_f64()
            )))
        }
    };
    let cmd: Command = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return refusal(malformed(&e)),
    };
    drop(body);
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

/// The whole body, at most `max` bytes, in one buffer sized by its
/// `Content-Length` (no second copy of a large body).
async fn read_body(
    mut body: Incoming,
    declared: Option<u64>,
    max: usize,
) -> Result<Vec<u8>, ControlError> {
    let capacity = declared.map_or(0, |n| usize::try_from(n).unwrap_or(max).min(max));
    let mut buf = Vec::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ControlError::bad_request(format!("cannot read command: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                return Err(too_large(None, max));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

fn too_large(size: Option<u64>, max: usize) -> ControlError {
    let size = size.map(|n| format!(" of {n} bytes")).unwrap_or_default();
    ControlError::bad_request(format!(
        "cannot read command: a command{size} is larger than the {} MiB rvsd accepts; restore a rule file this big in parts",
        max / (1024 * 1024)
    ))
}

/// A body that is not a command, said so that the sender can fix it.
fn malformed(e: &serde_json::Error) -> ControlError {
    use serde_json::error::Category;
    ControlError::bad_request(match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => format!(
            "malformed command: not valid JSON ({e}); send one command such as \"clear\" or {{\"delete_service\":{{\"fwmark\":1}}}}"
        ),
        Category::Data => format!("malformed command: {e}"),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DestSpec, ForwardMethod, Protocol, ServiceKey, ServiceSpec};

    /// The default socket's directory (/run/rvs) need not exist: binding
    /// makes it, world-readable as systemd's RuntimeDirectory would be.
    #[test]
    fn binding_makes_the_socket_directory() {
        use std::os::unix::fs::PermissionsExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _in_runtime = runtime.enter();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rvs/deeper/rvsd.sock");
        let (_listener, socket) = bind(&path).expect("bind creates the directories");
        assert!(path.exists());
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        drop(socket);
        assert!(!path.exists(), "our socket is removed with its guard");
    }

    /// The largest restore rvsd is meant to take in one go fits the body
    /// limit: 100,000 IPv6 services, each with two real servers.
    #[test]
    fn the_largest_restore_fits_the_body_limit() {
        let mut cmds = Vec::new();
        for i in 0..100_000u32 {
            let vip =
                std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0, 0, 0, (i >> 16) as u16, i as u16);
            let key = ServiceKey::addr(Protocol::Tcp, vip.into(), 443);
            cmds.push(Command::AddService(ServiceSpec {
                key,
                scheduler: "wlc".into(),
                persistence_timeout: Some(86_400),
                netmask: Some(64),
                flags: vec![],
                one_packet: false,
                local_addresses: vec![],
                toa: false,
            }));
            for d in 0..2u16 {
                let rs = std::net::Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0xbbbb,
                    d,
                    0,
                    0,
                    (i >> 16) as u16,
                    i as u16,
                );
                cmds.push(Command::AddDest {
                    service: key,
                    dest: DestSpec {
                        addr: rs.into(),
                        port: 8443,
                        weight: 100,
                        method: ForwardMethod::Masq,
                        tunnel: crate::Tunnel::Ipip,
                        upper_threshold: 10_000,
                        lower_threshold: 5_000,
                    },
                });
            }
        }
        let size = serde_json::to_vec(&Command::Restore(cmds)).unwrap().len();
        assert!(
            size > MAX_BODY / 2 && size < MAX_BODY,
            "{size} bytes against a limit of {MAX_BODY}"
        );
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        let e = serde_json::from_slice::<Command>(b"{nope").unwrap_err();
        let m = malformed(&e).to_string();
        assert!(m.starts_with("malformed command: not valid JSON"), "{m}");
        let e =
            serde_json::from_slice::<Command>(br#"{"delete_service":{"fwmark":0}}"#).unwrap_err();
        let m = malformed(&e).to_string();
        assert!(m.starts_with("malformed command: fwmark 0"), "{m}");
    }

    #[test]
    fn throttle_logs_once_per_period_and_counts_the_rest() {
        let mut t = Throttle::default();
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        t.last = Some(Instant::now() - Throttle::EVERY);
        assert_eq!(t.allow(), Some(2));
    }
}
