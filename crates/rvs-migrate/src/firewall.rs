//! The firewall rules that mark packets for keepalived's `virtual_server
//! fwmark N` (iptables-save or `nft list ruleset` output) → rvsd's
//! `[[fwmark]]` rules.
//!
//! keepalived relies on the firewall to mark packets; XDP sees no skb mark,
//! so rvsd marks them itself with its `[[fwmark]]` rules. The parsers
//! ([`iptables`], [`nft`]) read every rule that sets (or may change) a
//! mark, in the order the kernel runs them, into a [`Ruleset`]; [`select`]
//! keeps what the fwmark services need and notes everything it cannot carry
//! over exactly. Two semantics differ and are bridged here: a firewall's
//! MARK does not end the chain (the last matching rule's mark stays), while
//! rvsd takes the first matching rule; so overlapping rules are written in
//! the order that gives each packet the mark the firewall would.

pub mod iptables;
pub mod nft;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use rvs_vocab::schema;
use rvs_vocab::Protocol;

use crate::parse::{Loc, Note, ParseError};

/// Reads and parses iptables-save (or ip6tables-save) output from `path`.
pub fn read_iptables_save(path: &Path) -> Result<Ruleset, ParseError> {
    let shown = path.display().to_string();
    let text = crate::parse::read_text(path, Some(shown.as_str().into()))?;
    iptables::parse(&text, &shown)
}

/// Reads and parses `nft list ruleset` output from `path`.
pub fn read_nft(path: &Path) -> Result<Ruleset, ParseError> {
    let shown = path.display().to_string();
    let text = crate::parse::read_text(path, Some(shown.as_str().into()))?;
    nft::parse(&text, &shown)
}

/// A rule's addresses are listed one by one in the XDP filter: at most
/// 2^12 of them (rvs_engine::MAX_FWMARK_HOST_BITS, which a test compares).
pub const MAX_RULE_HOST_BITS: u32 = 12;

/// Entries of the XDP filter's service map (rvs_engine::limits::MAX_SERVICES):
/// a rule's addresses × protocols × ports must fit.
pub const MAX_SERVICE_KEYS: u64 = 131_072;

/// Ports a port range may expand to: rvsd lists ports one by one.
pub const MAX_RULE_PORTS: usize = 1024;

/// Prefixes an address range may be split into.
pub const MAX_RANGE_PREFIXES: usize = 64;

/// A destination address or prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Prefix {
    /// The network address (host bits cleared).
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl Prefix {
    /// `addr/len` with the host bits cleared; `None` if `len` is too long
    /// for the family.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        let width = width(addr);
        if u32::from(len) > width {
            return None;
        }
        let bits = to_bits(addr) & mask(len, width);
        Some(Prefix {
            addr: from_bits(bits, addr.is_ipv6()),
            len,
        })
    }

    /// Reads `A`, `A/LEN` or (IPv4) `A/NETMASK` with a contiguous netmask.
    pub fn parse(s: &str) -> Result<Prefix, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("'{s}' is not an address or prefix"))?;
        let len = match l {
            None => width(addr) as u8,
            Some(l) => match l.parse::<u8>() {
                Ok(n) => n,
                Err(_) => match (addr, l.parse::<std::net::Ipv4Addr>()) {
                    (IpAddr::V4(_), Ok(m)) => {
                        let m = u32::from(m);
                        let ones = m.leading_ones();
                        if m.checked_shl(ones).unwrap_or(0) != 0 {
                            return Err(format!(
                                "'{s}': the netmask {l} is not contiguous, which a prefix cannot express"
                            ));
                        }
                        ones as u8
                    }
                    _ => return Err(format!("'{s}': '{l}' is not a prefix length")),
                },
            },
        };
        Prefix::new(addr, len).ok_or_else(|| format!("'{s}': /{len} is too long for the address"))
    }

    /// Whether this is an IPv6 prefix.
    pub fn is_v6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// Bits of the address the prefix leaves open.
    pub fn host_bits(&self) -> u32 {
        width(self.addr) - u32::from(self.len)
    }

    /// Whether some address is in both.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        if self.is_v6() != other.is_v6() {
            return false;
        }
        let len = self.len.min(other.len);
        let m = mask(len, width(self.addr));
        to_bits(self.addr) & m == to_bits(other.addr) & m
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host_bits() == 0 {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

fn width(a: IpAddr) -> u32 {
    if a.is_ipv6() {
        128
    } else {
        32
    }
}

fn to_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_bits(bits: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(bits.into())
    } else {
        // Callers pass IPv4 values (at most 32 bits).
        IpAddr::V4((bits as u32).into())
    }
}

