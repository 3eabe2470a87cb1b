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

/// A resolver like glibc's getaddrinfo: a numeric service string
/// resolves, to its value modulo 65536 (what turned 65617 into port 81).
struct Getaddrinfo;

impl Lookup for Getaddrinfo {
    fn host(&self, name: &str) -> Option<IpAddr> {
        FakeLookup.host(name)
    }
    fn service(&self, name: &str, proto: Protocol) -> Option<u16> {
        match name.trim_start().parse::<i64>() {
            Ok(n) => Some(n as u16),
            Err(_) => FakeLookup.service(name, proto),
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
    ServiceKey::addr(Protocol::Tcp, addr.parse().unwrap(), port)
}

fn udp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey::addr(Protocol::Udp, addr.parse().unwrap(), port)
}

fn fwm(mark: u32) -> ServiceKey {
    ServiceKey::Fwmark {
        mark,
        af: Family::Ipv4,
    }
}

fn spec(key: ServiceKey, sched: &str) -> ServiceSpec {
    ServiceSpec {
        key,
        scheduler: sched.into(),
        persistence_timeout: None,
        netmask: None,
        flags: vec![],
        one_packet: false,
        local_addresses: vec![],
        toa: false,
    }
}

fn dest(addr: &str, port: u16, method: ForwardMethod, weight: u32) -> DestSpec {
    DestSpec {
        addr: addr.parse().unwrap(),
        port,
        weight,
        method,
        tunnel: rvs_api::Tunnel::Ipip,
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
fn sctp_services_by_their_long_option() {
    let sctp = |addr: &str, port| ServiceKey::addr(Protocol::Sctp, addr.parse().unwrap(), port);
    assert_eq!(
        cmd("-A --sctp-service 10.0.0.1:2905 -s rr"),
        Command::AddService(spec(sctp("10.0.0.1", 2905), "rr"))
    );
    assert_eq!(
        cmd("-a --sctp-service 10.0.0.1:2905 -r 10.0.0.2 -m"),
        Command::AddDest {
            service: sctp("10.0.0.1", 2905),
            dest: dest("10.0.0.2", 2905, ForwardMethod::Masq, 1),
        }
    );
    // Service names are looked up as for TCP; one service option only.
    assert_eq!(
        cmd("-D --sctp-service [2001:db8::1]:http"),
        Command::DeleteService(sctp("2001:db8::1", 80))
    );
    assert!(p("-A --sctp-service 10.0.0.1:2905 -t 10.0.0.1:80").is_err());
    assert!(
        p("-A --sctp-service 10.0.0.1:2905 -o").is_err(),
        "-o is UDP's"
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
    // ipvsadm keeps bits: sent in bit order under the scheduler's names.
    let mut s = spec(tcp("10.0.0.1", 80), "sh");
    s.flags = vec!["sh-fallback".into(), "sh-port".into()];
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -s sh -b sh-port,sh-fallback"),
        Command::AddService(s.clone())
    );
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -s sh -b flag-2,,flag-1,sh-port"),
        Command::AddService(s)
    );
    let mut m = spec(tcp("10.0.0.1", 80), "mh");
    m.flags = vec!["mh-port".into(), "flag-3".into()];
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -b flag-3,mh-port -s mh"),
        Command::AddService(m)
    );
    let mut r = spec(tcp("10.0.0.1", 80), "rr");
    r.flags = vec!["flag-1".into()];
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -s rr -b flag-1"),
        Command::AddService(r)
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 -s sh -b sh-nope"),
        "invalid scheduler flag `sh-nope'"
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 -s rr -b sh-port"),
        "incompatible scheduler flag `sh-port'"
    );
    // Without -s the scheduler is wlc, and ipvsadm checks flags before the
    // option table.
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.0.2 -b sh-port"),
        "incompatible scheduler flag `sh-port'"
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.0.2 -b flag-1"),
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
    assert_eq!(
        err("-A -t 10.0.0.1:80 --pe sip"),
        "--pe: not supported by rvsadm yet"
    );
}

