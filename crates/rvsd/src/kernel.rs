//! What the director learns from the kernel: its interfaces (index, MAC,
//! addresses, MTU), routes and the neighbour table, read on demand and
//! followed by event.
//!
//! Read over rtnetlink (DESIGN.md: next-hop MACs come from the kernel's
//! neighbour table, never from a hard-coded map), with plain blocking
//! `NETLINK_ROUTE` sockets: every function here is called from ordinary
//! threads, so a request/response exchange is simpler than an async runtime.
//! A netlink socket belongs to the network namespace of the thread that
//! creates it, so each call opens its own socket: callers (and tests) that
//! `setns()` a thread get the facts of that namespace. [`Subscription`] is
//! the other kind of socket: joined to rtnetlink's multicast groups, it is
//! told of every link, address, route and neighbour change (`watch.rs`
//! keeps rvsd's facts current with it).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHopFlags,
    RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use rvs_engine::{IfIndex, Interface, Route};
use rvs_wire::EthernetAddress;

/// Size of the fixed netlink message header (`struct nlmsghdr`).
const NLMSG_HDRLEN: usize = 16;

/// Neighbour states (`NUD_*`, a bit mask in the kernel) whose link-layer
/// address can be used: REACHABLE, STALE, DELAY, PROBE, NOARP, PERMANENT.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;
/// NUD_INCOMPLETE | NUD_FAILED: resolution pending or given up.
const NUD_UNRESOLVED: u16 = 0x01 | 0x20;

/// How often a dump interrupted by a concurrent change (NLM_F_DUMP_INTR) is
/// retried before its (possibly inconsistent) result is used anyway.
const DUMP_ATTEMPTS: usize = 3;

/// One rtnetlink conversation with the kernel of the calling thread's
/// network namespace.
struct Rtnl {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// The kernel refused a request: keeps the errno so callers can tell
/// "no such device" from other failures.
#[derive(Debug, thiserror::Error)]
#[error("the kernel refused {what}: {source}")]
struct Refused {
    what: &'static str,
    source: io::Error,
}

impl Rtnl {
    fn open() -> anyhow::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
        socket.bind_auto().context("binding an rtnetlink socket")?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .context("connecting an rtnetlink socket to the kernel")?;
        Ok(Rtnl {
            socket,
            seq: 0,
            buf: Vec::new(),
        })
    }

    /// Everything the kernel has of one kind (NLM_F_DUMP). A dump the kernel
    /// marks as interrupted by a concurrent change is taken again.
    fn dump(
        &mut self,
        what: &'static str,
        request: RouteNetlinkMessage,
    ) -> anyhow::Result<Vec<RouteNetlinkMessage>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (msgs, interrupted) = self.exchange(what, request.clone(), NLM_F_DUMP)?;
            if !interrupted || attempt >= DUMP_ATTEMPTS {
                return Ok(msgs);
            }
        }
    }

    /// A single request, acknowledged (NLM_F_ACK): the answers it produced,
    /// or the kernel's error.
    fn ask(
        &mut self,
        what: &'static str,
        request: RouteNetlinkMessage,
        flags: u16,
    ) -> anyhow::Result<Vec<RouteNetlinkMessage>> {
        Ok(self.exchange(what, request, NLM_F_ACK | flags)?.0)
    }

    /// Sends `request` and collects the answers up to NLMSG_DONE (dumps) or
    /// the acknowledgement. Returns whether the dump was interrupted.
    fn exchange(
        &mut self,
        what: &'static str,
        request: RouteNetlinkMessage,
        flags: u16,
    ) -> anyhow::Result<(Vec<RouteNetlinkMessage>, bool)> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        self.socket
            .send(&out, 0)
            .with_context(|| format!("sending a netlink request for {what}"))?;

        let mut answers = Vec::new();
        let mut interrupted = false;
        loop {
            receive(&self.socket, &mut self.buf, 0)
                .with_context(|| format!("reading the kernel's answer about {what}"))?;
            let parts = split(&self.buf).with_context(|| {
                format!("a malformed netlink message from the kernel about {what}")
            })?;
            for raw in parts {
                let (kind, mflags, seq) = message_header(raw);
                if seq != self.seq {
                    // A late answer to an earlier request on this socket.
                    continue;
                }
                interrupted |= mflags & NLM_F_DUMP_INTR != 0;
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw);
                match parsed.map(|m| m.payload) {
                    Ok(NetlinkPayload::InnerMessage(m)) => answers.push(m),
                    Ok(NetlinkPayload::Done(d)) if d.code == 0 => {
                        return Ok((answers, interrupted))
                    }
                    Ok(NetlinkPayload::Done(d)) => {
                        return Err(Refused {
                            what,
                            source: io::Error::from_raw_os_error(d.code.saturating_abs()),
                        }
                        .into())
                    }
                    Ok(NetlinkPayload::Error(e)) => {
                        return match e.code {
                            None => Ok((answers, interrupted)),
                            Some(_) => Err(Refused {
                                what,
                                source: e.to_io(),
                            }
                            .into()),
                        }
                    }
                    Ok(_) => {}
                    Err(e) if kind == NLMSG_DONE || kind == NLMSG_ERROR => {
                        bail!("undecodable end of the kernel's answer about {what}: {e}")
                    }
                    // One entry this library version cannot decode (a newer
                    // kernel attribute, say) must not hide all the others.
                    Err(e) => tracing::debug!(what, error = %e, "skipping a netlink message"),
                }
            }
        }
    }
}

