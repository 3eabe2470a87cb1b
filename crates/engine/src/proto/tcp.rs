//! The IPVS TCP state machine (ip_vs_proto_tcp.c), as constant tables:
//! transitions per direction × flag × state, timeouts and names per state.
//!
//! IPVS tracks TCP loosely: it sees one or both directions, never verifies
//! sequence numbers, and only uses the state to pick a timeout and to count
//! a connection as active (ESTABLISHED) or inactive (all others).
//!
//! The tables are the kernel's since `sloppy_tcp` was added: an ACK on a
//! connection in NONE — one just created by a mid-flow segment under
//! sloppy scheduling — makes it ESTABLISHED (older kernels: CLOSE).
//! Without sloppy_tcp a connection leaves NONE with the SYN that created
//! it, so only a backup's synced entry in NONE sees the difference too.

use super::Direction;

/// IPVS TCP connection states, in the kernel's numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    /// Just created, nothing seen yet.
    None = 0,
    /// Data flowing.
    Established,
    /// SYN from the real server seen (NAT).
    SynSent,
    /// SYN from the client seen.
    SynRecv,
    /// FIN seen.
    FinWait,
    /// Both sides closed.
    TimeWait,
    /// Reset or closed.
    Close,
    /// Client sent FIN first.
    CloseWait,
    /// Waiting for the last ACK.
    LastAck,
    /// Listening (FTP data, unused by the data path).
    Listen,
    /// SYN+ACK (secure_tcp tables only).
    SynAck,
}

use TcpState::{
    Close as sCL, CloseWait as sCW, Established as sES, FinWait as sFW, LastAck as sLA,
    Listen as sLI, None as sNO, SynAck as sSA, SynRecv as sSR, SynSent as sSS, TimeWait as sTW,
};

impl TcpState {
    /// Number of states.
    pub const COUNT: usize = 11;

    /// Every state in kernel order.
    pub const ALL: [TcpState; Self::COUNT] =
        [sNO, sES, sSS, sSR, sFW, sTW, sCL, sCW, sLA, sLI, sSA];

    /// The name `ipvsadm -Lc` prints.
    pub const fn name(self) -> &'static str {
        NAMES[self as usize]
    }

    /// From the kernel's number.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(usize::from(v)).copied()
    }
}

const NAMES: [&str; TcpState::COUNT] = [
    "NONE",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "SYNACK",
];

/// Default timeouts in seconds, indexed by state.
pub const DEFAULT_TIMEOUTS: [u32; TcpState::COUNT] = [
    2,       // NONE
    15 * 60, // ESTABLISHED
    2 * 60,  // SYN_SENT
    60,      // SYN_RECV
    2 * 60,  // FIN_WAIT
    2 * 60,  // TIME_WAIT
    10,      // CLOSE
    60,      // CLOSE_WAIT
    30,      // LAST_ACK
    2 * 60,  // LISTEN
    120,     // SYNACK
];

type Row = [TcpState; TcpState::COUNT];

/// Transitions `[direction * 4 + flag][state]`; flags in the order syn, fin,
/// ack, rst; directions input, output, input-only.
const TRANSITIONS: [Row; 12] = [
    // INPUT
    /*syn*/ [sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR],
    /*fin*/ [sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW],
    /*ack*/ [sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES],
    /*rst*/ [sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR],
    // OUTPUT
    /*syn*/ [sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR],
    /*fin*/ [sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW],
    /*ack*/ [sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES],
    /*rst*/ [sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL],
    // INPUT-ONLY
    /*syn*/ [sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR],
    /*fin*/ [sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW],
    /*ack*/ [sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES],
    /*rst*/ [sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL],
];

