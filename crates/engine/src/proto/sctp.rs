//! The IPVS SCTP state machine (ip_vs_proto_sctp.c), as constant tables:
//! transitions per direction × event × state, timeouts and names per state.
//!
//! As for TCP, IPVS follows an association loosely, from the first chunk
//! of each packet (an ABORT bundled after a COOKIE ECHO or COOKIE ACK
//! counts instead: RFC 4960 §3.3.7), and only uses the state for a timeout
//! and to count the association as active (ESTABLISHED) or inactive. The
//! states are the real server's as seen from the director; INIT1,
//! REJECTED and the COOKIE_* states exist for their timeouts.

use super::Direction;

/// IPVS SCTP association states, in the kernel's numbering (what the sync
/// protocol carries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SctpState {
    /// Just created, nothing seen yet.
    None = 0,
    /// The client's first INIT, waiting for the server's INIT ACK.
    Init1,
    /// A further INIT from the client.
    Init,
    /// The server's INIT ACK sent, waiting for the client's COOKIE ECHO.
    CookieSent,
    /// The client's COOKIE ECHO sent, waiting for the server's COOKIE ACK.
    CookieReplied,
    /// The server's INIT sent (it opens toward the client).
    CookieWait,
    /// The client's INIT ACK to it sent.
    Cookie,
    /// The server's COOKIE ECHO sent.
    CookieEchoed,
    /// Data flowing.
    Established,
    /// The server's SHUTDOWN sent.
    ShutdownSent,
    /// The client's SHUTDOWN seen.
    ShutdownReceived,
    /// A SHUTDOWN ACK sent.
    ShutdownAckSent,
    /// The INIT was answered with an ABORT.
    Rejected,
    /// Closed (SHUTDOWN COMPLETE, ABORT).
    Closed,
}

use SctpState::{
    Closed as sCL, Cookie as sCO, CookieEchoed as sCE, CookieReplied as sCR, CookieSent as sCS,
    CookieWait as sCW, Established as sES, Init as sIN, Init1 as sI1, None as sNO, Rejected as sRJ,
    ShutdownAckSent as sSA, ShutdownReceived as sSR, ShutdownSent as sSS,
};

impl SctpState {
    /// Number of states.
    pub const COUNT: usize = 14;

    /// Every state in kernel order.
    pub const ALL: [SctpState; Self::COUNT] = [
        sNO, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL,
    ];

    /// The name `ipvsadm -Lc` prints.
    pub const fn name(self) -> &'static str {
        NAMES[self as usize]
    }

    /// From the kernel's number.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(usize::from(v)).copied()
    }
}

const NAMES: [&str; SctpState::COUNT] = [
    "NONE",
    "INIT1",
    "INIT",
    "C-SENT",
    "C-REPLIED",
    "C-WAIT",
    "COOKIE",
    "C-ECHOED",
    "ESTABLISHED",
    "S-SENT",
    "S-RECEIVED",
    "S-ACK-SENT",
    "REJECTED",
    "CLOSED",
];

/// The kernel's longest retransmission timeout plus a second: how long
/// the handshake and shutdown states wait.
const MAX_RTO: u32 = 60 + 1;

/// Default timeouts in seconds, indexed by state (not settable with
/// `ipvsadm --set`, which covers TCP and UDP only).
pub const DEFAULT_TIMEOUTS: [u32; SctpState::COUNT] = [
    2,       // NONE
    3 + 1,   // INIT1: a dropped first INIT is forgotten quickly
    MAX_RTO, // INIT
    MAX_RTO, // COOKIE_SENT
    MAX_RTO, // COOKIE_REPLIED
    MAX_RTO, // COOKIE_WAIT
    MAX_RTO, // COOKIE
    MAX_RTO, // COOKIE_ECHOED
    15 * 60, // ESTABLISHED
    MAX_RTO, // SHUTDOWN_SENT
    MAX_RTO, // SHUTDOWN_RECEIVED
    MAX_RTO, // SHUTDOWN_ACK_SENT
    3 + 1,   // REJECTED
    MAX_RTO, // CLOSED
];

/// What a packet means to the state machine: its first chunk's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Event {
    /// DATA, SACK, HEARTBEAT(-ACK), ECNE, CWR and any unknown chunk.
    Data = 0,
    /// INIT.
    Init,
    /// INIT ACK.
    InitAck,
    /// COOKIE ECHO.
    CookieEcho,
    /// COOKIE ACK.
    CookieAck,
    /// SHUTDOWN.
    Shutdown,
    /// SHUTDOWN ACK.
    ShutdownAck,
    /// SHUTDOWN COMPLETE.
    ShutdownComplete,
    /// ERROR.
    Error,
    /// ABORT.
    Abort,
}