/// Reads one datagram into `buf`, whatever its size (peeked first: a dump
/// part can exceed any fixed buffer). `flags`: MSG_DONTWAIT, or 0 to wait
/// (as long as the socket's receive timeout allows).
fn receive(socket: &Socket, buf: &mut Vec<u8>, flags: libc::c_int) -> io::Result<()> {
    loop {
        buf.clear();
        let peeked = socket.recv_from(buf, libc::MSG_PEEK | libc::MSG_TRUNC | flags);
        let len = match peeked {
            Ok((len, _)) => len,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.clear();
        buf.reserve(len);
        match socket.recv_from(buf, flags) {
            Ok((got, _)) if got > buf.len() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "netlink datagram truncated",
                ))
            }
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The netlink messages of one datagram, each with its header.
fn split(buf: &[u8]) -> anyhow::Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut off = 0;
    while buf.len() - off >= NLMSG_HDRLEN {
        let raw = &buf[off..];
        let len = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
        if len < NLMSG_HDRLEN || len > raw.len() {
            bail!("a message of {len} bytes in {} left", raw.len());
        }
        out.push(&raw[..len]);
        off += len.next_multiple_of(4).min(buf.len() - off);
    }
    Ok(out)
}

/// Type, flags and sequence number of a message [`split`] returned.
fn message_header(raw: &[u8]) -> (u16, u16, u32) {
    (
        u16::from_ne_bytes([raw[4], raw[5]]),
        u16::from_ne_bytes([raw[6], raw[7]]),
        u32::from_ne_bytes([raw[8], raw[9], raw[10], raw[11]]),
    )
}

fn is_errno(e: &anyhow::Error, errno: i32) -> bool {
    e.downcast_ref::<Refused>()
        .and_then(|r| r.source.raw_os_error())
        == Some(errno)
}

/// How a link is looked up.
#[derive(Clone, Copy)]
enum LinkKey<'a> {
    Name(&'a str),
    Index(u32),
}

