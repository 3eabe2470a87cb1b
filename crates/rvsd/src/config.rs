//! The configuration file (TOML), as documented in docs/rvsd.md.

use std::net::IpAddr;
use std::path::Path;

use rvs_engine::{
    Dest, ForwardMethod, FwmarkRule, Persistence, Protocol, Service, ServiceKey, Timeouts,
};
use rvs_health::spec::{RealServerHealthSpec, ServiceHealthSpec};

use crate::health::{HealthPlan, ServiceHealth};
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
    /// Forward established flows in the XDP program (see `fast_path()`).
    #[serde(default)]
    fast_path: Option<bool>,
    #[serde(default)]
    pub(crate) timeouts: Option<FileTimeouts>,
    #[serde(default, rename = "service")]
    pub(crate) services: Vec<toml::Spanned<FileService>>,
    #[serde(default, rename = "fwmark")]
    fwmarks: Vec<FileFwmark>,
    /// Prometheus endpoint address ("127.0.0.1:9813").
    #[serde(default)]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFwmark {
    mark: u32,
    protocol: Option<Protocol>,
    /// An address or a prefix ("10.0.100.0/24").
    address: String,
    #[serde(default)]
    ports: Vec<u16>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileService {
    protocol: Option<Protocol>,
    address: Option<IpAddr>,
    port: Option<u16>,
    fwmark: Option<u32>,
    /// For fwmark services: "ipv4" (default) or "ipv6".
    family: Option<String>,
    #[serde(default = "default_scheduler")]
    scheduler: String,
    #[serde(default)]
    scheduler_flags: Vec<String>,
    persistence_timeout: Option<u32>,
    persistence_netmask: Option<String>,
    #[serde(default)]
    one_packet: bool,
    // Health-check policy (keepalived's virtual_server keys), validated by
    // rvs_health::spec::ServiceHealthSpec.
    delay_loop: Option<toml::Value>,
    quorum: Option<toml::Value>,
    hysteresis: Option<toml::Value>,
    inhibit_on_failure: Option<toml::Value>,
    alpha: Option<toml::Value>,
    omega: Option<toml::Value>,
    quorum_up: Option<toml::Value>,
    quorum_down: Option<toml::Value>,
    sorry_server: Option<toml::Value>,
    #[serde(default, rename = "real_server")]
    real_servers: Vec<FileRealServer>,
}

fn default_scheduler() -> String {
    rvs_vocab::sched::DEFAULT.into()
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
    #[serde(default, with = "rvs_vocab::short_name")]
    method: ForwardMethod,
    #[serde(default)]
    upper_threshold: u32,
    #[serde(default)]
    lower_threshold: u32,
    inhibit_on_failure: Option<bool>,
    #[serde(default)]
    check: Vec<toml::Value>,
}

impl FileConfig {
    /// Reads and parses `path` (returning its text too, for line numbers);
    /// errors name the file and the TOML location.
    pub(crate) fn load(path: &Path) -> anyhow::Result<(Self, String)> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let file = Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok((file, text))
    }

    /// The line of the `i`th `[[service]]` in `text`.
    pub(crate) fn service_line(&self, text: &str, i: usize) -> usize {
        self.services.get(i).map_or(0, |s| {
            text[..s.span().start.min(text.len())].matches('\n').count() + 1
        })
    }

    pub(crate) fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// `fast_path`, or the engine's default (on).
    pub(crate) fn fast_path(&self) -> bool {
        self.fast_path
            .unwrap_or_else(|| rvs_engine::Config::default().fast_path)
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        let mut t = Timeouts::default();
        if let Some(f) = self.timeouts {
            t.set(f.tcp, f.tcpfin, f.udp);
        }
        t
    }

    /// The services in engine terms (the engine validates them further).
    #[cfg(test)]
    pub(crate) fn engine_services(&self) -> anyhow::Result<Vec<Service>> {
        self.services
            .iter()
            .enumerate()
            .map(|(i, s)| s.get_ref().to_engine(i))
            .collect()
    }

    /// Every service and its health plan, or every error found, each
    /// prefixed with the line of its `[[service]]` in `text`.
    pub(crate) fn build(&self, text: &str) -> Result<(Vec<Service>, HealthPlan), Vec<String>> {
        let mut errors = Vec::new();
        let mut services = Vec::new();
        let mut plan = HealthPlan::new();
        for (i, s) in self.services.iter().enumerate() {
            let line = self.service_line(text, i);
            let at = |e: String| format!("line {line}: {e}");
            let svc = match s.get_ref().to_engine(i) {
                Ok(svc) => svc,
                Err(e) => {
                    errors.push(at(e.to_string()));
                    continue;
                }
            };
            match s.get_ref().health(&svc) {
                Ok(h) => {
                    plan.insert(svc.key, h);
                }
                Err(e) => errors.push(at(format!("[[service]] {}: {e}", svc.key))),
            }
            services.push(svc);
        }
        if let Err(e) = self.engine_fwmarks() {
            errors.push(e.to_string());
        }
        if errors.is_empty() {
            Ok((services, plan))
        } else {
            Err(errors)
        }
    }

    /// The firewall-mark classifier rules.
    pub(crate) fn engine_fwmarks(&self) -> anyhow::Result<Vec<FwmarkRule>> {
        self.fwmarks
            .iter()
            .map(|r| {
                let (addr, prefix_len) = parse_prefix(&r.address).ok_or_else(|| {
                    anyhow::anyhow!("[[fwmark]] mark {}: address '{}' is not an address or prefix like 10.0.100.0/24", r.mark, r.address)
                })?;
                Ok(FwmarkRule {
                    mark: r.mark,
                    protocol: r.protocol,
                    addr,
                    prefix_len,
                    ports: r.ports.clone(),
                })
            })
            .collect()
    }
}