/// Number of events.
const EVENTS: usize = 10;

/// Chunk type numbers (RFC 4960 §3.2) the state machine tells apart.
pub mod chunk {
    /// INIT.
    pub const INIT: u8 = 1;
    /// INIT ACK.
    pub const INIT_ACK: u8 = 2;
    /// ABORT.
    pub const ABORT: u8 = 6;
    /// SHUTDOWN.
    pub const SHUTDOWN: u8 = 7;
    /// SHUTDOWN ACK.
    pub const SHUTDOWN_ACK: u8 = 8;
    /// ERROR.
    pub const ERROR: u8 = 9;
    /// COOKIE ECHO.
    pub const COOKIE_ECHO: u8 = 10;
    /// COOKIE ACK.
    pub const COOKIE_ACK: u8 = 11;
    /// SHUTDOWN COMPLETE.
    pub const SHUTDOWN_COMPLETE: u8 = 14;
}

impl Event {
    /// The event of a packet whose first chunk has type `first`; `then` is
    /// the type of the chunk bundled after a COOKIE ECHO or COOKIE ACK, if
    /// the packet holds one (an ABORT there wins, as in the kernel).
    pub fn of_chunks(first: u8, then: Option<u8>) -> Self {
        let kind = match first {
            chunk::COOKIE_ECHO | chunk::COOKIE_ACK if then == Some(chunk::ABORT) => chunk::ABORT,
            t => t,
        };
        match kind {
            chunk::INIT => Event::Init,
            chunk::INIT_ACK => Event::InitAck,
            chunk::ABORT => Event::Abort,
            chunk::SHUTDOWN => Event::Shutdown,
            chunk::SHUTDOWN_ACK => Event::ShutdownAck,
            chunk::ERROR => Event::Error,
            chunk::COOKIE_ECHO => Event::CookieEcho,
            chunk::COOKIE_ACK => Event::CookieAck,
            chunk::SHUTDOWN_COMPLETE => Event::ShutdownComplete,
            _ => Event::Data,
        }
    }
}

type Row = [SctpState; SctpState::COUNT];