#[test]
fn fwmark_services_and_ipv6() {
    let mut s = spec(fwm(1), "rr");
    assert_eq!(cmd("-A -f 1 -s rr"), Command::AddService(s.clone()));
    // A mark service needs no port, even without persistence.
    s.key = ServiceKey::Fwmark {
        mark: 4294967295,
        af: Family::Ipv6,
    };
    s.persistence_timeout = Some(300);
    s.netmask = Some(64);
    assert_eq!(
        cmd("-A --fwmark-service 4294967295 -6 -s rr -p -M 64"),
        Command::AddService(s)
    );
    for bad in ["0", "+0", "4294967296", "x", "1x"] {
        assert_eq!(
            err(&format!("-A -f {bad} -s rr")),
            format!("invalid fwmark value `{bad}' specified"),
            "{bad}"
        );
    }
    assert_eq!(err("-A -t 10.0.0.1:80 -6"), "-6 used before -f\n");
    assert_eq!(err("-A -6 -f 1"), "-6 used before -f\n");
    assert_eq!(
        err("-A -f 1 -t 10.0.0.1:80"),
        "multiple 'service-address' options specified"
    );
    // Real servers of a mark service keep their own port (0 if none given),
    // whatever the method, and must share its family unless tunnelled.
    assert_eq!(
        cmd("-a -f 1 -r 10.0.0.2"),
        Command::AddDest {
            service: fwm(1),
            dest: dest("10.0.0.2", 0, ForwardMethod::Route, 1),
        }
    );
    assert_eq!(
        cmd("-a -f 1 -r 10.0.0.2:http -i"),
        Command::AddDest {
            service: fwm(1),
            dest: dest("10.0.0.2", 80, ForwardMethod::Tunnel, 1),
        }
    );
    assert_eq!(
        err("-a -f 1 -r [2001:db8::2]:80"),
        "Different address family is allowed only for tunneling servers"
    );
    assert_eq!(
        cmd("-a -f 1 -r [2001:db8::2]:80 -i --tun-type ipip"),
        Command::AddDest {
            service: fwm(1),
            dest: dest("2001:db8::2", 80, ForwardMethod::Tunnel, 1),
        }
    );
    assert_eq!(
        err("-a -f 1 -r 10.0.0.2 --tun-type ipip"),
        "Tunnel options conflict with forward method"
    );
    assert_eq!(
        err("-a -f 1 -r 10.0.0.2 -i --tun-type x"),
        "illegal tunnel type specified"
    );
    assert_eq!(
        cmd("-d -f 2 -r 10.0.0.2"),
        Command::DeleteDest {
            service: fwm(2),
            addr: "10.0.0.2".parse().unwrap(),
            port: 0
        }
    );
    assert_eq!(cmd("-Z -f 3"), Command::ZeroCounters(Some(fwm(3))));
    assert_eq!(cmd("-D -f 3"), Command::DeleteService(fwm(3)));
}

#[test]
fn one_packet_is_udp_or_fwmark_only() {
    let mut s = spec(udp("10.0.0.1", 53), "rr");
    s.one_packet = true;
    assert_eq!(cmd("-A -u 10.0.0.1:53 -s rr -o"), Command::AddService(s));
    let mut f = spec(fwm(9), "wlc");
    f.one_packet = true;
    assert_eq!(cmd("-E -f 9 --ops"), Command::EditService(f));
    assert_eq!(
        err("-A -t 10.0.0.1:80 -o"),
        "One-Packet Scheduling is only for UDP virtual services"
    );
    assert_eq!(
        err("-a -u 10.0.0.1:53 -r 10.0.0.2 -o"),
        "Illegal 'ops' option with the 'add-server' command"
    );
}

#[test]
fn list_views_and_their_conflicts() {
    let l = list("-L -c -n");
    assert!(l.connections && l.numeric && !l.persistent_conn);
    assert!(list("-Lc --persistent-conn").persistent_conn);
    assert!(list("-L --timeout").timeouts);
    let l = list("-L --rate --exact -f 5");
    assert!(l.rate && l.exact);
    assert_eq!(l.service, Some(fwm(5)));
    assert!(list("-L --persistent-conn").persistent_conn);
    assert_eq!(
        err("-L -c -t 10.0.0.1:80"),
        "The option 'service-address' conflicts with the 'connection' option in the 'list' command"
    );
    assert_eq!(
        err("-L --timeout -c"),
        "The option 'timeout' conflicts with the 'connection' option in the 'list' command"
    );
    assert_eq!(
        err("-L -c --stats"),
        "options conflicts in the list command"
    );
    assert_eq!(
        err("-L --timeout --rate"),
        "options conflicts in the list command"
    );
    assert_eq!(
        err("-L --timeout --persistent-conn"),
        "options conflicts in the list command"
    );
    assert_eq!(err("-L -o"), "Illegal 'ops' option with the 'list' command");
    assert_eq!(
        err("-A -t 10.0.0.1:80 -c"),
        "Illegal 'connection' option with the 'add-service' command"
    );
}

#[test]
fn save_and_restore_commands() {
    assert_eq!(p("-S").unwrap().action, Action::Save { numeric: false });
    assert_eq!(
        p("--save -n").unwrap().action,
        Action::Save { numeric: true }
    );
    assert_eq!(p("-Sn").unwrap().action, Action::Save { numeric: true });
    assert_eq!(p("-R").unwrap().action, Action::Restore);
    assert_eq!(
        err("-S --stats"),
        "Illegal 'stats' option with the 'save' command"
    );
    assert_eq!(
        err("-R -n"),
        "Illegal 'numeric' option with the 'restore' command"
    );
}

