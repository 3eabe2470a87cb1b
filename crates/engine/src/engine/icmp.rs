//! ICMP errors about tracked connections, relayed to whoever sent the packet
//! they quote ([`crate::icmp`] has the frame side and the rules).

use rvs_wire::PacketBuf;

use super::Engine;
use crate::config::ForwardMethod;
use crate::conn::bytes_addr;
use crate::fwd::nat;
use crate::icmp::{self, Icmp, Toward};
use crate::parse::Parsed;
use crate::verdict::{DropReason, IfIndex, Verdict};

impl Engine {
    /// A frame the TCP/UDP parser did not take: relays it if it is an ICMP
    /// error about a tracked connection; other errors (the XDP program
    /// sends those addressed to a VIP) are counted and dropped; anything
    /// else is not the engine's.
    pub(super) fn icmp(&mut self, pkt: &mut PacketBuf<'_>, ingress: IfIndex) -> Verdict {
        let e = match icmp::parse(pkt.data()) {
            Ok(Icmp::Error(e)) => e,
            Ok(Icmp::NotAnError) => return Verdict::Pass,
            Err(reason) => return Verdict::Drop(reason),
        };
        let flow = e.flow();
        let p = Parsed {
            l2_len: e.l2_len,
            l4_start: e.icmp_start,
            ip_len: e.ip_len,
            v6: e.v6,
            key: flow,
            src: bytes_addr(&flow.daddr, e.v6),
            dst: bytes_addr(&e.dst(pkt.data()), e.v6),
            tcp_flags: None,
            sctp_event: None,
            ingress,
            first_fragment: None,
        };
        if let Some(idx) = self.conns.find_in(&flow) {
            // From the client's side: to the real server (FullNAT: about
            // the local end it knows).
            let c = *self.conns.get(idx);
            let fullnat = c.method() == ForwardMethod::FullNat;
            let verdict = self.send_toward_server(pkt, &c, &p, |frame| {
                icmp::translate(frame, &e, Toward::Server, &c.daddr, c.dport).is_some()
                    && (!fullnat
                        || icmp::translate(frame, &e, Toward::ServerPeer, &c.laddr, c.lport)
                            .is_some())
            });
            if matches!(verdict, Verdict::Forward { .. }) {
                self.count_in(c.dest, &p);
                self.count_icmp(c.method().translates());
            }
            return verdict;
        }
        if let Some(idx) = self.conns.find_out(&flow) {
            // From the servers' side (NAT, FullNAT): to the client, as a
            // routed reply.
            let c = *self.conns.get(idx);
            let Some(ip) = p.ip(pkt.data_mut()) else {
                return Verdict::Drop(DropReason::Malformed);
            };
            if !nat::decrement_ttl(ip, p.v6) {
                return Verdict::Drop(DropReason::TtlExceeded);
            }
            if icmp::translate(pkt.data_mut(), &e, Toward::Client, &c.vaddr, c.vport).is_none() {
                return Verdict::Drop(DropReason::Malformed);
            }
            // FullNAT: the error was sent to the local end, about it.
            if c.method() == ForwardMethod::FullNat
                && icmp::translate(pkt.data_mut(), &e, Toward::ClientPeer, &c.caddr, c.cport)
                    .is_none()
            {
                return Verdict::Drop(DropReason::Malformed);
            }
            let client = crate::conn::bytes_addr(&c.caddr, c.v6());
            let verdict = self.send_toward_client(pkt, client);
            if matches!(verdict, Verdict::Forward { .. }) {
                self.count_out(c.dest, &p);
                self.count_icmp(true);
            }
            return verdict;
        }
        Verdict::Drop(DropReason::IcmpNoConnection)
    }

    fn count_icmp(&mut self, translated: bool) {
        if translated {
            self.counters.icmp_translated += 1;
        } else {
            self.counters.icmp_relayed += 1;
        }
    }
}