/// Transitions `[direction * EVENTS + event][state]`; directions input,
/// output, input-only; events in [`Event`] order.
const TRANSITIONS: [Row; 3 * EVENTS] = [
    // INPUT
    /*d  */
    [
        sES, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*i  */
    [
        sI1, sIN, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sIN, sIN,
    ],
    /*i_a*/
    [
        sCW, sCW, sCW, sCS, sCR, sCO, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*c_e*/
    [
        sCR, sIN, sIN, sCR, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*c_a*/
    [
        sES, sI1, sIN, sCS, sCR, sCW, sCO, sES, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*s  */
    [
        sSR, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sSR, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*s_a*/
    [
        sCL, sIN, sIN, sCS, sCR, sCW, sCO, sCE, sES, sCL, sSR, sCL, sRJ, sCL,
    ],
    /*s_c*/
    [
        sCL, sCL, sCL, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sCL, sRJ, sCL,
    ],
    /*err*/
    [
        sCL, sI1, sIN, sCS, sCR, sCW, sCO, sCL, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*ab */
    [
        sCL, sCL, sCL, sCL, sCL, sRJ, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
    ],
    // OUTPUT
    /*d  */
    [
        sES, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*i  */
    [
        sCW, sCW, sCW, sCW, sCW, sCW, sCW, sCW, sES, sCW, sCW, sCW, sCW, sCW,
    ],
    /*i_a*/
    [
        sCS, sCS, sCS, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*c_e*/
    [
        sCE, sCE, sCE, sCE, sCE, sCE, sCE, sCE, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*c_a*/
    [
        sES, sES, sES, sES, sES, sES, sES, sES, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*s  */
    [
        sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*s_a*/
    [
        sSA, sSA, sSA, sSA, sSA, sCW, sCO, sCE, sES, sSA, sSA, sSA, sRJ, sCL,
    ],
    /*s_c*/
    [
        sCL, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*err*/
    [
        sCL, sCL, sCL, sCL, sCL, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*ab */
    [
        sCL, sRJ, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
    ],
    // INPUT-ONLY
    /*d  */
    [
        sES, sI1, sIN, sCS, sCR, sES, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*i  */
    [
        sI1, sIN, sIN, sIN, sIN, sIN, sCO, sCE, sES, sSS, sSR, sSA, sIN, sIN,
    ],
    /*i_a*/
    [
        sCE, sCE, sCE, sCE, sCE, sCE, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*c_e*/
    [
        sES, sES, sES, sES, sES, sES, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*c_a*/
    [
        sES, sI1, sIN, sES, sES, sCW, sES, sES, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*s  */
    [
        sSR, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sSR, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*s_a*/
    [
        sCL, sIN, sIN, sCS, sCR, sCW, sCO, sCE, sCL, sCL, sSR, sCL, sRJ, sCL,
    ],
    /*s_c*/
    [
        sCL, sCL, sCL, sCL, sCL, sCW, sCO, sCE, sES, sSS, sCL, sCL, sRJ, sCL,
    ],
    /*err*/
    [
        sCL, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL,
    ],
    /*ab */
    [
        sCL, sCL, sCL, sCL, sCL, sRJ, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
    ],
];

/// The next state after a packet of `event` in `dir`.
pub fn next_state(state: SctpState, dir: Direction, event: Event) -> SctpState {
    let off = match dir {
        Direction::Input => 0,
        Direction::Output => EVENTS,
        Direction::InputOnly => 2 * EVENTS,
    };
    TRANSITIONS[off + event as usize][state as usize]
}

/// Whether an association in `state` is half-open: its handshake is not
/// complete (evictable first when the table is full, as for TCP).
pub fn half_open(state: SctpState) -> bool {
    matches!(state, sNO | sI1 | sIN | sCS | sCR | sCW | sCO | sCE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's table as it is laid out in ip_vs_proto_sctp.c (a row
    /// per event, a column per state), read back through [`next_state`].
    const KERNEL: &str = "\
INPUT
d   sES sI1 sIN sCS sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL
i   sI1 sIN sIN sCS sCR sCW sCO sCE sES sSS sSR sSA sIN sIN
i_a sCW sCW sCW sCS sCR sCO sCO sCE sES sSS sSR sSA sRJ sCL
c_e sCR sIN sIN sCR sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL
c_a sES sI1 sIN sCS sCR sCW sCO sES sES sSS sSR sSA sRJ sCL
s   sSR sI1 sIN sCS sCR sCW sCO sCE sSR sSS sSR sSA sRJ sCL
s_a sCL sIN sIN sCS sCR sCW sCO sCE sES sCL sSR sCL sRJ sCL
s_c sCL sCL sCL sCS sCR sCW sCO sCE sES sSS sSR sCL sRJ sCL
err sCL sI1 sIN sCS sCR sCW sCO sCL sES sSS sSR sSA sRJ sCL
ab  sCL sCL sCL sCL sCL sRJ sCL sCL sCL sCL sCL sCL sCL sCL
OUTPUT
d   sES sI1 sIN sCS sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL
i   sCW sCW sCW sCW sCW sCW sCW sCW sES sCW sCW sCW sCW sCW
i_a sCS sCS sCS sCS sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL
c_e sCE sCE sCE sCE sCE sCE sCE sCE sES sSS sSR sSA sRJ sCL
c_a sES sES sES sES sES sES sES sES sES sSS sSR sSA sRJ sCL
s   sSS sSS sSS sSS sSS sSS sSS sSS sSS sSS sSR sSA sRJ sCL
s_a sSA sSA sSA sSA sSA sCW sCO sCE sES sSA sSA sSA sRJ sCL
s_c sCL sI1 sIN sCS sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL
err sCL sCL sCL sCL sCL sCW sCO sCE sES sSS sSR sSA sRJ sCL
ab  sCL sRJ sCL sCL sCL sCL sCL sCL sCL sCL sCL sCL sCL sCL
INPUT-ONLY
d   sES sI1 sIN sCS sCR sES sCO sCE sES sSS sSR sSA sRJ sCL
i   sI1 sIN sIN sIN sIN sIN sCO sCE sES sSS sSR sSA sIN sIN
i_a sCE sCE sCE sCE sCE sCE sCO sCE sES sSS sSR sSA sRJ sCL
c_e sES sES sES sES sES sES sCO sCE sES sSS sSR sSA sRJ sCL
c_a sES sI1 sIN sES sES sCW sES sES sES sSS sSR sSA sRJ sCL
s   sSR sI1 sIN sCS sCR sCW sCO sCE sSR sSS sSR sSA sRJ sCL
s_a sCL sIN sIN sCS sCR sCW sCO sCE sCL sCL sSR sCL sRJ sCL
s_c sCL sCL sCL sCL sCL sCW sCO sCE sES sSS sCL sCL sRJ sCL
err sCL sI1 sIN sCS sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL
ab  sCL sCL sCL sCL sCL sRJ sCL sCL sCL sCL sCL sCL sCL sCL";

    fn short(s: &str) -> SctpState {
        let names = [
            "sNO", "sI1", "sIN", "sCS", "sCR", "sCW", "sCO", "sCE", "sES", "sSS", "sSR", "sSA",
            "sRJ", "sCL",
        ];
        let i = names.iter().position(|n| *n == s).expect("a state name");
        SctpState::ALL[i]
    }

    #[test]
    fn every_cell_matches_the_kernel_table() {
        let events = [
            ("d", Event::Data),
            ("i", Event::Init),
            ("i_a", Event::InitAck),
            ("c_e", Event::CookieEcho),
            ("c_a", Event::CookieAck),
            ("s", Event::Shutdown),
            ("s_a", Event::ShutdownAck),
            ("s_c", Event::ShutdownComplete),
            ("err", Event::Error),
            ("ab", Event::Abort),
        ];
        let mut dir = Direction::Input;
        let mut cells = 0;
        for line in KERNEL.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f[0] {
                "INPUT" => dir = Direction::Input,
                "OUTPUT" => dir = Direction::Output,
                "INPUT-ONLY" => dir = Direction::InputOnly,
                name => {
                    let ev = events.iter().find(|(n, _)| *n == name).expect("an event").1;
                    assert_eq!(f.len(), 1 + SctpState::COUNT, "{line}");
                    for (from, to) in SctpState::ALL.iter().zip(&f[1..]) {
                        assert_eq!(
                            next_state(*from, dir, ev),
                            short(to),
                            "{dir:?} {name} from {from:?}"
                        );
                        cells += 1;
                    }
                }
            }
        }
        assert_eq!(cells, 3 * EVENTS * SctpState::COUNT);
    }

    #[test]
    fn chunks_map_to_events_and_a_bundled_abort_wins() {
        assert_eq!(Event::of_chunks(0, None), Event::Data);
        assert_eq!(Event::of_chunks(3, None), Event::Data, "SACK");
        assert_eq!(Event::of_chunks(4, None), Event::Data, "HEARTBEAT");
        assert_eq!(Event::of_chunks(200, None), Event::Data, "unknown");
        assert_eq!(Event::of_chunks(chunk::INIT, None), Event::Init);
        assert_eq!(
            Event::of_chunks(chunk::COOKIE_ECHO, None),
            Event::CookieEcho
        );
        assert_eq!(
            Event::of_chunks(chunk::COOKIE_ECHO, Some(0)),
            Event::CookieEcho
        );
        assert_eq!(
            Event::of_chunks(chunk::COOKIE_ECHO, Some(chunk::ABORT)),
            Event::Abort
        );
        assert_eq!(
            Event::of_chunks(chunk::COOKIE_ACK, Some(chunk::ABORT)),
            Event::Abort
        );
        assert_eq!(
            Event::of_chunks(0, Some(chunk::ABORT)),
            Event::Data,
            "only after cookies"
        );
        assert_eq!(
            Event::of_chunks(chunk::SHUTDOWN_COMPLETE, None),
            Event::ShutdownComplete
        );
    }

    #[test]
    fn a_nat_association_opens_and_closes() {
        use Direction::{Input as I, Output as O};
        let mut s = sNO;
        for (dir, ev, want) in [
            (I, Event::Init, sI1),
            (O, Event::InitAck, sCS),
            (I, Event::CookieEcho, sCR),
            (O, Event::CookieAck, sES),
            (I, Event::Data, sES),
            (O, Event::Data, sES),
            (I, Event::Shutdown, sSR),
            (O, Event::ShutdownAck, sSA),
            (I, Event::ShutdownComplete, sCL),
        ] {
            s = next_state(s, dir, ev);
            assert_eq!(s, want, "{dir:?} {ev:?}");
        }
    }

    #[test]
    fn names_and_timeouts_line_up() {
        assert_eq!(sES.name(), "ESTABLISHED");
        assert_eq!(sCS.name(), "C-SENT");
        assert_eq!(DEFAULT_TIMEOUTS[sES as usize], 900);
        assert_eq!(DEFAULT_TIMEOUTS[sI1 as usize], 4);
        assert_eq!(DEFAULT_TIMEOUTS[sCL as usize], 61);
        for (i, s) in SctpState::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(SctpState::from_u8(i as u8), Some(*s));
        }
        assert_eq!(SctpState::from_u8(14), None);
        assert!(half_open(sI1) && half_open(sCE) && !half_open(sES) && !half_open(sCL));
    }
}