#[test]
fn restore_input_is_parsed_whole_first() {
    let input = "\
# saved by rvsadm
-A -t 10.0.0.1:80 -s rr

ipvsadm -a -t 10.0.0.1:80 -r 10.0.0.2:80 -g -w 1   # trailing comment
\t-C\r
--set 0 0 30
";
    assert_eq!(
        parse_restore(input, &FakeLookup).unwrap(),
        vec![
            (2, Command::AddService(spec(tcp("10.0.0.1", 80), "rr"))),
            (
                4,
                Command::AddDest {
                    service: tcp("10.0.0.1", 80),
                    dest: dest("10.0.0.2", 80, ForwardMethod::Route, 1),
                }
            ),
            (5, Command::Clear),
            (
                6,
                Command::SetTimeouts {
                    tcp: 0,
                    tcpfin: 0,
                    udp: 30
                }
            ),
        ]
    );
    assert_eq!(
        parse_restore("\n  \n# only\n", &FakeLookup).unwrap(),
        vec![]
    );
    let bad = |input: &str| parse_restore(input, &FakeLookup).unwrap_err();
    assert_eq!(
        bad("-C\n-A -t nohost:80\n"),
        LineError {
            line: 2,
            error: ParseError::Message("illegal virtual server address[:port] specified".into())
        }
    );
    assert_eq!(
        bad("-C\n-n -L\n"),
        LineError {
            line: 2,
            error: ParseError::TryHelp
        }
    );
    assert_eq!(
        bad("-R\n"),
        LineError {
            line: 1,
            error: ParseError::TryHelp
        }
    );
    assert_eq!(
        bad("-C\n-C\n-L -n\n"),
        LineError {
            line: 3,
            error: ParseError::Message(
                "`-L -n': only -A -E -D -a -e -d -C -Z --set --add-mark-rule and --delete-mark-rule can be restored".into()
            )
        }
    );
}

fn rule(
    mark: u32,
    protocol: Option<Protocol>,
    net: &str,
    prefix_len: u8,
    ports: &[u16],
) -> Command {
    Command::AddFwmarkRule(FwmarkRuleSpec {
        mark,
        protocol,
        addr: net.parse().unwrap(),
        prefix_len,
        ports: ports.to_vec(),
    })
}

#[test]
fn add_mark_rule_forms() {
    assert_eq!(
        cmd("--add-mark-rule 7 -t 10.0.100.32/30 --ports 80,443"),
        rule(7, Some(Protocol::Tcp), "10.0.100.32", 30, &[80, 443])
    );
    // No prefix: one address; no --ports: every port.
    assert_eq!(
        cmd("--add-mark-rule 7 -u 10.0.100.1"),
        rule(7, Some(Protocol::Udp), "10.0.100.1", 32, &[])
    );
    assert_eq!(
        cmd("--add-mark-rule=8 --any 0.0.0.0/0"),
        rule(8, None, "0.0.0.0", 0, &[])
    );
    // IPv6 bare or in brackets; ports keep their order; names resolve.
    assert_eq!(
        cmd("--add-mark-rule 9 --any [2001:db8::]/64 --ports 443,http"),
        rule(9, None, "2001:db8::", 64, &[443, 80])
    );
    assert_eq!(
        cmd("--add-mark-rule 9 --ports syslog -u 2001:db8::1"),
        rule(9, Some(Protocol::Udp), "2001:db8::1", 128, &[514])
    );
    assert_eq!(
        cmd("--add-mark-rule 9 -t [2001:db8::1]"),
        rule(9, Some(Protocol::Tcp), "2001:db8::1", 128, &[])
    );
    // Clusters and `=` as everywhere else; an empty list means all ports.
    assert_eq!(
        cmd("--add-mark-rule 1 -t10.0.0.1 --ports="),
        rule(1, Some(Protocol::Tcp), "10.0.0.1", 32, &[])
    );
    assert_eq!(
        cmd("--add-mark-rule 4294967295 --tcp-service 10.0.0.0/24"),
        rule(u32::MAX, Some(Protocol::Tcp), "10.0.0.0", 24, &[])
    );
}