/// The link `key` names, or `None` when the kernel has none.
fn link(nl: &mut Rtnl, key: LinkKey<'_>) -> anyhow::Result<Option<LinkMessage>> {
    let mut req = LinkMessage::default();
    match key {
        LinkKey::Name(name) => req.attributes.push(LinkAttribute::IfName(name.to_owned())),
        LinkKey::Index(index) => req.header.index = index,
    }
    match nl.ask("the interface", RouteNetlinkMessage::GetLink(req), 0) {
        Ok(msgs) => Ok(msgs.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A link's index, name, MAC and MTU; `name` is the one the operator gave,
/// for messages.
fn link_facts(
    link: LinkMessage,
    name: &str,
) -> anyhow::Result<(u32, String, EthernetAddress, u16)> {
    let index = link.header.index;
    let mut mac = None;
    let mut mtu = None;
    let mut ifname = name.to_owned();
    for a in link.attributes {
        match a {
            LinkAttribute::Address(bytes) => mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            LinkAttribute::Mtu(m) => mtu = Some(m),
            LinkAttribute::IfName(n) => ifname = n,
            _ => {}
        }
    }
    let mac = mac.ok_or_else(|| anyhow!("interface {name} has no Ethernet address"))?;
    let mtu = mtu.ok_or_else(|| anyhow!("the kernel did not report the MTU of {name}"))?;
    // Loopback reports 65536; an IP packet cannot exceed 65535 anyway.
    let mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
    Ok((index, ifname, EthernetAddress(mac), mtu))
}

/// Every address of every link, as (ifindex, address, prefix length);
/// link-scope addresses (fe80::) left out.
fn addresses(nl: &mut Rtnl) -> anyhow::Result<Vec<(u32, IpAddr, u8)>> {
    let mut out = Vec::new();
    let dump = nl.dump(
        "addresses",
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
    )?;
    for m in dump {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        if !matches!(a.header.family, AddressFamily::Inet | AddressFamily::Inet6)
            || a.header.scope == AddressScope::Link
        {
            continue;
        }
        // IFA_LOCAL is the interface's own address (differs from IFA_ADDRESS
        // on point-to-point links); IPv6 usually only has IFA_ADDRESS.
        let mut local = None;
        let mut address = None;
        for attr in a.attributes {
            match attr {
                AddressAttribute::Local(ip) => local = Some(ip),
                AddressAttribute::Address(ip) => address = Some(ip),
                _ => {}
            }
        }
        if let Some(ip) = local.or(address) {
            out.push((a.header.index, ip, a.header.prefix_len));
        }
    }
    Ok(out)
}

/// The addresses of link `index` among `all` ([`addresses`]).
fn addresses_of(all: &[(u32, IpAddr, u8)], index: u32) -> Vec<(IpAddr, u8)> {
    all.iter()
        .filter(|(i, _, _)| *i == index)
        .map(|&(_, ip, len)| (ip, len))
        .collect()
}

/// The interface `name` as the engine needs it.
pub(crate) fn interface(name: &str) -> anyhow::Result<Interface> {
    let not_found = || format!("interface {name} not found: check `interfaces` in the config");
    let mut nl = Rtnl::open()?;
    // An over-long name, say: still the operator's to fix in the config.
    let found = link(&mut nl, LinkKey::Name(name)).with_context(not_found)?;
    let Some(found) = found else {
        bail!(not_found());
    };
    let (index, ifname, mac, mtu) = link_facts(found, name)?;
    let addrs = addresses_of(&addresses(&mut nl)?, index);
    Ok(Interface {
        index: IfIndex(index),
        name: ifname,
        mac,
        addrs,
        mtu,
    })
}

/// The facts of the interfaces rvsd runs on, as they are now, and the
/// routes through them: what a link, address or route change may have
/// changed. Each is found by its index (the link XDP is attached to,
/// whatever it is called now) and keeps the name it was started with.
pub(crate) fn facts(running: &[Interface]) -> anyhow::Result<(Vec<Interface>, Vec<Route>)> {
    let mut nl = Rtnl::open()?;
    let all = addresses(&mut nl)?;
    let mut now = Vec::with_capacity(running.len());
    for r in running {
        let Some(found) = link(&mut nl, LinkKey::Index(r.index.0))? else {
            bail!(
                "interface {} (index {}) is gone: restart rvsd once it is back",
                r.name,
                r.index.0
            );
        };
        let (index, _, mac, mtu) = link_facts(found, &r.name)?;
        now.push(Interface {
            index: IfIndex(index),
            name: r.name.clone(),
            mac,
            addrs: addresses_of(&all, index),
            mtu,
        });
    }
    let routes = main_routes(&mut nl, &now)?;
    Ok((now, routes))
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// RTA_VIA: a gateway of the other family (an IPv4 route through an IPv6
/// neighbour).
fn via_ip(v: &RouteVia) -> Option<IpAddr> {
    match v {
        RouteVia::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteVia::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Every unicast route of the main table that leaves through one of
/// `ifaces` — through a gateway, on-link (`ip route add NET dev X`, the
/// connected networks and point-to-point peers included), or a multipath
/// route's first next hop through one of them — ordered by metric, so that
/// among routes of one prefix the engine takes the one the kernel prefers.
pub(crate) fn routes(ifaces: &[Interface]) -> anyhow::Result<Vec<Route>> {
    let mut nl = Rtnl::open()?;
    main_routes(&mut nl, ifaces)
}

fn main_routes(nl: &mut Rtnl, ifaces: &[Interface]) -> anyhow::Result<Vec<Route>> {
    let mut found = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut req = RouteMessage::default();
        req.header.address_family = family;
        for m in nl.dump("routes", RouteNetlinkMessage::GetRoute(req))? {
            if let RouteNetlinkMessage::NewRoute(r) = m {
                found.extend(main_route(&r, ifaces));
            }
        }
    }
    // Stable: routes of equal metric keep the kernel's order.
    found.sort_by_key(|&(metric, _)| metric);
    Ok(found.into_iter().map(|(_, r)| r).collect())
}

/// `r` with its metric, if it is a unicast route of the main table that
/// leaves through one of `ifaces`. Routes the engine could not follow as
/// the kernel does are left out: those for some TOS or source prefix only,
/// and those that encapsulate (lwtunnel).
fn main_route(r: &RouteMessage, ifaces: &[Interface]) -> Option<(u32, Route)> {
    let h = &r.header;
    let any = match h.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    if h.kind != RouteType::Unicast
        || h.flags.contains(RouteFlags::Cloned)
        || h.tos != 0
        || h.source_prefix_length != 0
    {
        return None;
    }
    let mut table = u32::from(h.table);
    let mut dst = any;
    let mut metric = 0;
    let mut gateway = None;
    let mut oif = None;
    let mut hops = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = route_ip(d)?,
            RouteAttribute::Gateway(g) => gateway = Some(route_ip(g)?),
            RouteAttribute::Via(v) => gateway = Some(via_ip(v)?),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::MultiPath(h) => hops = Some(h),
            RouteAttribute::Encap(_) | RouteAttribute::EncapType(_) => return None,
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let ours = |index: u32| ifaces.iter().find(|i| i.index.0 == index).map(|i| i.index);
    let (egress, gateway) = match hops {
        Some(hops) if !hops.is_empty() => hops.iter().find_map(|hop| {
            if hop.flags.contains(RouteNextHopFlags::Dead) {
                return None;
            }
            let egress = ours(hop.interface_index)?;
            let mut gateway = None;
            for a in &hop.attributes {
                match a {
                    RouteAttribute::Gateway(g) => gateway = Some(route_ip(g)?),
                    RouteAttribute::Via(v) => gateway = Some(via_ip(v)?),
                    RouteAttribute::Encap(_) | RouteAttribute::EncapType(_) => return None,
                    _ => {}
                }
            }
            Some((egress, gateway))
        })?,
        _ => {
            if h.flags.contains(RouteFlags::Dead) {
                return None;
            }
            (ours(oif?)?, gateway)
        }
    };
    Some((
        metric,
        Route {
            dst,
            prefix_len: h.destination_prefix_length,
            egress,
            gateway,
        },
    ))
}

/// Whether a neighbour entry in `state` has a link-layer address to use.
/// The kernel only reports NDA_LLADDR for valid states anyway; this keeps
/// the rule explicit rather than relying on that.
pub(crate) fn usable(state: NeighbourState) -> bool {
    let bits = u16::from(state);
    bits & NUD_USABLE != 0 && bits & NUD_UNRESOLVED == 0
}

/// One entry of the kernel's ARP or neighbour-discovery table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Neighbour {
    /// The interface the entry belongs to.
    pub(crate) ifindex: u32,
    /// The neighbour's address.
    pub(crate) addr: IpAddr,
    /// Its MAC, when the entry's state makes it usable ([`usable`]).
    pub(crate) mac: Option<EthernetAddress>,
}

/// `n` as an IP neighbour entry; `None` for the bridge forwarding entries
/// that share the message type, and for proxy entries (answered for
/// others, not next hops).
fn neighbour(n: &NeighbourMessage) -> Option<Neighbour> {
    if !matches!(n.header.family, AddressFamily::Inet | AddressFamily::Inet6)
        || n.header.flags.contains(NeighbourFlags::Proxy)
    {
        return None;
    }
    let mut addr = None;
    let mut mac = None;
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                addr = Some(IpAddr::V4(*v4))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                addr = Some(IpAddr::V6(*v6))
            }
            NeighbourAttribute::LinkLayerAddress(ll) => {
                mac = <[u8; 6]>::try_from(ll.as_slice()).ok()
            }
            _ => {}
        }
    }
    Some(Neighbour {
        ifindex: n.header.ifindex,
        addr: addr?,
        mac: mac.filter(|_| usable(n.header.state)).map(EthernetAddress),
    })
}

/// Every IP neighbour entry of every interface, usable or not.
pub(crate) fn neighbour_entries() -> anyhow::Result<Vec<Neighbour>> {
    let mut nl = Rtnl::open()?;
    let dump = nl.dump(
        "the neighbour table",
        RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
    )?;
    Ok(dump
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewNeighbour(n) => neighbour(n),
            _ => None,
        })
        .collect())
}

