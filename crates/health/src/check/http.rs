//! HTTP_GET: an HTTP/1.0 GET (as keepalived sends), up when the status is
//! in one of the `status_codes` ranges and, with `digest`, the body's MD5
//! matches. SSL_GET ([`super::ssl`]) runs the same exchange over TLS.
//!
//! The request carries `Host: <virtualhost>` when set, else the target's
//! `address:port` (keepalived's rule), and `Authorization: Basic …` when
//! `username`/`password` are set. HTTP/1.0 with `Connection: close` means
//! the server ends the body by closing or with Content-Length, never
//! chunked. The whole exchange, connect to last byte, is bounded by
//! connect_timeout; keepalived hashes however long a body is, RVS reads at
//! most [`MAX_BODY`] bytes of it (a larger body fails the check) so a
//! broken server cannot make the director buffer without end.

use std::net::SocketAddr;
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{fmt_duration, CheckResult};
use crate::spec::HttpSpec;

/// Larger responses are refused: a health page is small.
pub(super) const MAX_BODY: usize = 4 << 20;
/// Room for the status line and headers on top of the body.
const MAX_HEAD: usize = 64 * 1024;

pub(super) async fn check(target: SocketAddr, timeout: Duration, spec: &HttpSpec) -> CheckResult {
    let what = format!("http {target}{}", spec.path);
    let attempt = async {
        let stream = TcpStream::connect(target)
            .await
            .map_err(|e| e.to_string())?;
        exchange(stream, target, spec).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => CheckResult::down(format!(
            "{what}: no complete response within {}",
            fmt_duration(timeout)
        )),
        Ok(Err(e)) => CheckResult::down(format!("{what}: {e}")),
        Ok(Ok(raw)) => judge(&what, &raw, spec),
    }
}

/// The request keepalived would send, plus basic auth when configured.
pub(super) fn request(target: SocketAddr, spec: &HttpSpec) -> String {
    let host = match &spec.virtualhost {
        Some(v) => v.clone(),
        None => target.to_string(),
    };
    let auth = match &spec.basic_auth {
        Some((user, password)) => format!(
            "Authorization: Basic {}\r\n",
            base64(format!("{user}:{password}").as_bytes())
        ),
        None => String::new(),
    };
    format!(
        "GET {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: rvs-health\r\n{auth}Connection: close\r\n\r\n",
        spec.path
    )
}

/// Sends the request on `stream` and reads the response, at most
/// [`MAX_BODY`] + [`MAX_HEAD`] bytes (one more tells the body was larger).
pub(super) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    target: SocketAddr,
    spec: &HttpSpec,
) -> Result<Vec<u8>, String> {
    stream
        .write_all(request(target, spec).as_bytes())
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut raw = Vec::with_capacity(4096);
    let mut limited = (&mut stream).take((MAX_BODY + MAX_HEAD) as u64 + 1);
    match limited.read_to_end(&mut raw).await {
        Ok(_) => Ok(raw),
        // A TLS server closing without close_notify (keepalived itself
        // shuts down quietly): what arrived is the response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(format!("reading the response: {e}")),
    }
}

/// RFC 4648 base64 with padding, for the Authorization header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Judges a complete raw response; pure so it can be tested byte by byte.
pub(super) fn judge(what: &str, raw: &[u8], spec: &HttpSpec) -> CheckResult {
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
    if !spec.accepts(status) {
        let ranges: Vec<String> = spec
            .status_codes
            .iter()
            .map(|(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        return CheckResult::down(format!(
            "{what}: status {status}, expected {}",
            ranges.join(" ")
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
            status_codes: codes.iter().map(|c| (*c, *c)).collect(),
            digest,
            virtualhost: None,
            basic_auth: None,
            sni: None,
        }
    }

    #[test]
    fn status_ranges() {
        let ok = b"HTTP/1.1 204 No Content\r\n\r\n";
        let mut s = spec(&[], None);
        s.status_codes = vec![(200, 299), (503, 503)];
        assert!(judge("t", ok, &s).ok);
        assert!(judge("t", b"HTTP/1.1 503 x\r\n\r\n", &s).ok);
        let r = judge("t", b"HTTP/1.1 401 x\r\n\r\n", &s);
        assert!(!r.ok && r.reason.contains("expected 200-299 503"), "{r:?}");
    }

    #[test]
    fn request_host_and_auth() {
        let target: SocketAddr = "10.0.2.11:8080".parse().unwrap();
        let mut s = spec(&[200], None);
        let r = request(target, &s);
        assert!(r.starts_with("GET / HTTP/1.0\r\n"), "{r}");
        assert!(r.contains("\r\nHost: 10.0.2.11:8080\r\n"), "{r}");
        assert!(!r.contains("Authorization"), "{r}");
        assert!(r.ends_with("\r\n\r\n"));
        s.virtualhost = Some("www.example.org".into());
        s.basic_auth = Some(("Aladdin".into(), "open sesame".into()));
        let r = request(target, &s);
        assert!(r.contains("\r\nHost: www.example.org\r\n"), "{r}");
        // RFC 7617's example.
        assert!(
            r.contains("\r\nAuthorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"),
            "{r}"
        );
    }

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
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
