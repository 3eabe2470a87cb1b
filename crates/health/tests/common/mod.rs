//! Servers on loopback for the integration tests: each binds 127.0.0.1 on
//! a port the kernel picks, serves a bounded number of requests, and stops
//! when its task is dropped (tokio runtime of the test).

#![allow(dead_code, unreachable_pub)] // each test binary uses part of it

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rvs_health::{CheckConfig, CheckSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

pub const HELLO: &[u8] = b"hello from rvs-health tests\n";

/// Parses a check table and resolves it against `server`.
pub fn config(toml_text: &str, server: SocketAddr) -> CheckConfig {
    let spec: CheckSpec = toml::from_str(toml_text).expect("check spec");
    spec.resolve(server, Duration::from_secs(60))
}

/// An HTTP/1.0 server: `/ok` → 200 with [`HELLO`], `/fail` → 500, else 404.
pub async fn http_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        for _ in 0..1000 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = 0;
                while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") && got < buf.len() {
                    match s.read(&mut buf[got..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                }
                let req = String::from_utf8_lossy(&buf[..got]);
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, body): (&str, &[u8]) = match path.as_str() {
                    "/ok" => ("200 OK", HELLO),
                    "/fail" => ("500 Internal Server Error", b"broken\n"),
                    _ => ("404 Not Found", b"no\n"),
                };
                let head = format!(
                    "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// A UDP server that echoes every datagram (bounded count).
pub async fn udp_echo() -> (SocketAddr, JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        for _ in 0..1000 {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    (addr, task)
}

/// A loopback UDP port with nothing bound: the kernel answers port unreachable.
pub fn closed_udp_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

/// A loopback TCP port with nothing listening.
pub fn closed_tcp_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Writes an sh script into `dir`; run it as `/bin/sh PATH` (executing a
/// freshly written file directly can hit ETXTBSY in multi-threaded tests).
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    p
}
