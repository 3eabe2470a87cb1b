//! The words every RVS crate shares, defined once: the transport
//! [`Protocol`] of a service, the [`ForwardMethod`] of a real server,
//! scheduler names and `-b` flags ([`sched`]), the IPVS sysctls RVS takes
//! ([`sysctl`]), and rvsd's configuration-file schema ([`schema`], feature
//! `schema`).
//!
//! The engine, the control API, rvsd, rvsadm and rvs-migrate all speak these
//! types, so no crate translates one crate's `Tcp` into another's. The crate
//! sits below every other and needs nothing but `thiserror`: the engine uses
//! it without features and stays free of serde; feature `serde` adds the
//! control API's JSON spelling, feature `schema` the TOML file types.
#![forbid(unsafe_code)]

pub mod sched;
#[cfg(feature = "schema")]
pub mod schema;
pub mod sync;
pub mod sysctl;
pub mod tunnel;

pub use sync::{SyncDaemon, SyncRole};
pub use tunnel::{Tunnel, TunnelChecksum};

/// Transport protocol of a virtual service; IPVS keys services by it.
///
/// JSON and TOML spell it `tcp` / `udp` / `sctp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Protocol {
    /// TCP (`-t`): connection state follows the IPVS TCP state machine.
    Tcp,
    /// UDP (`-u`): connections are flows that expire after the UDP timeout.
    Udp,
    /// SCTP (`--sctp-service`): associations follow the IPVS SCTP state
    /// machine (`ip_vs_proto_sctp.c`).
    Sctp,
}

impl Protocol {
    /// Every protocol, in ipvsadm's order.
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// The IP protocol number (6, 17, 132), what packets and the XDP maps
    /// carry.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// From an IP protocol number, for the protocols services can use.
    pub const fn from_number(n: u8) -> Option<Self> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Upper-case name as ipvsadm prints it in listings (`TCP`).
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// From ipvsadm's (and keepalived's) upper-case name.
    pub fn from_name(name: &str) -> Option<Self> {
        Protocol::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Lower-case name, as the configuration file and the API spell it.
    pub const fn short_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// How a packet reaches a real server (ipvsadm `-g`, `-m`, `-i`; IPVS's
/// "forwarding method").
///
/// The control API spells it `route` / `masq` / `tunnel` (its JSON is
/// stable); the configuration file and keepalived say `dr` / `nat` / `tun`
/// ([`ForwardMethod::short_name`], [`short_name`] for serde).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum ForwardMethod {
    /// Direct routing (DR, `-g`, ipvsadm's default): only the MAC changes;
    /// the server holds the VIP.
    #[default]
    Route,
    /// NAT (`-m`): destination address and port rewritten; replies come
    /// back through the director.
    Masq,
    /// Tunnel (TUN, `-i`): wrapped in an outer IP header to the server,
    /// IPIP, GUE or GRE as the destination's [`Tunnel`] says.
    Tunnel,
    /// FullNAT (an RVS extension, as DPVS and Alibaba's LVS have it): both
    /// ends rewritten, the client becoming one of the service's local
    /// addresses and a port allocated for the connection, so replies come
    /// back to the director from a server in any routed network, which
    /// needs neither the director as gateway nor the VIP.
    FullNat,
}

impl ForwardMethod {
    /// Every method, in ipvsadm's order.
    pub const ALL: [ForwardMethod; 4] = [
        ForwardMethod::Route,
        ForwardMethod::Masq,
        ForwardMethod::Tunnel,
        ForwardMethod::FullNat,
    ];

    /// The word ipvsadm prints in the `Forward` column (`Route`).
    pub const fn name(self) -> &'static str {
        match self {
            ForwardMethod::Route => "Route",
            ForwardMethod::Masq => "Masq",
            ForwardMethod::Tunnel => "Tunnel",
            ForwardMethod::FullNat => "FullNat",
        }
    }

    /// The configuration file's word (`dr`, `nat`, `tun`, `fullnat`);
    /// keepalived's `lvs_method` in lower case (it has no FullNAT).
    pub const fn short_name(self) -> &'static str {
        match self {
            ForwardMethod::Route => "dr",
            ForwardMethod::Masq => "nat",
            ForwardMethod::Tunnel => "tun",
            ForwardMethod::FullNat => "fullnat",
        }
    }

    /// Whether the director rewrites addresses and the server's replies
    /// come back through it (NAT and FullNAT): the server's port may differ
    /// from the service's, and replies are tracked.
    pub const fn translates(self) -> bool {
        matches!(self, ForwardMethod::Masq | ForwardMethod::FullNat)
    }

    /// From the configuration file's word.
    pub fn from_short_name(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.short_name() == word)
    }
}

/// Serde in the configuration file's words (`dr`, `nat`, `tun`), for
/// `#[serde(with = "rvs_vocab::short_name")]` on a [`ForwardMethod`] field:
/// the file and the control API spell one type two ways.
#[cfg(feature = "serde")]
pub mod short_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::ForwardMethod;

    /// Writes the method's short name.
    pub fn serialize<S: Serializer>(m: &ForwardMethod, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.short_name())
    }

    /// Reads a short name; anything else is refused with the words allowed,
    /// as a derived enum would.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ForwardMethod, D::Error> {
        let word = std::borrow::Cow::<str>::deserialize(d)?;
        ForwardMethod::from_short_name(&word).ok_or_else(|| {
            const WORDS: [&str; 4] = ["dr", "nat", "tun", "fullnat"];
            serde::de::Error::unknown_variant(&word, &WORDS)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_numbers_and_names_round_trip() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_number(p.number()), Some(p));
            assert_eq!(Protocol::from_name(p.name()), Some(p));
        }
        assert_eq!(Protocol::ALL.map(Protocol::number), [6, 17, 132]);
        assert_eq!(Protocol::from_number(1), None);
        assert_eq!(Protocol::from_name("ICMP"), None);
        assert_eq!(
            Protocol::from_name("sctp"),
            None,
            "upper case, as ipvsadm prints"
        );
    }

    #[test]
    fn method_words_round_trip_and_route_is_the_default() {
        for m in ForwardMethod::ALL {
            assert_eq!(ForwardMethod::from_short_name(m.short_name()), Some(m));
        }
        assert_eq!(ForwardMethod::default(), ForwardMethod::Route);
        assert_eq!(ForwardMethod::from_short_name("route"), None);
    }
}
