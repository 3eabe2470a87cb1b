//! SSL_GET: HTTP_GET ([`super::http`]) over TLS (rustls, ring provider).
//!
//! As keepalived (check_ssl.c never asks OpenSSL to verify the peer), the
//! server's certificate is not verified: the check asks "does this server
//! answer HTTPS correctly", not "is it who it claims". The handshake's own
//! signatures are still checked, so a broken TLS stack fails. SNI is sent
//! only with `enable_sni` (the name from `sni_name`, else `virtualhost`);
//! without it the server sees no name, as with keepalived.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{fmt_duration, http, CheckResult};
use crate::spec::HttpSpec;

pub(super) async fn check(target: SocketAddr, timeout: Duration, spec: &HttpSpec) -> CheckResult {
    let what = format!("ssl {target}{}", spec.path);
    let attempt = async {
        let tcp = TcpStream::connect(target)
            .await
            .map_err(|e| e.to_string())?;
        let (config, name) = match &spec.sni {
            Some(n) => (
                config(true),
                ServerName::try_from(n.clone()).map_err(|e| format!("sni name {n:?}: {e}"))?,
            ),
            // An address as the server name: rustls then sends no SNI.
            None => (config(false), ServerName::IpAddress(target.ip().into())),
        };
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        http::exchange(tls, target, spec).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => CheckResult::down(format!(
            "{what}: no complete response within {}",
            fmt_duration(timeout)
        )),
        Ok(Err(e)) => CheckResult::down(format!("{what}: {e}")),
        Ok(Ok(raw)) => http::judge(&what, &raw, spec),
    }
}

/// One client configuration per SNI choice, built once.
fn config(sni: bool) -> Arc<ClientConfig> {
    static WITH_SNI: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    static WITHOUT_SNI: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let cell = if sni { &WITH_SNI } else { &WITHOUT_SNI };
    cell.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls's default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        c.enable_sni = sni;
        Arc::new(c)
    })
    .clone()
}

/// keepalived's stance: any certificate is accepted; the handshake
/// signatures are verified with the provider's algorithms.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    /// A TLS server on 127.0.0.1 with a fresh self-signed certificate that
    /// answers every request with `response` and records the request head
    /// and the SNI it saw.
    async fn server(
        response: &'static [u8],
    ) -> (SocketAddr, Arc<Mutex<Vec<(String, Option<String>)>>>) {
        let cert = rcgen::generate_simple_self_signed(vec!["rs.test".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_string);
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.ends_with(b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    log.lock()
                        .unwrap()
                        .push((String::from_utf8_lossy(&head).into_owned(), sni));
                    let _ = tls.write_all(response).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (addr, seen)
    }

    fn spec(sni: Option<&str>, digest: Option<[u8; 16]>) -> HttpSpec {
        HttpSpec {
            path: "/health".into(),
            status_codes: vec![(200, 299)],
            digest,
            virtualhost: Some("www.rs.test".into()),
            basic_auth: Some(("u".into(), "p".into())),
            sni: sni.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn self_signed_server_is_up_and_sni_only_when_asked() {
        let (addr, seen) = server(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let t = Duration::from_secs(5);
        let r = check(addr, t, &spec(None, None)).await;
        assert!(r.ok, "{r:?}");
        let digest: [u8; 16] = md5::Md5::digest(b"ok").into();
        let r = check(addr, t, &spec(Some("www.rs.test"), Some(digest))).await;
        assert!(r.ok, "{r:?}");
        let r = check(addr, t, &spec(None, Some([0; 16]))).await;
        assert!(!r.ok && r.reason.contains("digest"), "{r:?}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].1, None, "no SNI without enable_sni");
        assert_eq!(seen[1].1.as_deref(), Some("www.rs.test"));
        assert!(
            seen[0].0.starts_with("GET /health HTTP/1.0\r\n"),
            "{}",
            seen[0].0
        );
        assert!(
            seen[0].0.contains("\r\nHost: www.rs.test\r\n"),
            "{}",
            seen[0].0
        );
        assert!(
            seen[0].0.contains("\r\nAuthorization: Basic dTpw\r\n"),
            "{}",
            seen[0].0
        );
    }

    #[tokio::test]
    async fn wrong_status_plain_http_and_silence_are_down() {
        let t = Duration::from_secs(2);
        let (addr, _) = server(b"HTTP/1.0 401 Unauthorized\r\n\r\n").await;
        let r = check(addr, t, &spec(None, None)).await;
        assert!(!r.ok && r.reason.contains("status 401"), "{r:?}");
        // A plain-text server: the handshake fails.
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_addr = plain.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = plain.accept().await {
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await;
            }
        });
        let r = check(plain_addr, t, &spec(None, None)).await;
        assert!(!r.ok && r.reason.contains("TLS handshake"), "{r:?}");
        // Accepts but never speaks TLS: bounded by the timeout.
        let mute = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mute_addr = mute.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = mute.accept().await {
                held.push(s);
            }
        });
        let r = check(mute_addr, Duration::from_millis(300), &spec(None, None)).await;
        assert!(!r.ok && r.reason.contains("within"), "{r:?}");
    }
}