/// The network mask of a `len`-bit prefix in a `width`-bit address.
fn mask(len: u8, width: u32) -> u128 {
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    let host = width.saturating_sub(u32::from(len));
    if host >= 128 {
        0
    } else {
        all & !((1u128 << host) - 1)
    }
}

/// The addresses `lo..=hi` as the fewest prefixes, or why not: families
/// differ, `lo` is above `hi`, or it takes more than
/// [`MAX_RANGE_PREFIXES`].
pub fn range_prefixes(lo: IpAddr, hi: IpAddr) -> Result<Vec<Prefix>, String> {
    if lo.is_ipv6() != hi.is_ipv6() {
        return Err(format!("{lo}-{hi} mixes IPv4 and IPv6"));
    }
    let (mut cur, last) = (to_bits(lo), to_bits(hi));
    if cur > last {
        return Err(format!("{lo}-{hi} ends before it starts"));
    }
    let w = width(lo);
    let mut out = Vec::new();
    loop {
        // The largest aligned block starting at `cur` that ends by `last`.
        let mut k = cur.trailing_zeros().min(w);
        while k > 0 && block_end(cur, k).is_none_or(|end| end > last) {
            k -= 1;
        }
        out.push(Prefix {
            addr: from_bits(cur, lo.is_ipv6()),
            len: (w - k) as u8,
        });
        if out.len() > MAX_RANGE_PREFIXES {
            return Err(format!(
                "{lo}-{hi} takes more than {MAX_RANGE_PREFIXES} prefixes"
            ));
        }
        match block_end(cur, k) {
            Some(end) if end < last => cur = end + 1,
            _ => return Ok(out),
        }
    }
}

/// The last address of the 2^k block at `start`; `None` past u128.
fn block_end(start: u128, k: u32) -> Option<u128> {
    if k >= 128 {
        return if start == 0 { Some(u128::MAX) } else { None };
    }
    start.checked_add((1u128 << k) - 1)
}

/// Adds `lo..=hi` to `ports`; `Err` past [`MAX_RULE_PORTS`]. The full
/// range (0-65535) is not listed: the caller writes it as all ports.
pub fn push_port_range(ports: &mut Vec<u16>, lo: u16, hi: u16) -> Result<(), String> {
    if lo > hi {
        return Err(format!("port range {lo}-{hi} ends before it starts"));
    }
    let count = usize::from(hi - lo) + 1;
    if ports.len() + count > MAX_RULE_PORTS {
        return Err(format!(
            "ports {lo}-{hi} make more than {MAX_RULE_PORTS} ports, which rvsd lists one by one"
        ));
    }
    for p in lo..=hi {
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    Ok(())
}

/// Destination ports a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ports {
    /// Every port.
    #[default]
    All,
    /// These ports.
    List(Vec<u16>),
}

impl Ports {
    /// Whether some port is in both.
    fn overlaps(&self, other: &Ports) -> bool {
        match (self, other) {
            (Ports::List(a), Ports::List(b)) => a.iter().any(|p| b.contains(p)),
            _ => true,
        }
    }

    fn count(&self) -> u64 {
        match self {
            Ports::All => 1,
            Ports::List(l) => l.len().max(1) as u64,
        }
    }
}

