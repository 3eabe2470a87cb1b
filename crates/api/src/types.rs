//! The JSON documents exchanged between rvsadm (or any operator tool) and rvsd.
//!
//! Every type is plain data with `snake_case` field and variant names, so the
//! wire format is readable with `curl --unix-socket` and stable across
//! releases: add fields with `#[serde(default)]`, never rename.
//!
//! What a client sends ([`Command`] and the keys and specs in it) is read
//! strictly: an unknown field is refused, as an unknown key in rvsd's file
//! is, so a misspelt `persistance_timeout` cannot silently make a
//! non-persistent service. The fields of rvsd's answers themselves
//! (listings, counters, connections) are read leniently, so an older rvsadm
//! can still list a newer rvsd; the specs a listing embeds are the strict
//! command types (rvsadm and rvsd ship together).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use rvs_vocab::{ForwardMethod, Protocol, Tunnel, TunnelChecksum};

/// Address family of a firewall-mark service (`-6` after `-f`); the family
/// of an address-keyed service follows from its address.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// IPv4 (`AF_INET`), ipvsadm's default.
    #[default]
    Ipv4,
    /// IPv6 (`AF_INET6`).
    Ipv6,
}

/// Identifies one virtual service, like the kernel's (protocol, VIP, port)
/// or (firewall mark, family).
///
/// JSON is untagged, so address keys keep their original shape
/// `{"protocol":"tcp","addr":"10.0.0.1","port":80}` and mark keys read
/// `{"fwmark":1,"af":"ipv4"}` (`af` may be omitted: IPv4). Reading refuses
/// anything else by name: unknown fields, a key mixing both shapes, a
/// missing field, mark 0 (ipvsadm refuses it too; it would otherwise
/// become the address key `TCP 0.0.0.0:0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum ServiceKey {
    /// `-t`/`-u host:port`: packets to this protocol, address and port.
    Addr {
        /// TCP or UDP.
        protocol: Protocol,
        /// The virtual IP (IPv4 or IPv6).
        addr: IpAddr,
        /// The virtual port; 0 only for persistent "all ports" services.
        port: u16,
    },
    /// `-f MARK [-6]`: packets the classifier gave this firewall mark, of
    /// any protocol, address and port.
    Fwmark {
        /// The mark, 1..=u32::MAX.
        #[serde(rename = "fwmark")]
        mark: u32,
        /// Family of the packets it matches.
        #[serde(default)]
        af: Family,
    },
}

/// Every field either shape of [`ServiceKey`] may have, to say precisely
/// what is wrong with a malformed key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceKey {
    protocol: Option<Protocol>,
    addr: Option<IpAddr>,
    port: Option<u16>,
    fwmark: Option<u32>,
    af: Option<Family>,
}

impl TryFrom<RawServiceKey> for ServiceKey {
    type Error = String;

    fn try_from(r: RawServiceKey) -> Result<Self, String> {
        match r {
            RawServiceKey {
                fwmark: Some(0), ..
            } => Err("fwmark 0 is not a firewall mark: use 1 to 4294967295".into()),
            RawServiceKey {
                fwmark: Some(mark),
                protocol: None,
                addr: None,
                port: None,
                af,
            } => Ok(ServiceKey::Fwmark {
                mark,
                af: af.unwrap_or_default(),
            }),
            RawServiceKey {
                fwmark: Some(_), ..
            } => Err(
                "a service key is either protocol, addr and port, or fwmark (and af), not both"
                    .into(),
            ),
            RawServiceKey { af: Some(_), .. } => {
                Err("af belongs to fwmark keys; an address key's family is its address's".into())
            }
            RawServiceKey {
                protocol: Some(protocol),
                addr: Some(addr),
                port: Some(port),
                ..
            } => Ok(ServiceKey::Addr {
                protocol,
                addr,
                port,
            }),
            RawServiceKey {
                protocol,
                addr,
                port,
                ..
            } => {
                let missing: Vec<&str> = [
                    ("protocol", protocol.is_none()),
                    ("addr", addr.is_none()),
                    ("port", port.is_none()),
                ]
                .into_iter()
                .filter_map(|(name, absent)| absent.then_some(name))
                .collect();
                Err(format!(
                    "service key without {}: give protocol, addr and port, or fwmark",
                    missing.join(", ")
                ))
            }
        }
    }
}

