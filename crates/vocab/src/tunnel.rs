//! The encapsulation of a TUN real server (ipvsadm 1.31's `--tun-type`,
//! the kernel's `IP_VS_CONN_F_TUNNEL_TYPE_*` since 5.2): IPIP, GUE (UDP to
//! a port of the real server) or GRE, with the checksum choice of
//! `--tun-nocsum | --tun-csum | --tun-remcsum`.
//!
//! One type for every layer: the engine chooses the headers from it, the
//! control API and the file carry it, rvsadm parses and lists it.

/// Which tunnel wraps packets to a TUN real server, with its settings.
///
/// Only the combinations ipvsadm accepts can be written: a port and
/// remote checksum offload only for GUE, checksums not for IPIP
/// ([`Tunnel::validate`] checks the rest: port 1..=65535, no remote
/// checksum offload for GRE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case", deny_unknown_fields)
)]
pub enum Tunnel {
    /// IP in IP (protocol 4 for IPv4, 41 for IPv6): `-i` alone.
    #[default]
    Ipip,
    /// Generic UDP Encapsulation (GUE version 0) to `port` of the server.
    Gue {
        /// The real server's GUE (`fou`) port, `--tun-port`.
        port: u16,
        /// The UDP checksum choice.
        checksum: TunnelChecksum,
    },
    /// GRE (protocol 47, RFC 2784) carrying the inner packet's EtherType.
    Gre {
        /// The GRE checksum choice (`remcsum` is refused).
        checksum: TunnelChecksum,
    },
}

/// The tunnel checksum choice, the kernel's `IP_VS_TUNNEL_ENCAP_FLAG_*`
/// values as ipvsadm numbers them (0, 1, 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum TunnelChecksum {
    /// `--tun-nocsum` (the default): UDP checksum 0, no GRE checksum.
    #[default]
    Nocsum,
    /// `--tun-csum`: a full UDP or GRE checksum.
    Csum,
    /// `--tun-remcsum` (GUE only): remote checksum offload. The kernel
    /// adds the option only to packets whose inner checksum is still to
    /// be finished (`CHECKSUM_PARTIAL`); a forwarded packet is complete,
    /// so the director sends it like `csum`.
    Remcsum,
}

/// The tunnel types, in ipvsadm's order (its `tunnames` table).
pub const TUNNEL_TYPES: [&str; 3] = ["ipip", "gue", "gre"];

impl TunnelChecksum {
    /// Every choice, in the kernel's numbering.
    pub const ALL: [TunnelChecksum; 3] = [
        TunnelChecksum::Nocsum,
        TunnelChecksum::Csum,
        TunnelChecksum::Remcsum,
    ];

    /// The word after `--tun-` (`nocsum`), also the file's and the API's.
    pub const fn name(self) -> &'static str {
        match self {
            TunnelChecksum::Nocsum => "nocsum",
            TunnelChecksum::Csum => "csum",
            TunnelChecksum::Remcsum => "remcsum",
        }
    }

    /// From [`TunnelChecksum::name`].
    pub fn from_name(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == word)
    }

    /// The flag as ipvsadm's `--tun-info` lists it (`-c`, `+c`, `r+c`).
    pub const fn listing(self) -> &'static str {
        match self {
            TunnelChecksum::Nocsum => "-c",
            TunnelChecksum::Csum => "+c",
            TunnelChecksum::Remcsum => "r+c",
        }
    }

    /// Whether the tunnel header carries a checksum: the kernel sums the
    /// UDP datagram for `csum` and `remcsum` (`ip_vs_tunnel_xmit`), the
    /// GRE packet for `csum`.
    pub const fn summed(self) -> bool {
        !matches!(self, TunnelChecksum::Nocsum)
    }
}

/// A tunnel setting ipvsadm would refuse, with its words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// GUE to port 0.
    #[error("GUE tunnels need a port 1..65535 (--tun-port, tun_port)")]
    NoPort,
    /// `remcsum` on GRE.
    #[error("remote checksum offload (--tun-remcsum) is for GUE tunnels only; use csum or nocsum with GRE")]
    RemcsumOnGre,
    /// A type other than ipip, gue, gre.
    #[error("unknown tunnel type `{0}'; write ipip, gue or gre")]
    UnknownType(String),
    /// A port for a type without one.
    #[error("a tunnel port is for GUE tunnels only; drop it for {0}")]
    PortWithoutGue(&'static str),
    /// Tunnel settings on a server that is not forwarded by tunnel.
    #[error("tunnel settings (tun_type, tun_port, tun_checksum) need method = \"tun\"")]
    NotTunnelMethod,
    /// A checksum choice for IPIP.
    #[error("IPIP tunnels have no checksum choice; drop it or use gue or gre")]
    ChecksumOnIpip,
}

