//! Connection sync with other directors over UDP multicast, in the
//! kernel's IPVS format (rvs_wire::ipvs_sync), so an RVS director and a
//! kernel IPVS director can back each other up.
//!
//! - **Master:** a UDP socket bound to the sync interface's address, its
//!   multicast interface, TTL and loop set as the kernel's, connected to
//!   the group. The group's family is the socket's, as the kernel's
//!   `mcast_af`: an IPv6 group (`ff02::…`) syncs over IPv6 multicast,
//!   from the interface by index without binding an address (as the
//!   kernel's `make_send_sock`); there is no default IPv6 group. The worker owns it ([`MasterOut`]): after each batch it
//!   drains the engine's entries into datagrams of at most `maxlen` bytes,
//!   sends the full ones and, every second, the partial one.
//! - **Backup:** a thread receiving on the group and port (joined on the
//!   sync interface), decoding and filtering by sync id; what it decodes
//!   goes to the worker, which installs it in its engine.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rvs_vocab::SyncDaemon;
use rvs_wire::ipvs_sync::{decode, Encoder, SyncConn};

use crate::worker::WorkerCommand;

/// A partial datagram waits at most this long (the kernel: 2 s).
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// IPv4 and UDP headers: what the MTU leaves for a datagram's payload.
const IP_UDP_HEADERS: u16 = 28;
/// IPv6 and UDP headers, for an IPv6 group.
const IP6_UDP_HEADERS: u16 = 48;

/// What the backup thread saw, for the listing's counters.
#[derive(Debug, Default)]
pub(crate) struct BackupStats {
    pub(crate) datagrams: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) other_syncid: AtomicU64,
    pub(crate) skipped_entries: AtomicU64,
    pub(crate) entries: AtomicU64,
}

/// The sync interface as the kernel tells it: index, MTU and first IPv4
/// address (`None` if it has none; only an IPv4 master needs one).
fn interface(name: &str) -> io::Result<(Option<Ipv4Addr>, u32, u16)> {
    let i = crate::kernel::interface(name).map_err(|e| io::Error::other(format!("{e:#}")))?;
    let addr = i.addrs.iter().find_map(|(a, _)| match a {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    });
    Ok((addr, i.index.0, i.mtu))
}

/// The datagram size limit: the setting, or the MTU less the headers of
/// the group's family.
fn maxlen(d: &SyncDaemon, mtu: u16) -> u16 {
    let headers = match d.group() {
        IpAddr::V4(_) => IP_UDP_HEADERS,
        IpAddr::V6(_) => IP6_UDP_HEADERS,
    };
    d.sync_maxlen
        .unwrap_or(mtu.saturating_sub(headers))
        .max(256)
}

/// The group's socket address; an IPv6 one scoped to the interface, which
/// a link-local group (`ff02::`) needs.
fn group_addr(d: &SyncDaemon, ifindex: u32) -> SocketAddr {
    match d.group() {
        IpAddr::V4(g) => SocketAddrV4::new(g, d.port()).into(),
        IpAddr::V6(g) => SocketAddrV6::new(g, d.port(), 0, ifindex).into(),
    }
}

/// The master's socket for an IPv4 group: bound to the interface's
/// address (the kernel's `bind_mcastif_addr`).
fn master_socket_v4(name: &str, addr: Option<Ipv4Addr>, d: &SyncDaemon) -> io::Result<UdpSocket> {
    let addr =
        addr.ok_or_else(|| io::Error::other(format!("{name} has no IPv4 address to sync from")))?;
    let socket = UdpSocket::bind(SocketAddrV4::new(addr, 0))?;
    let s2 = socket2::SockRef::from(&socket);
    s2.set_multicast_if_v4(&addr)?;
    s2.set_multicast_ttl_v4(u32::from(d.ttl()))?;
    s2.set_multicast_loop_v4(false)?;
    Ok(socket)
}

/// The master's socket for an IPv6 group: out of the interface by index,
/// hop limit the TTL, no loop, no address bound (as the kernel's).
fn master_socket_v6(ifindex: u32, d: &SyncDaemon) -> io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    s.set_only_v6(true)?;
    s.set_multicast_if_v6(ifindex)?;
    s.set_multicast_hops_v6(u32::from(d.ttl()))?;
    s.set_multicast_loop_v6(false)?;
    s.bind(&SocketAddr::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0)).into())?;
    Ok(s.into())
}