impl<'de> Deserialize<'de> for ServiceKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ServiceKey::try_from(RawServiceKey::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl ServiceKey {
    /// Shorthand for an address-keyed service, mostly for tests and tools.
    pub fn addr(protocol: Protocol, addr: IpAddr, port: u16) -> Self {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        }
    }

    /// The firewall mark, if this is a mark service.
    pub fn fwmark(&self) -> Option<u32> {
        match self {
            ServiceKey::Fwmark { mark, .. } => Some(*mark),
            ServiceKey::Addr { .. } => None,
        }
    }

    /// Address family of the service (and, except for tunnels, its servers).
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } if addr.is_ipv6() => Family::Ipv6,
            ServiceKey::Addr { .. } => Family::Ipv4,
            ServiceKey::Fwmark { af, .. } => *af,
        }
    }

    /// Protocol used to name ports: a mark service counts as TCP, as
    /// ipvsadm sets it.
    pub fn protocol(&self) -> Protocol {
        match self {
            ServiceKey::Addr { protocol, .. } => *protocol,
            ServiceKey::Fwmark { .. } => Protocol::Tcp,
        }
    }

    /// The virtual port; 0 for mark services (they match every port).
    pub fn port(&self) -> u16 {
        match self {
            ServiceKey::Addr { port, .. } => *port,
            ServiceKey::Fwmark { .. } => 0,
        }
    }
}

impl fmt::Display for ServiceKey {
    /// `TCP 10.0.0.1:80` / `UDP [2001:db8::1]:53` / `FWM 1` / `FWM 1 IPv6`,
    /// for operator messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr {
                protocol,
                addr: IpAddr::V4(a),
                port,
            } => write!(f, "{} {}:{}", protocol.name(), a, port),
            ServiceKey::Addr {
                protocol,
                addr: IpAddr::V6(a),
                port,
            } => write!(f, "{} [{}]:{}", protocol.name(), a, port),
            ServiceKey::Fwmark {
                mark,
                af: Family::Ipv4,
            } => write!(f, "FWM {mark}"),
            ServiceKey::Fwmark {
                mark,
                af: Family::Ipv6,
            } => write!(f, "FWM {mark} IPv6"),
        }
    }
}

/// Configuration of a virtual service, as given with `ipvsadm -A/-E`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct ServiceSpec {
    /// Which service this is.
    pub key: ServiceKey,
    /// Scheduler name as ipvsadm spells it (`rr`, `wlc`, `mh`, …); rvsd
    /// rejects names it does not implement.
    pub scheduler: String,
    /// Persistence timeout in seconds (`-p`); `None` means not persistent.
    pub persistence_timeout: Option<u32>,
    /// Persistence granularity (`-M`) as a prefix length: 0..=32 for IPv4,
    /// 0..=128 for IPv6. `None` means a single client address (/32, /128).
    pub netmask: Option<u8>,
    /// Scheduler flags (`-b`), e.g. `sh-port`, `mh-fallback`. rvsadm sends
    /// them in bit order (flag 1, 2, 3) under the scheduler's own names
    /// (`sh-fallback`, not `flag-1`, for `sh`).
    #[serde(default)]
    pub flags: Vec<String>,
    /// One-packet scheduling (`-o`, IPVS's ONEPACKET flag, UDP and mark
    /// services only): every datagram is scheduled on its own and no
    /// connection entry is kept.
    #[serde(default)]
    pub one_packet: bool,
    /// FullNAT's local addresses (`--laddr`, an RVS extension, not in
    /// ipvsadm): the director's addresses, of the service's family, that a
    /// FullNAT connection's real server sees as its client. Empty (and left
    /// out of JSON) for a service without FullNAT servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_addresses: Vec<IpAddr>,
    /// FullNAT: pass the client's address and port to the real server in a
    /// TCP option (TOA, `--toa`, RVS's). Left out of JSON when off.
    #[serde(default, skip_serializing_if = "is_false")]
    pub toa: bool,
}

/// Whether a flag is off (left out of JSON).
fn is_false(b: &bool) -> bool {
    !*b
}

/// Configuration of one real server ("destination"), as given with `-a/-e`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct DestSpec {
    /// Real server address; same family as the service.
    pub addr: IpAddr,
    /// Real server port; equals the service port for DR and TUN.
    pub port: u16,
    /// Relative capacity, 0..=2147483647; 0 quiesces the server.
    pub weight: u32,
    /// How packets are forwarded to this server.
    pub method: ForwardMethod,
    /// The encapsulation of a TUN server (`--tun-type`, `--tun-port`,
    /// `--tun-*csum`); absent means IPIP, so older clients and files read
    /// as before.
    #[serde(default, skip_serializing_if = "is_ipip")]
    pub tunnel: Tunnel,
    /// Upper connection threshold (`-x`); 0 means none.
    pub upper_threshold: u32,
    /// Lower connection threshold (`-y`); 0 means none.
    pub lower_threshold: u32,
}

