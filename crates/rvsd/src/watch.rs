//! Kernel facts kept current by event: rvsd follows the kernel's
//! notifications (rtnetlink multicast, [`kernel::Subscription`]) instead of
//! polling.
//!
//! - A neighbour notification updates the neighbour table at once; the
//!   worker gets a new [`NeighborTable`] (a new generation) after every
//!   batch of notifications that changed an entry on one of rvsd's
//!   interfaces.
//! - A link, address or route notification that concerns rvsd's interfaces
//!   (or a route it uses) starts a short delay ([`DEBOUNCE`]: one change
//!   often comes as several notifications); then the interfaces' facts and
//!   the routes are read again and handed to the director, which applies
//!   them as a reload applies a configuration: validated whole, refused
//!   whole. The neighbour table is read again with them (a link going down
//!   drops neighbours without notifying every one).
//! - Netlink notifications are datagrams: when rvsd is too slow to read
//!   them the kernel drops some and says so (ENOBUFS, [`kernel::Event::Lost`]);
//!   everything is then read again, and in any case every [`SAFETY_NET`].
//!
//! The director's own next-hop requests (a frame for a server whose MAC is
//! not known yet) are served by [`resolve_next_hops`], on a thread of its
//! own so they never wait for a dump.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rvs_engine::{Interface, NeighborTable, Route};
use rvs_wire::EthernetAddress;

use crate::kernel::{self, Event, Neighbour};

/// How long link, address and route notifications are gathered before the
/// facts are read again.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(150);
/// Everything is read again this often, whatever the notifications said.
pub(crate) const SAFETY_NET: Duration = Duration::from_secs(30);
/// Longest wait for a notification, so a stop request is seen soon.
const WAIT: Duration = Duration::from_millis(250);
/// Requests for the same next hop closer than this are one request.
const RESOLVE_AGAIN: Duration = Duration::from_secs(1);

/// The running interfaces' neighbours, routes and facts as the kernel's
/// notifications tell them.
pub(crate) struct Watch {
    events: kernel::Subscription,
    /// The interfaces rvsd runs on (XDP is attached to their indexes).
    running: Vec<Interface>,
    /// Usable neighbours on the running interfaces: (address, ifindex) → MAC.
    neighbours: BTreeMap<(IpAddr, u32), EthernetAddress>,
    generation: u64,
    /// The routes last read, to tell which route notifications concern us.
    routes: Vec<Route>,
    /// Facts the director refused last, not to log the same refusal again.
    refused: Option<(Vec<Interface>, Vec<Route>)>,
}

impl Watch {
    /// Subscribes to the kernel's notifications, then reads the neighbour
    /// table: nothing that changes in between is missed. `running` and
    /// `routes` are the facts rvsd starts with.
    pub(crate) fn start(running: &[Interface], routes: &[Route]) -> anyhow::Result<Watch> {
        let mut w = Watch {
            events: kernel::Subscription::open()?,
            running: running.to_vec(),
            neighbours: BTreeMap::new(),
            generation: 1,
            routes: routes.to_vec(),
            refused: None,
        };
        w.reread_neighbours()?;
        Ok(w)
    }

    /// The neighbour table as the worker takes it: one MAC per address (an
    /// address known on two of our links: the lower ifindex's).
    pub(crate) fn table(&self) -> NeighborTable {
        let mut by_addr = BTreeMap::new();
        for (&(addr, _), &mac) in &self.neighbours {
            by_addr.entry(addr).or_insert(mac);
        }
        NeighborTable::new(by_addr, self.generation)
    }

