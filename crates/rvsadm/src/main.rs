//! rvsadm: ipvsadm-compatible command line for rvsd.
//!
//! Same options, defaults and listing format as ipvsadm 1.31, talking to rvsd
//! over its control socket instead of to the kernel. `parse` turns argv into
//! a request, `format` turns a listing into text; this file wires them to the
//! client and the system resolver.

mod format;
mod parse;
mod resolve;
mod wording;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use rvs_api::{Client, ClientError, Command, ControlError};

use crate::parse::{Action, LineError, ParseError};

const VERSION_LINE: &str = concat!(
    "rvsadm ",
    env!("CARGO_PKG_VERSION"),
    " (ipvsadm 1.31 compatible, IPVS v1.2.1 interface via rvsd)"
);

fn usage(program: &str) -> String {
    let p = program;
    format!(
        "{VERSION_LINE}
Usage:
  {p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags] [-o]
  {p} -D virtual-service
  {p} -C
  {p} -R
  {p} -S [-n]
  {p} -a|e virtual-service -r server-address [options]
  {p} -d virtual-service -r server-address
  {p} -L|l [virtual-service] [options]
  {p} -Z [virtual-service]
  {p} --set tcp tcpfin udp
  {p} --start-daemon master|backup --mcast-interface interface [daemon-options]
  {p} --stop-daemon master|backup
  {p} -L --daemon
  {p} --add-mark-rule mark -t|-u|--sctp-service|--any address[/prefix] [--ports port[,port...]]
  {p} --delete-mark-rule mark
  {p} --list-mark-rules
  {p} --reload
  {p} --defense key=value [--defense key=value ...]
  {p} -L --defense
  {p} --sysctl key=value [--sysctl key=value ...]
  {p} -L --sysctl
  {p} -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin (all or nothing)
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --start-daemon    state     start a connection sync daemon (master or backup)
  --stop-daemon     state     stop a connection sync daemon
  --help            -h        display this help message
  --version         -v        display the version
RVS firewall-mark classifier (XDP sees no iptables/nft marks; no ipvsadm equivalent):
  --add-mark-rule mark        mark packets to address[/prefix] (first matching rule wins)
  --delete-mark-rule mark     delete every rule of the mark
  --list-mark-rules           list the rules in match order
RVS daemon:
  --reload                    rvsd re-reads its configuration file (all or nothing)
RVS SYN-flood defence (IPVS's /proc/sys/net/ipv4/vs sysctls of the same names):
  --defense key=value         set drop_entry, drop_packet, secure_tcp (0 off, 1|2 auto,
                              3 always), amemthresh (free connection entries), am_droprate
  -L --defense                list the defence's modes, state and counters
RVS IPVS sysctls (/proc/sys/net/ipv4/vs names; the defence's above too):
  --sysctl key=value          set sloppy_tcp (0|1: schedule mid-flow TCP segments of
                              unknown connections), sloppy_sctp (0|1), sync_persist_mode
                              (0|1: sync templates, not the connections they control),
                              or a defence key
  -L --sysctl                 list every sysctl's value

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --sctp-service    service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of {scheds}
                                      (as rvsd supports them), the default scheduler is {sched}.
  --persistent   -p [timeout]         persistent service (default timeout {pers} s)
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --fullnat                           FullNAT: client and server ends both translated
                                      (RVS, not ipvsadm; the service needs --laddr)
  --laddr         address             FullNAT local address of the service (RVS;
                                      repeat for more; -E without it removes them)
  --toa                               FullNAT: tell TCP servers the client's address
                                      in a TCP option (RVS; TOA, kind 254)
  --tun-type      type                one of ipip|gue|gre,
                                      the default tunnel type is ipip.
  --tun-port      port                tunnel destination port
  --tun-nocsum                        tunnel encapsulation without checksum
  --tun-csum                          tunnel encapsulation with checksum
  --tun-remcsum                       tunnel encapsulation with remote checksum
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)
  --any          address[/prefix]     mark rule for TCP, UDP and SCTP (-t/-u/--sctp-service: one)
  --ports        port[,port...]       mark rule's destination ports (default all)
  --mark-rules                        -L also lists the firewall-mark rules
  --daemon                            -L: the sync daemons, one line each
  --socket PATH                       rvsd control socket (default ${env}, else {sock})

Daemon options (--start-daemon):
  --mcast-interface interface         the interface sync datagrams leave or arrive on
  --syncid       sid                  0-255: a master's id; a backup takes only its
                                      master's (0: every master's), default 0
  --sync-maxlen  length               largest datagram payload (default: the MTU
                                      less the IP and UDP headers)
  --mcast-group  address              IPv4 or IPv6 multicast group (default {group})
  --mcast-port   port                 UDP port (default {port})
  --mcast-ttl    ttl                  multicast TTL or hop limit (default {ttl})
  --sync-refresh-period seconds       master: re-send every live connection this
                                      often (RVS; the kernel's sysctl of that name)
  --sync-retries count                master, 0-3: more rounds every period / 8 (RVS;
                                      the kernel's sync_retries)
  --sync-threshold T,P                master: send a connection on its T-th packet,
                                      then every P-th (RVS; the kernel's
                                      sync_threshold, default {threshold})
",
        scheds = rvs_vocab::sched::NAMES.join("|"),
        sched = rvs_vocab::sched::DEFAULT,
        pers = parse::DEFAULT_PERSISTENCE,
        env = rvs_api::SOCKET_ENV,
        sock = rvs_api::DEFAULT_SOCKET,
        group = rvs_vocab::sync::DEFAULT_GROUP,
        port = rvs_vocab::sync::DEFAULT_PORT,
        ttl = rvs_vocab::sync::DEFAULT_TTL,
        threshold = rvs_vocab::sync::SyncThreshold::DEFAULT,
    )
}

/// Writes a listing to stdout.
fn print(text: &str) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the listing")?;
    Ok(ExitCode::SUCCESS)
}

/// ipvsadm's exit status when the kernel refuses a command: its -1.
const REFUSED: u8 = 255;
/// ipvsadm's exit status when IPVS cannot be reached (and for usage errors).
const UNREACHABLE: u8 = 2;

fn try_help(program: &str) -> String {
    format!("Try `{program} -h' or '{program} --help' for more information.")
}

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let program = args
        .next()
        .map_or_else(|| "rvsadm".into(), |p| p.to_string_lossy().into_owned());
    // Addresses, names and numbers are text: a word that is not UTF-8 is
    // refused like any other bad word, not a panic.
    let mut words = Vec::new();
    for (i, arg) in args.enumerate() {
        match arg.into_string() {
            Ok(w) => words.push(w),
            Err(raw) => {
                eprintln!(
                    "argument {} (`{}') is not valid UTF-8",
                    i + 1,
                    raw.to_string_lossy()
                );
                return ExitCode::from(2);
            }
        }
    }
    let args = words;

    let inv = if args.is_empty() {
        parse::Invocation {
            action: Action::List(parse::ListRequest::default()),
            socket: None,
        }
    } else {
        match parse::parse(&args, &resolve::System) {
            Ok(inv) => inv,
            Err(ParseError::Message(m)) => {
                eprintln!("{m}");
                return ExitCode::from(2);
            }
            Err(ParseError::TryHelp) => {
                eprintln!("{}", try_help(&program));
                return ExitCode::from(2);
            }
        }
    };

    match run(&program, inv) {
        Ok(code) => code,
        Err(e) => {
            // ClientError messages are already one operator-ready line.
            match e.downcast_ref::<ClientError>() {
                Some(
                    ce @ (ClientError::NotRunning { .. } | ClientError::PermissionDenied { .. }),
                ) => {
                    eprintln!("{ce}");
                    ExitCode::from(UNREACHABLE)
                }
                Some(ce) => {
                    eprintln!("{ce}");
                    ExitCode::from(1)
                }
                None => {
                    eprintln!("{e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn run(program: &str, inv: parse::Invocation) -> anyhow::Result<ExitCode> {
    let client = Client::new(rvs_api::socket_path(inv.socket.as_deref()));
    match inv.action {
        Action::Help => {
            // Like ipvsadm, a closed pipe (`| head`) is not an error.
            let _ = std::io::stdout()
                .lock()
                .write_all(usage(program).as_bytes());
            Ok(ExitCode::SUCCESS)
        }
        Action::Version => {
            println!("{VERSION_LINE}");
            Ok(ExitCode::SUCCESS)
        }
        Action::Command(cmd) => match client.command(&cmd) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(ClientError::Rejected { error, .. }) => {
                eprintln!("{}", wording::refusal(&cmd, &error));
                Ok(ExitCode::from(REFUSED))
            }
            Err(e) => Err(e.into()),
        },
        Action::List(req) => {
            let names: &dyn format::Names = if req.numeric {
                &format::Numeric
            } else {
                &resolve::System
            };
            if req.connections {
                let conns = client.connections()?;
                return print(&format::connections(&conns, req.persistent_conn, names));
            }
            let listing = client.listing()?;
            if req.timeouts {
                return print(&format::timeouts(&listing.timeouts));
            }
            if req.daemon {
                return print(&format::daemons(&listing.sync_daemons));
            }
            if req.defense {
                return print(&format::defense(&listing));
            }
            if req.sysctl {
                return print(&format::sysctls(&listing));
            }
            match format::listing(&listing, &req, names) {
                Ok(text) => print(&text),
                Err(format::NoSuchService) => {
                    eprintln!("{}", wording::NO_SUCH_SERVICE);
                    Ok(ExitCode::from(1))
                }
            }
        }
        Action::Save { numeric } => {
            let names: &dyn format::Names = if numeric {
                &format::Numeric
            } else {
                &resolve::System
            };
            print(&format::save(&client.listing()?, names))
        }
        Action::Restore => restore(program, &client),
        Action::ListMarkRules => print(&format::mark_rules(&client.listing()?.fwmark_rules)),
    }
}

/// `-R`: parse all of stdin first (a bad line: its number and the reason,
/// exit 2, nothing sent), then send one `Restore` that rvsd applies whole;
/// a refusal is reported against the input line it came from. Mark rules
/// the input adds replace that mark's current rules (`-C` keeps rules), so
/// `-S` → `-C` → `-R` is idempotent: see [`parse::replace_mark_rules`].
fn restore(program: &str, client: &Client) -> anyhow::Result<ExitCode> {
    let mut input = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut input)
        .context("reading rules from stdin")?;
    let lines = match parse::parse_restore(&input, &resolve::System) {
        Ok(l) => l,
        Err(LineError { line, error }) => {
            match error {
                ParseError::Message(m) => eprintln!("line {line}: {m}"),
                ParseError::TryHelp => eprintln!("line {line}: {}", try_help(program)),
            }
            eprintln!("nothing restored");
            return Ok(ExitCode::from(2));
        }
    };
    if lines.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let lines = if parse::adds_mark_rules(&lines) {
        parse::replace_mark_rules(lines, &client.listing()?.fwmark_rules)
    } else {
        lines
    };
    let (numbers, cmds): (Vec<usize>, Vec<Command>) = lines.into_iter().unzip();
    let restore = Command::Restore(cmds);
    match client.command(&restore) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(ClientError::Rejected { error, .. }) => {
            match (&error, &restore) {
                (ControlError::Refused { index, cause }, Command::Restore(cmds))
                    if *index < numbers.len() =>
                {
                    let words = wording::refusal(&cmds[*index], cause);
                    eprintln!("line {}: {words}", numbers[*index])
                }
                _ => eprintln!("{}", wording::refusal(&restore, &error)),
            }
            eprintln!("nothing restored");
            Ok(ExitCode::from(REFUSED))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    /// `-h` names every option rvsadm takes (all but `--pe`, which it
    /// refuses), so none is there for the parser alone.
    #[test]
    fn the_help_names_every_option() {
        let help = super::usage("rvsadm");
        let missing: Vec<&str> = crate::parse::TABLE
            .iter()
            .map(|(long, _, _)| *long)
            .filter(|long| *long != "pe")
            .filter(|long| {
                !help
                    .split(|c: char| c.is_whitespace() || c == '|')
                    .any(|w| w == format!("--{long}"))
            })
            .collect();
        assert!(missing.is_empty(), "not in rvsadm -h: {missing:?}");
    }
}