/// Whether a destination tunnels by IPIP (the default, left out of JSON).
fn is_ipip(t: &Tunnel) -> bool {
    *t == Tunnel::Ipip
}

/// One change request, one ipvsadm command (`POST /v1/commands`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// `-A`: create a service; error if it exists.
    AddService(ServiceSpec),
    /// `-E`: replace a service's settings; error if it does not exist.
    EditService(ServiceSpec),
    /// `-D`: remove a service with its real servers.
    DeleteService(ServiceKey),
    /// `-a`: add a real server to a service.
    AddDest {
        /// The service to add to.
        service: ServiceKey,
        /// The new real server.
        dest: DestSpec,
    },
    /// `-e`: replace a real server's settings (found by address and port).
    EditDest {
        /// The service the real server belongs to.
        service: ServiceKey,
        /// New settings; `addr`/`port` select the real server.
        dest: DestSpec,
    },
    /// `-d`: remove a real server from a service.
    DeleteDest {
        /// The service the real server belongs to.
        service: ServiceKey,
        /// Real server address.
        addr: IpAddr,
        /// Real server port.
        port: u16,
    },
    /// `-C`: remove every service.
    Clear,
    /// `-Z`: zero the counters of one service, or of all with `None`.
    ZeroCounters(Option<ServiceKey>),
    /// `--set tcp tcpfin udp`: timeouts in seconds; 0 leaves one unchanged.
    SetTimeouts {
        /// TCP ESTABLISHED timeout.
        tcp: u32,
        /// TCP FIN_WAIT timeout.
        tcpfin: u32,
        /// UDP timeout.
        udp: u32,
    },
    /// `-R`: apply these commands in order as one transaction, all or none,
    /// so a bad line in a rule file cannot leave half a table. A refusal
    /// names the failing command ([`crate::ControlError::Refused`]); a
    /// `Restore` inside a `Restore` is refused.
    Restore(Vec<Command>),
    /// Re-read rvsd's configuration file and apply it whole (as SIGHUP
    /// does); a file with any error changes nothing and the error is the
    /// reply. Runtime changes made since are replaced by the file.
    Reload,
    /// Add a rule to RVS's firewall-mark classifier (what an iptables
    /// `MARK` rule does for kernel IPVS).
    AddFwmarkRule(FwmarkRuleSpec),
    /// Remove every classifier rule of a mark.
    DeleteFwmarkRule {
        /// The mark.
        mark: u32,
    },
    /// `--start-daemon`: start connection sync as master or backup; error
    /// if that role runs already.
    StartDaemon(rvs_vocab::SyncDaemon),
    /// `--stop-daemon`: stop the master or backup sync daemon; error if it
    /// does not run.
    StopDaemon(rvs_vocab::SyncRole),
    /// `--sysctl KEY=VALUE` and `--defense KEY=VALUE` (RVS): change the
    /// IPVS sysctls named (`rvs_vocab::sysctl`); the others stay. Older
    /// clients' `set_defense` reads as this.
    #[serde(alias = "set_defense")]
    SetSysctl(SysctlSettings),
}

/// The sysctls a [`Command::SetSysctl`] changes, by the kernel's names;
/// `None` keeps one. Defence modes are 0 (off), 1 or 2 (automatic) and 3
/// (always), as the kernel's `drop_entry`, `drop_packet` and `secure_tcp`;
/// `amemthresh` is a count of free connection-table entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct SysctlSettings {
    /// Drop random half-open entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_entry: Option<u8>,
    /// Drop 1 in rate new connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_packet: Option<u8>,
    /// Use the secure TCP state table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_tcp: Option<u8>,
    /// Free entries below which the automatic modes switch on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amemthresh: Option<u32>,
    /// drop_packet mode 3's rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub am_droprate: Option<u32>,
    /// Schedule mid-flow TCP segments of unknown connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sloppy_tcp: Option<bool>,
    /// The same for SCTP (kept until RVS balances SCTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sloppy_sctp: Option<bool>,
    /// A sync master sends templates in place of the connections they
    /// control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_persist_mode: Option<bool>,
}