#[test]
fn add_mark_rule_errors() {
    assert_eq!(
        err("--add-mark-rule 0 -t 10.0.0.1"),
        "invalid fwmark value `0' specified"
    );
    assert_eq!(
        err("--add-mark-rule x -t 10.0.0.1"),
        "invalid fwmark value `x' specified"
    );
    assert_eq!(
        err("--add-mark-rule 4294967296 -t 10.0.0.1"),
        "invalid fwmark value `4294967296' specified"
    );
    assert_eq!(err("--add-mark-rule"), "--add-mark-rule: missing argument");
    let missing = "You need to supply -t, -u or --any with the rule's address[/prefix] for the 'add-mark-rule' command";
    assert_eq!(err("--add-mark-rule 7"), missing);
    assert_eq!(err("--add-mark-rule 7 10.0.0.1"), missing);
    assert_eq!(err("--add-mark-rule 7 --ports 80"), missing);
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.0.1/33"),
        "illegal prefix length `/33' specified (0-32)"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 2001:db8::/129"),
        "illegal prefix length `/129' specified (0-128)"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.0.0/"),
        "illegal prefix length `/' specified (0-32)"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.0.0/x"),
        "illegal prefix length `/x' specified (0-32)"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.100.33/30"),
        "mark rule address 10.0.100.33/30 has host bits set: did you mean 10.0.100.32/30?"
    );
    assert_eq!(
        err("--add-mark-rule 7 --any 2001:db8::1/64"),
        "mark rule address 2001:db8::1/64 has host bits set: did you mean 2001:db8::/64?"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.0.1:80"),
        "illegal mark rule address `10.0.0.1:80' specified: no port here, use --ports"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t [2001:db8::1]:80"),
        "illegal mark rule address `[2001:db8::1]:80' specified: no port here, use --ports"
    );
    // Numeric only: a classifier rule does not follow DNS.
    assert_eq!(
        err("--add-mark-rule 7 -t web1"),
        "illegal mark rule address `web1' specified: want a numeric address[/prefix]"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t [10.0.0.1]"),
        "illegal mark rule address `[10.0.0.1]' specified: want a numeric address[/prefix]"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.0.1 --ports 80,,443"),
        "illegal port `' in port list `80,,443' specified (1-65535, comma-separated)"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.0.1 --ports 0"),
        "illegal port `0' in port list `0' specified (1-65535, comma-separated)"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.0.1 --ports 65536"),
        "illegal port `65536' in port list `65536' specified (1-65535, comma-separated)"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.0.1 --ports 80,"),
        "illegal port `' in port list `80,' specified (1-65535, comma-separated)"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.0.1 --ports 80,http"),
        "port 80 given twice in port list `80,http'"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.0.1 --ports 80 --ports 443"),
        "multiple 'ports' options specified"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.0.1 --any 10.0.0.1"),
        "multiple 'service-address' options specified"
    );
    assert_eq!(
        err("--add-mark-rule 7 -f 3"),
        "-f: a mark rule's mark is the --add-mark-rule value; match with -t, -u or --any"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.0.1 -s rr"),
        "Illegal 'scheduler' option with the 'add-mark-rule' command"
    );
    assert_eq!(
        err("--add-mark-rule 7 -t 10.0.0.1 extra"),
        "unexpected argument extra"
    );
    assert_eq!(
        err("--add-mark-rule 7 -A -t 10.0.0.1"),
        "multiple commands specified"
    );
    // The new options belong to the new commands only.
    assert_eq!(
        err("-A -t 10.0.0.1:80 --any 10.0.0.1"),
        "Illegal 'any' option with the 'add-service' command"
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 --ports 80"),
        "Illegal 'ports' option with the 'add-service' command"
    );
    assert_eq!(
        err("-S --mark-rules"),
        "Illegal 'mark-rules' option with the 'save' command"
    );
    assert_eq!(p("--ports 80 --add-mark-rule 7"), Err(ParseError::TryHelp));
}

#[test]
fn delete_and_list_mark_rules() {
    assert_eq!(
        cmd("--delete-mark-rule 7"),
        Command::DeleteFwmarkRule { mark: 7 }
    );
    assert_eq!(
        err("--delete-mark-rule 0"),
        "invalid fwmark value `0' specified"
    );
    assert_eq!(
        err("--delete-mark-rule"),
        "--delete-mark-rule: missing argument"
    );
    assert_eq!(
        err("--delete-mark-rule 7 -t 10.0.0.1"),
        "Illegal 'service-address' option with the 'delete-mark-rule' command"
    );
    assert_eq!(
        err("--delete-mark-rule 7 --ports 80"),
        "Illegal 'ports' option with the 'delete-mark-rule' command"
    );
    assert_eq!(
        p("--list-mark-rules").unwrap().action,
        Action::ListMarkRules
    );
    assert_eq!(
        p("--list-mark-rules -n").unwrap().action,
        Action::ListMarkRules
    );
    assert_eq!(
        err("--list-mark-rules --stats"),
        "Illegal 'stats' option with the 'list-mark-rules' command"
    );
    assert_eq!(err("--list-mark-rules 7"), "unexpected argument 7");
    // -L only shows them when asked, and not with -c or --timeout.
    assert!(!list("-Ln").mark_rules);
    let l = list("-Ln --mark-rules");
    assert!(l.mark_rules && l.numeric);
    assert!(list("-L --stats --mark-rules").stats);
    assert_eq!(
        err("-L -c --mark-rules"),
        "options conflicts in the list command"
    );
    assert_eq!(
        err("-L --timeout --mark-rules"),
        "options conflicts in the list command"
    );
}