/// The master's side, owned by the worker.
pub(crate) struct MasterOut {
    socket: UdpSocket,
    encoder: Encoder,
    last_flush: Instant,
    /// When to ask for refresh rounds (`sync_refresh_period`, `sync_retries`).
    refresh: Option<RefreshSchedule>,
    /// The engine's packet counting (`sync_threshold`).
    pub(crate) threshold: rvs_vocab::sync::SyncThreshold,
    /// Datagrams sent, and those the socket refused.
    pub(crate) sent: u64,
    pub(crate) send_errors: u64,
}

impl MasterOut {
    /// Opens the master's socket for `d`; returns it with the size limit.
    pub(crate) fn open(d: &SyncDaemon) -> io::Result<(MasterOut, u16)> {
        let (addr, ifindex, mtu) = interface(&d.mcast_interface)?;
        let socket = match d.group() {
            IpAddr::V4(_) => master_socket_v4(&d.mcast_interface, addr, d)?,
            IpAddr::V6(_) => master_socket_v6(ifindex, d)?,
        };
        socket.connect(group_addr(d, ifindex))?;
        socket.set_nonblocking(true)?;
        let maxlen = maxlen(d, mtu);
        Ok((
            MasterOut {
                socket,
                encoder: Encoder::new(d.syncid, usize::from(maxlen)),
                last_flush: Instant::now(),
                refresh: d.sync_refresh_period.map(|s| {
                    RefreshSchedule::new(
                        Duration::from_secs(u64::from(s)),
                        d.sync_retries.unwrap_or(0),
                        Instant::now(),
                    )
                }),
                threshold: d.threshold(),
                sent: 0,
                send_errors: 0,
            },
            maxlen,
        ))
    }

    /// Adds one entry; sends the datagram it completes.
    pub(crate) fn push(&mut self, c: &SyncConn) {
        if let Some(d) = self.encoder.push(c) {
            self.send(&d);
        }
    }

    /// Which refresh round is due, if any: a `sync_refresh_period` ended,
    /// or one of its `sync_retries` came. The worker then asks the
    /// activity of every forwarded connection, and the engine sends the
    /// live ones again (a retry: those active since the previous round).
    pub(crate) fn refresh_due(&mut self) -> Option<Round> {
        self.refresh.as_mut().and_then(|r| r.due(Instant::now()))
    }

    /// Sends the partial datagram if it waited long enough.
    pub(crate) fn tick(&mut self) {
        if self.last_flush.elapsed() < FLUSH_EVERY {
            return;
        }
        self.last_flush = Instant::now();
        if let Some(d) = self.encoder.flush() {
            self.send(&d);
        }
    }

    fn send(&mut self, d: &[u8]) {
        match self.socket.send(d) {
            Ok(_) => self.sent += 1,
            Err(e) => {
                self.send_errors += 1;
                if self.send_errors % 1024 == 1 {
                    tracing::warn!(error = %e, "sending a sync datagram failed");
                }
            }
        }
    }
}

/// The backup's receiving thread.
pub(crate) struct Backup {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backup {
    /// Joins the group on `d`'s interface and starts receiving; decoded
    /// entries go to the worker. Returns it with the size limit.
    pub(crate) fn start(
        d: &SyncDaemon,
        worker: Sender<WorkerCommand>,
        stats: Arc<BackupStats>,
    ) -> io::Result<(Backup, u16)> {
        let (_, ifindex, mtu) = interface(&d.mcast_interface)?;
        let group = d.group();
        let domain = match group {
            IpAddr::V4(_) => socket2::Domain::IPV4,
            IpAddr::V6(_) => socket2::Domain::IPV6,
        };
        let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        s.set_reuse_address(true)?;
        if group.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.bind(&group_addr(d, ifindex).into())?;
        match group {
            IpAddr::V4(g) => {
                s.join_multicast_v4_n(&g, &socket2::InterfaceIndexOrAddress::Index(ifindex))?
            }
            IpAddr::V6(g) => s.join_multicast_v6(&g, ifindex)?,
        }
        let socket: UdpSocket = s.into();
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let syncid = d.syncid;
        let maxlen = maxlen(d, mtu);
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("rvs-sync-backup".into())
            .spawn(move || receive(&socket, syncid, &flag, &worker, &stats))?;
        tracing::info!(interface = %d.mcast_interface, %group, port = d.port(), syncid, "sync backup receiving");
        Ok((
            Backup {
                stop,
                thread: Some(thread),
            },
            maxlen,
        ))
    }
}

impl Drop for Backup {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn receive(
    socket: &UdpSocket,
    syncid: u8,
    stop: &AtomicBool,
    worker: &Sender<WorkerCommand>,
    stats: &BackupStats,
) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::warn!(error = %e, "receiving sync datagrams");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        stats.datagrams.fetch_add(1, Ordering::Relaxed);
        let d = match decode(&buf[..n]) {
            Ok(d) => d,
            Err(e) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "sync datagram dropped");
                continue;
            }
        };
        // As the kernel's backup: sync id 0 takes every master's.
        if syncid != 0 && d.syncid != syncid {
            stats.other_syncid.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if d.error.is_some() {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
        }
        stats
            .skipped_entries
            .fetch_add(d.skipped.len() as u64, Ordering::Relaxed);
        stats
            .entries
            .fetch_add(d.conns.len() as u64, Ordering::Relaxed);
        if !d.conns.is_empty() && worker.send(WorkerCommand::Synced(d.conns)).is_err() {
            return; // the worker has stopped
        }
    }
}