/// rtnetlink's multicast groups a [`Subscription`] joins: links, IPv4 and
/// IPv6 addresses and routes, neighbours.
const GROUPS: [u32; 6] = [
    libc::RTNLGRP_LINK,
    libc::RTNLGRP_NEIGH,
    libc::RTNLGRP_IPV4_IFADDR,
    libc::RTNLGRP_IPV4_ROUTE,
    libc::RTNLGRP_IPV6_IFADDR,
    libc::RTNLGRP_IPV6_ROUTE,
];

/// Receive buffer asked for a [`Subscription`] (the kernel caps it at
/// `net.core.rmem_max`): notifications wait there while their reader is
/// busy; beyond it the kernel drops them and says so ([`Event::Lost`]).
const EVENT_BUFFER: usize = 4 << 20;

/// Most datagrams one [`Subscription::receive`] takes, so a flood of
/// notifications cannot keep its caller from its other work.
const EVENT_BATCH: usize = 1024;

/// A change the kernel announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A neighbour entry appeared, changed or went away (then, and while
    /// unusable, without a MAC).
    Neighbour(Neighbour),
    /// A link changed (MTU, MAC, state, name) or went away.
    Link { index: u32 },
    /// An address of link `index` was added or removed.
    Address { index: u32 },
    /// A route of the main table was added, replaced or removed.
    Route {
        dst: IpAddr,
        prefix_len: u8,
        /// The links it leaves through (every next hop of a multipath
        /// route).
        egress: Vec<u32>,
        removed: bool,
    },
    /// Notifications were lost (the receive buffer overflowed: ENOBUFS) or
    /// could not be read: only reading everything again tells what changed.
    Lost,
}