/// A rule that sets a mark on packets RVS's rules can describe exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkRule {
    /// Where in the firewall file.
    pub loc: Loc,
    /// The rule as written, for the comment above the `[[fwmark]]` rule.
    pub text: String,
    /// The mark set.
    pub mark: u32,
    /// TCP or UDP; `None` = both (rvsd balances no other protocol).
    pub protocol: Option<Protocol>,
    /// Destinations (several for a set or a range split into prefixes).
    pub dests: Vec<Prefix>,
    /// Destination ports.
    pub ports: Ports,
    /// The rule also ends its chain (nft `accept`): later rules of the same
    /// chain cannot change the mark it set.
    pub terminal: bool,
}

/// What a rule RVS cannot carry over does to marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkEffect {
    /// Sets this mark.
    Set(u32),
    /// Changes marks in a way that depends on the mark before, or on
    /// state RVS does not have (masks, arithmetic, a connection's mark).
    Unknown,
}

/// A rule that sets or changes marks but cannot be carried over exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslated {
    /// Where in the firewall file.
    pub loc: Loc,
    /// What it does to marks.
    pub effect: MarkEffect,
    /// What cannot be expressed, e.g. `-i eth1 (an interface match)`.
    pub why: String,
}

/// A rule that may end the chain (or hand packets to rules not followed)
/// before the marking rules after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Where in the firewall file.
    pub loc: Loc,
    /// What it does, e.g. `-j ACCEPT`.
    pub what: String,
}

/// One rule of a chain, as far as marks are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Carried over.
    Mark(MarkRule),
    /// Not carried over.
    Untranslated(Untranslated),
    /// May keep packets from the rules after it.
    Stop(Stop),
}

/// A chain run for every packet arriving at the director (prerouting),
/// with its rules in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Table and chain, for notes.
    pub name: String,
    /// Hook priority (mangle: -150): chains run in this order.
    pub priority: i32,
    /// Its rules, in order.
    pub entries: Vec<Entry>,
}

/// Everything one firewall file says about marks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// The prerouting chains, in the file's order.
    pub chains: Vec<Chain>,
    /// Marking rules in places rvs-migrate does not follow (other chains,
    /// tables or hooks).
    pub elsewhere: Vec<Untranslated>,
}

/// A mark a keepalived fwmark virtual server uses, and the family of its
/// service (an IPVS fwmark service has one address family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    /// The mark.
    pub mark: u32,
    /// An IPv6 service.
    pub v6: bool,
}

/// A `[[fwmark]]` rule to write, with the comment saying where it is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The rule.
    pub rule: schema::Fwmark,
    /// Comment lines (without `#`) placed above it.
    pub comment: Vec<String>,
}

/// One destination of a [`MarkRule`]: what rvsd's rule will be.
struct Atom<'a> {
    /// Position of its rule in the order the kernel runs them.
    seq: usize,
    chain: usize,
    rule: &'a MarkRule,
    dest: Prefix,
}

impl Atom<'_> {
    fn overlaps(&self, other: &Atom<'_>) -> bool {
        self.dest.overlaps(&other.dest)
            && match (self.rule.protocol, other.rule.protocol) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
            && self.rule.ports.overlaps(&other.rule.ports)
    }

    /// `self` runs first and ends the chain for `later`'s packets.
    fn shadows(&self, later: &Atom<'_>) -> bool {
        self.rule.terminal && self.chain == later.chain
    }

    fn family(&self) -> &'static str {
        if self.dest.is_v6() {
            "IPv6"
        } else {
            "IPv4"
        }
    }
}

fn note(notes: &mut Vec<Note>, loc: &Loc, msg: impl Into<String>) {
    notes.push(Note {
        loc: loc.clone(),
        msg: msg.into(),
    });
}

fn lines(locs: &BTreeSet<u32>) -> String {
    let v: Vec<String> = locs.iter().map(u32::to_string).collect();
    match v.len() {
        1 => format!("line {}", v[0]),
        _ => format!("lines {}", v.join(", ")),
    }
}