/// The sync daemons running, as the director keeps them.
#[derive(Default)]
pub(crate) struct Daemons {
    master: Option<(SyncDaemon, u16)>,
    backup: Option<(SyncDaemon, u16, Backup)>,
    pub(crate) stats: Arc<BackupStats>,
}

impl Daemons {
    /// `--start-daemon`: `worker` is the datapath's worker (none: rvsd has
    /// no interfaces, so nothing to sync).
    pub(crate) fn start(
        &mut self,
        d: SyncDaemon,
        worker: Option<&Sender<WorkerCommand>>,
    ) -> Result<(), rvs_api::ControlError> {
        use rvs_api::{ControlError, Entity};
        d.check().map_err(ControlError::bad_request)?;
        let running = match d.role {
            rvs_vocab::SyncRole::Master => self.master.is_some(),
            rvs_vocab::SyncRole::Backup => self.backup.is_some(),
        };
        if running {
            return Err(ControlError::Exists {
                what: Entity::SyncDaemon(d.role),
            });
        }
        let worker = worker.ok_or_else(|| {
            ControlError::bad_request(
                "rvsd runs without interfaces: there are no connections to sync",
            )
        })?;
        let cannot = |e: io::Error| {
            ControlError::bad_request(format!(
                "starting the {} sync daemon on {}: {e}",
                d.role.name(),
                d.mcast_interface
            ))
        };
        match d.role {
            rvs_vocab::SyncRole::Master => {
                let (out, maxlen) = MasterOut::open(&d).map_err(cannot)?;
                worker
                    .send(WorkerCommand::SyncMaster(Some(out)))
                    .map_err(|_| ControlError::internal("the worker has stopped"))?;
                tracing::info!(interface = %d.mcast_interface, syncid = d.syncid, maxlen, group = %d.group(), port = d.port(), "sync master sending");
                self.master = Some((d, maxlen));
            }
            rvs_vocab::SyncRole::Backup => {
                let (b, maxlen) =
                    Backup::start(&d, worker.clone(), Arc::clone(&self.stats)).map_err(cannot)?;
                self.backup = Some((d, maxlen, b));
            }
        }
        Ok(())
    }

    /// `--stop-daemon`.
    pub(crate) fn stop(
        &mut self,
        role: rvs_vocab::SyncRole,
        worker: Option<&Sender<WorkerCommand>>,
    ) -> Result<(), rvs_api::ControlError> {
        let gone = match role {
            rvs_vocab::SyncRole::Master => {
                let had = self.master.take().is_some();
                if had {
                    if let Some(w) = worker {
                        let _ = w.send(WorkerCommand::SyncMaster(None));
                    }
                }
                had
            }
            rvs_vocab::SyncRole::Backup => self.backup.take().is_some(),
        };
        if !gone {
            return Err(rvs_api::ControlError::NotFound {
                what: rvs_api::Entity::SyncDaemon(role),
            });
        }
        tracing::info!(role = role.name(), "sync daemon stopped");
        Ok(())
    }

    /// Runs exactly `want` (the configuration file's `[[sync_daemon]]`s):
    /// daemons whose settings changed are restarted.
    pub(crate) fn reconcile(
        &mut self,
        want: &[SyncDaemon],
        worker: Option<&Sender<WorkerCommand>>,
    ) -> Result<(), rvs_api::ControlError> {
        for role in [rvs_vocab::SyncRole::Master, rvs_vocab::SyncRole::Backup] {
            let have = self.settings(role);
            let wanted = want.iter().find(|d| d.role == role);
            if have == wanted {
                continue;
            }
            if have.is_some() {
                self.stop(role, worker)?;
            }
            if let Some(d) = wanted {
                self.start(d.clone(), worker)?;
            }
        }
        Ok(())
    }

    fn settings(&self, role: rvs_vocab::SyncRole) -> Option<&SyncDaemon> {
        match role {
            rvs_vocab::SyncRole::Master => self.master.as_ref().map(|m| &m.0),
            rvs_vocab::SyncRole::Backup => self.backup.as_ref().map(|b| &b.0),
        }
    }