/// An rtnetlink socket joined to [`GROUPS`]: every link, address, route and
/// neighbour change of the namespace it was opened in, as it happens.
pub(crate) struct Subscription {
    socket: Socket,
    buf: Vec<u8>,
}

impl Subscription {
    /// Joins the groups. Changes from then on are queued for
    /// [`Subscription::receive`]: read the state after opening, and nothing
    /// falls in between.
    pub(crate) fn open() -> anyhow::Result<Subscription> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket for notifications")?;
        socket
            .bind_auto()
            .context("binding an rtnetlink socket for notifications")?;
        for group in GROUPS {
            socket
                .add_membership(group)
                .with_context(|| format!("joining rtnetlink multicast group {group}"))?;
        }
        if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(EVENT_BUFFER) {
            tracing::debug!(error = %e, "keeping the default notification buffer");
        }
        Ok(Subscription {
            socket,
            buf: Vec::new(),
        })
    }

    /// Waits up to `timeout` for a notification, then appends it and every
    /// other one already queued (up to [`EVENT_BATCH`] datagrams) to `out`.
    pub(crate) fn receive(
        &mut self,
        timeout: Duration,
        out: &mut Vec<Event>,
    ) -> anyhow::Result<()> {
        // A zero timeout would mean "wait for ever".
        let timeout = timeout.max(Duration::from_millis(1));
        socket2::SockRef::from(&self.socket)
            .set_read_timeout(Some(timeout))
            .context("setting the notification socket's timeout")?;
        let mut flags = 0;
        for _ in 0..EVENT_BATCH {
            match receive(&self.socket, &mut self.buf, flags) {
                Ok(()) => self.parse(out),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => out.push(Event::Lost),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(())
                }
                Err(e) => return Err(e).context("reading rtnetlink notifications"),
            }
            flags = libc::MSG_DONTWAIT;
        }
        Ok(())
    }

    /// The events of the datagram in `self.buf`.
    fn parse(&self, out: &mut Vec<Event>) {
        let Ok(parts) = split(&self.buf) else {
            out.push(Event::Lost);
            return;
        };
        for raw in parts {
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw).map(|m| m.payload) {
                Ok(NetlinkPayload::InnerMessage(m)) => out.extend(event(m)),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "an undecodable rtnetlink notification");
                    out.push(Event::Lost);
                }
            }
        }
    }
}