/// The `[[fwmark]]` rules the `wanted` marks need from `rulesets` (each
/// file's rules), in the order rvsd must try them; a note for everything
/// not carried over exactly.
pub fn select(rulesets: &[Ruleset], wanted: &[Wanted], notes: &mut Vec<Note>) -> Vec<Chosen> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let wanted: BTreeSet<Wanted> = wanted.iter().copied().collect();
    let marks: BTreeSet<u32> = wanted.iter().map(|w| w.mark).collect();
    let is_wanted = |mark: u32, v6: bool| wanted.contains(&Wanted { mark, v6 });

    // The prerouting chains in the order the kernel runs them (a stable
    // sort: equal priorities keep the files' order).
    let mut chains: Vec<&Chain> = rulesets.iter().flat_map(|r| &r.chains).collect();
    chains.sort_by_key(|c| c.priority);

    let mut atoms: Vec<Atom<'_>> = Vec::new();
    let mut seq = 0;
    for (ci, chain) in chains.iter().enumerate() {
        for e in &chain.entries {
            seq += 1;
            let Entry::Mark(rule) = e else { continue };
            for dest in &rule.dests {
                atoms.push(Atom {
                    seq,
                    chain: ci,
                    rule,
                    dest: *dest,
                });
            }
        }
    }

    // What rvsd refuses in a rule is left out, with the reason.
    let refused: Vec<Option<String>> = atoms.iter().map(refusal).collect();
    for (a, why) in atoms.iter().zip(&refused) {
        if let Some(why) = why {
            if marks.contains(&a.rule.mark) {
                note(
                    notes,
                    &a.rule.loc,
                    format!(
                        "mark {} for {}: not carried over: {why}; the traffic it marked gets \
                         no mark in RVS",
                        a.rule.mark, a.dest
                    ),
                );
            }
        }
    }

    // The rules written: those for a wanted mark and family, and those
    // that take packets away from them (a later rule overrides a MARK),
    // so rvsd leaves those packets as the firewall did (a mark no service
    // has: rvsd then looks the service up by address, as IPVS does).
    let mut chosen: Vec<usize> = Vec::new();
    let mut overrides: BTreeMap<usize, BTreeSet<u32>> = BTreeMap::new();
    for (i, a) in atoms.iter().enumerate() {
        if is_wanted(a.rule.mark, a.dest.is_v6()) {
            if refused[i].is_none() {
                chosen.push(i);
            }
            continue;
        }
        if marks.contains(&a.rule.mark) {
            let other = if a.dest.is_v6() { "IPv4" } else { "IPv6" };
            note(
                notes,
                &a.rule.loc,
                format!(
                    "mark {} for {} {}: keepalived's fwmark {} service is {other}, so these \
                     packets reach no fwmark service, in keepalived either; not written",
                    a.rule.mark,
                    a.family(),
                    a.dest,
                    a.rule.mark
                ),
            );
        }
        let taken: BTreeSet<u32> = atoms[..i]
            .iter()
            .zip(&refused)
            .filter(|(c, why)| {
                why.is_none()
                    && is_wanted(c.rule.mark, c.dest.is_v6())
                    && c.seq < a.seq
                    && c.rule.mark != a.rule.mark
                    && !c.shadows(a)
                    && c.overlaps(a)
            })
            .map(|(c, _)| c.rule.loc.line)
            .collect();
        if taken.is_empty() {
            continue;
        }
        match &refused[i] {
            None => {
                chosen.push(i);
                overrides.insert(i, taken);
            }
            Some(why) => note(
                notes,
                &a.rule.loc,
                format!(
                    "mark {} for {}: takes packets from the rule of {} in the firewall, but \
                     {why}: not carried over; those packets keep that rule's mark in RVS",
                    a.rule.mark,
                    a.dest,
                    lines(&taken)
                ),
            ),
        }
    }

    let order = order(&atoms, &chosen, notes);

    // Rules not carried over, and rules that may keep packets from the
    // marking rules after them.
    let first_chosen_seq = chosen.iter().map(|&i| atoms[i].seq).min();
    let mut seq = 0;
    for (ci, chain) in chains.iter().enumerate() {
        for e in &chain.entries {
            seq += 1;
            match e {
                Entry::Mark(_) => {}
                Entry::Untranslated(u) => {
                    untranslated(u, &marks, first_chosen_seq.is_some_and(|f| f < seq), notes)
                }
                Entry::Stop(s) => {
                    let later: BTreeSet<u32> = chosen
                        .iter()
                        .map(|&i| &atoms[i])
                        .filter(|a| a.chain == ci && a.seq > seq && marks.contains(&a.rule.mark))
                        .map(|a| a.rule.mark)
                        .collect();
                    if !later.is_empty() {
                        let m: Vec<String> = later.iter().map(u32::to_string).collect();
                        note(
                            notes,
                            &s.loc,
                            format!(
                                "{} before rules setting mark {} in {}: the packets it matches \
                                 skip those rules in the firewall, but rvsd has no such rule and \
                                 marks them; not carried over: check that they may be balanced",
                                s.what,
                                m.join(", "),
                                chain.name
                            ),
                        );
                    }
                }
            }
        }
    }
    for u in rulesets.iter().flat_map(|r| &r.elsewhere) {
        untranslated(u, &marks, false, notes);
    }

    order
        .into_iter()
        .map(|i| {
            let a = &atoms[i];
            let mut comment = vec![format!("{}: {}", a.rule.loc, a.rule.text)];
            if let Some(taken) = overrides.get(&i) {
                comment.push(format!(
                    "(mark {} is no fwmark service's: written because it takes these packets \
                     from the rule of {}, as in the firewall)",
                    a.rule.mark,
                    lines(taken)
                ));
            }
            Chosen {
                rule: schema::Fwmark {
                    mark: a.rule.mark,
                    protocol: a.rule.protocol,
                    address: a.dest.to_string(),
                    ports: match &a.rule.ports {
                        Ports::All => Vec::new(),
                        Ports::List(l) => l.clone(),
                    },
                },
                comment,
            }
        })
        .collect()
}

