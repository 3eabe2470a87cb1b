//! Runs the real server on a temporary socket with the fake handler and
//! drives it with the blocking client: this checks the protocol, not rvsd.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;

use rvs_api::testing::{FakeHandler, Served};
use rvs_api::{
    Client, ClientError, Command, ConnectionEntry, ControlError, DestSpec, DestStatus, Entity,
    Family, ForwardMethod, Listing, Protocol, ServiceKey, ServiceSpec, ServiceStatus, Stats,
    Timeouts,
};

fn key() -> ServiceKey {
    ServiceKey::addr(Protocol::Tcp, "10.10.0.100".parse().unwrap(), 80)
}

fn conns() -> Vec<ConnectionEntry> {
    vec![
        ConnectionEntry {
            protocol: Protocol::Udp,
            client: ("10.10.0.9".parse().unwrap(), 0),
            virtual_: ("0.0.0.0".parse().unwrap(), 0),
            dest: ("10.10.0.11".parse().unwrap(), 53),
            state: "NONE".into(),
            expires_secs: 299,
            template: true,
            fwmark: Some(5),
            local: None,
        },
        ConnectionEntry {
            protocol: Protocol::Tcp,
            client: ("192.0.2.7".parse().unwrap(), 51000),
            virtual_: ("10.10.0.100".parse().unwrap(), 80),
            dest: ("10.10.0.11".parse().unwrap(), 8080),
            state: "ESTABLISHED".into(),
            expires_secs: 899,
            template: false,
            fwmark: None,
            local: Some(("10.10.0.200".parse().unwrap(), 1024)),
        },
    ]
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
        sync_daemons: vec![rvs_api::SyncDaemonStatus {
            daemon: rvs_api::SyncDaemon {
                role: rvs_api::SyncRole::Backup,
                mcast_interface: "eth1".into(),
                syncid: 3,
                sync_maxlen: None,
                mcast_group: Some("224.0.0.82".parse().unwrap()),
                mcast_port: None,
                mcast_ttl: Some(2),
                sync_refresh_period: None,
                sync_retries: None,
                // (a master's setting: here only to cross the wire)
                sync_threshold: Some(rvs_vocab::sync::SyncThreshold {
                    threshold: 5,
                    period: 100,
                }),
            },
            maxlen: 1472,
        }],
        defense: None,
        sysctl: None,
        services: vec![
            ServiceStatus {
                spec: ServiceSpec {
                    key: key(),
                    scheduler: "rr".into(),
                    persistence_timeout: Some(300),
                    netmask: Some(24),
                    flags: vec!["sh-port".into()],
                    one_packet: false,
                    local_addresses: vec![
                        "10.10.0.200".parse().unwrap(),
                        "10.10.0.201".parse().unwrap(),
                    ],
                    toa: true,
                },
                dests: vec![DestStatus {
                    spec: DestSpec {
                        addr: "10.10.0.11".parse().unwrap(),
                        port: 80,
                        weight: 2_147_483_647,
                        method: ForwardMethod::Tunnel,
                        tunnel: rvs_api::Tunnel::Ipip,
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
                group: Some("web".into()),
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
                    local_addresses: vec![],
                    toa: false,
                },
                dests: vec![],
                stats: Stats::default(),
                group: None,
            },
        ],
    }
}

/// rvsd's refusal of a delete of a missing service.
fn no_such_service() -> ControlError {
    ControlError::NotFound {
        what: Entity::Service(key()),
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
    let fake = FakeHandler::new(sample(), conns())
        .refusing(|c| matches!(c, Command::DeleteService(_)).then(no_such_service));
    let served = Served::start(&path, fake).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket must be root-only");

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
        ClientError::Rejected { status, error } => {
            assert_eq!(*status, 400);
            assert_eq!(*error, no_such_service());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.to_string(), "service TCP 10.10.0.100:80 does not exist");
    let restore = Command::Restore(vec![
        Command::ZeroCounters(None),
        Command::DeleteService(key()),
    ]);
    let err = client.command(&restore).unwrap_err();
    let ClientError::Rejected { error, .. } = &err else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(
        *error,
        ControlError::Refused {
            index: 1,
            cause: Box::new(no_such_service()),
        }
    );
    assert_eq!(
        served.handler.seen(),
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
    assert!(reply.contains(r#""kind":"bad_request""#), "{reply}");
    // Where the JSON goes wrong, for the sender to find it.
    assert!(reply.contains("at line 1 column 2"), "{reply}");
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
        served.handler.seen().len(),
        4,
        "bad requests reach no handler"
    );

    // A second daemon must not take over a live socket.
    let e = served.in_runtime(|| rvs_api::bind(&path)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
}
