//! Every option, default and error of the parser, against a fake resolver.

use super::*;

struct FakeLookup;

impl Lookup for FakeLookup {
    fn host(&self, name: &str) -> Option<IpAddr> {
        match name {
            "web1" => Some("10.0.0.21".parse().unwrap()),
            "vip.example" => Some("10.0.0.100".parse().unwrap()),
            _ => None,
        }
    }
    fn service(&self, name: &str, proto: Protocol) -> Option<u16> {
        match (name, proto) {
            ("http", _) => Some(80),
            ("domain", _) => Some(53),
            ("syslog", Protocol::Udp) => Some(514),
            _ => None,
        }
    }
}

fn p(line: &str) -> Result<Invocation, ParseError> {
    let args: Vec<String> = line.split_whitespace().map(String::from).collect();
    parse(&args, &FakeLookup)
}

fn cmd(line: &str) -> Command {
    match p(line) {
        Ok(Invocation {
            action: Action::Command(c),
            ..
        }) => c,
        other => panic!("{line}: {other:?}"),
    }
}

fn err(line: &str) -> String {
    match p(line) {
        Err(ParseError::Message(m)) => m,
        other => panic!("{line}: expected an error, got {other:?}"),
    }
}

fn list(line: &str) -> ListRequest {
    match p(line) {
        Ok(Invocation {
            action: Action::List(l),
            ..
        }) => l,
        other => panic!("{line}: {other:?}"),
    }
}

fn tcp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey {
        protocol: Protocol::Tcp,
        addr: addr.parse().unwrap(),
        port,
    }
}

fn udp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey {
        protocol: Protocol::Udp,
        ..tcp(addr, port)
    }
}

fn spec(key: ServiceKey, sched: &str) -> ServiceSpec {
    ServiceSpec {
        key,
        scheduler: sched.into(),
        persistence_timeout: None,
        netmask: None,
        flags: vec![],
    }
}

fn dest(addr: &str, port: u16, method: ForwardMethod, weight: u32) -> DestSpec {
    DestSpec {
        addr: addr.parse().unwrap(),
        port,
        weight,
        method,
        upper_threshold: 0,
        lower_threshold: 0,
    }
}

#[test]
fn add_service_defaults_to_wlc() {
    assert_eq!(
        cmd("-A -t 10.10.0.100:80"),
        Command::AddService(spec(tcp("10.10.0.100", 80), "wlc"))
    );
    assert_eq!(
        cmd("--add-service --udp-service 10.0.0.1:53 --scheduler rr"),
        Command::AddService(spec(udp("10.0.0.1", 53), "rr"))
    );
    assert_eq!(
        cmd("-E -t 10.0.0.1:80 -s sh"),
        Command::EditService(spec(tcp("10.0.0.1", 80), "sh"))
    );
    // An unknown scheduler is passed through for rvsd to judge.
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -s nosuch"),
        Command::AddService(spec(tcp("10.0.0.1", 80), "nosuch"))
    );
}

#[test]
fn persistence_optional_value() {
    let mut s = spec(tcp("10.0.0.1", 80), "rr");
    s.persistence_timeout = Some(300);
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -s rr -p"),
        Command::AddService(s.clone())
    );
    // -p followed by an option keeps the default.
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -p -s rr"),
        Command::AddService(s.clone())
    );
    s.persistence_timeout = Some(600);
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -s rr -p 600"),
        Command::AddService(s.clone())
    );
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -s rr -p600"),
        Command::AddService(s.clone())
    );
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -s rr --persistent=600"),
        Command::AddService(s.clone())
    );
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -s rr --persistent 600"),
        Command::AddService(s)
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 -p 0"),
        "invalid timeout value `0' specified"
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 -p 2678401"),
        "invalid timeout value `2678401' specified"
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 -p abc"),
        "invalid timeout value `abc' specified"
    );
}