#[test]
fn restore_accepts_mark_rules_and_replaces_existing_marks() {
    let input = "\
--add-mark-rule 7 -t 10.0.100.32/30 --ports 80,443
--add-mark-rule 8 --any 2001:db8::/64
-A -f 7 -s rr
--add-mark-rule 7 -u 10.0.100.40/30
--delete-mark-rule 9
--add-mark-rule 9 -t 10.0.0.9
";
    let lines = parse_restore(input, &FakeLookup).unwrap();
    let r7 = rule(7, Some(Protocol::Tcp), "10.0.100.32", 30, &[80, 443]);
    let r8 = rule(8, None, "2001:db8::", 64, &[]);
    let svc = Command::AddService(spec(fwm(7), "rr"));
    let r7u = rule(7, Some(Protocol::Udp), "10.0.100.40", 30, &[]);
    let d9 = Command::DeleteFwmarkRule { mark: 9 };
    let r9 = rule(9, Some(Protocol::Tcp), "10.0.0.9", 32, &[]);
    assert_eq!(
        lines,
        vec![
            (1, r7.clone()),
            (2, r8.clone()),
            (3, svc.clone()),
            (4, r7u.clone()),
            (5, d9.clone()),
            (6, r9.clone()),
        ]
    );
    assert!(adds_mark_rules(&lines));
    assert!(!adds_mark_rules(
        &parse_restore("-C\n--delete-mark-rule 7\n", &FakeLookup).unwrap()
    ));

    // Nothing exists: nothing to replace.
    assert_eq!(replace_mark_rules(lines.clone(), &[]), lines);
    // Marks 7, 9 and 5 exist. 7 is replaced once, before its first rule;
    // 8 is new; 9 the input deletes itself; 5 is not in the input.
    let existing: Vec<FwmarkRuleSpec> = [7, 9, 5, 7]
        .iter()
        .map(|&m| FwmarkRuleSpec {
            mark: m,
            protocol: None,
            addr: "10.9.9.9".parse().unwrap(),
            prefix_len: 32,
            ports: vec![],
        })
        .collect();
    assert_eq!(
        replace_mark_rules(lines, &existing),
        vec![
            (1, Command::DeleteFwmarkRule { mark: 7 }),
            (1, r7),
            (2, r8),
            (3, svc),
            (4, r7u),
            (5, d9),
            (6, r9),
        ]
    );

    let bad = |input: &str| parse_restore(input, &FakeLookup).unwrap_err();
    assert_eq!(
        bad("-C\n--add-mark-rule 7 -t 10.0.0.1:80\n"),
        LineError {
            line: 2,
            error: ParseError::Message(
                "illegal mark rule address `10.0.0.1:80' specified: no port here, use --ports"
                    .into()
            )
        }
    );
    assert_eq!(
        bad("--list-mark-rules\n"),
        LineError {
            line: 1,
            error: ParseError::Message(
                "`--list-mark-rules': only -A -E -D -a -e -d -C -Z --set --add-mark-rule and --delete-mark-rule can be restored".into()
            )
        }
    );
}

#[test]
fn reload_asks_rvsd_to_reread_its_file() {
    assert_eq!(cmd("--reload"), Command::Reload);
    assert_eq!(
        err("--reload -n"),
        "Illegal 'numeric' option with the 'reload' command"
    );
    assert_eq!(
        err("--reload -t 10.0.0.1:80"),
        "Illegal 'service-address' option with the 'reload' command"
    );
    // A restore is rules, not daemon control.
    let e = parse_restore("-C\n--reload\n", &FakeLookup).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(
        matches!(&e.error, ParseError::Message(m) if m.contains("cannot be part of a restore")),
        "{e:?}"
    );
}

#[test]
fn ports_are_range_checked_before_any_lookup() {
    let refused = |line: &str| {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        match parse(&args, &Getaddrinfo) {
            Err(ParseError::Message(m)) => m,
            other => panic!("{line}: expected an error, got {other:?}"),
        }
    };
    for line in [
        "-D -t 10.0.0.1:65617",
        "-A -u 10.0.0.1:65536 -s rr",
        "-E -t [2001:db8::1]:70000",
        "-Z -t 10.0.0.1:-1",
        "-D -t 10.0.0.1:99999999999999999999999",
    ] {
        assert_eq!(
            refused(line),
            "illegal virtual server address[:port] specified",
            "{line}"
        );
    }
    for line in [
        "-a -t 10.0.0.1:80 -r 10.0.0.2:65617 -m",
        "-d -t 10.0.0.1:80 -r 10.0.0.2:-80",
    ] {
        assert_eq!(
            refused(line),
            "illegal real server address[:port] specified",
            "{line}"
        );
    }
    assert_eq!(
        refused("--add-mark-rule 1 --any 10.0.0.0/8 --ports 80,65617"),
        "illegal port `65617' in port list `80,65617' specified (1-65535, comma-separated)"
    );
    // Names still resolve, and numbers in range are numbers.
    let ok = |line: &str| {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args, &Getaddrinfo).unwrap().action
    };
    assert_eq!(
        ok("-D -t 10.0.0.1:http"),
        Action::Command(Command::DeleteService(tcp("10.0.0.1", 80)))
    );
    assert_eq!(
        ok("-D -t 10.0.0.1:+65535"),
        Action::Command(Command::DeleteService(tcp("10.0.0.1", 65535)))
    );
}

#[test]
fn numbers_read_as_ipvsadm_string_to_number_reads_them() {
    // strtol in base 10, all of the word, within bounds.
    let weight = |w: &str| {
        let args: Vec<String> = ["-a", "-t", "10.0.0.1:80", "-r", "10.0.0.2", "-w", w]
            .map(String::from)
            .to_vec();
        match parse(&args, &FakeLookup) {
            Ok(Invocation {
                action: Action::Command(Command::AddDest { dest, .. }),
                ..
            }) => Ok(dest.weight),
            Err(ParseError::Message(m)) => Err(m),
            other => panic!("-w {w:?}: {other:?}"),
        }
    };
    for (w, n) in [
        (" 5", 5),
        ("\t+7", 7),
        ("-0", 0),
        ("2147483647", 2_147_483_647),
        ("007", 7),
    ] {
        assert_eq!(weight(w), Ok(n), "-w {w:?}");
    }
    for w in [
        "5 ",
        "-1",
        "2147483648",
        "0x10",
        "",
        " ",
        "+",
        "1e3",
        "99999999999999999999",
    ] {
        assert_eq!(
            weight(w),
            Err("illegal weight specified".into()),
            "-w {w:?}"
        );
    }
    assert_eq!(
        err("--set 10 2678401 20"),
        "invalid timeout value `2678401' specified"
    );
    assert_eq!(
        err("--set 10 0x10 20"),
        "invalid timeout value `0x10' specified"
    );
    assert_eq!(
        cmd("--set +10 000 20"),
        Command::SetTimeouts {
            tcp: 10,
            tcpfin: 0,
            udp: 20
        }
    );
}