impl Tunnel {
    /// The type's word (`ipip`, `gue`, `gre`).
    pub const fn type_name(self) -> &'static str {
        match self {
            Tunnel::Ipip => "ipip",
            Tunnel::Gue { .. } => "gue",
            Tunnel::Gre { .. } => "gre",
        }
    }

    /// The checksum choice; IPIP has none (`nocsum`, as the kernel's 0).
    pub const fn checksum(self) -> TunnelChecksum {
        match self {
            Tunnel::Ipip => TunnelChecksum::Nocsum,
            Tunnel::Gue { checksum, .. } | Tunnel::Gre { checksum } => checksum,
        }
    }

    /// Builds a tunnel from separately written parts (the file's
    /// `tun_type`, `tun_port`, `tun_checksum`) with ipvsadm's rules: a
    /// port is required for GUE and refused otherwise, a checksum choice is
    /// refused for IPIP, remote checksum offload is GUE's only.
    pub fn from_parts(
        type_name: &str,
        port: Option<u16>,
        checksum: Option<TunnelChecksum>,
    ) -> Result<Tunnel, TunnelError> {
        let tunnel = match type_name {
            "ipip" if checksum.is_some() => return Err(TunnelError::ChecksumOnIpip),
            "ipip" => Tunnel::Ipip,
            "gue" => Tunnel::Gue {
                port: port.ok_or(TunnelError::NoPort)?,
                checksum: checksum.unwrap_or_default(),
            },
            "gre" => Tunnel::Gre {
                checksum: checksum.unwrap_or_default(),
            },
            other => return Err(TunnelError::UnknownType(other.to_owned())),
        };
        if port.is_some() && !matches!(tunnel, Tunnel::Gue { .. }) {
            return Err(TunnelError::PortWithoutGue(tunnel.type_name()));
        }
        tunnel.validate()?;
        Ok(tunnel)
    }

    /// Refuses what ipvsadm refuses and the type cannot say by itself.
    pub fn validate(self) -> Result<(), TunnelError> {
        match self {
            Tunnel::Gue { port: 0, .. } => Err(TunnelError::NoPort),
            Tunnel::Gre {
                checksum: TunnelChecksum::Remcsum,
            } => Err(TunnelError::RemcsumOnGre),
            _ => Ok(()),
        }
    }

    /// ipvsadm 1.31's `--tun-info` column: `ipip`, `gue:6080:-c`, `gre:+c`.
    pub fn listing(self) -> String {
        match self {
            Tunnel::Ipip => "ipip".to_owned(),
            Tunnel::Gue { port, checksum } => format!("gue:{port}:{}", checksum.listing()),
            Tunnel::Gre { checksum } => format!("gre:{}", checksum.listing()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_are_ipvsadm_s() {
        assert_eq!(Tunnel::Ipip.listing(), "ipip");
        let gue = Tunnel::Gue {
            port: 6080,
            checksum: TunnelChecksum::Remcsum,
        };
        assert_eq!(gue.listing(), "gue:6080:r+c");
        let gre = Tunnel::Gre {
            checksum: TunnelChecksum::Csum,
        };
        assert_eq!(gre.listing(), "gre:+c");
        assert_eq!(Tunnel::default(), Tunnel::Ipip);
    }

    #[test]
    fn checksum_words_round_trip() {
        for c in TunnelChecksum::ALL {
            assert_eq!(TunnelChecksum::from_name(c.name()), Some(c));
        }
        assert_eq!(TunnelChecksum::from_name("csum6"), None);
        assert!(!TunnelChecksum::Nocsum.summed());
        assert!(TunnelChecksum::Remcsum.summed());
    }

    #[test]
    fn validate_refuses_what_ipvsadm_refuses() {
        let no_port = Tunnel::Gue {
            port: 0,
            checksum: TunnelChecksum::Nocsum,
        };
        assert_eq!(no_port.validate(), Err(TunnelError::NoPort));
        let gre = Tunnel::Gre {
            checksum: TunnelChecksum::Remcsum,
        };
        assert_eq!(gre.validate(), Err(TunnelError::RemcsumOnGre));
        assert_eq!(Tunnel::Ipip.validate(), Ok(()));
    }

    #[test]
    fn from_parts_follows_ipvsadm_s_table() {
        use TunnelChecksum::*;
        assert_eq!(Tunnel::from_parts("ipip", None, None), Ok(Tunnel::Ipip));
        assert_eq!(
            Tunnel::from_parts("gue", Some(6080), None),
            Ok(Tunnel::Gue {
                port: 6080,
                checksum: Nocsum
            })
        );
        assert_eq!(
            Tunnel::from_parts("gre", None, Some(Csum)),
            Ok(Tunnel::Gre { checksum: Csum })
        );
        assert_eq!(
            Tunnel::from_parts("gue", None, None),
            Err(TunnelError::NoPort)
        );
        assert_eq!(
            Tunnel::from_parts("gre", Some(1), None),
            Err(TunnelError::PortWithoutGue("gre"))
        );
        assert_eq!(
            Tunnel::from_parts("ipip", None, Some(Csum)),
            Err(TunnelError::ChecksumOnIpip)
        );
        assert_eq!(
            Tunnel::from_parts("gre", None, Some(Remcsum)),
            Err(TunnelError::RemcsumOnGre)
        );
        assert!(matches!(
            Tunnel::from_parts("vxlan", None, None),
            Err(TunnelError::UnknownType(_))
        ));
    }
}
