//! Blocking client for rvsd's control socket.
//!
//! A command-line tool makes one request and exits, so this is a minimal
//! HTTP/1.1 client over a std `UnixStream`: one request per connection
//! (`Connection: close`), body framed by `Content-Length` (chunked replies are
//! decoded too, for robustness). No async runtime, no extra dependencies.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::{ControlError, ErrorBody};
use crate::types::{Command, ConnectionEntry, Listing};
use crate::{COMMANDS_PATH, CONNECTIONS_PATH, SERVICES_PATH};

/// Largest reply accepted; a listing of 100k services fits comfortably.
const MAX_REPLY: usize = 256 * 1024 * 1024;

/// How long to wait for rvsd before giving up, so rvsadm never hangs.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request to rvsd failed; each message is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket file, or nobody listening on it.
    #[error("rvsd is not running (no control socket at {})", path.display())]
    NotRunning {
        /// The socket path that was tried.
        path: PathBuf,
    },
    /// The socket is root-only (mode 0600), or 0660 for rvsd's read-only
    /// `socket_group`, and this user is neither root nor in that group.
    #[error("permission denied on control socket {}: run as root", path.display())]
    PermissionDenied {
        /// The socket path that was tried.
        path: PathBuf,
    },
    /// Any other socket error (timeout, reset).
    #[error("talking to rvsd at {}: {source}", path.display())]
    Io {
        /// The socket path that was tried.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// rvsd refused the request; a tool words the reason for its user
    /// (the `Display` is the API's own wording).
    #[error("{error}")]
    Rejected {
        /// HTTP status (4xx or 5xx).
        status: u16,
        /// Why, by kind.
        error: ControlError,
    },
    /// The reply was not the HTTP/JSON rvsd sends: a version mismatch or a bug.
    #[error("malformed reply from rvsd: {0}")]
    Protocol(String),
}

/// Talks to one rvsd over its Unix control socket.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
}

impl Client {
    /// A client for the socket at `path` (see [`crate::socket_path`]).
    /// Nothing is opened until a request is made.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Client { path: path.into() }
    }

    /// The socket path this client uses.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fetches every service with its real servers, counters and state.
    pub fn listing(&self) -> Result<Listing, ClientError> {
        let (status, body) = self.request("GET", SERVICES_PATH, None)?;
        self.decode_ok(status, &body)
    }

    /// Fetches the connection table (`ipvsadm -Lc`).
    pub fn connections(&self) -> Result<Vec<ConnectionEntry>, ClientError> {
        let (status, body) = self.request("GET", CONNECTIONS_PATH, None)?;
        self.decode_ok(status, &body)
    }

    /// Sends one change; `Ok` once rvsd has applied it.
    pub fn command(&self, cmd: &Command) -> Result<(), ClientError> {
        let body = serde_json::to_vec(cmd)
            .map_err(|e| ClientError::Protocol(format!("cannot encode command: {e}")))?;
        let (status, reply) = self.request("POST", COMMANDS_PATH, Some(&body))?;
        let _: serde_json::Value = self.decode_ok(status, &reply)?;
        Ok(())
    }

    fn decode_ok<T: DeserializeOwned>(&self, status: u16, body: &[u8]) -> Result<T, ClientError> {
        if (200..300).contains(&status) {
            return serde_json::from_slice(body)
                .map_err(|e| ClientError::Protocol(format!("bad JSON in reply: {e}")));
        }
        Err(ClientError::Rejected {
            status,
            error: refusal(status, body),
        })
    }

    fn connect(&self) -> Result<UnixStream, ClientError> {
        UnixStream::connect(&self.path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
                path: self.path.clone(),
            },
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                path: self.path.clone(),
            },
            _ => self.io_err(e),
        })
    }

    fn io_err(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// One HTTP exchange; returns status code and body.
    fn request(
        &self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let mut stream = self.connect()?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| self.io_err(e))?;
        let body = body.unwrap_or(&[]);
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: rvsd\r\nConnection: close\r\n\
             Accept: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
        .into_bytes();
        if !body.is_empty() {
            req.extend_from_slice(b"Content-Type: application/json\r\n");
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        stream.write_all(&req).map_err(|e| self.io_err(e))?;
        stream.flush().map_err(|e| self.io_err(e))?;

        let mut raw = Vec::new();
        stream
            .take(MAX_REPLY as u64 + 1)
            .read_to_end(&mut raw)
            .map_err(|e| self.io_err(e))?;
        if raw.len() > MAX_REPLY {
            return Err(ClientError::Protocol("reply too large".into()));
        }
        parse_response(&raw).map_err(ClientError::Protocol)
    }
}

/// The error in a non-2xx reply. A body with only a message (an older rvsd)
/// or none at all (not rvsd) reads as a bad request, or an internal error
/// for a 5xx status, with that text.
fn refusal(status: u16, body: &[u8]) -> ControlError {
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
        return e.detail;
    }
    #[derive(serde::Deserialize)]
    struct MessageOnly {
        error: String,
    }
    let message = match serde_json::from_slice::<MessageOnly>(body) {
        Ok(m) => m.error,
        Err(_) => format!(
            "rvsd answered HTTP {status}: {}",
            String::from_utf8_lossy(body).trim()
        ),
    };
    if status >= 500 {
        ControlError::internal(message)
    } else {
        ControlError::bad_request(message)
    }
}

/// Parses a complete HTTP/1.1 response (read until the server closed).
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let head_end = find(raw, b"\r\n\r\n").ok_or("reply ends inside the header")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "header is not UTF-8")?;
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x status line: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| format!("bad status line: {status_line:?}"))?;

    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line: {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| format!("bad Content-Length: {value:?}"))?;
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(n) = content_length {
        if rest.len() < n {
            return Err(format!("reply body truncated: {} of {n} bytes", rest.len()));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

fn decode_chunked(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("chunk size line truncated")?;
        let line = std::str::from_utf8(&data[..line_end]).map_err(|_| "bad chunk size")?;
        let size_str = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_str, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("chunk truncated".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_body() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nx: y\r\n\r\n{\"ok\":true}trailing";
        assert_eq!(
            parse_response(raw).unwrap(),
            (200, b"{\"ok\":true}".to_vec())
        );
    }

    #[test]
    fn parses_chunked_body() {
        let raw = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap(), (400, b"abcde".to_vec()));
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(parse_response(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length").is_err());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
    }

    #[test]
    fn refusals_are_typed_and_older_bodies_still_read() {
        let typed = br#"{"error":"x","kind":"exists","what":{"fwmark_rule":{"mark":3}}}"#;
        assert_eq!(
            refusal(400, typed),
            ControlError::Exists {
                what: crate::Entity::FwmarkRule { mark: 3 }
            }
        );
        assert_eq!(
            refusal(400, br#"{"error":"No such service"}"#),
            ControlError::bad_request("No such service")
        );
        assert_eq!(
            refusal(502, b"bad gateway"),
            ControlError::internal("rvsd answered HTTP 502: bad gateway")
        );
    }

    #[test]
    fn missing_socket_is_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.sock");
        let err = Client::new(&path).listing().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "rvsd is not running (no control socket at {})",
                path.display()
            )
        );
    }

    #[test]
    fn stale_socket_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = Client::new(&path).command(&Command::Clear).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    }
}
