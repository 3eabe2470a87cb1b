//! SMTP_CHECK: keepalived's exchange: read the greeting (must be 220),
//! send `HELO <helo_name>` (the answer must be 250), send `QUIT` and read
//! one more reply, whose code does not matter.
//!
//! A reply may span lines (`250-…` continuations, RFC 5321); the code is
//! that of its last line. Each line is read up to [`MAX_LINE`] bytes and a
//! reply up to [`MAX_LINES`] lines, so a server that talks forever fails
//! instead of filling memory. The whole dialogue is bounded by
//! connect_timeout.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{fmt_duration, CheckResult};
use crate::spec::SmtpSpec;

/// keepalived reads replies into a 512-byte buffer; RFC 5321 caps a reply
/// line at 512 octets too.
const MAX_LINE: usize = 512;
/// Lines of one multi-line reply accepted before giving up.
const MAX_LINES: usize = 64;

pub(super) async fn check(target: SocketAddr, timeout: Duration, spec: &SmtpSpec) -> CheckResult {
    let what = format!("smtp {target}");
    let attempt = async {
        let stream = TcpStream::connect(target)
            .await
            .map_err(|e| e.to_string())?;
        dialogue(stream, spec).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => CheckResult::down(format!(
            "{what}: dialogue not finished within {}",
            fmt_duration(timeout)
        )),
        Ok(Err(e)) => CheckResult::down(format!("{what}: {e}")),
        Ok(Ok(())) => CheckResult::up(format!("{what}: 220 greeting, 250 to HELO")),
    }
}

async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    spec: &SmtpSpec,
) -> Result<(), String> {
    let mut s = BufReader::new(stream);
    let greeting = reply(&mut s).await.map_err(|e| format!("greeting: {e}"))?;
    if greeting.0 != 220 {
        return Err(format!("greeting {:?}, expected 220", greeting.1));
    }
    send(&mut s, &format!("HELO {}\r\n", spec.helo_name)).await?;
    let helo = reply(&mut s)
        .await
        .map_err(|e| format!("HELO answer: {e}"))?;
    if helo.0 != 250 {
        return Err(format!("HELO answered {:?}, expected 250", helo.1));
    }
    send(&mut s, "QUIT\r\n").await?;
    // keepalived waits for the answer to QUIT but does not judge it.
    reply(&mut s)
        .await
        .map_err(|e| format!("QUIT answer: {e}"))?;
    Ok(())
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    line: &str,
) -> Result<(), String> {
    let w = s.get_mut();
    w.write_all(line.as_bytes())
        .await
        .map_err(|e| format!("sending {:?}: {e}", line.trim_end()))?;
    w.flush()
        .await
        .map_err(|e| format!("sending {:?}: {e}", line.trim_end()))
}

/// One reply: (code of its last line, that line).
async fn reply<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Result<(u16, String), String> {
    for _ in 0..MAX_LINES {
        let line = read_line(s).await?;
        let code = line
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("not an SMTP reply: {line:?}"))?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, line));
        }
    }
    Err(format!("reply longer than {MAX_LINES} lines"))
}

async fn read_line<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Result<String, String> {
    let mut line = Vec::new();
    loop {
        let buf = s.fill_buf().await.map_err(|e| e.to_string())?;
        if buf.is_empty() {
            return Err("connection closed".into());
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        s.consume(take);
        if line.len() > MAX_LINE {
            return Err(format!("reply line longer than {MAX_LINE} bytes"));
        }
        if done {
            let text = String::from_utf8_lossy(&line);
            return Ok(text.trim_end_matches(['\r', '\n']).to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A scripted SMTP server: sends `greeting`, answers HELO with
    /// `helo_reply` and QUIT with 221; returns what the client sent.
    async fn responder(
        greeting: &'static str,
        helo_reply: &'static str,
    ) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(greeting.as_bytes()).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            let mut answered_helo = false;
            loop {
                let n = match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if !answered_helo && text.contains("\r\n") {
                    answered_helo = true;
                    let _ = s.write_all(helo_reply.as_bytes()).await;
                }
                if text.contains("QUIT\r\n") {
                    let _ = s.write_all(b"221 bye\r\n").await;
                    break;
                }
            }
            String::from_utf8_lossy(&got).to_string()
        });
        (addr, task)
    }

    fn spec() -> SmtpSpec {
        SmtpSpec {
            helo_name: "director.test".into(),
        }
    }

    #[tokio::test]
    async fn greeting_helo_quit() {
        let (addr, task) = responder("220-mx.test ESMTP\r\n220 ready\r\n", "250 mx.test\r\n").await;
        let r = check(addr, Duration::from_secs(5), &spec()).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(task.await.unwrap(), "HELO director.test\r\nQUIT\r\n");
    }

    #[tokio::test]
    async fn bad_codes_are_down() {
        let (addr, _) = responder("554 no service\r\n", "250 x\r\n").await;
        let r = check(addr, Duration::from_secs(5), &spec()).await;
        assert!(!r.ok && r.reason.contains("expected 220"), "{r:?}");
        let (addr, _) = responder("220 ok\r\n", "501 bad helo\r\n").await;
        let r = check(addr, Duration::from_secs(5), &spec()).await;
        assert!(!r.ok && r.reason.contains("expected 250"), "{r:?}");
        let (addr, _) = responder("HTTP/1.0 200 OK\r\n", "").await;
        let r = check(addr, Duration::from_secs(5), &spec()).await;
        assert!(!r.ok && r.reason.contains("not an SMTP reply"), "{r:?}");
    }

    #[tokio::test]
    async fn endless_line_and_silence_are_bounded() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.write_all(&[b'2'; 4096]).await;
            let (_quiet, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let r = check(addr, Duration::from_secs(5), &spec()).await;
        assert!(!r.ok && r.reason.contains("longer than 512"), "{r:?}");
        let r = check(addr, Duration::from_millis(300), &spec()).await;
        assert!(!r.ok && r.reason.contains("not finished within"), "{r:?}");
    }
}