/// Why rvsd would refuse `a` as a rule, if it would.
fn refusal(a: &Atom<'_>) -> Option<String> {
    let protocols: u64 = if a.rule.protocol.is_some() { 1 } else { 2 };
    let host_bits = a.dest.host_bits();
    if host_bits > MAX_RULE_HOST_BITS {
        return Some(format!(
            "{} covers more than {} addresses, which rvsd's classifier lists one by one (use \
             /{} or longer)",
            a.dest,
            1u32 << MAX_RULE_HOST_BITS,
            if a.dest.is_v6() { 128 } else { 32 } - MAX_RULE_HOST_BITS
        ));
    }
    let keys = (1u64 << host_bits) * protocols * a.rule.ports.count();
    if keys > MAX_SERVICE_KEYS {
        return Some(format!(
            "{} with its protocols and ports makes {keys} (address, protocol, port) keys, more \
             than rvsd's XDP filter holds ({MAX_SERVICE_KEYS})",
            a.dest
        ));
    }
    (a.rule.mark == 0).then(|| "it clears the mark (mark 0), which rvsd's rules cannot do".into())
}

/// The note for a rule not carried over, when it matters: it sets a
/// wanted mark, changes marks in a way RVS cannot follow, or (`after_chosen`)
/// sets another mark after rules that are carried over, so it may take
/// packets from them.
fn untranslated(
    u: &Untranslated,
    marks: &BTreeSet<u32>,
    after_chosen: bool,
    notes: &mut Vec<Note>,
) {
    let msg = match u.effect {
        MarkEffect::Set(m) if marks.contains(&m) => format!(
            "mark {m} not carried over: {}; the traffic it marks gets no mark in RVS",
            u.why
        ),
        MarkEffect::Set(m) if after_chosen => format!(
            "sets mark {m} after rules that are carried over, but {}: not carried over; packets \
             it matches that an earlier rule marks keep that rule's mark in RVS (check whether \
             it took any from a fwmark service)",
            u.why
        ),
        MarkEffect::Set(_) => return,
        MarkEffect::Unknown => format!(
            "changes marks: {}: not carried over; check that it does not mark traffic for a \
             fwmark service",
            u.why
        ),
    };
    note(notes, &u.loc, msg);
}

