//! The rvsadm binary end to end against rvs-api's real server with a fake
//! handler: what reaches rvsd, what the operator sees, and exit codes.

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use rvs_api::{
    Command, ControlHandler, DestSpec, DestStatus, ForwardMethod, Listing, Protocol, ServiceKey,
    ServiceSpec, ServiceStatus, Stats,
};

#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<Command>>,
}

impl ControlHandler for Fake {
    fn listing(&self) -> Listing {
        Listing {
            conn_table_size: 4096,
            counters: Default::default(),
            services: vec![ServiceStatus {
                spec: ServiceSpec {
                    key: ServiceKey {
                        protocol: Protocol::Tcp,
                        addr: "10.10.0.100".parse().unwrap(),
                        port: 80,
                    },
                    scheduler: "rr".into(),
                    persistence_timeout: None,
                    netmask: None,
                    flags: vec![],
                },
                dests: vec![DestStatus {
                    spec: DestSpec {
                        addr: "10.10.0.11".parse().unwrap(),
                        port: 80,
                        weight: 1,
                        method: ForwardMethod::Route,
                        upper_threshold: 0,
                        lower_threshold: 0,
                    },
                    active_conns: 0,
                    inactive_conns: 20,
                    stats: Stats::default(),
                }],
                stats: Stats::default(),
            }],
        }
    }

    fn command(&self, cmd: Command) -> Result<(), String> {
        let reject = matches!(&cmd, Command::AddService(s) if s.scheduler == "nosuch");
        self.seen.lock().unwrap().push(cmd);
        if reject {
            Err("Scheduler not found: nosuch".into())
        } else {
            Ok(())
        }
    }
}

fn rvsadm(socket: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .args(args)
        .env("RVSD_SOCKET", socket)
        .output()
        .unwrap()
}

#[test]
fn rvsadm_against_a_served_socket() {
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
    let server = rt.spawn(rvs_api::serve(listener, Arc::clone(&fake)));

    let out = rvsadm(&path, &["-A", "-t", "10.10.0.100:80", "-s", "rr"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");

    let out = rvsadm(&path, &["-Ln"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  10.10.0.100:80 rr\n\
         \x20 -> 10.10.0.11:80                Route   1      0          20        \n"
    );

    // rvsd's refusal is printed as is, exit 1.
    let out = rvsadm(&path, &["-A", "-t", "10.10.0.100:81", "-s", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "Scheduler not found: nosuch\n"
    );

    // A usage error exits 2 and sends nothing.
    let before = fake.seen.lock().unwrap().len();
    let out = rvsadm(&path, &["-A", "-t", "10.10.0.100:80", "-r", "10.0.0.1"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "Illegal 'real-server' option with the 'add-service' command\n"
    );
    assert_eq!(fake.seen.lock().unwrap().len(), before);

    // --socket beats the environment.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .args(["--socket", path.to_str().unwrap(), "-C"])
        .env("RVSD_SOCKET", dir.path().join("elsewhere.sock"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fake.seen.lock().unwrap().last(), Some(&Command::Clear));

    server.abort();
    rt.shutdown_background();

    // Daemon gone: one clear line, exit 1.
    let gone = dir.path().join("gone.sock");
    let out = rvsadm(&gone, &["-Ln"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "rvsd is not running (no control socket at {})\n",
            gone.display()
        )
    );
}