/// The sysctls outside the defence as they stand (`rvsadm -L --sysctl`;
/// the defence's are in [`DefenseStatus`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct SysctlStatus {
    /// Mid-flow TCP segments of unknown connections are scheduled.
    pub sloppy_tcp: bool,
    /// The same for SCTP (no effect until RVS balances SCTP).
    pub sloppy_sctp: bool,
    /// A sync master sends templates in place of the connections they
    /// control.
    #[serde(default)]
    pub sync_persist_mode: bool,
}

/// The SYN-flood defence as it stands (`rvsadm -L --defense`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct DefenseStatus {
    /// Live mode: an automatic strategy reads 2 while active, 1 while not.
    pub drop_entry: u8,
    /// Live mode.
    pub drop_packet: u8,
    /// Live mode.
    pub secure_tcp: u8,
    /// Threshold in free connection-table entries.
    pub amemthresh: u32,
    /// drop_packet mode 3's rate.
    pub am_droprate: u32,
    /// Free connection-table entries (RVS's "available memory").
    pub free_entries: u32,
    /// Fewer than `amemthresh` entries are free.
    pub low_memory: bool,
    /// drop_entry removes half-open entries each second.
    pub drop_entry_active: bool,
    /// drop_packet drops one new connection in this many; 0 = inactive.
    pub drop_rate: u32,
    /// TCP transitions use the secure state table.
    pub secure_tcp_active: bool,
}

/// A rule of RVS's firewall-mark classifier: packets to `addr/prefix_len`
/// of `protocol` (TCP and UDP when `None`) on one of `ports` (all when
/// empty) get `mark`, and are scheduled by the service `-f mark`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct FwmarkRuleSpec {
    /// Mark assigned (1 or more).
    pub mark: u32,
    /// Protocol matched; `None` = TCP and UDP.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Destination network.
    pub addr: IpAddr,
    /// Prefix length of `addr` (32 / 128 = one address).
    pub prefix_len: u8,
    /// Destination ports; empty = all.
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// Packet and byte counters, summed over all workers since the last zero,
/// and their current rates (IPVS's 2-second estimator; see IPVS-NOTES).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → server.
    pub in_packets: u64,
    /// Packets server → client (seen only for NAT).
    pub out_packets: u64,
    /// Bytes client → server.
    pub in_bytes: u64,
    /// Bytes server → client (seen only for NAT).
    pub out_bytes: u64,
    /// Connections per second (`--rate` CPS); 0 from older daemons.
    #[serde(default)]
    pub cps: u64,
    /// Packets per second client → server (InPPS).
    #[serde(default)]
    pub in_pps: u64,
    /// Packets per second server → client (OutPPS).
    #[serde(default)]
    pub out_pps: u64,
    /// Bytes (not bits) per second client → server: ipvsadm's "InBPS".
    #[serde(default)]
    pub in_bps: u64,
    /// Bytes per second server → client: ipvsadm's "OutBPS".
    #[serde(default)]
    pub out_bps: u64,
}

/// A real server with its live state, as listed by `ipvsadm -L`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct DestStatus {
    /// Its configuration.
    pub spec: DestSpec,
    /// Connections in TCP ESTABLISHED.
    pub active_conns: u32,
    /// All other tracked connections.
    pub inactive_conns: u32,
    /// Persistence templates pointing at it (`--persistent-conn`'s
    /// PersistConn column); 0 from older daemons.
    #[serde(default)]
    pub persistent_conns: u32,
    /// Its counters.
    pub stats: Stats,
}

/// A service with its real servers and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct ServiceStatus {
    /// Its configuration.
    pub spec: ServiceSpec,
    /// Its real servers, in rvsd's order (rvsadm sorts like ipvsadm).
    pub dests: Vec<DestStatus>,
    /// Its counters.
    pub stats: Stats,
    /// The service group (rvsd's `group`: keepalived's
    /// virtual_server_group) it is a member of, whose health and quorum it
    /// shares; `None` for a service of its own and from older daemons.
    /// ipvsadm's listing has no such column, so rvsadm's shows none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Reply to `GET /v1/services`: the whole table, what `ipvsadm -L` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Listing {
    /// Connection hash table size, shown as `(size=N)` in the title line.
    pub conn_table_size: u32,
    /// All services.
    pub services: Vec<ServiceStatus>,
    /// Datapath counters summed over workers (frames received, forwarded,
    /// dropped per reason as `drop_<reason>`, …); empty from older daemons.
    #[serde(default)]
    pub counters: std::collections::BTreeMap<String, u64>,
    /// Current connection timeouts (`-L --timeout`); older daemons send
    /// none and the IPVS defaults are assumed.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Health-check state of every checked real server.
    #[serde(default)]
    pub health: Vec<HealthStatus>,
    /// RVS's firewall-mark classifier rules, in match order.
    #[serde(default)]
    pub fwmark_rules: Vec<FwmarkRuleSpec>,
    /// The configuration file rvsd runs from, if any.
    #[serde(default)]
    pub config_file: Option<String>,
    /// rvsadm changed the running configuration since the file was loaded:
    /// those changes are lost at the next reload or restart.
    #[serde(default)]
    pub config_diverged: bool,
    /// The SYN-flood defence; `None` from older daemons.
    #[serde(default)]
    pub defense: Option<DefenseStatus>,
    /// The other sysctls; `None` from older daemons.
    #[serde(default)]
    pub sysctl: Option<SysctlStatus>,
    /// Running sync daemons (`-L --daemon`).
    #[serde(default)]
    pub sync_daemons: Vec<SyncDaemonStatus>,
}