/// The secure table (the kernel's `tcp_states_dos`), used while the
/// `secure_tcp` defence is active: an ACK from the client alone does not
/// establish a connection it saw no SYN+ACK for (INPUT ack on SYN_RECV
/// stays SYN_RECV); the server's SYN+ACK moves SYN_RECV to SYNACK; a
/// DR/TUN SYN starts in SYNACK; a FIN or ACK from the client on SYNACK
/// changes nothing; so a NAT connection is ESTABLISHED only once the
/// three-way handshake was seen from both sides.
const SECURE_TRANSITIONS: [Row; 12] = [
    // INPUT
    /*syn*/ [sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSA],
    /*fin*/ [sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sSA],
    /*ack*/ [sES, sES, sSS, sSR, sFW, sTW, sCL, sCW, sCL, sLI, sSA],
    /*rst*/ [sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL],
    // OUTPUT
    /*syn*/ [sSS, sES, sSS, sSA, sSS, sSS, sSS, sSS, sSS, sLI, sSA],
    /*fin*/ [sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW],
    /*ack*/ [sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES],
    /*rst*/ [sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL],
    // INPUT-ONLY
    /*syn*/ [sSA, sES, sES, sSR, sSA, sSA, sSA, sSA, sSA, sSA, sSA],
    /*fin*/ [sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW],
    /*ack*/ [sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES],
    /*rst*/ [sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL],
];

/// TCP header flags the state machine looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// SYN.
    pub syn: bool,
    /// FIN.
    pub fin: bool,
    /// ACK.
    pub ack: bool,
    /// RST.
    pub rst: bool,
}

/// Row offset for a flag combination: RST wins, then SYN, FIN, ACK; a
/// segment with none of them changes nothing (`None`).
fn flag_index(f: Flags) -> Option<usize> {
    if f.rst {
        Some(3)
    } else if f.syn {
        Some(0)
    } else if f.fin {
        Some(1)
    } else if f.ack {
        Some(2)
    } else {
        None
    }
}

/// The next state after a segment with `flags` in `dir`.
///
/// As in the kernel, a segment without any of SYN/FIN/ACK/RST moves the
/// connection to CLOSE.
pub fn next_state(state: TcpState, dir: Direction, flags: Flags) -> TcpState {
    next_state_in(false, state, dir, flags)
}

/// As [`next_state`], from the secure table (the `secure_tcp` defence)
/// when `secure`.
pub fn next_state_in(secure: bool, state: TcpState, dir: Direction, flags: Flags) -> TcpState {
    let table = if secure {
        &SECURE_TRANSITIONS
    } else {
        &TRANSITIONS
    };
    let Some(flag) = flag_index(flags) else {
        return TcpState::Close;
    };
    let off = match dir {
        Direction::Input => 0,
        Direction::Output => 4,
        Direction::InputOnly => 8,
    };
    table[off + flag][state as usize]
}

/// Whether a connection in `state` is half-open: its handshake is not
/// complete, so it carries no data yet and may be evicted when the table
/// is full (a real client retransmits its SYN).
pub fn half_open(state: TcpState) -> bool {
    matches!(
        state,
        TcpState::None | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck
    )
}