#[test]
fn netmask_and_port_zero() {
    let mut s = spec(tcp("10.0.0.1", 0), "wlc");
    s.persistence_timeout = Some(300);
    s.netmask = Some(24);
    assert_eq!(
        cmd("-A -t 10.0.0.1 -p -M 255.255.255.0"),
        Command::AddService(s.clone())
    );
    s.netmask = None;
    assert_eq!(
        cmd("-A -t 10.0.0.1:0 -p -M 255.255.255.255"),
        Command::AddService(s)
    );
    assert_eq!(
        err("-A -t 10.0.0.1 -s rr"),
        "Zero port specified for non-persistent service"
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 -p -M bogus"),
        "illegal virtual server persistent mask specified"
    );
    assert!(err("-A -t 10.0.0.1:80 -p -M 255.0.255.0").contains("not contiguous"));

    let mut s6 = spec(tcp("2001:db8::1", 443), "wlc");
    s6.persistence_timeout = Some(300);
    s6.netmask = Some(64);
    assert_eq!(
        cmd("-A -t [2001:db8::1]:443 -p -M 64"),
        Command::AddService(s6.clone())
    );
    s6.netmask = None;
    assert_eq!(
        cmd("-A -t [2001:db8::1]:443 -p -M 128"),
        Command::AddService(s6)
    );
    assert_eq!(
        err("-A -t [2001:db8::1]:443 -p -M 129"),
        "illegal ipv6 netmask specified"
    );
    assert_eq!(
        err("-A -t [2001:db8::1]:443 -p -M x"),
        "illegal ipv6 netmask specified"
    );
}

#[test]
fn sched_flags() {
    let mut s = spec(tcp("10.0.0.1", 80), "sh");
    s.flags = vec!["sh-port".into(), "sh-fallback".into()];
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -s sh -b sh-port,sh-fallback"),
        Command::AddService(s)
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 -s sh -b sh-nope"),
        "invalid scheduler flag `sh-nope' specified"
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.0.2 -b sh-port"),
        "Illegal 'sched-flags' option with the 'add-server' command"
    );
}

#[test]
fn addresses_names_and_ipv6() {
    assert_eq!(
        cmd("-D -t vip.example:http"),
        Command::DeleteService(tcp("10.0.0.100", 80))
    );
    assert_eq!(
        cmd("-D -u 10.0.0.1:syslog"),
        Command::DeleteService(udp("10.0.0.1", 514))
    );
    assert_eq!(
        err("-D -t 10.0.0.1:syslog"),
        "illegal virtual server address[:port] specified"
    );
    assert_eq!(
        cmd("-D -t [2001:db8::1]:80"),
        Command::DeleteService(tcp("2001:db8::1", 80))
    );
    // A bare IPv6 address has no port.
    assert_eq!(
        cmd("-D -t 2001:db8::1"),
        Command::DeleteService(tcp("2001:db8::1", 0))
    );
    for bad in [
        "80",
        "nohost:80",
        "10.0.0.1:65536",
        "10.0.0.1:-1",
        "[2001:db8::1]",
        "[2001:db8::1]80",
        "[2001:db8::1:80",
        "[nohost]:80",
        "1.2.3.4.5:80",
    ] {
        assert_eq!(
            err(&format!("-D -t {bad}")),
            "illegal virtual server address[:port] specified",
            "{bad}"
        );
    }
}

#[test]
fn add_server_defaults_dr_weight_1_service_port() {
    assert_eq!(
        cmd("-a -t 10.10.0.100:80 -r 10.10.0.11"),
        Command::AddDest {
            service: tcp("10.10.0.100", 80),
            dest: dest("10.10.0.11", 80, ForwardMethod::Route, 1),
        }
    );
    // DR and TUN force the service port, as ipvsadm does.
    assert_eq!(
        cmd("-a -t 10.10.0.100:80 -r 10.10.0.11:8080 -g -w 3"),
        Command::AddDest {
            service: tcp("10.10.0.100", 80),
            dest: dest("10.10.0.11", 80, ForwardMethod::Route, 3),
        }
    );
    assert_eq!(
        cmd("-a -t 10.10.0.100:80 -r 10.10.0.11:8080 --ipip"),
        Command::AddDest {
            service: tcp("10.10.0.100", 80),
            dest: dest("10.10.0.11", 80, ForwardMethod::Tunnel, 1),
        }
    );
    // NAT keeps its own port, or takes the service port when none is given.
    assert_eq!(
        cmd("-a -t 10.10.0.100:80 -r 10.10.0.11:8080 -m -w 0"),
        Command::AddDest {
            service: tcp("10.10.0.100", 80),
            dest: dest("10.10.0.11", 8080, ForwardMethod::Masq, 0),
        }
    );
    assert_eq!(
        cmd("-a -u 10.10.0.100:53 -r web1 --masquerading"),
        Command::AddDest {
            service: udp("10.10.0.100", 53),
            dest: dest("10.0.0.21", 53, ForwardMethod::Masq, 1),
        }
    );
    assert_eq!(
        cmd("-a -t [2001:db8::1]:80 -r [2001:db8::2]:8080 -m"),
        Command::AddDest {
            service: tcp("2001:db8::1", 80),
            dest: dest("2001:db8::2", 8080, ForwardMethod::Masq, 1),
        }
    );
}