/// What a notification says changed; `None` for what rvsd does not follow.
fn event(m: RouteNetlinkMessage) -> Option<Event> {
    match m {
        RouteNetlinkMessage::NewNeighbour(n) => neighbour(&n).map(Event::Neighbour),
        RouteNetlinkMessage::DelNeighbour(n) => {
            neighbour(&n).map(|n| Event::Neighbour(Neighbour { mac: None, ..n }))
        }
        RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => Some(Event::Link {
            index: l.header.index,
        }),
        RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a) => {
            Some(Event::Address {
                index: a.header.index,
            })
        }
        RouteNetlinkMessage::NewRoute(r) => route_event(&r, false),
        RouteNetlinkMessage::DelRoute(r) => route_event(&r, true),
        _ => None,
    }
}

/// A route notification, if it is about the main table.
fn route_event(r: &RouteMessage, removed: bool) -> Option<Event> {
    let mut dst = match r.header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut table = u32::from(r.header.table);
    let mut egress = Vec::new();
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = route_ip(d).unwrap_or(dst),
            RouteAttribute::Oif(i) => egress.push(*i),
            RouteAttribute::MultiPath(hops) => {
                egress.extend(hops.iter().map(|h| h.interface_index))
            }
            _ => {}
        }
    }
    (table == u32::from(RouteHeader::RT_TABLE_MAIN)).then_some(Event::Route {
        dst,
        prefix_len: r.header.destination_prefix_length,
        egress,
        removed,
    })
}