fn parse_prefix(s: &str) -> Option<(IpAddr, u8)> {
    match s.split_once('/') {
        Some((a, l)) => Some((a.parse().ok()?, l.parse().ok()?)),
        None => {
            let a: IpAddr = s.parse().ok()?;
            Some((a, if a.is_ipv4() { 32 } else { 128 }))
        }
    }
}

/// `-M`: a dotted IPv4 netmask (contiguous) or a prefix length.
fn parse_netmask(s: &str) -> Option<u8> {
    if let Ok(m) = s.parse::<std::net::Ipv4Addr>() {
        let bits = u32::from(m);
        let ones = bits.leading_ones();
        return (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8);
    }
    s.trim_start_matches('/').parse().ok()
}

impl FileService {
    /// The health configuration of this service.
    fn health(&self, svc: &Service) -> Result<ServiceHealth, String> {
        let mut t = toml::Table::new();
        for (k, v) in [
            ("delay_loop", &self.delay_loop),
            ("quorum", &self.quorum),
            ("hysteresis", &self.hysteresis),
            ("inhibit_on_failure", &self.inhibit_on_failure),
            ("alpha", &self.alpha),
            ("omega", &self.omega),
            ("quorum_up", &self.quorum_up),
            ("quorum_down", &self.quorum_down),
            ("sorry_server", &self.sorry_server),
        ] {
            if let Some(v) = v {
                t.insert(k.into(), v.clone());
            }
        }
        let spec: ServiceHealthSpec = toml::Value::Table(t)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        let mut servers = std::collections::HashMap::new();
        for (r, d) in self.real_servers.iter().zip(&svc.dests) {
            let mut t = toml::Table::new();
            if let Some(i) = r.inhibit_on_failure {
                t.insert("inhibit_on_failure".into(), toml::Value::Boolean(i));
            }
            // Each check on its own first, so an error names which one.
            for (n, c) in r.check.iter().enumerate() {
                let one: Result<rvs_health::CheckSpec, _> = c.clone().try_into();
                if let Err(e) = one {
                    let kind = c.get("type").and_then(|t| t.as_str()).unwrap_or("?");
                    return Err(format!(
                        "real server {}, check #{} ({kind}): {}",
                        r.address,
                        n + 1,
                        e.message()
                    ));
                }
            }
            t.insert("check".into(), toml::Value::Array(r.check.clone()));
            let rs: RealServerHealthSpec =
                toml::Value::Table(t)
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        format!("real server {}: {}", r.address, e.message())
                    })?;
            let port = if d.port == 0 { svc.key.port } else { d.port };
            servers.insert(std::net::SocketAddr::new(d.addr, port), rs);
        }
        Ok(ServiceHealth { spec, servers })
    }

    fn to_engine(&self, index: usize) -> anyhow::Result<Service> {
        let which = || format!("[[service]] #{}", index + 1);
        let key = match (self.fwmark, self.protocol, self.address, self.port) {
            (Some(mark), None, None, None) => {
                let v6 = match self.family.as_deref() {
                    None | Some("ipv4") => false,
                    Some("ipv6") => true,
                    Some(other) => {
                        anyhow::bail!("{}: family '{other}' must be ipv4 or ipv6", which())
                    }
                };
                ServiceKey::fwmark(mark, v6)
            }
            (None, Some(p), Some(a), Some(port)) => ServiceKey::new(p, a, port),
            _ => anyhow::bail!(
                "{}: give either protocol, address and port, or fwmark (not both)",
                which()
            ),
        };
        let full = if key.addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match &self.persistence_netmask {
            None => full,
            Some(m) => parse_netmask(m).ok_or_else(|| {
                anyhow::anyhow!("{}: persistence_netmask '{m}' must be a contiguous netmask like 255.255.255.0 or a prefix length", which())
            })?,
        };
        if self.persistence_netmask.is_some() && self.persistence_timeout.is_none() {
            anyhow::bail!("{}: persistence_netmask needs persistence_timeout", which());
        }
        let flags = rvs_vocab::sched::flag_bits(&self.scheduler_flags)
            .map_err(|e| anyhow::anyhow!("{}: {e}", which()))?;
        let svc_port = key.port;
        Ok(Service {
            key,
            scheduler: self.scheduler.clone(),
            sched_flags: flags,
            persistence: self.persistence_timeout.map(|timeout| Persistence {
                timeout,
                prefix_len,
            }),
            one_packet: self.one_packet,
            dests: self
                .real_servers
                .iter()
                .map(|r| Dest {
                    addr: r.address,
                    port: r.port.unwrap_or(svc_port),
                    weight: r.weight,
                    method: r.method,
                    upper_threshold: r.upper_threshold,
                    lower_threshold: r.lower_threshold,
                })
                .collect(),
        })
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
        let s = c.engine_services().unwrap();
        assert_eq!(s[0].dests[0].method, ForwardMethod::Masq);
        assert_eq!((s[0].dests[0].port, s[0].dests[0].weight), (8080, 3));
        assert_eq!((s[0].dests[1].port, s[0].dests[1].weight), (80, 1));
        assert_eq!(s[0].dests[1].method, ForwardMethod::Route);
    }

    #[test]
    fn fast_path_switch_defaults_on_and_takes_only_a_boolean() {
        let base = "interfaces = [\"eth0\"]\n";
        assert!(FileConfig::parse(base).unwrap().fast_path());
        let off = FileConfig::parse(&format!("{base}fast_path = false\n")).unwrap();
        assert!(!off.fast_path());
        let e = FileConfig::parse(&format!("{base}fast_path = \"off\"\n")).unwrap_err();
        assert!(e.to_string().contains("fast_path"), "{e}");
    }

    #[test]
    fn persistence_fwmark_and_flags() {
        let c = FileConfig::parse(
            r#"
interfaces = ["eth0"]
[[fwmark]]
mark = 3
protocol = "tcp"
address = "10.0.100.1"
ports = [80, 443]
[[service]]
fwmark = 3
scheduler = "sh"
scheduler_flags = ["sh-port", "sh-fallback"]
persistence_timeout = 600
persistence_netmask = "255.255.255.0"
[[service]]
protocol = "udp"
address = "10.0.100.1"
port = 53
scheduler = "rr"
one_packet = true
"#,
        )
        .unwrap();
        let s = c.engine_services().unwrap();
        assert_eq!(s[0].key, ServiceKey::fwmark(3, false));
        assert_eq!(s[0].sched_flags, 0x18);
        assert_eq!(
            s[0].persistence,
            Some(Persistence {
                timeout: 600,
                prefix_len: 24
            })
        );
        assert!(s[1].one_packet);
        let f = c.engine_fwmarks().unwrap();
        assert_eq!(
            (f[0].mark, f[0].prefix_len, f[0].ports.clone()),
            (3, 32, vec![80, 443])
        );
        let bad = FileConfig::parse("[[service]]\nfwmark = 1\nport = 80\n").unwrap();
        let e = bad.engine_services().unwrap_err().to_string();
        assert!(
            e.contains("either protocol, address and port, or fwmark"),
            "{e}"
        );
        let bad = FileConfig::parse(
            "[[service]]\nfwmark = 1\npersistence_timeout = 5\npersistence_netmask = \"255.0.255.0\"\n",
        )
        .unwrap();
        assert!(bad
            .engine_services()
            .unwrap_err()
            .to_string()
            .contains("contiguous"));
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