#[test]
fn edit_server_thresholds_and_weight_bounds() {
    let mut d = dest("10.0.0.2", 80, ForwardMethod::Route, 2147483647);
    d.upper_threshold = 100;
    d.lower_threshold = 50;
    assert_eq!(
        cmd("-e -t 10.0.0.1:80 -r 10.0.0.2 -w 2147483647 -x 100 -y 50"),
        Command::EditDest {
            service: tcp("10.0.0.1", 80),
            dest: d,
        }
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.0.2 -w 2147483648"),
        "illegal weight specified"
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.0.2 -w -1"),
        "illegal weight specified"
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.0.2 -w 1x"),
        "illegal weight specified"
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.0.2 --u-threshold=x"),
        "illegal u_threshold specified"
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.0.2 --l-threshold 99999999999"),
        "illegal l_threshold specified"
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r nohost"),
        "illegal real server address[:port] specified"
    );
}

#[test]
fn delete_server_uses_given_or_service_port() {
    assert_eq!(
        cmd("-d -t 10.0.0.1:80 -r 10.0.0.2:8080"),
        Command::DeleteDest {
            service: tcp("10.0.0.1", 80),
            addr: "10.0.0.2".parse().unwrap(),
            port: 8080,
        }
    );
    assert_eq!(
        cmd("--delete-server -t 10.0.0.1:80 --real-server 10.0.0.2"),
        Command::DeleteDest {
            service: tcp("10.0.0.1", 80),
            addr: "10.0.0.2".parse().unwrap(),
            port: 80,
        }
    );
    assert_eq!(
        err("-d -t 10.0.0.1:80 -r 10.0.0.2 -m"),
        "Illegal 'forwarding-method' option with the 'delete-server' command"
    );
}

#[test]
fn clear_zero_set() {
    assert_eq!(cmd("-C"), Command::Clear);
    assert_eq!(cmd("--clear"), Command::Clear);
    assert_eq!(cmd("-Z"), Command::ZeroCounters(None));
    assert_eq!(
        cmd("-Z -u 10.0.0.1:53"),
        Command::ZeroCounters(Some(udp("10.0.0.1", 53)))
    );
    assert_eq!(
        cmd("--set 900 120 300"),
        Command::SetTimeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300
        }
    );
    assert_eq!(
        cmd("--set 0 0 0"),
        Command::SetTimeouts {
            tcp: 0,
            tcpfin: 0,
            udp: 0
        }
    );
    assert_eq!(
        err("--set 900 120"),
        "--set option requires 3 timeout values"
    );
    assert_eq!(err("--set 900 120 300 4"), "unexpected argument 4");
    assert_eq!(
        err("--set 900 x 300"),
        "invalid timeout value `x' specified"
    );
    assert_eq!(err("-C extra"), "unexpected argument extra");
    assert_eq!(
        err("-C -t 10.0.0.1:80"),
        "Illegal 'service-address' option with the 'flush' command"
    );
    assert_eq!(
        err("-Z -n"),
        "Illegal 'numeric' option with the 'zero' command"
    );
}