/// Asks the kernel to resolve `addr` (its next hop, really), so the
/// neighbour table soon has its MAC (and a notification says so).
///
/// First choice: look the route up (RTM_GETROUTE) and send RTM_NEWNEIGH with
/// NTF_USE for the next hop on the route's interface, as
/// `ip neigh replace ADDR dev DEV use` does. The kernel (neigh_add) then
/// creates the entry if needed and runs `neigh_event_send()` on it, exactly
/// what outgoing traffic would do: an ARP request / neighbour solicitation
/// for an unresolved entry, a reachability probe for a stale one, nothing
/// for a valid one. It leaves the entry's state alone (NTF_USE skips the
/// update) and we ask for NUD_NONE, so the entry is not made permanent and
/// stays subject to garbage collection.
///
/// Fallback, when netlink refuses (an old kernel without NTF_USE in
/// neigh_add, or no permission — it needs CAP_NET_ADMIN): send an empty
/// datagram to the discard port, which makes the kernel resolve the next
/// hop on the way out, like any traffic.
pub(crate) fn trigger_resolution(addr: IpAddr) {
    match ask_resolution(addr) {
        Ok(()) => {}
        Err(e) => {
            tracing::debug!(%addr, error = %format!("{e:#}"), "NTF_USE refused, sending a datagram instead");
            poke(addr);
        }
    }
}

pub(crate) fn ask_resolution(addr: IpAddr) -> anyhow::Result<()> {
    let (family, len) = match addr {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    let dst = match addr {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    };
    let mut nl = Rtnl::open()?;
    let mut req = RouteMessage::default();
    req.header.address_family = family;
    req.header.destination_prefix_length = len;
    req.attributes.push(RouteAttribute::Destination(dst));
    let answer = nl.ask("a route lookup", RouteNetlinkMessage::GetRoute(req), 0);
    let route = match answer {
        Ok(msgs) => msgs.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => Some(r),
            _ => None,
        }),
        // No route (unreachable, prohibited): nothing to resolve, and a
        // datagram would not leave either.
        Err(_) => return Ok(()),
    };
    let Some(route) = route else { return Ok(()) };
    if route.header.kind != RouteType::Unicast {
        // Local, broadcast, blackhole…: no neighbour involved.
        return Ok(());
    }
    let mut next_hop = addr;
    let mut oif = None;
    for a in &route.attributes {
        match a {
            RouteAttribute::Gateway(g) => next_hop = route_ip(g).unwrap_or(addr),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    let Some(oif) = oif else { return Ok(()) };

    let mut neigh = NeighbourMessage::default();
    neigh.header.family = match next_hop {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    neigh.header.ifindex = oif;
    neigh.header.state = NeighbourState::None;
    neigh.header.flags = NeighbourFlags::Use;
    neigh
        .attributes
        .push(NeighbourAttribute::Destination(match next_hop {
            IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
            IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
        }));
    nl.ask(
        "a neighbour resolution",
        RouteNetlinkMessage::NewNeighbour(neigh),
        NLM_F_CREATE | NLM_F_REPLACE,
    )?;
    Ok(())
}

/// The pre-netlink way: traffic to the discard port makes the kernel ARP /
/// solicit for the next hop.
fn poke(addr: IpAddr) {
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    if let Ok(s) = std::net::UdpSocket::bind(bind) {
        let _ = s.send_to(&[], (addr, 9));
    }
}

/// RX queues the kernel allocated for an interface (IFLA_NUM_RX_QUEUES):
/// the most it can have in use after `ethtool -L` (1 when not reported),
/// at most the queues per interface the XDP program can hand to sockets.
pub(crate) fn rx_queue_capacity(name: &str) -> anyhow::Result<u32> {
    let mut nl = Rtnl::open()?;
    let Some(l) = link(&mut nl, LinkKey::Name(name))? else {
        bail!("interface {name} not found: check `interfaces` in the config");
    };
    Ok(l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::NumRxQueues(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(1)
        .clamp(1, rvs_datapath::MAX_QUEUES_PER_INTERFACE))
}

/// RX queues an interface has in use (one AF_XDP socket each), at most
/// the queues per interface the XDP program can hand to sockets.
///
/// Read from sysfs, not netlink: IFLA_NUM_RX_QUEUES is the number of queues
/// allocated, while AF_XDP binds only below the number in use, which is what
/// `queues/rx-*` lists.
pub(crate) fn rx_queues(name: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .clamp(1, rvs_datapath::MAX_QUEUES_PER_INTERFACE)
}
