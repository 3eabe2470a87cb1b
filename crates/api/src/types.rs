//! The JSON documents exchanged between rvsadm (or any operator tool) and rvsd.
//!
//! Every type is plain data with `snake_case` field and variant names, so the
//! wire format is readable with `curl --unix-socket` and stable across
//! releases: add fields with `#[serde(default)]`, never rename.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Transport protocol of a virtual service; IPVS keys services by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP (`-t`): connection state follows the IPVS TCP state machine.
    Tcp,
    /// UDP (`-u`): connections are flows that expire after the UDP timeout.
    Udp,
}

impl Protocol {
    /// Upper-case name as ipvsadm prints it in listings.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// Identifies one virtual service, like the kernel's (protocol, VIP, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct ServiceKey {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The virtual IP (IPv4 or IPv6).
    pub addr: IpAddr,
    /// The virtual port; 0 only for persistent "all ports" services.
    pub port: u16,
}

impl fmt::Display for ServiceKey {
    /// `TCP 10.0.0.1:80` / `UDP [2001:db8::1]:53`, for operator messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{} {}:{}", self.protocol.name(), a, self.port),
            IpAddr::V6(a) => write!(f, "{} [{}]:{}", self.protocol.name(), a, self.port),
        }
    }
}

/// How a packet reaches a real server (ipvsadm `-g`, `-m`, `-i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardMethod {
    /// Direct routing (DR, `-g`, ipvsadm's default): rewrite the MAC only.
    Route,
    /// NAT (`-m`): rewrite destination address and port; replies return via us.
    Masq,
    /// IP-in-IP tunnel (TUN, `-i`): encapsulate towards the real server.
    Tunnel,
}

impl ForwardMethod {
    /// The word ipvsadm prints in the `Forward` column.
    pub fn name(self) -> &'static str {
        match self {
            ForwardMethod::Route => "Route",
            ForwardMethod::Masq => "Masq",
            ForwardMethod::Tunnel => "Tunnel",
        }
    }
}

/// Configuration of a virtual service, as given with `ipvsadm -A/-E`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// Scheduler flags (`-b`), e.g. `sh-port`, `mh-fallback`, in given order.
    #[serde(default)]
    pub flags: Vec<String>,
}

/// Configuration of one real server ("destination"), as given with `-a/-e`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct DestSpec {
    /// Real server address; same family as the service.
    pub addr: IpAddr,
    /// Real server port; equals the service port for DR and TUN.
    pub port: u16,
    /// Relative capacity, 0..=2147483647; 0 quiesces the server.
    pub weight: u32,
    /// How packets are forwarded to this server.
    pub method: ForwardMethod,
    /// Upper connection threshold (`-x`); 0 means none.
    pub upper_threshold: u32,
    /// Lower connection threshold (`-y`); 0 means none.
    pub lower_threshold: u32,
}

/// One change request, one ipvsadm command (`POST /v1/commands`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
}

/// Packet and byte counters, summed over all workers since the last zero.
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_json_shape_is_snake_case_and_externally_tagged() {
        let key = ServiceKey {
            protocol: Protocol::Tcp,
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
        };
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
    fn service_flags_default_to_empty() {
        let s: ServiceSpec = serde_json::from_str(
            r#"{"key":{"protocol":"udp","addr":"::1","port":53},"scheduler":"rr",
                "persistence_timeout":null,"netmask":null}"#,
        )
        .unwrap();
        assert!(s.flags.is_empty());
        assert_eq!(s.key.to_string(), "UDP [::1]:53");
    }
}