    /// What `-L --daemon` lists.
    pub(crate) fn status(&self) -> Vec<rvs_api::SyncDaemonStatus> {
        let m = self.master.iter().map(|(d, l)| (d, *l));
        let b = self.backup.iter().map(|(d, l, _)| (d, *l));
        m.chain(b)
            .map(|(d, maxlen)| rvs_api::SyncDaemonStatus {
                daemon: d.clone(),
                maxlen,
            })
            .collect()
    }
}

/// A round of resending live connections to the backups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Round {
    /// Every `sync_refresh_period`: every live connection.
    Refresh,
    /// A `sync_retries` round: those with traffic since the previous round.
    Retry,
}

/// The rounds of `sync_refresh_period` and its `sync_retries`, as the
/// kernel spaces them: a round every period, and after each up to
/// `retries` more, period / 8 apart (the kernel resends a connection
/// whose last sync was at least that long ago, at most `retries` times
/// per period, against lost datagrams).
#[derive(Debug)]
struct RefreshSchedule {
    period: Duration,
    retries: u8,
    /// The last full round, and the last round of either kind.
    round: Instant,
    last: Instant,
    retries_left: u8,
}

impl RefreshSchedule {
    fn new(period: Duration, retries: u8, now: Instant) -> Self {
        Self {
            period,
            retries,
            round: now,
            last: now,
            retries_left: 0,
        }
    }

    /// The round due at `now`, if any (it is then counted as done).
    fn due(&mut self, now: Instant) -> Option<Round> {
        if now.duration_since(self.round) >= self.period {
            self.round = now;
            self.last = now;
            self.retries_left = self.retries;
            return Some(Round::Refresh);
        }
        if self.retries_left > 0 && now.duration_since(self.last) >= self.period / 8 {
            self.retries_left -= 1;
            self.last = now;
            return Some(Round::Retry);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rounds a schedule asks for over `span`, polled every 100 ms, as
    /// offsets in whole 100 ms steps.
    fn rounds(period_ms: u64, retries: u8, span_ms: u64) -> Vec<u64> {
        let t0 = Instant::now();
        let mut s = RefreshSchedule::new(Duration::from_millis(period_ms), retries, t0);
        (1..=span_ms / 100)
            .filter_map(|i| {
                let round = s.due(t0 + Duration::from_millis(i * 100))?;
                // Every period a full round, a retry otherwise.
                assert_eq!(round == Round::Refresh, i % (period_ms / 100) == 0, "{i}");
                Some(i)
            })
            .collect()
    }

    #[test]
    fn refresh_rounds_come_every_period_and_retries_every_eighth_after_each() {
        // 8 s period: rounds at 8 s and 16 s; no retries.
        assert_eq!(rounds(8000, 0, 17_000), vec![80, 160]);
        // Two retries, 1 s apart, after each round, never before the first.
        assert_eq!(rounds(8000, 2, 17_000), vec![80, 90, 100, 160, 170]);
        // Three, the kernel's most.
        assert_eq!(rounds(8000, 3, 12_000), vec![80, 90, 100, 110]);
    }

    fn daemon(group: Option<&str>) -> SyncDaemon {
        SyncDaemon {
            role: rvs_vocab::SyncRole::Master,
            mcast_interface: "eth1".into(),
            syncid: 7,
            sync_maxlen: None,
            mcast_group: group.map(|g| g.parse().unwrap()),
            mcast_port: None,
            mcast_ttl: None,
            sync_refresh_period: None,
            sync_retries: None,
            sync_threshold: None,
        }
    }

    #[test]
    fn the_group_s_family_sets_the_headers_and_the_address() {
        let v4 = daemon(None);
        assert_eq!(maxlen(&v4, 1500), 1472);
        assert_eq!(group_addr(&v4, 3), "224.0.0.81:8848".parse().unwrap());
        let v6 = daemon(Some("ff02::8:81"));
        assert_eq!(maxlen(&v6, 1500), 1452, "IPv6 + UDP headers are 48 bytes");
        match group_addr(&v6, 3) {
            SocketAddr::V6(a) => {
                assert_eq!((a.ip().to_string(), a.port()), ("ff02::8:81".into(), 8848));
                assert_eq!(
                    a.scope_id(),
                    3,
                    "a link-local group is scoped to the interface"
                );
            }
            other => panic!("{other}"),
        }
        let set = SyncDaemon {
            sync_maxlen: Some(9000),
            ..v6
        };
        assert_eq!(maxlen(&set, 1500), 9000);
    }
}
