//! Per-protocol connection state: one file per protocol, as in the kernel's
//! `ip_vs_proto_<name>.c`.

pub mod tcp;
pub mod udp;

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
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp: tcp::DEFAULT_TIMEOUTS,
            udp: udp::DEFAULT_TIMEOUT,
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
}