#[test]
fn list_variants_and_clusters() {
    assert_eq!(list("-L"), ListRequest::default());
    assert_eq!(list("-l"), ListRequest::default());
    let numeric = ListRequest {
        numeric: true,
        ..Default::default()
    };
    assert_eq!(list("-Ln"), numeric);
    assert_eq!(list("-L -n"), numeric);
    assert_eq!(list("--list --numeric"), numeric);
    assert_eq!(
        p("-nL"),
        Err(ParseError::TryHelp),
        "a command must come first"
    );
    assert_eq!(
        list("-Ln -t 10.0.0.1:80"),
        ListRequest {
            numeric: true,
            service: Some(tcp("10.0.0.1", 80)),
            ..Default::default()
        }
    );
    let l = list("-L --stats --exact --nosort --sort");
    assert!(l.stats && l.exact && l.nosort && !l.thresholds);
    assert!(list("-L --thresholds").thresholds);
    assert_eq!(
        err("-L -s rr"),
        "Illegal 'scheduler' option with the 'list' command"
    );
    // A cluster whose last letter takes the next word.
    assert_eq!(
        cmd("-At 10.0.0.1:80"),
        Command::AddService(spec(tcp("10.0.0.1", 80), "wlc"))
    );
    assert_eq!(
        cmd("-Dt10.0.0.1:80"),
        Command::DeleteService(tcp("10.0.0.1", 80))
    );
}

#[test]
fn command_option_conflicts_follow_ipvsadm() {
    assert_eq!(
        err("-A -t 10.0.0.1:80 -r 10.0.0.2"),
        "Illegal 'real-server' option with the 'add-service' command"
    );
    assert_eq!(
        err("-A -s rr"),
        "You need to supply the 'service-address' option for the 'add-service' command"
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80"),
        "You need to supply the 'real-server' option for the 'add-server' command"
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.0.2 -s rr"),
        "Illegal 'scheduler' option with the 'add-server' command"
    );
    assert_eq!(
        err("-D -t 10.0.0.1:80 -p"),
        "Illegal 'persistent' option with the 'delete-service' command"
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.0.2 -w 1 -w 2"),
        "multiple 'weight' options specified"
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.0.2 -g -m"),
        "multiple 'forwarding-method' options specified"
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 -u 10.0.0.1:53"),
        "multiple 'service-address' options specified"
    );
    assert_eq!(err("-A -L"), "multiple commands specified");
    assert_eq!(err("-AE -t 10.0.0.1:80"), "multiple commands specified");
}

#[test]
fn first_option_must_be_a_command() {
    assert_eq!(p("-n -L"), Err(ParseError::TryHelp));
    assert_eq!(p("-t 10.0.0.1:80 -A"), Err(ParseError::TryHelp));
    assert_eq!(p("foo"), Err(ParseError::TryHelp));
    assert_eq!(err("-L -h"), "invalid option `-h'");
}

#[test]
fn help_version_socket() {
    assert_eq!(p("-h").unwrap().action, Action::Help);
    assert_eq!(p("--help").unwrap().action, Action::Help);
    assert_eq!(p("-v").unwrap().action, Action::Version);
    assert_eq!(p("--version").unwrap().action, Action::Version);
    let inv = p("--socket /tmp/x.sock -C").unwrap();
    assert_eq!(inv.socket, Some(PathBuf::from("/tmp/x.sock")));
    assert_eq!(inv.action, Action::Command(Command::Clear));
    let inv = p("-Ln --socket=/tmp/y.sock").unwrap();
    assert_eq!(inv.socket, Some(PathBuf::from("/tmp/y.sock")));
    let inv = p("--socket /tmp/z.sock").unwrap();
    assert_eq!(inv.action, Action::List(ListRequest::default()));
}

#[test]
fn malformed_options() {
    assert_eq!(err("-A -t"), "-t: missing argument");
    assert_eq!(err("-A --tcp-service"), "--tcp-service: missing argument");
    assert_eq!(err("-L -Q"), "-Q: unknown option");
    assert_eq!(err("-L --bogus"), "--bogus: unknown option");
    assert_eq!(
        err("-C --clear=1"),
        "--clear: option does not take an argument"
    );
    assert_eq!(err("-S"), "-S: not supported by rvsadm yet");
    assert_eq!(err("-L -c"), "-c: not supported by rvsadm yet");
    assert_eq!(err("-A -f 1"), "-f: not supported by rvsadm yet");
    assert_eq!(
        err("--start-daemon master"),
        "--start-daemon: not supported by rvsadm yet"
    );
}