    /// Follows the kernel until `stop`: each new neighbour table goes to
    /// `publish`, each new set of interface facts and routes to `apply`
    /// (`Ok(true)`: applied, `Ok(false)`: nothing changed, `Err`: refused,
    /// with why).
    pub(crate) fn run(
        mut self,
        stop: &AtomicBool,
        mut publish: impl FnMut(NeighborTable),
        mut apply: impl FnMut(Vec<Interface>, Vec<Route>) -> Result<bool, String>,
    ) {
        // Facts may have changed between rvsd reading them and subscribing.
        let mut facts_due = Some(Instant::now());
        let mut full_due = Instant::now() + SAFETY_NET;
        let mut events = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let next = facts_due.map_or(full_due, |d| d.min(full_due));
            let wait = next.saturating_duration_since(Instant::now()).min(WAIT);
            events.clear();
            if let Err(e) = self.events.receive(wait, &mut events) {
                tracing::warn!(error = %format!("{e:#}"), "reading kernel notifications; reading everything again");
                events.push(Event::Lost);
                std::thread::sleep(wait);
            }
            let mut changed = false;
            for ev in events.drain(..) {
                let facts = match ev {
                    Event::Neighbour(n) => {
                        changed |= self.note(n);
                        false
                    }
                    Event::Link { index } | Event::Address { index } => self.ours(index),
                    Event::Route {
                        dst,
                        prefix_len,
                        egress,
                        ..
                    } => {
                        egress.iter().any(|&i| self.ours(i))
                            || self
                                .routes
                                .iter()
                                .any(|r| r.dst == dst && r.prefix_len == prefix_len)
                    }
                    Event::Lost => true,
                };
                if facts && facts_due.is_none() {
                    facts_due = Some(Instant::now() + DEBOUNCE);
                }
            }
            let now = Instant::now();
            if now >= full_due {
                full_due = now + SAFETY_NET;
                facts_due = Some(now);
            }
            if facts_due.is_some_and(|d| now >= d) {
                facts_due = None;
                match self.reread_neighbours() {
                    Ok(c) => changed |= c,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "reading the neighbour table")
                    }
                }
                self.refresh_facts(&mut apply);
            }
            if changed {
                self.generation += 1;
                let table = self.table();
                tracing::debug!(
                    entries = table.len(),
                    generation = self.generation,
                    "neighbour table updated"
                );
                publish(table);
            }
        }
    }

    fn ours(&self, index: u32) -> bool {
        self.running.iter().any(|i| i.index.0 == index)
    }

    /// One neighbour notification; whether it changed the table.
    fn note(&mut self, n: Neighbour) -> bool {
        if !self.ours(n.ifindex) {
            return false;
        }
        let key = (n.addr, n.ifindex);
        match n.mac {
            Some(mac) => self.neighbours.insert(key, mac) != Some(mac),
            None => self.neighbours.remove(&key).is_some(),
        }
    }

    /// The whole neighbour table again; whether it differed.
    fn reread_neighbours(&mut self) -> anyhow::Result<bool> {
        let now: BTreeMap<_, _> = kernel::neighbour_entries()?
            .into_iter()
            .filter(|n| self.ours(n.ifindex))
            .filter_map(|n| Some(((n.addr, n.ifindex), n.mac?)))
            .collect();
        let changed = now != self.neighbours;
        self.neighbours = now;
        Ok(changed)
    }

    /// Reads the interfaces' facts and the routes and hands them to `apply`.
    fn refresh_facts(
        &mut self,
        apply: &mut impl FnMut(Vec<Interface>, Vec<Route>) -> Result<bool, String>,
    ) {
        let (ifaces, routes) = match kernel::facts(&self.running) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "re-reading interface facts and routes; the running configuration keeps the previous ones");
                return;
            }
        };
        self.routes.clone_from(&routes);
        let facts = (ifaces, routes);
        match apply(facts.0.clone(), facts.1.clone()) {
            Ok(_) => self.refused = None,
            Err(e) if self.refused.as_ref() == Some(&facts) => {
                tracing::debug!(error = %e, "kernel facts still refused")
            }
            Err(e) => {
                tracing::warn!(error = %e, "the kernel's interfaces or routes changed, but the running configuration refuses them: it keeps the previous facts until they change again");
                self.refused = Some(facts);
            }
        }
    }
}

/// Asks the kernel to resolve each next hop the worker could not find a
/// MAC for (at most once a [`RESOLVE_AGAIN`] each), until `stop` or until
/// every sender is gone. The answer arrives as a neighbour notification.
pub(crate) fn resolve_next_hops(requests: Receiver<IpAddr>, stop: &AtomicBool) {
    let mut asked: HashMap<IpAddr, Instant> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let addr = match requests.recv_timeout(WAIT) {
            Ok(addr) => addr,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let due = asked
            .get(&addr)
            .is_none_or(|t| t.elapsed() >= RESOLVE_AGAIN);
        if due {
            kernel::trigger_resolution(addr);
            if asked.len() >= 4096 {
                asked.retain(|_, t| t.elapsed() < RESOLVE_AGAIN);
            }
            asked.insert(addr, Instant::now());
        }
    }
}