/// `chosen` in an order where rvsd's first match gives every packet the
/// firewall's mark: where two rules with different marks match some of
/// the same packets, the one that would set the final mark comes first
/// (the later one, unless the earlier ends the chain). Otherwise the
/// firewall's own order: a rule that must come earlier moves up to just
/// before the first rule it must precede.
fn order(atoms: &[Atom<'_>], chosen: &[usize], notes: &mut Vec<Note>) -> Vec<usize> {
    let n = chosen.len();
    // before[y]: the rules that must come before rule y.
    let mut before: Vec<Vec<usize>> = vec![Vec::new(); n];
    for x in 0..n {
        for y in x + 1..n {
            let (a, b) = (&atoms[chosen[x]], &atoms[chosen[y]]);
            if a.seq == b.seq || a.rule.mark == b.rule.mark || !a.overlaps(b) {
                continue;
            }
            // `a` runs before `b` in the firewall.
            if a.shadows(b) {
                before[y].push(x);
            } else {
                before[x].push(y);
                note(
                    notes,
                    &b.rule.loc,
                    format!(
                        "mark {} for {} written before the rule of line {} (mark {}): both \
                         match some packets, and a firewall MARK does not end the chain, so \
                         the later rule's mark stays; rvsd takes the first match",
                        b.rule.mark, b.dest, a.rule.loc.line, a.rule.mark
                    ),
                );
            }
        }
    }
    // Depth first, in the firewall's order, each rule after those it
    // must follow. The constraints form no cycle (later chains and later
    // rules come first, except after a rule that ends its chain); should
    // they, a rule met again while placing its own predecessors is placed
    // where first met.
    let mut placed = vec![false; n];
    let mut visiting = vec![false; n];
    let mut out = Vec::with_capacity(n);
    for root in 0..n {
        let mut stack = vec![(root, 0usize)];
        while let Some((x, next)) = stack.pop() {
            if placed[x] {
                continue;
            }
            visiting[x] = true;
            match before[x].get(next) {
                Some(&p) => {
                    stack.push((x, next + 1));
                    if !placed[p] && !visiting[p] {
                        stack.push((p, 0));
                    }
                }
                None => {
                    placed[x] = true;
                    visiting[x] = false;
                    out.push(chosen[x]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    #[test]
    fn prefixes_read_and_print() {
        assert_eq!(p("10.0.0.1").to_string(), "10.0.0.1");
        assert_eq!(p("10.0.0.1/32").to_string(), "10.0.0.1");
        assert_eq!(p("10.0.0.7/24").to_string(), "10.0.0.0/24");
        assert_eq!(p("10.0.0.0/255.255.255.0").to_string(), "10.0.0.0/24");
        assert_eq!(p("2001:db8::1/128").to_string(), "2001:db8::1");
        assert_eq!(p("2001:db8::/64").to_string(), "2001:db8::/64");
        assert_eq!(p("0.0.0.0/0").host_bits(), 32);
        assert!(Prefix::parse("10.0.0.0/255.0.255.0")
            .unwrap_err()
            .contains("not contiguous"));
        assert!(Prefix::parse("10.0.0.0/33").is_err());
        assert!(Prefix::parse("10.0.0.300").is_err());
        assert!(p("10.0.0.0/24").overlaps(&p("10.0.0.9")));
        assert!(!p("10.0.0.0/24").overlaps(&p("10.0.1.9")));
        assert!(!p("10.0.0.0/24").overlaps(&p("::/0")));
        assert!(p("::/0").overlaps(&p("2001:db8::1")));
    }

    #[test]
    fn ranges_split_into_exact_prefixes() {
        let r = |a: &str, b: &str| -> Vec<String> {
            range_prefixes(a.parse().unwrap(), b.parse().unwrap())
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(
            r("10.0.0.1", "10.0.0.10"),
            [
                "10.0.0.1",
                "10.0.0.2/31",
                "10.0.0.4/30",
                "10.0.0.8/31",
                "10.0.0.10"
            ]
        );
        assert_eq!(r("10.0.0.0", "10.0.0.255"), ["10.0.0.0/24"]);
        assert_eq!(r("0.0.0.0", "255.255.255.255"), ["0.0.0.0/0"]);
        assert_eq!(r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), ["::/0"]);
        assert_eq!(
            r("2001:db8::fffe", "2001:db8::1:1"),
            ["2001:db8::fffe/127", "2001:db8::1:0/127"]
        );
        assert!(range_prefixes("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap()).is_err());
        assert!(range_prefixes("10.0.0.2".parse().unwrap(), "::1".parse().unwrap()).is_err());
        // Worst case for IPv6: far more prefixes than allowed.
        assert!(
            range_prefixes("::1".parse().unwrap(), "ffff::fffe".parse().unwrap())
                .unwrap_err()
                .contains("more than")
        );
    }

    #[test]
    fn port_ranges_expand_up_to_the_limit() {
        let mut v = vec![80];
        push_port_range(&mut v, 79, 81).unwrap();
        assert_eq!(v, [80, 79, 81]);
        assert!(push_port_range(&mut v, 1, 2000).is_err());
        assert!(push_port_range(&mut v, 9, 8).is_err());
    }

    fn loc(line: u32) -> Loc {
        Loc {
            file: Some("fw".into()),
            line,
        }
    }

    fn rule(line: u32, mark: u32, dest: &str, ports: &[u16], terminal: bool) -> Entry {
        Entry::Mark(MarkRule {
            loc: loc(line),
            text: format!("rule {line}"),
            mark,
            protocol: Some(Protocol::Tcp),
            dests: vec![p(dest)],
            ports: if ports.is_empty() {
                Ports::All
            } else {
                Ports::List(ports.to_vec())
            },
            terminal,
        })
    }

    fn chain(priority: i32, entries: Vec<Entry>) -> Ruleset {
        Ruleset {
            chains: vec![Chain {
                name: "mangle PREROUTING".into(),
                priority,
                entries,
            }],
            elsewhere: Vec::new(),
        }
    }

    fn want(marks: &[u32]) -> Vec<Wanted> {
        marks
            .iter()
            .map(|&mark| Wanted { mark, v6: false })
            .collect()
    }

    fn written(c: &[Chosen]) -> Vec<(u32, String)> {
        c.iter()
            .map(|c| (c.rule.mark, c.rule.address.clone()))
            .collect()
    }

    #[test]
    fn disjoint_rules_keep_their_order_and_unwanted_marks_are_left_out() {
        let mut notes = Vec::new();
        let r = chain(
            -150,
            vec![
                rule(1, 2, "10.0.0.2", &[80], false),
                rule(2, 1, "10.0.0.1", &[80], false),
                rule(3, 9, "10.0.9.9", &[], false),
            ],
        );
        let c = select(&[r], &want(&[1, 2]), &mut notes);
        assert_eq!(
            written(&c),
            [(2, "10.0.0.2".into()), (1, "10.0.0.1".into())]
        );
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(c[0].comment, ["fw line 1: rule 1"]);
    }

    #[test]
    fn the_later_of_two_overlapping_marks_comes_first() {
        let mut notes = Vec::new();
        let r = chain(
            -150,
            vec![
                rule(1, 1, "10.0.0.0/24", &[], false),
                rule(2, 2, "10.0.0.7", &[443], false),
            ],
        );
        let c = select(&[r], &want(&[1, 2]), &mut notes);
        assert_eq!(
            written(&c),
            [(2, "10.0.0.7".into()), (1, "10.0.0.0/24".into())]
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].msg.contains("written before the rule of line 1"),
            "{notes:?}"
        );
    }

    #[test]
    fn a_terminal_rule_keeps_its_place_in_its_chain() {
        let mut notes = Vec::new();
        let r = chain(
            -150,
            vec![
                rule(1, 1, "10.0.0.7", &[443], true),
                rule(2, 2, "10.0.0.0/24", &[], false),
            ],
        );
        let c = select(&[r], &want(&[1, 2]), &mut notes);
        assert_eq!(
            written(&c),
            [(1, "10.0.0.7".into()), (2, "10.0.0.0/24".into())]
        );
        assert!(notes.is_empty(), "{notes:?}");
        // A later chain runs after an accept in an earlier one.
        let first = chain(-150, vec![rule(1, 1, "10.0.0.7", &[443], true)]);
        let second = chain(0, vec![rule(5, 2, "10.0.0.0/24", &[], false)]);
        let c = select(&[second, first], &want(&[1, 2]), &mut notes);
        assert_eq!(
            written(&c),
            [(2, "10.0.0.0/24".into()), (1, "10.0.0.7".into())]
        );
    }

    #[test]
    fn an_unwanted_mark_that_takes_packets_is_written_before_them() {
        let mut notes = Vec::new();
        let r = chain(
            -150,
            vec![
                rule(1, 1, "10.0.0.0/24", &[], false),
                rule(2, 77, "10.0.0.9", &[], false),
                rule(3, 0, "10.0.0.8", &[], false),
            ],
        );
        let c = select(&[r], &want(&[1]), &mut notes);
        assert_eq!(
            written(&c),
            [(77, "10.0.0.9".into()), (1, "10.0.0.0/24".into())]
        );
        assert!(
            c[0].comment[1].contains("mark 77 is no fwmark service's"),
            "{c:?}"
        );
        let text = format!("{notes:?}");
        assert!(text.contains("clears the mark (mark 0)"), "{text}");
    }

    #[test]
    fn what_rvsd_refuses_is_noted_and_left_out() {
        let mut notes = Vec::new();
        let r = chain(
            -150,
            vec![
                rule(1, 1, "10.0.0.0/16", &[], false),
                rule(2, 1, "10.0.0.1", &[], false),
            ],
        );
        let c = select(&[r], &want(&[1]), &mut notes);
        assert_eq!(written(&c), [(1, "10.0.0.1".into())]);
        assert!(
            notes[0].msg.contains("covers more than 4096 addresses"),
            "{notes:?}"
        );
    }

    #[test]
    fn family_mismatch_stops_and_untranslated_rules_are_noted() {
        let mut notes = Vec::new();
        let r = chain(
            -150,
            vec![
                Entry::Stop(Stop {
                    loc: loc(1),
                    what: "-j ACCEPT".into(),
                }),
                rule(2, 1, "2001:db8::1", &[], false),
                rule(3, 1, "10.0.0.1", &[], false),
                Entry::Untranslated(Untranslated {
                    loc: loc(4),
                    effect: MarkEffect::Set(1),
                    why: "-i eth1 (an interface match)".into(),
                }),
                Entry::Untranslated(Untranslated {
                    loc: loc(5),
                    effect: MarkEffect::Set(5),
                    why: "-s 10.9.0.0/16 (a source address match)".into(),
                }),
                Entry::Untranslated(Untranslated {
                    loc: loc(6),
                    effect: MarkEffect::Unknown,
                    why: "CONNMARK --restore-mark".into(),
                }),
            ],
        );
        let c = select(&[r], &want(&[1]), &mut notes);
        assert_eq!(written(&c), [(1, "10.0.0.1".into())]);
        let lines: Vec<u32> = notes.iter().map(|n| n.loc.line).collect();
        assert_eq!(lines, [2, 1, 4, 5, 6], "{notes:#?}");
        assert!(notes[0].msg.contains("service is IPv4"));
        assert!(notes[1]
            .msg
            .contains("-j ACCEPT before rules setting mark 1"));
        assert!(notes[2].msg.contains("mark 1 not carried over: -i eth1"));
        assert!(notes[3]
            .msg
            .contains("sets mark 5 after rules that are carried over"));
        assert!(notes[4].msg.contains("changes marks: CONNMARK"));
        // Nothing wanted: nothing to say.
        let mut none = Vec::new();
        let r = chain(0, vec![rule(1, 1, "10.0.0.1", &[], false)]);
        assert!(select(&[r], &[], &mut none).is_empty() && none.is_empty());
    }
}
