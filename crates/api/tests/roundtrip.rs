//! Runs the real server on a temporary socket with a fake handler and drives
//! it with the blocking client: this checks the protocol, not rvsd.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use rvs_api::{
    Client, ClientError, Command, ConnectionEntry, ControlHandler, DestSpec, DestStatus, Family,
    ForwardMethod, Listing, Protocol, RestoreError, ServiceKey, ServiceSpec, ServiceStatus, Stats,
    Timeouts,
};

#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<Command>>,
}

fn key() -> ServiceKey {
    ServiceKey::addr(Protocol::Tcp, "10.10.0.100".parse().unwrap(), 80)
}

fn conns() -> Vec<ConnectionEntry> {
    vec![ConnectionEntry {
        protocol: Protocol::Udp,
        client: ("10.10.0.9".parse().unwrap(), 0),
        virtual_: ("0.0.0.0".parse().unwrap(), 0),
        dest: ("10.10.0.11".parse().unwrap(), 53),
        state: "NONE".into(),
        expires_secs: 299,
        template: true,
        fwmark: Some(5),
    }]
}

fn sample() -> Listing {
    Listing {
        conn_table_size: 4096,
        counters: Default::default(),
        timeouts: Timeouts {
            tcp: 1,
            tcpfin: 2,
            udp: 3,
        },
        health: Vec::new(),
        fwmark_rules: Vec::new(),
        config_file: None,
        config_diverged: false,
        services: vec![
            ServiceStatus {
                spec: ServiceSpec {
                    key: key(),
                    scheduler: "rr".into(),
                    persistence_timeout: Some(300),
                    netmask: Some(24),
                    flags: vec!["sh-port".into()],
                    one_packet: false,
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
                    persistent_conns: 3,
                    stats: Stats {
                        conns: u64::MAX,
                        in_packets: 1,
                        out_packets: 2,
                        in_bytes: 3,
                        out_bytes: 4,
                        cps: 5,
                        in_pps: 6,
                        out_pps: 7,
                        in_bps: 8,
                        out_bps: 9,
                    },
                }],
                stats: Stats::default(),
            },
            ServiceStatus {
                spec: ServiceSpec {
                    key: ServiceKey::Fwmark {
                        mark: 5,
                        af: Family::Ipv6,
                    },
                    scheduler: "wlc".into(),
                    persistence_timeout: None,
                    netmask: None,
                    flags: vec![],
                    one_packet: true,
                },
                dests: vec![],
                stats: Stats::default(),
            },
        ],
    }
}

impl ControlHandler for Fake {
    fn listing(&self) -> Listing {
        sample()
    }
    fn connections(&self) -> Vec<ConnectionEntry> {
        conns()
    }
    fn command(&self, cmd: Command) -> Result<(), String> {
        let result = match &cmd {
            Command::DeleteService(_) => Err("No such service".into()),
            Command::Restore(cmds) => match cmds.iter().position(|c| *c == Command::Clear) {
                Some(index) => Err(RestoreError {
                    index,
                    message: "no clearing here".into(),
                }
                .to_string()),
                None => Ok(()),
            },
            _ => Ok(()),
        };
        self.seen.lock().unwrap().push(cmd);
        result
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
    assert_eq!(client.connections().unwrap(), conns());

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
    let restore = Command::Restore(vec![Command::ZeroCounters(None), Command::Clear]);
    let err = client.command(&restore).unwrap_err();
    let ClientError::Rejected { message, .. } = &err else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(
        RestoreError::parse(message),
        Some(RestoreError {
            index: 1,
            message: "no clearing here".into()
        })
    );
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
            restore,
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
    let reply = raw(
        &path,
        b"POST /v1/connections HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    assert_eq!(
        fake.seen.lock().unwrap().len(),
        4,
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