/// A running sync daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct SyncDaemonStatus {
    /// Its settings.
    pub daemon: rvs_vocab::SyncDaemon,
    /// The datagram size limit in force.
    pub maxlen: u16,
}

/// A checked real server's last health-check result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct HealthStatus {
    /// Its service.
    pub service: ServiceKey,
    /// Its address.
    pub addr: IpAddr,
    /// Its port.
    pub port: u16,
    /// Whether its checks pass.
    pub up: bool,
    /// Why (the last check's message).
    pub reason: String,
}

/// The timeouts `--set` changes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Timeouts {
    /// TCP ESTABLISHED.
    pub tcp: u32,
    /// TCP FIN_WAIT.
    pub tcpfin: u32,
    /// UDP.
    pub udp: u32,
}

impl Default for Timeouts {
    /// The IPVS defaults: 900 s, 120 s, 300 s.
    fn default() -> Self {
        Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        }
    }
}

/// One tracked connection or persistence template, as `ipvsadm -Lc` shows
/// the kernel's connection table (`GET /v1/connections`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct ConnectionEntry {
    /// Protocol of the connection (of the service, for a template).
    pub protocol: Protocol,
    /// Client address and port; for a template the (masked) client network
    /// and port 0 unless the service is per-port.
    pub client: (IpAddr, u16),
    /// Virtual address and port the client used. For a template of a mark
    /// service the kernel has no address: rvsadm then prints protocol `IP`
    /// and the mark as the address, as the kernel does, ignoring this.
    #[serde(rename = "virtual")]
    pub virtual_: (IpAddr, u16),
    /// Real server address and port.
    pub dest: (IpAddr, u16),
    /// State as the kernel names it: `ESTABLISHED`, `SYN_RECV`,
    /// `FIN_WAIT`, `TIME_WAIT`, `CLOSE`, … for TCP, `UDP` for UDP flows,
    /// `NONE` for templates.
    pub state: String,
    /// Seconds until it expires.
    pub expires_secs: u32,
    /// A persistence template (client → real server affinity), not traffic.
    pub template: bool,
    /// The service's firewall mark, if the connection belongs to one.
    #[serde(default)]
    pub fwmark: Option<u32>,
    /// FullNAT's local address and port: the client end the real server
    /// sees (an RVS extension). Absent for the other methods and templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<(IpAddr, u16)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_sysctl_names_only_what_changes_and_refuses_unknown_keys() {
        let c = Command::SetSysctl(SysctlSettings {
            drop_entry: Some(1),
            amemthresh: Some(500),
            sloppy_tcp: Some(true),
            ..SysctlSettings::default()
        });
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(
            j,
            r#"{"set_sysctl":{"drop_entry":1,"amemthresh":500,"sloppy_tcp":true}}"#
        );
        assert_eq!(serde_json::from_str::<Command>(&j).unwrap(), c);
        // An older rvsadm's command.
        assert_eq!(
            serde_json::from_str::<Command>(r#"{"set_defense":{"drop_entry":1}}"#).unwrap(),
            Command::SetSysctl(SysctlSettings {
                drop_entry: Some(1),
                ..SysctlSettings::default()
            })
        );
        let e = serde_json::from_str::<Command>(r#"{"set_sysctl":{"drop_entrys":1}}"#).unwrap_err();
        assert!(e.to_string().contains("drop_entrys"), "{e}");
        let e =
            serde_json::from_str::<Command>(r#"{"set_sysctl":{"secure_tcp":256}}"#).unwrap_err();
        assert!(e.to_string().contains("256"), "{e}");
        let e = serde_json::from_str::<Command>(r#"{"set_sysctl":{"sloppy_tcp":2}}"#).unwrap_err();
        assert!(
            e.to_string().contains("sloppy_tcp") || e.to_string().contains("boolean"),
            "{e}"
        );
        // A listing without the fields (an older daemon) reads as None.
        let l: Listing = serde_json::from_str(r#"{"conn_table_size":1,"services":[]}"#).unwrap();
        assert_eq!((l.defense, l.sysctl), (None, None));
    }

    /// Every sysctl rvs_vocab names is a key of the command, and no other.
    #[test]
    fn set_sysctl_keys_are_the_vocabulary_s_sysctls() {
        let all = SysctlSettings {
            drop_entry: Some(0),
            drop_packet: Some(0),
            secure_tcp: Some(0),
            amemthresh: Some(0),
            am_droprate: Some(1),
            sloppy_tcp: Some(false),
            sloppy_sctp: Some(false),
            sync_persist_mode: Some(false),
        };
        let v = serde_json::to_value(all).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let names: Vec<&str> = rvs_vocab::sysctl::SYSCTLS.iter().map(|s| s.name).collect();
        assert_eq!(keys, names);
    }

    #[test]
    fn command_json_shape_is_snake_case_and_externally_tagged() {
        let key = ServiceKey::addr(Protocol::Tcp, "10.0.0.1".parse().unwrap(), 80);
        let j = serde_json::to_string(&Command::DeleteService(key)).unwrap();
        assert_eq!(
            j,
            r#"{"delete_service":{"protocol":"tcp","addr":"10.0.0.1","port":80}}"#
        );
        assert_eq!(
            serde_json::to_string(&Command::Clear).unwrap(),
            r#""clear""#
        );
        assert_eq!(
            serde_json::to_string(&Command::ZeroCounters(None)).unwrap(),
            r#"{"zero_counters":null}"#
        );
        let d = Command::DeleteDest {
            service: key,
            addr: "10.0.0.2".parse().unwrap(),
            port: 80,
        };
        let back: Command = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn fullnat_settings_are_left_out_when_unset_and_kept_when_set() {
        let mut s = ServiceSpec {
            key: ServiceKey::addr(Protocol::Tcp, "10.0.0.1".parse().unwrap(), 80),
            scheduler: "rr".into(),
            persistence_timeout: None,
            netmask: None,
            flags: vec![],
            one_packet: false,
            local_addresses: vec![],
            toa: false,
        };
        let j = serde_json::to_string(&s).unwrap();
        assert!(!j.contains("local_addresses") && !j.contains("toa"), "{j}");
        assert_eq!(serde_json::from_str::<ServiceSpec>(&j).unwrap(), s);
        s.local_addresses = vec!["10.0.2.200".parse().unwrap(), "10.0.2.201".parse().unwrap()];
        s.toa = true;
        let j = serde_json::to_string(&s).unwrap();
        assert!(
            j.contains(r#""local_addresses":["10.0.2.200","10.0.2.201"],"toa":true"#),
            "{j}"
        );
        assert_eq!(serde_json::from_str::<ServiceSpec>(&j).unwrap(), s);
        // A FullNAT real server's method, as the README's API section names it.
        assert_eq!(
            serde_json::to_string(&ForwardMethod::FullNat).unwrap(),
            r#""full_nat""#
        );
        // Misspelt, refused by name as every command field is.
        let e = serde_json::from_str::<ServiceSpec>(
            r#"{"key":{"protocol":"tcp","addr":"10.0.0.1","port":80},"scheduler":"rr",
                "persistence_timeout":null,"netmask":null,"local_address":["10.0.2.200"]}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("unknown field `local_address`"),
            "{e}"
        );
    }

    #[test]
    fn service_flags_default_to_empty() {
        let s: ServiceSpec = serde_json::from_str(
            r#"{"key":{"protocol":"udp","addr":"::1","port":53},"scheduler":"rr",
                "persistence_timeout":null,"netmask":null}"#,
        )
        .unwrap();
        assert!(s.flags.is_empty());
        assert_eq!(s.key.to_string(), "UDP [::1]:53");
    }

    #[test]
    fn fwmark_keys_are_untagged_and_family_defaults_to_ipv4() {
        let k = ServiceKey::Fwmark {
            mark: 7,
            af: Family::Ipv6,
        };
        let j = serde_json::to_string(&k).unwrap();
        assert_eq!(j, r#"{"fwmark":7,"af":"ipv6"}"#);
        assert_eq!(serde_json::from_str::<ServiceKey>(&j).unwrap(), k);
        let v4: ServiceKey = serde_json::from_str(r#"{"fwmark":1}"#).unwrap();
        assert_eq!(
            v4,
            ServiceKey::Fwmark {
                mark: 1,
                af: Family::Ipv4
            }
        );
        assert_eq!(v4.to_string(), "FWM 1");
        assert_eq!(k.to_string(), "FWM 7 IPv6");
        assert_eq!(
            (k.fwmark(), k.family(), k.port()),
            (Some(7), Family::Ipv6, 0)
        );
        // Old address keys read as before.
        let a: ServiceKey =
            serde_json::from_str(r#"{"protocol":"udp","addr":"10.0.0.1","port":53}"#).unwrap();
        assert_eq!(
            a,
            ServiceKey::addr(Protocol::Udp, "10.0.0.1".parse().unwrap(), 53)
        );
        assert_eq!(a.fwmark(), None);
        assert!(serde_json::from_str::<ServiceKey>(r#"{"port":53}"#).is_err());
    }

    #[test]
    fn unknown_fields_in_commands_are_refused_by_name() {
        // The misspelling that used to make a non-persistent service.
        let e = serde_json::from_str::<Command>(
            r#"{"add_service":{"key":{"protocol":"tcp","addr":"10.0.0.1","port":80},
                "scheduler":"rr","persistance_timeout":300,"netmask":null}}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown field `persistance_timeout`"),
            "{e}"
        );
        let dest = r#"{"addr":"10.0.0.2","port":80,"weight":1,"method":"route",
            "upper_threshold":0,"lower_threshold":0"#;
        let key = r#"{"protocol":"tcp","addr":"10.0.0.1","port":80}"#;
        for (doc, field) in [
            (
                format!(r#"{{"add_dest":{{"service":{key},"dest":{dest},"wieght":2}}}}}}"#),
                "wieght",
            ),
            (
                format!(r#"{{"add_dest":{{"service":{key},"dest":{dest}}},"extra":1}}}}"#),
                "extra",
            ),
            (
                format!(
                    r#"{{"delete_dest":{{"service":{key},"addr":"10.0.0.2","port":80,"prot":6}}}}"#
                ),
                "prot",
            ),
            (
                r#"{"set_timeouts":{"tcp":1,"tcpfin":2,"udp":3,"sctp":4}}"#.to_string(),
                "sctp",
            ),
            (
                r#"{"add_fwmark_rule":{"mark":1,"addr":"10.0.0.0","prefix_len":8,"port":[80]}}"#
                    .to_string(),
                "port",
            ),
            (
                r#"{"delete_service":{"protocol":"tcp","addr":"10.0.0.1","port":80,"fwmrk":1}}"#
                    .to_string(),
                "fwmrk",
            ),
        ] {
            let e = serde_json::from_str::<Command>(&doc).unwrap_err();
            assert!(
                e.to_string().contains(&format!("unknown field `{field}`")),
                "{doc}: {e}"
            );
        }
        // A misspelt command is named too.
        let e = serde_json::from_str::<Command>(r#""claer""#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `claer`"), "{e}");
    }

    #[test]
    fn malformed_service_keys_are_refused_not_guessed() {
        let bad = |doc: &str| {
            serde_json::from_str::<ServiceKey>(doc)
                .unwrap_err()
                .to_string()
        };
        // Mark 0 used to become TCP 0.0.0.0:0.
        assert!(bad(r#"{"fwmark":0}"#).contains("fwmark 0 is not a firewall mark"));
        assert!(bad(r#"{"fwmark":0,"af":"ipv6"}"#).contains("fwmark 0"));
        assert!(
            bad(r#"{"fwmark":1,"protocol":"tcp","addr":"10.0.0.1","port":80}"#)
                .contains("either protocol, addr and port, or fwmark")
        );
        assert!(
            bad(r#"{"protocol":"tcp","addr":"10.0.0.1","port":80,"af":"ipv4"}"#)
                .contains("af belongs to fwmark keys")
        );
        let e = bad(r#"{"protocol":"tcp","addr":"10.0.0.1"}"#);
        assert!(e.contains("service key without port"), "{e}");
        let e = bad(r#"{}"#);
        assert!(e.contains("without protocol, addr, port"), "{e}");
        let e = bad(r#"{"protocol":"tcp","addr":"10.0.0.1","port":65617}"#);
        assert!(e.contains("65617"), "{e}");
        let e = bad(r#"{"protocol":"tcp","addr":"10.0.0.1","port":80,"prto":1}"#);
        assert!(e.contains("unknown field `prto`"), "{e}");
        // Inside a command, the same refusal.
        let e = serde_json::from_str::<Command>(r#"{"delete_service":{"fwmark":0}}"#).unwrap_err();
        assert!(e.to_string().contains("fwmark 0"), "{e}");
        let e = serde_json::from_str::<Command>(r#"{"zero_counters":{"fwmark":0}}"#).unwrap_err();
        assert!(e.to_string().contains("fwmark 0"), "{e}");
    }

    #[test]
    fn new_fields_default_for_old_documents() {
        let l: Listing = serde_json::from_str(
            r#"{"conn_table_size":4096,"services":[{"spec":{
                "key":{"protocol":"tcp","addr":"10.0.0.1","port":80},"scheduler":"rr",
                "persistence_timeout":null,"netmask":null},
                "dests":[{"spec":{"addr":"10.0.0.2","port":80,"weight":1,"method":"route",
                  "upper_threshold":0,"lower_threshold":0},"active_conns":1,"inactive_conns":2,
                  "stats":{"conns":1,"in_packets":2,"out_packets":3,"in_bytes":4,"out_bytes":5}}],
                "stats":{"conns":0,"in_packets":0,"out_packets":0,"in_bytes":0,"out_bytes":0}}]}"#,
        )
        .unwrap();
        assert_eq!(l.timeouts, Timeouts::default());
        assert_eq!(
            (l.timeouts.tcp, l.timeouts.tcpfin, l.timeouts.udp),
            (900, 120, 300)
        );
        let svc = &l.services[0];
        assert!(!svc.spec.one_packet);
        assert_eq!(svc.dests[0].persistent_conns, 0);
        assert_eq!(svc.dests[0].stats.in_bytes, 4);
        assert_eq!(svc.dests[0].stats.cps, 0);
    }

    #[test]
    fn restore_and_connection_json() {
        let r = Command::Restore(vec![Command::Clear]);
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, r#"{"restore":["clear"]}"#);
        assert_eq!(serde_json::from_str::<Command>(&j).unwrap(), r);

        let c = ConnectionEntry {
            protocol: Protocol::Tcp,
            client: ("10.0.0.9".parse().unwrap(), 40000),
            virtual_: ("10.0.0.1".parse().unwrap(), 80),
            dest: ("10.0.0.2".parse().unwrap(), 80),
            state: "ESTABLISHED".into(),
            expires_secs: 899,
            template: false,
            fwmark: None,
            local: None,
        };
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(
            j,
            r#"{"protocol":"tcp","client":["10.0.0.9",40000],"virtual":["10.0.0.1",80],"dest":["10.0.0.2",80],"state":"ESTABLISHED","expires_secs":899,"template":false,"fwmark":null}"#
        );
        assert_eq!(serde_json::from_str::<ConnectionEntry>(&j).unwrap(), c);
        // A FullNAT connection carries its local end.
        let f = ConnectionEntry {
            local: Some(("10.0.2.200".parse().unwrap(), 1024)),
            ..c
        };
        let j = serde_json::to_string(&f).unwrap();
        assert!(
            j.ends_with(r#""fwmark":null,"local":["10.0.2.200",1024]}"#),
            "{j}"
        );
        assert_eq!(serde_json::from_str::<ConnectionEntry>(&j).unwrap(), f);
    }

    #[test]
    fn tunnel_is_left_out_for_ipip_and_spelled_out_otherwise() {
        let mut d = DestSpec {
            addr: "10.0.0.2".parse().unwrap(),
            port: 80,
            weight: 1,
            method: ForwardMethod::Tunnel,
            tunnel: Tunnel::Ipip,
            upper_threshold: 0,
            lower_threshold: 0,
        };
        let j = serde_json::to_string(&d).unwrap();
        assert!(!j.contains("\"tunnel\":"), "{j}");
        assert_eq!(serde_json::from_str::<DestSpec>(&j).unwrap(), d);
        d.tunnel = Tunnel::Gue {
            port: 6080,
            checksum: TunnelChecksum::Csum,
        };
        let j = serde_json::to_string(&d).unwrap();
        assert!(
            j.contains(r#""tunnel":{"gue":{"port":6080,"checksum":"csum"}}"#),
            "{j}"
        );
        assert_eq!(serde_json::from_str::<DestSpec>(&j).unwrap(), d);
    }
}