#[test]
fn sync_daemons_start_stop_and_list_as_ipvsadm_takes_them() {
    use rvs_vocab::{SyncDaemon, SyncRole};
    assert_eq!(
        cmd("--start-daemon master --mcast-interface eth0 --syncid 7"),
        Command::StartDaemon(SyncDaemon {
            role: SyncRole::Master,
            mcast_interface: "eth0".into(),
            syncid: 7,
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
            sync_refresh_period: None,
            sync_retries: None,
            sync_threshold: None,
        })
    );
    assert_eq!(
        cmd(
            "--start-daemon backup --mcast-interface eth1 --sync-maxlen 1400 \
             --mcast-group 224.0.0.82 --mcast-port 8849 --mcast-ttl 2"
        ),
        Command::StartDaemon(SyncDaemon {
            role: SyncRole::Backup,
            mcast_interface: "eth1".into(),
            syncid: 0,
            sync_maxlen: Some(1400),
            mcast_group: Some("224.0.0.82".parse().unwrap()),
            mcast_port: Some(8849),
            mcast_ttl: Some(2),
            sync_refresh_period: None,
            sync_retries: None,
            sync_threshold: None,
        })
    );
    assert_eq!(
        cmd("--stop-daemon backup"),
        Command::StopDaemon(SyncRole::Backup)
    );
    assert!(list("-L --daemon").daemon);
    assert_eq!(
        err("--start-daemon primary --mcast-interface eth0"),
        "illegal start-daemon parameter specified"
    );
    assert_eq!(
        err("--stop-daemon x"),
        "illegal stop-daemon parameter specified"
    );
    assert_eq!(
        err("--start-daemon master --mcast-interface eth0 --syncid 256"),
        "illegal syncid specified"
    );
    assert_eq!(
        err("--start-daemon master --mcast-interface eth0 --mcast-group 10.0.0.1"),
        "illegal mcast-group specified"
    );
    assert_eq!(
        err("--start-daemon master --mcast-interface eth0 --mcast-ttl 0"),
        "illegal mcast-ttl specified"
    );
    // RVS's options for the kernel's sync_refresh_period and sync_retries.
    let master = |sync_refresh_period, sync_retries| {
        Command::StartDaemon(SyncDaemon {
            role: SyncRole::Master,
            mcast_interface: "eth0".into(),
            syncid: 0,
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
            sync_refresh_period,
            sync_retries,
            sync_threshold: None,
        })
    };
    assert_eq!(
        cmd("--start-daemon master --mcast-interface eth0 --sync-refresh-period 10"),
        master(Some(10), None)
    );
    assert_eq!(
        err("--start-daemon master --mcast-interface eth0 --sync-refresh-period 0"),
        "illegal sync-refresh-period specified (1 to 86400 seconds)"
    );
    assert!(err("-L --sync-refresh-period 5").contains("sync-refresh-period"));
    assert_eq!(
        cmd("--start-daemon master --mcast-interface eth0 --sync-refresh-period 10 --sync-retries 2"),
        master(Some(10), Some(2))
    );
    assert_eq!(
        err("--start-daemon master --mcast-interface eth0 --sync-retries 4"),
        "illegal sync-retries specified (0 to 3)"
    );
    assert!(err("-L --sync-retries 1").contains("sync-retries"));
    // And for the kernel's sync_threshold.
    assert_eq!(
        cmd("--start-daemon master --mcast-interface eth0 --sync-threshold 5,100"),
        Command::StartDaemon(SyncDaemon {
            sync_threshold: Some(rvs_vocab::sync::SyncThreshold {
                threshold: 5,
                period: 100,
            }),
            ..match master(None, None) {
                Command::StartDaemon(d) => d,
                _ => unreachable!(),
            }
        })
    );
    for bad in ["100,100", "5", "5,x"] {
        let e = err(&format!(
            "--start-daemon master --mcast-interface eth0 --sync-threshold {bad}"
        ));
        assert!(
            e.starts_with("illegal sync-threshold specified"),
            "{bad}: {e}"
        );
    }
    assert!(
        err("--start-daemon backup --mcast-interface eth0 --sync-threshold 3,50")
            .contains("master")
    );
    assert!(err("-L --sync-threshold 3,50").contains("sync-threshold"));
    assert!(
        err("--start-daemon master").contains("mcast-interface"),
        "{}",
        err("--start-daemon master")
    );
    assert!(
        err("-L --daemon -c").contains("daemon") || err("-L --daemon -c").contains("connection")
    );
    assert!(err("--stop-daemon master --mcast-port 1").contains("mcast-port"));
}

