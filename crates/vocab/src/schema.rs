//! rvsd's configuration file (TOML), as docs/rvsd.md documents it: the
//! types rvsd reads, rvs-migrate writes and their tests parse.
//!
//! These are the file as written, not yet validated: optional keys stay
//! `Option` (so a writer leaves out what it does not set), a service keeps
//! its span for error lines, and the health-check keys stay `toml::Value`s
//! that rvs-health validates with its own messages. rvsd turns the file into
//! the engine's configuration; unknown keys are refused here already.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::{ForwardMethod, Protocol};

/// The whole file.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Interface names the director receives and sends on.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Size of the connection table (default: the engine's).
    pub max_connections: Option<u32>,
    /// Fragmented datagrams tracked at once (default: the engine's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fragment_datagrams: Option<u32>,
    /// Forward established flows in the XDP program (default: on).
    pub fast_path: Option<bool>,
    /// Slots of the fast path's IPv4 table (default: 2 × max_connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_path_slots: Option<u32>,
    /// Prometheus endpoint address ("127.0.0.1:9813").
    pub metrics_listen: Option<SocketAddr>,
    /// The user rvsd runs as once set up (it starts as root); absent: it
    /// stays the user it was started as. Read at start only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The group for `user` (default: that user's primary group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// keepalived's `script_user`: who MISC_CHECK scripts and quorum
    /// commands run as, without capabilities (default `keepalived_script`
    /// if that user exists, else `nobody`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_user: Option<String>,
    /// The group for `script_user` (default: its primary group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_group: Option<String>,
    /// A group given read-only access to the control socket (0660).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_group: Option<String>,
    /// `ipvsadm --set`.
    pub timeouts: Option<Timeouts>,
    /// SYN-flood defence: IPVS's strategies and thresholds.
    pub defense: Option<Defense>,
    /// IPVS's other sysctls RVS takes (`sloppy_tcp`, `sloppy_sctp`).
    pub sysctl: Option<Sysctl>,
    /// RVS's firewall-mark classifier rules, first match wins.
    #[serde(default, rename = "fwmark", skip_serializing_if = "Vec::is_empty")]
    pub fwmarks: Vec<Fwmark>,
    /// `[[sync_daemon]]`: connection sync with other directors (a master
    /// and a backup may run at once).
    #[serde(default, rename = "sync_daemon", skip_serializing_if = "Vec::is_empty")]
    pub sync_daemons: Vec<crate::SyncDaemon>,
    /// FullNAT's local ports, `[first, last]`, both included (default: the
    /// engine's, 1024–32767, below the kernel's ephemeral range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port_range: Option<PortRange>,
    /// The virtual services, each with where it starts in the file.
    #[serde(default, rename = "service", skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<toml::Spanned<Service>>,
}

/// `[timeouts]`: as `ipvsadm --set` in seconds; absent or 0 keeps the
/// default.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// TCP ESTABLISHED.
    pub tcp: Option<u32>,
    /// TCP FIN_WAIT.
    pub tcpfin: Option<u32>,
    /// UDP.
    pub udp: Option<u32>,
}

/// `[sysctl]`: IPVS's sysctls other than the defence's, under the
/// kernel's names ([`crate::sysctl::SYSCTLS`] says what each does); absent
/// keys keep the kernel's defaults.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sysctl {
    /// Schedule mid-flow TCP segments of unknown connections (0 or 1).
    pub sloppy_tcp: Option<Switch>,
    /// The same for SCTP, kept until RVS balances SCTP (0 or 1).
    pub sloppy_sctp: Option<Switch>,
    /// A sync master sends templates in place of the connections they
    /// control (0 or 1).
    pub sync_persist_mode: Option<Switch>,
}

/// A sysctl that is 0 (off) or 1 (on), as the kernel writes it; `true`
/// and `false` are read too. Anything else is refused with the fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch(pub bool);

impl Serialize for Switch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(u8::from(self.0))
    }
}

impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Switch;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("0 (off) or 1 (on)")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Switch, E> {
                Ok(Switch(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Switch, E> {
                match v {
                    0 | 1 => Ok(Switch(v == 1)),
                    _ => Err(E::custom(format!(
                        "{v} is not a switch: use 0 (off) or 1 (on)"
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Switch, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[defense]`: IPVS's defence strategies, the kernel's
/// `/proc/sys/net/ipv4/vs/` sysctls of the same names (modes 0 off, 1 and
/// 2 automatic, 3 always); `amemthresh` counts free connection-table
/// entries. Absent keys keep the defaults (off, 1024, 10).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defense {
    /// Drop random half-open entries (0..=3).
    pub drop_entry: Option<u8>,
    /// Drop 1 in rate new connections (0..=3).
    pub drop_packet: Option<u8>,
    /// The secure TCP state table (0..=3).
    pub secure_tcp: Option<u8>,
    /// Free entries below which the automatic modes switch on.
    pub amemthresh: Option<u32>,
    /// drop_packet mode 3's rate.
    pub am_droprate: Option<u32>,
}

/// `[[fwmark]]`: packets to `address` (an address or a prefix) of
/// `protocol` (TCP and UDP when absent) on one of `ports` (all when empty)
/// get `mark`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fwmark {
    /// The mark, 1 or more.
    pub mark: u32,
    /// TCP or UDP; absent = both.
    pub protocol: Option<Protocol>,
    /// An address or a prefix ("10.0.100.0/24").
    pub address: String,
    /// Destination ports; empty = all.
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// `[[service]]`: either protocol, address and port, or fwmark; or, for
/// a service group (keepalived's `virtual_server_group`), a `group` name
/// and its `[[service.member]]`s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Makes this a service group of this name: one virtual service per
    /// member in the data path (as the kernel has them), but one health
    /// check per real server and one quorum state for them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// TCP or UDP (address services).
    pub protocol: Option<Protocol>,
    /// The VIP (address services).
    pub address: Option<IpAddr>,
    /// The virtual port (address services); 0 = all, with persistence.
    pub port: Option<u16>,
    /// The firewall mark (mark services).
    pub fwmark: Option<u32>,
    /// For fwmark services: "ipv4" (default) or "ipv6".
    pub family: Option<String>,
    /// ipvsadm's scheduler name.
    #[serde(default = "default_scheduler")]
    pub scheduler: String,
    /// `-b` names (`sh-port`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduler_flags: Vec<String>,
    /// `-p`, in seconds; absent = not persistent.
    pub persistence_timeout: Option<u32>,
    /// `-M`: a contiguous netmask or a prefix length.
    pub persistence_netmask: Option<String>,
    /// `-o` (UDP and mark services).
    #[serde(default, skip_serializing_if = "is_false")]
    pub one_packet: bool,
    /// FullNAT's local addresses (rvsadm `--laddr`, an RVS extension): the
    /// director's addresses its FullNAT real servers see connections come
    /// from. A group's apply to every member.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_addresses: Vec<IpAddr>,
    /// FullNAT: pass the client's address to the real servers in a TCP
    /// option (TOA, rvsadm `--toa`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub toa: bool,
    /// Health policy, keepalived's virtual_server keys; validated by
    /// rvs-health (see [`Service::health_table`]).
    pub delay_loop: Option<toml::Value>,
    /// See `delay_loop`.
    pub quorum: Option<toml::Value>,
    /// See `delay_loop`.
    pub hysteresis: Option<toml::Value>,
    /// See `delay_loop`.
    pub inhibit_on_failure: Option<toml::Value>,
    /// See `delay_loop`.
    pub alpha: Option<toml::Value>,
    /// See `delay_loop`.
    pub omega: Option<toml::Value>,
    /// See `delay_loop`.
    pub quorum_up: Option<toml::Value>,
    /// See `delay_loop`.
    pub quorum_down: Option<toml::Value>,
    /// `[service.sorry_server]`; see `delay_loop`.
    pub sorry_server: Option<toml::Value>,
    /// `[[service.member]]`: the group's virtual services (with `group`).
    #[serde(default, rename = "member", skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<GroupMember>,
    /// `[[service.real_server]]`, in the order they are added.
    #[serde(default, rename = "real_server", skip_serializing_if = "Vec::is_empty")]
    pub real_servers: Vec<RealServer>,
}

/// `[[service.member]]`: one virtual service of a group, either protocol,
/// address and port, or fwmark (and family), as a `[[service]]` names its
/// own.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMember {
    /// TCP or UDP (address members).
    pub protocol: Option<Protocol>,
    /// The VIP (address members).
    pub address: Option<IpAddr>,
    /// The virtual port (address members); 0 = all, with persistence.
    pub port: Option<u16>,
    /// The firewall mark (mark members).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<u32>,
    /// For fwmark members: "ipv4" (default) or "ipv6".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
}

/// `[[service.real_server]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServer {
    /// Its address.
    pub address: IpAddr,
    /// Its port; absent = the service's.
    pub port: Option<u16>,
    /// Relative weight (default 1); 0 quiesces it.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// `dr` (default, as ipvsadm -g), `nat` or `tun`.
    #[serde(default, with = "crate::short_name")]
    pub method: ForwardMethod,
    /// With `method = "tun"`: `ipip` (default), `gue` or `gre`
    /// (ipvsadm's `--tun-type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tun_type: Option<String>,
    /// With `tun_type = "gue"`, required: the real server's GUE port
    /// (`--tun-port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tun_port: Option<u16>,
    /// With `gue` or `gre`: `nocsum` (default), `csum`, or `remcsum` (GUE
    /// only), ipvsadm's `--tun-nocsum | --tun-csum | --tun-remcsum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tun_checksum: Option<crate::TunnelChecksum>,
    /// `-x`; absent or 0 = none.
    pub upper_threshold: Option<u32>,
    /// `-y`; absent or 0 = none.
    pub lower_threshold: Option<u32>,
    /// Overrides the service's `inhibit_on_failure`.
    pub inhibit_on_failure: Option<bool>,
    /// Command run when the server's checks bring it up (keepalived's
    /// notify_up), validated by rvs-health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_up: Option<String>,
    /// Command run when its checks take it down (keepalived's notify_down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_down: Option<String>,
    /// `[[service.real_server.check]]` tables, validated by rvs-health.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub check: Vec<toml::Value>,
}

impl Default for Service {
    /// A service with nothing written but the default scheduler: a writer
    /// fills in either protocol, address and port, or fwmark.
    fn default() -> Self {
        Service {
            group: None,
            protocol: None,
            address: None,
            port: None,
            fwmark: None,
            family: None,
            scheduler: default_scheduler(),
            scheduler_flags: Vec::new(),
            persistence_timeout: None,
            persistence_netmask: None,
            one_packet: false,
            local_addresses: Vec::new(),
            toa: false,
            delay_loop: None,
            quorum: None,
            hysteresis: None,
            inhibit_on_failure: None,
            alpha: None,
            omega: None,
            quorum_up: None,
            quorum_down: None,
            sorry_server: None,
            members: Vec::new(),
            real_servers: Vec::new(),
        }
    }
}

impl RealServer {
    /// Its tunnel, from `tun_type`, `tun_port` and `tun_checksum` with
    /// ipvsadm's rules ([`crate::Tunnel::from_parts`]); IPIP when none is
    /// written. The keys are refused on a server not forwarded by tunnel.
    pub fn tunnel(&self) -> Result<crate::Tunnel, crate::tunnel::TunnelError> {
        let written =
            self.tun_type.is_some() || self.tun_port.is_some() || self.tun_checksum.is_some();
        if self.method != ForwardMethod::Tunnel {
            return if written {
                Err(crate::tunnel::TunnelError::NotTunnelMethod)
            } else {
                Ok(crate::Tunnel::Ipip)
            };
        }
        crate::Tunnel::from_parts(
            self.tun_type.as_deref().unwrap_or("ipip"),
            self.tun_port,
            self.tun_checksum,
        )
    }

    /// A real server at `address` with the file's defaults (weight 1, DR).
    pub fn new(address: IpAddr) -> Self {
        RealServer {
            address,
            port: None,
            weight: default_weight(),
            method: ForwardMethod::default(),
            tun_type: None,
            tun_port: None,
            tun_checksum: None,
            upper_threshold: None,
            lower_threshold: None,
            inhibit_on_failure: None,
            notify_up: None,
            notify_down: None,
            check: Vec::new(),
        }
    }
}

/// `local_port_range = [first, last]`: two ports, written as a TOML array
/// so the file reads as the kernel's `ip_local_port_range` does; anything
/// else is refused with the form to write. Whether the first is at most
/// the last is the engine's to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange(pub u16, pub u16);

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        [self.0, self.1].serialize(s)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let refuse = |what: String| {
            serde::de::Error::custom(format!(
                "local_port_range: {what}; write two ports, the first at most the last, e.g. [1024, 32767]"
            ))
        };
        let value = toml::Value::deserialize(d)?;
        let toml::Value::Array(items) = &value else {
            return Err(refuse(format!("{value} is not a list")));
        };
        let ports = items
            .iter()
            .map(|v| match v {
                toml::Value::Integer(n) => {
                    u16::try_from(*n).map_err(|_| refuse(format!("{n} is not a port (0 to 65535)")))
                }
                other => Err(refuse(format!("{other} is not a port number"))),
            })
            .collect::<Result<Vec<u16>, D::Error>>()?;
        match ports[..] {
            [lo, hi] => Ok(PortRange(lo, hi)),
            _ => Err(refuse(format!("{} ports given", ports.len()))),
        }
    }
}

fn default_scheduler() -> String {
    crate::sched::DEFAULT.into()
}

fn default_weight() -> u32 {
    1
}

fn is_false(b: &bool) -> bool {
    !b
}

impl Config {
    /// Parses a file's text; errors carry the TOML location.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The line (1-based) of the `i`th `[[service]]` in `text`, the text
    /// this was parsed from; 0 if there is no such service.
    pub fn service_line(&self, text: &str, i: usize) -> usize {
        self.services.get(i).map_or(0, |s| {
            text[..s.span().start.min(text.len())].matches('\n').count() + 1
        })
    }
}

impl Service {
    /// The health-policy keys written for this service, as the one table
    /// rvs-health's `ServiceHealthSpec` reads.
    pub fn health_table(&self) -> toml::Table {
        [
            ("delay_loop", &self.delay_loop),
            ("quorum", &self.quorum),
            ("hysteresis", &self.hysteresis),
            ("inhibit_on_failure", &self.inhibit_on_failure),
            ("alpha", &self.alpha),
            ("omega", &self.omega),
            ("quorum_up", &self.quorum_up),
            ("quorum_down", &self.quorum_down),
            ("sorry_server", &self.sorry_server),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_what_a_writer_leaves_out() {
        let c = Config::parse(
            "interfaces = [\"eth0\"]\n\n[[service]]\nprotocol = \"udp\"\naddress = \"10.0.0.1\"\nport = 53\n  [[service.real_server]]\n  address = \"10.0.0.2\"\n",
        )
        .unwrap();
        let text = "interfaces = [\"eth0\"]\n\n[[service]]\n";
        assert_eq!(Config::parse(text).unwrap().service_line(text, 0), 3);
        let s = c.services[0].get_ref();
        assert_eq!(s.scheduler, crate::sched::DEFAULT);
        assert_eq!(s.protocol, Some(Protocol::Udp));
        let r = &s.real_servers[0];
        assert_eq!(
            (r.weight, r.method, r.port),
            (1, ForwardMethod::Route, None)
        );
        let back = toml::to_string(&c).unwrap();
        assert_eq!(
            back,
            "interfaces = [\"eth0\"]\n\n[[service]]\nprotocol = \"udp\"\naddress = \"10.0.0.1\"\nport = 53\nscheduler = \"wlc\"\n\n[[service.real_server]]\naddress = \"10.0.0.2\"\nweight = 1\nmethod = \"dr\"\n"
        );
        assert_eq!(Config::parse(&back).unwrap().services, c.services);
    }

    #[test]
    fn tunnel_keys_read_with_ipvsadm_s_rules() {
        let rs = |keys: &str| {
            let c = Config::parse(&format!(
                "[[service]]\nfwmark = 1\n[[service.real_server]]\naddress = \"10.0.0.2\"\n{keys}\n"
            ))
            .unwrap();
            c.services[0].get_ref().real_servers[0].tunnel()
        };
        assert_eq!(
            rs("method = \"tun\"\ntun_type = \"gue\"\ntun_port = 6080\ntun_checksum = \"remcsum\""),
            Ok(crate::Tunnel::Gue {
                port: 6080,
                checksum: crate::TunnelChecksum::Remcsum
            })
        );
        assert_eq!(rs("method = \"tun\""), Ok(crate::Tunnel::Ipip));
        assert_eq!(rs("method = \"dr\""), Ok(crate::Tunnel::Ipip));
        let e = rs("method = \"dr\"\ntun_type = \"gre\"").unwrap_err();
        assert!(e.to_string().contains("need method = \"tun\""), "{e}");
        let e = rs("method = \"tun\"\ntun_type = \"gue\"").unwrap_err();
        assert!(e.to_string().contains("--tun-port"), "{e}");
        let e = Config::parse(
            "[[service]]\nfwmark = 1\n[[service.real_server]]\naddress = \"10.0.0.2\"\ntun_checksum = \"yes\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nocsum"), "{e}");
    }

    #[test]
    fn methods_in_the_file_s_words_and_unknown_keys_refused() {
        let c = Config::parse(
            "[[service]]\nfwmark = 1\n[[service.real_server]]\naddress = \"10.0.0.2\"\nmethod = \"tun\"\n",
        )
        .unwrap();
        let s = c.services[0].get_ref();
        assert_eq!(s.real_servers[0].method, ForwardMethod::Tunnel);
        let e = Config::parse(
            "[[service]]\nfwmark = 1\n[[service.real_server]]\naddress = \"10.0.0.2\"\nmethod = \"route\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown variant `route`, expected one of `dr`, `nat`, `tun`"),
            "{e}"
        );
        let e = Config::parse("max_conections = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_conections"), "{e}");
    }

    #[test]
    fn fullnat_keys_read_and_write_back_and_a_bad_port_range_says_the_form() {
        let text = "local_port_range = [2000, 3000]\n\n[[service]]\nprotocol = \"tcp\"\n\
                    address = \"10.0.0.1\"\nport = 80\nscheduler = \"rr\"\n\
                    local_addresses = [\"10.0.2.200\", \"10.0.2.201\"]\ntoa = true\n\n\
                    [[service.real_server]]\naddress = \"10.0.2.2\"\nweight = 1\nmethod = \"fullnat\"\n";
        let c = Config::parse(text).unwrap();
        assert_eq!(c.local_port_range, Some(PortRange(2000, 3000)));
        let s = c.services[0].get_ref();
        assert_eq!(
            s.local_addresses,
            [
                "10.0.2.200".parse::<IpAddr>().unwrap(),
                "10.0.2.201".parse().unwrap()
            ]
        );
        assert!(s.toa);
        assert_eq!(s.real_servers[0].method, ForwardMethod::FullNat);
        assert_eq!(
            toml::to_string(&c).unwrap(),
            format!("interfaces = []\n{text}")
        );
        // Left out when unset.
        let plain = Config::parse("[[service]]\nfwmark = 1\n").unwrap();
        assert_eq!(plain.local_port_range, None);
        let back = toml::to_string(&plain).unwrap();
        assert!(!back.contains("local_") && !back.contains("toa"), "{back}");
        for (bad, why) in [
            ("[1024]", "1 ports given"),
            ("[1, 2, 3]", "3 ports given"),
            ("[1024, 70000]", "70000 is not a port"),
            ("\"1024-32767\"", "is not a list"),
            ("[1024, \"x\"]", "is not a port number"),
        ] {
            let e = Config::parse(&format!("local_port_range = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(why) && e.contains("e.g. [1024, 32767]"),
                "{bad}: {e}"
            );
        }
        let e = Config::parse(
            "[[service]]\ngroup = \"g\"\n[[service.member]]\nfwmark = 3\ntoa = true\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `toa`"), "{e}");
    }

    #[test]
    fn a_group_s_members_read_and_write_back() {
        let text = "[[service]]\ngroup = \"web\"\nscheduler = \"rr\"\n\n\
                    [[service.member]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1\"\nport = 80\n\n\
                    [[service.member]]\nfwmark = 3\nfamily = \"ipv6\"\n\n\
                    [[service.real_server]]\naddress = \"10.0.0.2\"\nweight = 1\nmethod = \"dr\"\n";
        let c = Config::parse(text).unwrap();
        let s = c.services[0].get_ref();
        assert_eq!(s.group.as_deref(), Some("web"));
        assert_eq!(s.members.len(), 2);
        assert_eq!(s.members[0].protocol, Some(Protocol::Tcp));
        assert_eq!(
            (s.members[1].fwmark, s.members[1].family.as_deref()),
            (Some(3), Some("ipv6"))
        );
        assert_eq!(
            toml::to_string(&c).unwrap(),
            format!("interfaces = []\n\n{text}")
        );
        let e = Config::parse("[[service]]\ngroup = \"g\"\n[[service.member]]\nmark = 3\n")
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `mark`"), "{e}");
    }

    #[test]
    fn health_keys_gather_into_one_table() {
        let c = Config::parse(
            "[[service]]\nfwmark = 1\nquorum = 2\nalpha = true\n[service.sorry_server]\naddress = \"10.0.0.9\"\n",
        )
        .unwrap();
        let t = c.services[0].get_ref().health_table();
        let keys: Vec<&str> = t.keys().map(String::as_str).collect();
        assert_eq!(keys, ["quorum", "alpha", "sorry_server"]);
        assert_eq!(t["quorum"].as_integer(), Some(2));
    }

    #[test]
    fn sysctl_table_takes_switches_by_the_kernel_s_names() {
        let base = "interfaces = [\"eth0\"]\n";
        assert_eq!(Config::parse(base).unwrap().sysctl, None);
        let c = Config::parse(&format!(
            "{base}[sysctl]\nsloppy_tcp = 1\nsloppy_sctp = 0\n"
        ))
        .unwrap();
        assert_eq!(
            c.sysctl,
            Some(Sysctl {
                sloppy_tcp: Some(Switch(true)),
                sloppy_sctp: Some(Switch(false)),
                sync_persist_mode: None,
            })
        );
        let c = Config::parse(&format!("{base}[sysctl]\nsloppy_tcp = true\n")).unwrap();
        assert_eq!(c.sysctl.unwrap().sloppy_tcp, Some(Switch(true)));
        for (bad, says) in [
            ("sloppy_tcp = 2", "use 0 (off) or 1 (on)"),
            ("sloppy_tcp = -1", "use 0 (off) or 1 (on)"),
            ("sloppy_tcp = \"yes\"", "0 (off) or 1 (on)"),
            ("sloppy_udp = 1", "sloppy_udp"),
            ("drop_entry = 1", "drop_entry"),
        ] {
            let e = Config::parse(&format!("{base}[sysctl]\n{bad}\n")).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
        // Written back as the kernel writes it.
        let text = toml::to_string(&c.sysctl.unwrap()).unwrap();
        assert_eq!(text, "sloppy_tcp = 1\n");
    }
}
