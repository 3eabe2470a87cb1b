//! The configuration file (TOML), as documented in docs/rvsd.md.

use std::net::IpAddr;
use std::path::Path;

use rvs_engine::{Dest, ForwardMethod, Protocol, Service, ServiceKey, Timeouts};
use serde::Deserialize;

/// The file as written by the operator.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Interface names the director works on.
    #[serde(default)]
    pub(crate) interfaces: Vec<String>,
    #[serde(default)]
    pub(crate) max_connections: Option<u32>,
    #[serde(default)]
    pub(crate) timeouts: Option<FileTimeouts>,
    #[serde(default, rename = "service")]
    pub(crate) services: Vec<FileService>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTimeouts {
    #[serde(default)]
    tcp: u32,
    #[serde(default)]
    tcpfin: u32,
    #[serde(default)]
    udp: u32,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum FileProtocol {
    Tcp,
    Udp,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum FileMethod {
    #[default]
    Dr,
    Nat,
    Tun,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileService {
    protocol: FileProtocol,
    address: IpAddr,
    port: u16,
    #[serde(default = "default_scheduler")]
    scheduler: String,
    #[serde(default, rename = "real_server")]
    real_servers: Vec<FileRealServer>,
}

fn default_scheduler() -> String {
    "wlc".into()
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRealServer {
    address: IpAddr,
    port: Option<u16>,
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default)]
    method: FileMethod,
    #[serde(default)]
    upper_threshold: u32,
    #[serde(default)]
    lower_threshold: u32,
}

impl FileConfig {
    /// Reads and parses `path`; errors name the file and the TOML location.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub(crate) fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        let mut t = Timeouts::default();
        if let Some(f) = self.timeouts {
            t.set(f.tcp, f.tcpfin, f.udp);
        }
        t
    }

    /// The services in engine terms (the engine validates them further).
    pub(crate) fn engine_services(&self) -> Vec<Service> {
        self.services
            .iter()
            .map(|s| {
                let key = ServiceKey {
                    protocol: match s.protocol {
                        FileProtocol::Tcp => Protocol::Tcp,
                        FileProtocol::Udp => Protocol::Udp,
                    },
                    addr: s.address,
                    port: s.port,
                };
                Service {
                    key,
                    scheduler: s.scheduler.clone(),
                    sched_flags: 0,
                    dests: s
                        .real_servers
                        .iter()
                        .map(|r| Dest {
                            addr: r.address,
                            port: r.port.unwrap_or(s.port),
                            weight: r.weight,
                            method: match r.method {
                                FileMethod::Dr => ForwardMethod::Route,
                                FileMethod::Nat => ForwardMethod::Masq,
                                FileMethod::Tun => ForwardMethod::Tunnel,
                            },
                            upper_threshold: r.upper_threshold,
                            lower_threshold: r.lower_threshold,
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses() {
        let c = FileConfig::parse(
            r#"
interfaces = ["front", "back"]
max_connections = 1000
[timeouts]
tcp = 600
[[service]]
protocol = "tcp"
address = "10.0.100.1"
port = 80
scheduler = "rr"
  [[service.real_server]]
  address = "10.0.2.11"
  method = "nat"
  port = 8080
  weight = 3
  [[service.real_server]]
  address = "10.0.2.12"
"#,
        )
        .unwrap();
        assert_eq!(c.interfaces, vec!["front", "back"]);
        assert_eq!(c.timeouts().tcp[1], 600);
        let s = c.engine_services();
        assert_eq!(s[0].dests[0].method, ForwardMethod::Masq);
        assert_eq!((s[0].dests[0].port, s[0].dests[0].weight), (8080, 3));
        assert_eq!((s[0].dests[1].port, s[0].dests[1].weight), (80, 1));
        assert_eq!(s[0].dests[1].method, ForwardMethod::Route);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_a_location() {
        let e = FileConfig::parse("interfaces = [\"a\"]\nmax_conections = 5\n").unwrap_err();
        assert!(e.to_string().contains("max_conections"), "{e}");
        let e = FileConfig::parse(
            "[[service]]\nprotocol = \"sctp\"\naddress = \"10.0.0.1\"\nport = 1\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
