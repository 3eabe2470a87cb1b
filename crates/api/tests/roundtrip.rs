//! Runs the real server on a temporary socket with a fake handler and drives
//! it with the blocking client: this checks the protocol, not rvsd.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use rvs_api::{
    Client, ClientError, Command, ControlHandler, DestSpec, DestStatus, ForwardMethod, Listing,
    Protocol, ServiceKey, ServiceSpec, ServiceStatus, Stats,
};

#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<Command>>,
}

fn key() -> ServiceKey {
    ServiceKey {
        protocol: Protocol::Tcp,
        addr: "10.10.0.100".parse().unwrap(),
        port: 80,
    }
}

fn sample() -> Listing {
    Listing {
        conn_table_size: 4096,
        counters: Default::default(),
        services: vec![ServiceStatus {
            spec: ServiceSpec {
                key: key(),
                scheduler: "rr".into(),
                persistence_timeout: Some(300),
                netmask: Some(24),
                flags: vec!["sh-port".into()],
            },
            dests: vec![DestStatus {
                spec: DestSpec {
                    addr: "10.10.0.11".parse().unwrap(),
                    port: 80,
                    weight: 2_147_483_647,
                    method: ForwardMethod::Tunnel,
                    upper_threshold: 10,
                    lower_threshold: 5,
                },
                active_conns: 1,
                inactive_conns: 20,
                stats: Stats {
                    conns: u64::MAX,
                    in_packets: 1,
                    out_packets: 2,
                    in_bytes: 3,
                    out_bytes: 4,
                },
            }],
            stats: Stats::default(),
        }],
    }
}

impl ControlHandler for Fake {
    fn listing(&self) -> Listing {
        sample()
    }
    fn command(&self, cmd: Command) -> Result<(), String> {
        let reject = matches!(cmd, Command::DeleteService(_));
        self.seen.lock().unwrap().push(cmd);
        if reject {
            Err("No such service".into())
        } else {
            Ok(())
        }
    }
}

/// Sends raw bytes and returns the raw reply, for malformed-request cases.
fn raw(path: &std::path::Path, req: &[u8]) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.write_all(req).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn client_and_server_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvsd.sock");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = Arc::new(Fake::default());
    let listener = {
        let _g = rt.enter();
        rvs_api::bind(&path).unwrap()
    };
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket must be root-only");
    let server = rt.spawn(rvs_api::serve(listener, Arc::clone(&fake)));

    let client = Client::new(&path);
    assert_eq!(client.listing().unwrap(), sample());

    client.command(&Command::Clear).unwrap();
    client
        .command(&Command::SetTimeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        })
        .unwrap();
    let err = client.command(&Command::DeleteService(key())).unwrap_err();
    match &err {
        ClientError::Rejected { status, message } => {
            assert_eq!(*status, 400);
            assert_eq!(message, "No such service");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.to_string(), "No such service");
    assert_eq!(
        *fake.seen.lock().unwrap(),
        vec![
            Command::Clear,
            Command::SetTimeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300
            },
            Command::DeleteService(key()),
        ]
    );

    // Malformed and misrouted requests get JSON errors, not hangs.
    let bad = b"POST /v1/commands HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\n{nope";
    let reply = raw(&path, bad);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("malformed command"), "{reply}");
    let reply = raw(
        &path,
        b"GET /v2/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    let reply = raw(
        &path,
        b"DELETE /v1/services HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    assert_eq!(
        fake.seen.lock().unwrap().len(),
        3,
        "bad requests reach no handler"
    );

    // A second daemon must not take over a live socket.
    {
        let _g = rt.enter();
        let e = rvs_api::bind(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    }

    server.abort();
    rt.shutdown_background();
}