#[test]
fn defense_settings_and_listing() {
    assert_eq!(
        cmd("--defense drop_entry=1 --defense amemthresh=500 --defense am_droprate=3"),
        Command::SetSysctl(SysctlSettings {
            drop_entry: Some(1),
            amemthresh: Some(500),
            am_droprate: Some(3),
            ..SysctlSettings::default()
        })
    );
    assert_eq!(
        cmd("--defense=secure_tcp=3 --defense drop_packet=0"),
        Command::SetSysctl(SysctlSettings {
            secure_tcp: Some(3),
            drop_packet: Some(0),
            ..SysctlSettings::default()
        })
    );
    for line in [
        "-L --defense",
        "-l --defense",
        "--defense",
        "-L -n --defense",
    ] {
        match p(line) {
            Ok(Invocation {
                action: Action::List(req),
                ..
            }) => assert!(req.defense, "{line}"),
            other => panic!("{line}: {other:?}"),
        }
    }
    assert!(err("--defense drop_entry=4").contains("a mode is 0 (off)"));
    assert!(err("--defense secure_tcp=x").contains("a mode is"));
    assert!(err("--defense am_droprate=0").contains("from 1"));
    assert!(err("--defense amemthresh=-1").contains("give a number"));
    assert!(err("--defense drop_entrys=1")
        .contains("unknown key; use one of am_droprate, amemthresh, drop_entry"));
    assert!(err("--defense drop_entry").contains("KEY=VALUE"));
    assert!(err("--defense drop_entry=1 --defense drop_entry=2").contains("given twice"));
    assert!(err("-L --defense drop_entry=1").contains("command of its own"));
    assert!(err("-A -t 10.0.0.1:80 --defense").contains("Illegal 'defense' option"));
    assert_eq!(
        err("-L --defense -c"),
        "The option 'defense' conflicts with the 'connection' option in the 'list' command"
    );
    assert_eq!(
        err("-L --defense --stats"),
        "options conflicts in the list command"
    );
    assert_eq!(
        err("--defense drop_entry=1 -L"),
        "multiple commands specified"
    );
}

#[test]
fn sysctl_settings_and_listing() {
    assert_eq!(
        cmd("--sysctl sloppy_tcp=1"),
        Command::SetSysctl(SysctlSettings {
            sloppy_tcp: Some(true),
            ..SysctlSettings::default()
        })
    );
    // Every sysctl by --sysctl, the defence's too, mixed with --defense.
    assert_eq!(
        cmd("--sysctl=sloppy_tcp=0 --sysctl sloppy_sctp=1 --sysctl drop_entry=3 --defense amemthresh=9 --sysctl sync_persist_mode=1"),
        Command::SetSysctl(SysctlSettings {
            sync_persist_mode: Some(true),
            sloppy_tcp: Some(false),
            sloppy_sctp: Some(true),
            drop_entry: Some(3),
            amemthresh: Some(9),
            ..SysctlSettings::default()
        })
    );
    for line in ["-L --sysctl", "-l --sysctl", "--sysctl", "-Ln --sysctl"] {
        match p(line) {
            Ok(Invocation {
                action: Action::List(req),
                ..
            }) => assert!(req.sysctl && !req.defense, "{line}"),
            other => panic!("{line}: {other:?}"),
        }
    }
    assert_eq!(
        err("--sysctl sloppy_tcp=2"),
        "--sysctl sloppy_tcp=2: use 0 (off) or 1 (on)"
    );
    assert_eq!(
        err("--sysctl sloppy_tcp=yes"),
        "--sysctl sloppy_tcp=yes: use 0 (off) or 1 (on)"
    );
    assert_eq!(
        err("--sysctl sloppy=1"),
        "--sysctl sloppy: unknown key; use one of am_droprate, amemthresh, drop_entry, \
         drop_packet, secure_tcp, sloppy_sctp, sloppy_tcp, sync_persist_mode"
    );
    // --defense keeps to the defence's keys.
    assert!(err("--defense sloppy_tcp=1").contains("unknown key; use one of am_droprate"));
    assert!(err("--sysctl sloppy_tcp").contains("give KEY=VALUE"));
    assert!(err("--sysctl sloppy_tcp=1 --sysctl sloppy_tcp=0").contains("given twice"));
    assert!(err("--sysctl drop_entry=1 --defense drop_entry=0").contains("given twice"));
    assert!(err("-L --sysctl sloppy_tcp=1").contains("command of its own"));
    assert!(err("-A -t 10.0.0.1:80 --sysctl").contains("Illegal 'sysctl' option"));
    assert_eq!(
        err("-L --sysctl --defense"),
        "The option 'sysctl' conflicts with the 'defense' option in the 'list' command"
    );
    assert_eq!(
        err("-L --sysctl --stats"),
        "options conflicts in the list command"
    );
    assert_eq!(
        err("--sysctl sloppy_tcp=1 -L"),
        "multiple commands specified"
    );
}