/// Whether a SYN for an existing connection in `state` starts a new
/// connection (the kernel's `conn_reuse_mode` 1: TIME_WAIT and CLOSE).
pub fn syn_reuses(state: TcpState) -> bool {
    matches!(state, TcpState::TimeWait | TcpState::Close)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: Flags = Flags {
        syn: true,
        fin: false,
        ack: false,
        rst: false,
    };
    const FIN: Flags = Flags {
        syn: false,
        fin: true,
        ack: false,
        rst: false,
    };
    const ACK: Flags = Flags {
        syn: false,
        fin: false,
        ack: true,
        rst: false,
    };
    const RST: Flags = Flags {
        syn: false,
        fin: false,
        ack: false,
        rst: true,
    };

    /// Every cell of the kernel table, written out independently of
    /// TRANSITIONS as (direction, flag, from-state name, to-state name).
    #[test]
    fn every_cell_matches_the_kernel_table() {
        let kernel = "\
I syn NO SR ES ES SS ES SR SR FW SR TW SR CL SR CW SR LA SR LI SR SA SR
I fin NO CL ES CW SS SS SR TW FW TW TW TW CL CL CW CW LA LA LI LI SA TW
I ack NO ES ES ES SS SS SR ES FW FW TW TW CL CL CW CW LA CL LI LI SA ES
I rst NO CL ES CL SS CL SR SR FW CL TW CL CL CL CW CL LA LA LI LI SA SR
O syn NO SS ES ES SS SS SR SR FW SS TW SS CL SS CW SS LA SS LI LI SA SR
O fin NO TW ES FW SS SS SR TW FW FW TW TW CL CL CW TW LA LA LI LI SA TW
O ack NO ES ES ES SS SS SR ES FW FW TW TW CL CL CW CW LA LA LI ES SA ES
O rst NO CL ES CL SS SS SR CL FW CL TW TW CL CL CW CL LA CL LI CL SA CL
X syn NO SR ES ES SS ES SR SR FW SR TW SR CL SR CW SR LA SR LI SR SA SR
X fin NO CL ES FW SS SS SR TW FW FW TW TW CL CL CW CW LA LA LI LI SA TW
X ack NO ES ES ES SS SS SR ES FW FW TW TW CL CL CW CW LA CL LI LI SA ES
X rst NO CL ES CL SS CL SR SR FW CL TW CL CL CL CW CL LA LA LI LI SA CL";
        let short = |s: &str| match s {
            "NO" => sNO,
            "ES" => sES,
            "SS" => sSS,
            "SR" => sSR,
            "FW" => sFW,
            "TW" => sTW,
            "CL" => sCL,
            "CW" => sCW,
            "LA" => sLA,
            "LI" => sLI,
            "SA" => sSA,
            other => panic!("bad state {other}"),
        };
        let mut cells = 0;
        for line in kernel.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dir = match f[0] {
                "I" => Direction::Input,
                "O" => Direction::Output,
                _ => Direction::InputOnly,
            };
            let flags = match f[1] {
                "syn" => SYN,
                "fin" => FIN,
                "ack" => ACK,
                _ => RST,
            };
            for pair in f[2..].chunks(2) {
                assert_eq!(
                    next_state(short(pair[0]), dir, flags),
                    short(pair[1]),
                    "{line}: {} -> {}",
                    pair[0],
                    pair[1]
                );
                cells += 1;
            }
        }
        assert_eq!(cells, 12 * TcpState::COUNT);
    }

    /// Every cell of the kernel's secure (`tcp_states_dos`) table, written
    /// out independently of SECURE_TRANSITIONS.
    #[test]
    fn every_secure_cell_matches_the_kernel_dos_table() {
        let kernel = "\
I syn NO SR ES ES SS ES SR SR FW SR TW SR CL SR CW SR LA SR LI SR SA SA
I fin NO CL ES CW SS SS SR TW FW TW TW TW CL CL CW CW LA LA LI LI SA SA
I ack NO ES ES ES SS SS SR SR FW FW TW TW CL CL CW CW LA CL LI LI SA SA
I rst NO CL ES CL SS CL SR SR FW CL TW CL CL CL CW CL LA LA LI LI SA CL
O syn NO SS ES ES SS SS SR SA FW SS TW SS CL SS CW SS LA SS LI LI SA SA
O fin NO TW ES FW SS SS SR TW FW FW TW TW CL CL CW TW LA LA LI LI SA TW
O ack NO ES ES ES SS SS SR ES FW FW TW TW CL CL CW CW LA LA LI ES SA ES
O rst NO CL ES CL SS SS SR CL FW CL TW TW CL CL CW CL LA CL LI CL SA CL
X syn NO SA ES ES SS ES SR SR FW SA TW SA CL SA CW SA LA SA LI SA SA SA
X fin NO CL ES FW SS SS SR TW FW FW TW TW CL CL CW CW LA LA LI LI SA TW
X ack NO ES ES ES SS SS SR ES FW FW TW TW CL CL CW CW LA CL LI LI SA ES
X rst NO CL ES CL SS CL SR SR FW CL TW CL CL CL CW CL LA LA LI LI SA CL";
        assert_eq!(check_table(kernel, true), 12 * TcpState::COUNT);
    }

    /// Checks every `from to` pair of a written-out table; returns the cells.
    fn check_table(table: &str, secure: bool) -> usize {
        let short = |s: &str| match s {
            "NO" => sNO,
            "ES" => sES,
            "SS" => sSS,
            "SR" => sSR,
            "FW" => sFW,
            "TW" => sTW,
            "CL" => sCL,
            "CW" => sCW,
            "LA" => sLA,
            "LI" => sLI,
            "SA" => sSA,
            other => panic!("bad state {other}"),
        };
        let mut cells = 0;
        for line in table.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dir = match f[0] {
                "I" => Direction::Input,
                "O" => Direction::Output,
                _ => Direction::InputOnly,
            };
            let flags = match f[1] {
                "syn" => SYN,
                "fin" => FIN,
                "ack" => ACK,
                _ => RST,
            };
            for pair in f[2..].chunks(2) {
                assert_eq!(
                    next_state_in(secure, short(pair[0]), dir, flags),
                    short(pair[1]),
                    "secure={secure} {line}: {} -> {}",
                    pair[0],
                    pair[1]
                );
                cells += 1;
            }
        }
        cells
    }

    #[test]
    fn secure_nat_handshake_needs_both_sides() {
        // Client SYN, then a client ACK without the server's SYN+ACK: the
        // normal table establishes, the secure one does not.
        let s = next_state_in(true, sNO, Direction::Input, SYN);
        assert_eq!(s, sSR);
        assert_eq!(next_state_in(false, s, Direction::Input, ACK), sES);
        assert_eq!(next_state_in(true, s, Direction::Input, ACK), sSR);
        // With the server's SYN+ACK (a SYN in the table's terms) and its ACK.
        let s = next_state_in(true, s, Direction::Output, SYN);
        assert_eq!(s, sSA);
        assert_eq!(next_state_in(true, s, Direction::Input, ACK), sSA);
        assert_eq!(next_state_in(true, s, Direction::Output, ACK), sES);
        assert!(half_open(sSA) && half_open(sSR) && half_open(sNO) && half_open(sSS));
        assert!(!half_open(sES) && !half_open(sFW) && !half_open(sTW) && !half_open(sCL));
    }

    #[test]
    fn rst_wins_over_other_flags_and_no_flags_close() {
        let synrst = Flags {
            syn: true,
            rst: true,
            ..Flags::default()
        };
        assert_eq!(next_state(sES, Direction::Input, synrst), sCL);
        let finack = Flags {
            fin: true,
            ack: true,
            ..Flags::default()
        };
        assert_eq!(next_state(sES, Direction::Output, finack), sFW);
        assert_eq!(next_state(sES, Direction::Input, Flags::default()), sCL);
    }

    #[test]
    fn a_dr_handshake_and_close() {
        let mut s = sNO;
        for (flags, want) in [(SYN, sSR), (ACK, sES), (ACK, sES), (FIN, sFW), (ACK, sFW)] {
            s = next_state(s, Direction::InputOnly, flags);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn names_and_timeouts_line_up() {
        assert_eq!(sES.name(), "ESTABLISHED");
        assert_eq!(sSA.name(), "SYNACK");
        assert_eq!(DEFAULT_TIMEOUTS[sES as usize], 900);
        assert_eq!(DEFAULT_TIMEOUTS[sNO as usize], 2);
        for (i, s) in TcpState::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(TcpState::from_u8(i as u8), Some(*s));
        }
        assert_eq!(TcpState::from_u8(11), None);
    }
}
