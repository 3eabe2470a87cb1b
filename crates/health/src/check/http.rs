//! HTTP_GET: an HTTP/1.0 GET (as keepalived sends), up when the status is
//! one of `status_codes` and, with `digest`, the body's MD5 matches.
//!
//! HTTP/1.0 with `Connection: close` means the server ends the body by
//! closing or with Content-Length, never chunked. The whole exchange,
//! connect to last byte, is bounded by connect_timeout; bodies above
//! [`MAX_BODY`] count as failures rather than being read forever.

use std::net::SocketAddr;
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{fmt_duration, CheckResult};
use crate::spec::HttpSpec;

/// Larger responses are refused: a health page is small.
const MAX_BODY: usize = 4 << 20;

pub(super) async fn check(target: SocketAddr, timeout: Duration, spec: &HttpSpec) -> CheckResult {
    let what = format!("http {target}{}", spec.path);
    match tokio::time::timeout(timeout, fetch(target, &spec.path)).await {
        Err(_) => CheckResult::down(format!(
            "{what}: no complete response within {}",
            fmt_duration(timeout)
        )),
        Ok(Err(e)) => CheckResult::down(format!("{what}: {e}")),
        Ok(Ok(raw)) => judge(&what, &raw, spec),
    }
}

async fn fetch(target: SocketAddr, path: &str) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(target)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {target}\r\nUser-Agent: rvs-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut raw = Vec::with_capacity(4096);
    let mut limited = (&mut stream).take(MAX_BODY as u64 + 64 * 1024);
    limited
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("reading the response: {e}"))?;
    Ok(raw)
}

/// Judges a complete raw response; pure so it can be tested byte by byte.
fn judge(what: &str, raw: &[u8], spec: &HttpSpec) -> CheckResult {
    let Some((head_len, sep)) = find_head_end(raw) else {
        return CheckResult::down(format!("{what}: response without a complete header"));
    };
    let head = String::from_utf8_lossy(&raw[..head_len]);
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let status = match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(code))) if v.starts_with("HTTP/") => code,
        _ => return CheckResult::down(format!("{what}: not an HTTP status line: {status_line:?}")),
    };
    if !spec.status_codes.contains(&status) {
        return CheckResult::down(format!(
            "{what}: status {status}, expected one of {:?}",
            spec.status_codes
        ));
    }
    let Some(want) = spec.digest else {
        return CheckResult::up(format!("{what}: status {status}"));
    };
    let mut body = &raw[head_len + sep..];
    if body.len() > MAX_BODY {
        return CheckResult::down(format!("{what}: body larger than {MAX_BODY} bytes"));
    }
    let content_length = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    if let Some(len) = content_length {
        if body.len() < len {
            return CheckResult::down(format!(
                "{what}: body of {} bytes, Content-Length said {len}",
                body.len()
            ));
        }
        body = &body[..len];
    }
    let got: [u8; 16] = Md5::digest(body).into();
    if got == want {
        CheckResult::up(format!("{what}: status {status}, digest matches"))
    } else {
        CheckResult::down(format!(
            "{what}: body digest {} instead of {}",
            hex(&got),
            hex(&want)
        ))
    }
}

/// End of the header block: (offset, separator length).
fn find_head_end(raw: &[u8]) -> Option<(usize, usize)> {
    if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some((i, 4));
    }
    raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(codes: &[u16], digest: Option<[u8; 16]>) -> HttpSpec {
        HttpSpec {
            path: "/".into(),
            status_codes: codes.to_vec(),
            digest,
        }
    }

    fn md5_of(b: &[u8]) -> [u8; 16] {
        Md5::digest(b).into()
    }

    #[test]
    fn status_and_digest_rules() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert!(judge("t", ok, &spec(&[200], None)).ok);
        assert!(!judge("t", ok, &spec(&[204], None)).ok);
        assert!(judge("t", ok, &spec(&[200], Some(md5_of(b"hello")))).ok);
        assert!(!judge("t", ok, &spec(&[200], Some(md5_of(b"hellO")))).ok);
        // Content-Length bounds the body; trailing bytes are not hashed.
        let extra = b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nhello";
        assert!(judge("t", extra, &spec(&[200], Some(md5_of(b"he")))).ok);
        // A short body is a failure, not a digest of half a page.
        let short = b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nhello";
        assert!(!judge("t", short, &spec(&[200], Some(md5_of(b"hello")))).ok);
        // Close-delimited body, bare LF headers.
        let lf = b"HTTP/1.0 200 OK\nServer: x\n\nbody";
        assert!(judge("t", lf, &spec(&[200], Some(md5_of(b"body")))).ok);
        let e500 = b"HTTP/1.1 500 Oops\r\n\r\n";
        let r = judge("t", e500, &spec(&[200], None));
        assert!(!r.ok && r.reason.contains("status 500"), "{r:?}");
        assert!(!judge("t", b"garbage\r\n\r\n", &spec(&[200], None)).ok);
        assert!(!judge("t", b"HTTP/1.1 200 OK\r\n", &spec(&[200], None)).ok);
        assert!(!judge("t", b"", &spec(&[200], None)).ok);
    }
}
