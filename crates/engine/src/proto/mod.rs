//! Per-protocol connection state: one file per protocol, as in the kernel's
//! `ip_vs_proto_<name>.c`.

pub mod sctp;
pub mod tcp;
pub mod udp;

pub use sctp::SctpState;
pub use tcp::TcpState;

/// Direction of a packet relative to the connection, as IPVS names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client → real server (through the director).
    Input,
    /// Real server → client (only seen for NAT).
    Output,
    /// Input on a connection whose replies bypass the director (DR, TUN).
    InputOnly,
}

/// Per-state timeouts in seconds, changeable with `ipvsadm --set`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Indexed by [`TcpState`].
    pub tcp: [u32; TcpState::COUNT],
    /// UDP "normal" state.
    pub udp: u32,
    /// Indexed by [`SctpState`] (the kernel's table; no `ipvsadm --set`).
    pub sctp: [u32; SctpState::COUNT],
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp: tcp::DEFAULT_TIMEOUTS,
            udp: udp::DEFAULT_TIMEOUT,
            sctp: sctp::DEFAULT_TIMEOUTS,
        }
    }
}

impl Timeouts {
    /// `ipvsadm --set tcp tcpfin udp`: ESTABLISHED, FIN_WAIT and UDP; 0 leaves
    /// a value unchanged.
    pub fn set(&mut self, tcp: u32, tcpfin: u32, udp: u32) {
        if tcp != 0 {
            self.tcp[TcpState::Established as usize] = tcp;
        }
        if tcpfin != 0 {
            self.tcp[TcpState::FinWait as usize] = tcpfin;
        }
        if udp != 0 {
            self.udp = udp;
        }
    }

    /// The timeout of a connection of IP protocol `proto` in `state` (UDP
    /// and any one-state protocol: the UDP timeout; an out-of-range state
    /// takes the last state's).
    pub fn for_state(&self, proto: u8, state: u8) -> u32 {
        let at = |table: &[u32]| table[usize::from(state).min(table.len() - 1)];
        match proto {
            rvs_wire::ip_proto::TCP => at(&self.tcp),
            rvs_wire::ip_proto::SCTP => at(&self.sctp),
            _ => self.udp,
        }
    }
}

/// The state number in which a connection of IP protocol `proto` counts as
/// active (TCP's and SCTP's ESTABLISHED); `None` for one-state protocols,
/// whose connections are never active (UDP).
pub(crate) fn established_state(proto: u8) -> Option<u8> {
    match proto {
        rvs_wire::ip_proto::TCP => Some(TcpState::Established as u8),
        rvs_wire::ip_proto::SCTP => Some(SctpState::Established as u8),
        _ => None,
    }
}

/// Whether `state` is a state number of IP protocol `proto` (one-state
/// protocols: 0).
pub(crate) fn valid_state(proto: u8, state: u8) -> bool {
    match proto {
        rvs_wire::ip_proto::TCP => TcpState::from_u8(state).is_some(),
        rvs_wire::ip_proto::SCTP => SctpState::from_u8(state).is_some(),
        _ => state == 0,
    }
}