fn tunnel_dest(line: &str) -> rvs_api::Tunnel {
    match cmd(line) {
        Command::AddDest { dest, .. } | Command::EditDest { dest, .. } => {
            assert_eq!(dest.method, ForwardMethod::Tunnel, "{line}");
            dest.tunnel
        }
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn tunnel_types_follow_ipvsadm_1_31() {
    use rvs_api::{Tunnel, TunnelChecksum};
    let svc = "-a -t 10.0.0.1:80 -r 10.0.0.2 -i";
    assert_eq!(tunnel_dest(svc), Tunnel::Ipip);
    assert_eq!(
        tunnel_dest(&format!("{svc} --tun-type gue --tun-port 6080")),
        Tunnel::Gue {
            port: 6080,
            checksum: TunnelChecksum::Nocsum
        }
    );
    assert_eq!(
        tunnel_dest(&format!("{svc} --tun-type gue --tun-port 1 --tun-remcsum")),
        Tunnel::Gue {
            port: 1,
            checksum: TunnelChecksum::Remcsum
        }
    );
    assert_eq!(
        tunnel_dest("-e -t 10.0.0.1:80 -r 10.0.0.2 --tun-csum --tun-type gre -i"),
        Tunnel::Gre {
            checksum: TunnelChecksum::Csum
        }
    );
    assert_eq!(
        tunnel_dest(&format!("{svc} --tun-type gre --tun-nocsum")),
        Tunnel::Gre {
            checksum: TunnelChecksum::Nocsum
        }
    );
    // ipvsadm's messages, its checks in its order.
    for (args, message) in [
        (
            "--tun-type gue",
            "You need to supply the 'tun-port' option for the 'gue' tunnel type",
        ),
        (
            "--tun-port 6080",
            "Illegal 'tun-port' option with the 'ipip' tunnel type",
        ),
        (
            "--tun-csum",
            "Illegal 'tun-csum' option with the 'ipip' tunnel type",
        ),
        (
            "--tun-type gre --tun-port 6080",
            "Illegal 'tun-port' option with the 'gre' tunnel type",
        ),
        (
            "--tun-type gre --tun-remcsum",
            "Illegal 'tun-remcsum' option with the 'gre' tunnel type",
        ),
        (
            "--tun-type gue --tun-port 6080 --tun-remcsum --tun-nocsum",
            "The option 'tun-remcsum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type",
        ),
        ("--tun-type gue --tun-port 0", "illegal tunnel port specified"),
        ("--tun-type gue --tun-port 65536", "illegal tunnel port specified"),
        ("--tun-type vxlan", "illegal tunnel type specified"),
    ] {
        assert_eq!(err(&format!("{svc} {args}")), message, "{args}");
    }
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.0.2 -m --tun-csum"),
        "Tunnel options conflict with forward method"
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 --tun-type gue"),
        "Illegal 'tun-type' option with the 'add-service' command"
    );
    assert!(list("-L -n --tun-info").tun_info);
    assert_eq!(
        err("-L --tun-info --tun-type gue"),
        "Illegal 'tun-type' option with the 'list' command"
    );
}

/// RVS's FullNAT options: long only, `--laddr` repeatable on -A/-E,
/// `--fullnat` one of the forwarding methods of -a/-e.
#[test]
fn fullnat_options() {
    let laddrs =
        |v: &[&str]| -> Vec<std::net::IpAddr> { v.iter().map(|a| a.parse().unwrap()).collect() };
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -s rr --laddr 10.0.2.200 --laddr 10.0.2.201 --toa"),
        Command::AddService(ServiceSpec {
            local_addresses: laddrs(&["10.0.2.200", "10.0.2.201"]),
            toa: true,
            ..spec(tcp("10.0.0.1", 80), "rr")
        })
    );
    // IPv6, bare or bracketed as ipvsadm writes IPv6 addresses.
    assert_eq!(
        cmd("-E -t [2001:db8::1]:80 -s rr --laddr 2001:db8::200 --laddr=[2001:db8::201]"),
        Command::EditService(ServiceSpec {
            local_addresses: laddrs(&["2001:db8::200", "2001:db8::201"]),
            ..spec(
                ServiceKey::addr(Protocol::Tcp, "2001:db8::1".parse().unwrap(), 80),
                "rr"
            )
        })
    );
    // -E without --laddr sends none: -E replaces the settings.
    assert_eq!(
        cmd("-E -t 10.0.0.1:80 -s rr"),
        Command::EditService(spec(tcp("10.0.0.1", 80), "rr"))
    );
    // --fullnat keeps the real server's own port, as -m does.
    assert_eq!(
        cmd("-a -t 10.0.0.1:80 -r 10.0.2.16:8080 --fullnat -w 3"),
        Command::AddDest {
            service: tcp("10.0.0.1", 80),
            dest: dest("10.0.2.16", 8080, ForwardMethod::FullNat, 3),
        }
    );
    assert_eq!(
        cmd("-e -t 10.0.0.1:80 -r 10.0.2.16 --fullnat"),
        Command::EditDest {
            service: tcp("10.0.0.1", 80),
            dest: dest("10.0.2.16", 80, ForwardMethod::FullNat, 1),
        }
    );
    assert!(err("-A -t 10.0.0.1:80 --laddr web1").contains("--laddr takes an IP address"));
    assert!(err("-A -t 10.0.0.1:80 --laddr").contains("laddr"));
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.2.16 -m --fullnat"),
        "multiple 'forwarding-method' options specified"
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.2.16 --fullnat --laddr 10.0.2.200"),
        "Illegal 'laddr' option with the 'add-server' command"
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 --fullnat"),
        "Illegal 'forwarding-method' option with the 'add-service' command"
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 --toa --toa"),
        "multiple 'toa' options specified"
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.2.16 --fullnat --tun-type gre"),
        "Tunnel options conflict with forward method"
    );
}
