//! `nft list ruleset` output: the rules of prerouting base chains (tables
//! of family ip, ip6 and inet) that set marks (`meta mark set 0x1`, or
//! `mark set 1` as older nft prints it), with the matches rvsd's rules can
//! express: `ip daddr` / `ip6 daddr` (an address, a prefix, a range or an
//! anonymous set of them), `tcp dport` / `udp dport` (a port, a range or a
//! set), `meta l4proto` / `ip protocol` / `ip6 nexthdr`. Chains run in
//! priority order. Every other match keeps a rule from being carried over
//! ([`super::Untranslated`]); marks set in other chains or hooks are
//! reported, not followed.

use std::net::IpAddr;
use std::sync::Arc;

use rvs_vocab::Protocol;

use super::{
    push_port_range, range_prefixes, Chain, Entry, MarkEffect, MarkRule, Ports, Prefix, Ruleset,
    Stop, Untranslated,
};
use crate::parse::{Loc, ParseError};

/// A lexical token with its line.
#[derive(Debug, Clone, PartialEq)]
enum Tk {
    Word(String),
    Str(String),
    Open,
    Close,
    Semi,
    Comma,
    Newline,
}

/// A rule's words, with anonymous sets `{ a, b }` as nested items.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Word(String),
    Str(String),
    Set(Vec<Vec<Item>>),
}

impl Item {
    fn word(&self) -> Option<&str> {
        match self {
            Item::Word(w) => Some(w),
            _ => None,
        }
    }
}

/// The items as nft prints them, for comments and notes.
fn show(items: &[Item]) -> String {
    items
        .iter()
        .map(|i| match i {
            Item::Word(w) => w.clone(),
            Item::Str(s) => format!("\"{s}\""),
            Item::Set(elems) => {
                let e: Vec<String> = elems.iter().map(|e| show(e)).collect();
                format!("{{ {} }}", e.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn lex(text: &str) -> Result<Vec<(Tk, u32)>, (u32, String)> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let n = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        let mut chars = line.chars().peekable();
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut Vec<(Tk, u32)>| {
            if !word.is_empty() {
                out.push((Tk::Word(std::mem::take(word)), n));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '#' => break,
                '"' => {
                    flush(&mut word, &mut out);
                    let mut s = String::new();
                    let mut closed = false;
                    while let Some(q) = chars.next() {
                        match q {
                            '"' => {
                                closed = true;
                                break;
                            }
                            '\\' => {
                                if let Some(e) = chars.next() {
                                    s.push(e);
                                }
                            }
                            _ => s.push(q),
                        }
                    }
                    if !closed {
                        return Err((n, "unterminated quoted string: add the closing \"".into()));
                    }
                    out.push((Tk::Str(s), n));
                }
                '{' | '}' | ';' | ',' => {
                    flush(&mut word, &mut out);
                    out.push((
                        match c {
                            '{' => Tk::Open,
                            '}' => Tk::Close,
                            ';' => Tk::Semi,
                            _ => Tk::Comma,
                        },
                        n,
                    ));
                }
                c if c.is_whitespace() => flush(&mut word, &mut out),
                c => word.push(c),
            }
        }
        flush(&mut word, &mut out);
        out.push((Tk::Newline, n));
    }
    Ok(out)
}

/// Named hook priorities of families ip, ip6 and inet.
fn priority(words: &[String]) -> Result<i32, String> {
    let joined: String = words.concat();
    if let Ok(n) = joined.parse::<i32>() {
        return Ok(n);
    }
    let split = joined
        .char_indices()
        .skip(1)
        .find(|(_, c)| *c == '+' || *c == '-')
        .map(|(i, _)| i);
    let (name, offset) = match split {
        Some(i) => {
            let off: i32 = joined[i..].trim_start_matches('+').parse().map_err(|_| {
                format!("priority '{}' is not a number or NAME ± N", words.join(" "))
            })?;
            (&joined[..i], off)
        }
        None => (joined.as_str(), 0),
    };
    let base = match name {
        "raw" => -300,
        "mangle" => -150,
        "dstnat" => -100,
        "filter" => 0,
        "security" => 50,
        "srcnat" => 100,
        _ => {
            return Err(format!(
                "priority '{}' is not a number or one of raw, mangle, dstnat, filter, security, \
                 srcnat",
                words.join(" ")
            ))
        }
    };
    Ok(base + offset)
}

/// Braces nested in one rule (sets of sets): reading them recurses.
const MAX_SET_DEPTH: usize = 16;

/// A chain as read: its base-chain hook and priority, and its rules.
struct RawChain {
    name: String,
    hook: Option<(String, i32)>,
    rules: Vec<(Loc, Vec<Item>)>,
}

struct Parser {
    toks: Vec<(Tk, u32)>,
    pos: usize,
    source: Arc<str>,
}

impl Parser {
    fn loc(&self, line: u32) -> Loc {
        Loc {
            file: Some(self.source.clone()),
            line,
        }
    }

    fn err(&self, line: u32, msg: impl Into<String>) -> ParseError {
        ParseError::Syntax {
            loc: self.loc(line),
            msg: msg.into(),
        }
    }

    fn line(&self) -> u32 {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(1, |t| t.1)
    }

    fn peek(&self) -> Option<&Tk> {
        self.toks.get(self.pos).map(|t| &t.0)
    }

    fn next(&mut self) -> Option<(Tk, u32)> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn skip_blank(&mut self) {
        while matches!(self.peek(), Some(Tk::Newline | Tk::Semi)) {
            self.pos += 1;
        }
    }

    fn word(&mut self, what: &str) -> Result<String, ParseError> {
        let line = self.line();
        match self.next() {
            Some((Tk::Word(w), _)) | Some((Tk::Str(w), _)) => Ok(w),
            _ => Err(self.err(line, format!("expected {what}"))),
        }
    }

    fn open(&mut self, what: &str) -> Result<u32, ParseError> {
        let line = self.line();
        match self.next() {
            Some((Tk::Open, l)) => Ok(l),
            _ => Err(self.err(line, format!("expected '{{' after {what}"))),
        }
    }

    /// The tokens of one statement: up to a newline or ';' outside
    /// braces, or the '}' that closes the enclosing block (not consumed).
    fn statement(&mut self, block_line: u32) -> Result<Vec<(Tk, u32)>, ParseError> {
        let mut out = Vec::new();
        let mut depth = 0usize;
        loop {
            match self.peek() {
                None => {
                    return Err(
                        self.err(block_line, "this '{' is never closed: add the missing '}'")
                    )
                }
                Some(Tk::Newline | Tk::Semi) if depth == 0 => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(Tk::Close) if depth == 0 => return Ok(out),
                Some(Tk::Newline) => {
                    self.pos += 1;
                }
                Some(Tk::Open) => {
                    depth += 1;
                    if depth > MAX_SET_DEPTH {
                        let line = self.line();
                        return Err(self.err(line, "sets nested too deeply"));
                    }
                    out.extend(self.next());
                }
                Some(Tk::Close) => {
                    depth -= 1;
                    out.extend(self.next());
                }
                Some(_) => out.extend(self.next()),
            }
        }
    }

    /// Skips a `{ … }` block whose '{' was just read.
    fn skip_block(&mut self, open_line: u32) -> Result<(), ParseError> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next() {
                None => {
                    return Err(self.err(open_line, "this '{' is never closed: add the missing '}'"))
                }
                Some((Tk::Open, _)) => depth += 1,
                Some((Tk::Close, _)) => depth -= 1,
                _ => {}
            }
        }
        Ok(())
    }

    fn chain(&mut self, name: String) -> Result<RawChain, ParseError> {
        let open_line = self.open(&format!("chain {name}"))?;
        let mut c = RawChain {
            name,
            hook: None,
            rules: Vec::new(),
        };
        loop {
            self.skip_blank();
            if let Some(Tk::Close) = self.peek() {
                self.pos += 1;
                return Ok(c);
            }
            let stmt_line = self.line();
            let toks = self.statement(open_line)?;
            if toks.is_empty() {
                continue;
            }
            let first = match &toks[0].0 {
                Tk::Word(w) => w.as_str(),
                _ => "",
            };
            match first {
                "type" => c.hook = Some(self.chain_type(&toks, stmt_line)?),
                "policy" | "comment" | "devices" | "device" | "flags" => {}
                _ => {
                    let items = items(&toks).map_err(|m| self.err(stmt_line, m))?;
                    c.rules.push((self.loc(stmt_line), items));
                }
            }
        }
    }

    /// `type T hook H [device D] priority P`.
    fn chain_type(&self, toks: &[(Tk, u32)], line: u32) -> Result<(String, i32), ParseError> {
        let words: Vec<String> = toks
            .iter()
            .filter_map(|(t, _)| match t {
                Tk::Word(w) | Tk::Str(w) => Some(w.clone()),
                _ => None,
            })
            .collect();
        let at = |k: &str| words.iter().position(|w| w == k);
        let hook = at("hook")
            .and_then(|i| words.get(i + 1))
            .ok_or_else(|| self.err(line, "a base chain's type needs 'hook NAME'"))?;
        if !matches!(
            hook.as_str(),
            "prerouting" | "input" | "forward" | "output" | "postrouting" | "ingress" | "egress"
        ) {
            return Err(self.err(line, format!("'{hook}' is not a netfilter hook")));
        }
        let prio = match at("priority") {
            Some(i) => priority(&words[i + 1..]).map_err(|m| self.err(line, m))?,
            None => return Err(self.err(line, "a base chain's type needs 'priority P'")),
        };
        Ok((hook.clone(), prio))
    }
}

/// A statement's tokens as items, anonymous sets nested.
fn items(toks: &[(Tk, u32)]) -> Result<Vec<Item>, String> {
    fn seq(toks: &[(Tk, u32)], i: &mut usize, in_set: bool) -> Result<Vec<Vec<Item>>, String> {
        let mut elems = vec![Vec::new()];
        while let Some((t, _)) = toks.get(*i) {
            *i += 1;
            let cur = elems.last_mut().ok_or("empty")?;
            match t {
                Tk::Word(w) => cur.push(Item::Word(w.clone())),
                Tk::Str(s) => cur.push(Item::Str(s.clone())),
                Tk::Open => {
                    let inner = seq(toks, i, true)?;
                    let cur = elems.last_mut().ok_or("empty")?;
                    cur.push(Item::Set(
                        inner.into_iter().filter(|e| !e.is_empty()).collect(),
                    ));
                }
                Tk::Close if in_set => return Ok(elems),
                Tk::Close => return Err("'}' without a matching '{'".into()),
                Tk::Comma if in_set => elems.push(Vec::new()),
                Tk::Comma => cur.push(Item::Word(",".into())),
                Tk::Semi | Tk::Newline => {}
            }
        }
        if in_set {
            return Err("a set '{' is never closed".into());
        }
        Ok(elems)
    }
    let mut i = 0;
    let mut all = seq(toks, &mut i, false)?;
    Ok(all.pop().unwrap_or_default())
}

/// Reads `nft list ruleset` output; `source` names the file in notes and
/// errors. Malformed input is an error naming the line.
pub fn parse(text: &str, source: &str) -> Result<Ruleset, ParseError> {
    let source: Arc<str> = source.into();
    let toks = lex(text).map_err(|(line, msg)| ParseError::Syntax {
        loc: Loc {
            file: Some(source.clone()),
            line,
        },
        msg,
    })?;
    let mut p = Parser {
        toks,
        pos: 0,
        source,
    };
    let mut out = Ruleset::default();
    loop {
        p.skip_blank();
        let line = p.line();
        let Some((tok, _)) = p.next() else {
            return Ok(out);
        };
        match tok {
            Tk::Word(w) if w == "table" => {}
            Tk::Close => {
                return Err(p.err(
                    line,
                    "'}' without a matching '{': remove it or open the block it closes",
                ))
            }
            other => {
                let shown = match other {
                    Tk::Word(w) | Tk::Str(w) => w,
                    _ => "{".into(),
                };
                return Err(p.err(
                    line,
                    format!(
                        "'{shown}' where a table should start: give the output of `nft list \
                         ruleset` (tables only; no commands, variables or includes)"
                    ),
                ));
            }
        }
        let first = p.word("a table family or name after 'table'")?;
        let (family, name) = match p.peek() {
            Some(Tk::Word(_)) => (first, p.word("a table name")?),
            _ => ("ip".to_string(), first),
        };
        if !matches!(
            family.as_str(),
            "ip" | "ip6" | "inet" | "arp" | "bridge" | "netdev"
        ) {
            return Err(p.err(
                line,
                format!("'{family}' is not a table family (ip, ip6, inet, arp, bridge, netdev)"),
            ));
        }
        let open_line = p.open(&format!("table {family} {name}"))?;
        let mut chains = Vec::new();
        loop {
            p.skip_blank();
            match p.peek() {
                None => {
                    return Err(p.err(open_line, "this '{' is never closed: add the missing '}'"))
                }
                Some(Tk::Close) => {
                    p.pos += 1;
                    break;
                }
                Some(Tk::Word(w)) if w == "chain" => {
                    p.pos += 1;
                    let cname = p.word("a chain name")?;
                    chains.push(p.chain(cname)?);
                }
                _ => {
                    // Sets, maps, flowtables, named objects, flags: skipped
                    // (a rule referring to a named set is not carried over).
                    loop {
                        match p.next() {
                            None => {
                                return Err(p.err(
                                    open_line,
                                    "this '{' is never closed: add the missing '}'",
                                ))
                            }
                            Some((Tk::Newline | Tk::Semi, _)) => break,
                            Some((Tk::Open, l)) => {
                                p.skip_block(l)?;
                                break;
                            }
                            Some((Tk::Close, _)) => {
                                p.pos -= 1;
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        finish_table(&family, &name, chains, &mut out)?;
    }
}

/// What a rule does, as far as marks go.
#[derive(Default)]
struct Rule {
    dests: Option<Vec<Prefix>>,
    protocol: Option<Option<Protocol>>,
    ports: Option<Ports>,
    blockers: Vec<String>,
    mark: Option<Result<u32, String>>,
    verdict: Option<Verdict>,
}

#[derive(Clone)]
enum Verdict {
    /// Ends this chain (accept, return).
    End,
    /// Ends every chain (drop, reject, queue).
    Final(String),
    Jump(String, bool),
}

/// Port names nft may print (with `-S`-less older versions).
fn service_port(name: &str) -> Option<u16> {
    Some(match name {
        "ftp" => 21,
        "ssh" => 22,
        "smtp" => 25,
        "domain" => 53,
        "http" => 80,
        "pop3" => 110,
        "ntp" => 123,
        "imap" => 143,
        "snmp" => 161,
        "ldap" => 389,
        "https" => 443,
        "submission" => 587,
        "ldaps" => 636,
        "imaps" => 993,
        "pop3s" => 995,
        _ => return None,
    })
}

fn port_value(s: &str) -> Result<u16, String> {
    s.parse()
        .ok()
        .or_else(|| service_port(s))
        .ok_or_else(|| format!("'{s}' is not a port (0..65535)"))
}

/// One address value: `A`, `A/LEN` or `A-B`.
fn addr_value(s: &str) -> Result<Result<Vec<Prefix>, String>, String> {
    if let Some((a, b)) = s.split_once('-') {
        if let (Ok(lo), Ok(hi)) = (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
            return Ok(range_prefixes(lo, hi));
        }
    }
    Prefix::parse(s).map(|p| Ok(vec![p]))
}

fn protocol_value(s: &str) -> Option<Protocol> {
    match s {
        "tcp" | "6" => Some(Protocol::Tcp),
        "udp" | "17" => Some(Protocol::Udp),
        _ => None,
    }
}

/// The values of a match: one word or an anonymous set of single words;
/// `Err` describes what else it is (a named set, a concatenation …).
fn values(item: Option<&Item>) -> Result<Vec<String>, String> {
    match item {
        Some(Item::Word(w)) if w.starts_with('@') => Err(format!("the named set {w}")),
        Some(Item::Word(w)) if w.starts_with('$') => Err(format!("the variable {w}")),
        Some(Item::Word(w)) => Ok(vec![w.clone()]),
        Some(Item::Set(elems)) => elems
            .iter()
            .map(|e| match e.as_slice() {
                [Item::Word(w)] => Ok(w.clone()),
                other => Err(format!("the set element '{}'", show(other))),
            })
            .collect(),
        Some(Item::Str(s)) => Ok(vec![s.clone()]),
        None => Err("no value".into()),
    }
}

/// Words that start a statement or match rvs-migrate knows, where an
/// unknown construct's words end.
fn is_keyword(w: &str) -> bool {
    matches!(
        w,
        "ip" | "ip6"
            | "tcp"
            | "udp"
            | "th"
            | "meta"
            | "mark"
            | "ct"
            | "iif"
            | "oif"
            | "iifname"
            | "oifname"
            | "counter"
            | "log"
            | "comment"
            | "accept"
            | "drop"
            | "reject"
            | "return"
            | "queue"
            | "continue"
            | "jump"
            | "goto"
            | "limit"
            | "fib"
            | "socket"
    )
}

/// Statements that may follow a mark expression, where its words end.
fn is_statement(w: &str) -> bool {
    matches!(
        w,
        "counter"
            | "log"
            | "comment"
            | "accept"
            | "drop"
            | "reject"
            | "return"
            | "queue"
            | "continue"
            | "jump"
            | "goto"
    )
}

/// Reads a rule's items (`table_v6`: the family of an ip or ip6 table).
fn rule(items: &[Item], table_v6: Option<bool>) -> Result<Rule, String> {
    let mut r = Rule::default();
    let mut i = 0;
    let word = |i: usize| items.get(i).and_then(Item::word).unwrap_or("");
    while i < items.len() {
        let start = i;
        let w = word(i);
        i += 1;
        match w {
            "ip" | "ip6" => {
                let field = word(i);
                i += 1;
                let negated = word(i) == "!=";
                if matches!(word(i), "==" | "!=") {
                    i += 1;
                }
                let vals = if matches!(word(i), "." | "map" | "vmap") {
                    Err("a concatenation or map".to_string())
                } else {
                    values(items.get(i))
                };
                i += 1;
                let shown = show(&items[start..i.min(items.len())]);
                if negated {
                    r.blockers.push(format!("{shown} (a negation)"));
                    continue;
                }
                match (w, field) {
                    (_, "daddr") => {
                        let vals = match vals {
                            Ok(v) => v,
                            Err(e) => {
                                r.blockers.push(format!("{shown} ({e})"));
                                continue;
                            }
                        };
                        let mut dests = Vec::new();
                        for v in &vals {
                            match addr_value(v)? {
                                Ok(p) => dests.extend(p),
                                Err(e) => {
                                    r.blockers.push(format!("{shown} ({e})"));
                                    dests.clear();
                                    break;
                                }
                            }
                        }
                        let v6 = w == "ip6";
                        if let Some(d) = dests.iter().find(|d| d.is_v6() != v6) {
                            return Err(format!("{w} daddr: {d} is not an {w} address"));
                        }
                        if table_v6.is_some_and(|t| t != v6) {
                            return Err(format!("{w} daddr in a table of the other family"));
                        }
                        if r.dests.is_some() {
                            r.blockers
                                .push(format!("{shown} (a second destination match)"));
                        } else if !dests.is_empty() {
                            r.dests = Some(dests);
                        }
                    }
                    ("ip", "protocol") | ("ip6", "nexthdr") => protocol(&mut r, vals, &shown),
                    (_, "saddr") => r.blockers.push(format!("{shown} (a source address match)")),
                    _ => r
                        .blockers
                        .push(format!("{shown} (a match rvsd's rules cannot express)")),
                }
            }
            "meta" if word(i) == "l4proto" => {
                i += 1;
                if word(i) == "==" {
                    i += 1;
                }
                let negated = word(i) == "!=";
                if negated {
                    i += 1;
                }
                let vals = values(items.get(i));
                i += 1;
                let shown = show(&items[start..i.min(items.len())]);
                if negated {
                    r.blockers.push(format!("{shown} (a negation)"));
                } else {
                    protocol(&mut r, vals, &shown);
                }
            }
            "meta" if word(i) == "nfproto" => {
                // The family: the destination address says it already.
                i += 2;
            }
            "tcp" | "udp" | "th" => {
                let field = word(i);
                i += 1;
                let negated = word(i) == "!=";
                if matches!(word(i), "==" | "!=") {
                    i += 1;
                }
                let vals = if matches!(word(i), "." | "map" | "vmap") {
                    Err("a concatenation or map".to_string())
                } else {
                    values(items.get(i))
                };
                i += 1;
                let shown = show(&items[start..i.min(items.len())]);
                if negated {
                    r.blockers.push(format!("{shown} (a negation)"));
                    continue;
                }
                match (w, field) {
                    ("th", _) => r.blockers.push(format!(
                        "{shown} (a transport-header match of any protocol: write tcp dport or \
                         udp dport)"
                    )),
                    (_, "dport") => {
                        let p = protocol_value(w);
                        if r.protocol.is_some_and(|q| q != p) {
                            r.blockers
                                .push(format!("{shown} (contradicts the protocol match)"));
                            continue;
                        }
                        r.protocol = Some(p);
                        match vals {
                            Err(e) => r.blockers.push(format!("{shown} ({e})")),
                            Ok(vals) => match ports(&vals)? {
                                Ok(p) if r.ports.is_none() => r.ports = Some(p),
                                Ok(_) => r.blockers.push(format!("{shown} (a second port match)")),
                                Err(e) => r.blockers.push(format!("{shown} ({e})")),
                            },
                        }
                    }
                    (_, "sport") => r.blockers.push(format!("{shown} (a source port match)")),
                    _ => r
                        .blockers
                        .push(format!("{shown} (a match rvsd's rules cannot express)")),
                }
            }
            "meta" | "mark"
                if (w == "mark" && word(i) == "set")
                    || (w == "meta" && word(i) == "mark" && word(i + 1) == "set") =>
            {
                i += if w == "meta" { 2 } else { 1 };
                let value = word(i).to_string();
                i += 1;
                let rest_is_expr = matches!(
                    word(i),
                    "|" | "&" | "^" | "or" | "and" | "xor" | "<<" | ">>" | "map"
                );
                let shown = show(&items[start..i.min(items.len())]);
                r.mark = Some(if value.is_empty() {
                    return Err(format!("{shown}: the mark is missing"));
                } else if matches!(
                    value.as_str(),
                    "ct" | "meta"
                        | "mark"
                        | "ip"
                        | "ip6"
                        | "tcp"
                        | "udp"
                        | "numgen"
                        | "jhash"
                        | "symhash"
                ) || rest_is_expr
                {
                    // An expression: skip its words.
                    while i < items.len() && !is_statement(word(i)) {
                        i += 1;
                    }
                    Err(format!(
                        "{} (the mark comes from an expression, not a constant)",
                        show(&items[start..i.min(items.len())])
                    ))
                } else {
                    Ok(mark_value(&value).map_err(|e| format!("{shown}: {e}"))?)
                });
            }
            "ct" if word(i) == "mark" && word(i + 1) == "set" => {
                // The connection's mark: no effect on the packet's.
                i += 3;
                while i < items.len() && !is_statement(word(i)) {
                    i += 1;
                }
            }
            "counter" => {
                if word(i) == "packets" {
                    i += 4;
                }
            }
            "log" => {
                while matches!(
                    word(i),
                    "prefix" | "level" | "group" | "snaplen" | "queue-threshold" | "flags"
                ) {
                    i += 2;
                }
            }
            "comment" => i += 1,
            "continue" => {}
            "accept" | "return" => r.verdict = Some(Verdict::End),
            "drop" | "reject" | "queue" => {
                while i < items.len() && !is_keyword(word(i)) {
                    i += 1;
                }
                r.verdict = Some(Verdict::Final(show(&items[start..i])));
            }
            "jump" | "goto" => {
                let target = word(i).to_string();
                i += 1;
                if target.is_empty() {
                    return Err(format!("{w} needs a chain name"));
                }
                r.verdict = Some(Verdict::Jump(target, w == "goto"));
            }
            _ => {
                // Anything else matches on what rvsd's rules cannot express
                // (interfaces, conntrack, marks, limits …), up to the next
                // word rvs-migrate knows.
                while i < items.len() && !is_keyword(word(i)) {
                    i += 1;
                }
                if matches!(
                    w,
                    "ct" | "meta"
                        | "mark"
                        | "iif"
                        | "oif"
                        | "iifname"
                        | "oifname"
                        | "limit"
                        | "fib"
                        | "socket"
                ) {
                    // Keywords consume at least their next word.
                    i = i.max(start + 2).min(items.len());
                    while i < items.len() && !is_keyword(word(i)) {
                        i += 1;
                    }
                }
                let shown = show(&items[start..i]);
                let kind = match w {
                    "ct" => "a connection-tracking match",
                    "iif" | "oif" | "iifname" | "oifname" => "an interface match",
                    "mark" => "a match on the mark",
                    "meta" if word(start + 1) == "mark" => "a match on the mark",
                    "meta"
                        if word(start + 1).ends_with("name")
                            || word(start + 1).starts_with("iif")
                            || word(start + 1).starts_with("oif") =>
                    {
                        "an interface match"
                    }
                    "limit" => "a rate match",
                    "fib" => "a routing lookup",
                    "socket" => "a socket lookup",
                    _ if items[start..i].iter().any(|x| x.word() == Some("vmap")) => {
                        "a verdict map"
                    }
                    _ => "not understood",
                };
                if kind == "a verdict map" {
                    r.verdict = Some(Verdict::Final(shown.clone()));
                }
                r.blockers.push(format!("{shown} ({kind})"));
            }
        }
    }
    Ok(r)
}

fn protocol(r: &mut Rule, vals: Result<Vec<String>, String>, shown: &str) {
    let vals = match vals {
        Ok(v) => v,
        Err(e) => {
            r.blockers.push(format!("{shown} ({e})"));
            return;
        }
    };
    let protos: Option<Vec<Protocol>> = vals.iter().map(|v| protocol_value(v)).collect();
    let p = match protos.as_deref() {
        Some([p]) => Some(*p),
        Some(ps) if ps.contains(&Protocol::Tcp) && ps.contains(&Protocol::Udp) => None,
        Some(_) => Some(Protocol::Tcp),
        None => {
            r.blockers
                .push(format!("{shown} (RVS balances TCP and UDP only)"));
            return;
        }
    };
    match r.protocol {
        Some(q) if q != p && q.is_some() && p.is_some() => r
            .blockers
            .push(format!("{shown} (contradicts the protocol match)")),
        Some(Some(_)) => {}
        _ => r.protocol = Some(p),
    }
}

/// Ports and port ranges; `Ok(Err)` for too many to list.
fn ports(vals: &[String]) -> Result<Result<Ports, String>, String> {
    let mut list = Vec::new();
    for v in vals {
        let (lo, hi) = match v.split_once('-') {
            Some((a, b)) => (port_value(a)?, port_value(b)?),
            None => {
                let p = port_value(v)?;
                (p, p)
            }
        };
        if (lo, hi) == (0, u16::MAX) {
            return Ok(Ok(Ports::All));
        }
        if lo > hi {
            return Err(format!("port range {v} ends before it starts"));
        }
        if let Err(e) = push_port_range(&mut list, lo, hi) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(Ports::List(list)))
}

fn mark_value(s: &str) -> Result<u32, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    v.map_err(|_| format!("'{s}' is not a mark (a 32-bit number)"))
}

/// The table's chains into `out`: prerouting base chains of ip, ip6 and
/// inet tables as chains, marks set anywhere else as elsewhere.
fn finish_table(
    family: &str,
    table: &str,
    chains: Vec<RawChain>,
    out: &mut Ruleset,
) -> Result<(), ParseError> {
    let table_v6 = match family {
        "ip" => Some(false),
        "ip6" => Some(true),
        _ => None,
    };
    // Every rule read first: a jump's target may come later in the table.
    let mut read: Vec<Vec<(Loc, Vec<Item>, Rule)>> = Vec::new();
    for c in &chains {
        let mut rules = Vec::new();
        for (loc, items) in &c.rules {
            let r = rule(items, table_v6).map_err(|msg| ParseError::Syntax {
                loc: loc.clone(),
                msg,
            })?;
            rules.push((loc.clone(), items.clone(), r));
        }
        read.push(rules);
    }
    let affects = |name: &str| {
        chains
            .iter()
            .zip(&read)
            .filter(|(c, _)| c.name == name)
            .any(|(_, rules)| {
                rules
                    .iter()
                    .any(|(_, _, r)| r.mark.is_some() || r.verdict.is_some())
            })
    };
    let ip_family = matches!(family, "ip" | "ip6" | "inet");
    for (c, rules) in chains.iter().zip(read.iter()) {
        let prerouting = ip_family && c.hook.as_ref().is_some_and(|(h, _)| h == "prerouting");
        let name = format!("table {family} {table}, chain {}", c.name);
        if !prerouting {
            let place = match &c.hook {
                None => format!(
                    "it is in {name}, which rvs-migrate does not follow from the prerouting \
                     chains' jumps (move the rule into a prerouting chain, or write its \
                     [[fwmark]] rule by hand)"
                ),
                Some((hook, _)) => format!(
                    "it is in {name} (hook {hook}): only prerouting chains of ip, ip6 and inet \
                     tables are carried over"
                ),
            };
            for (loc, _, r) in rules {
                let effect = match &r.mark {
                    Some(Ok(m)) => MarkEffect::Set(*m),
                    Some(Err(_)) => MarkEffect::Unknown,
                    None => continue,
                };
                out.elsewhere.push(Untranslated {
                    loc: loc.clone(),
                    effect,
                    why: place.clone(),
                });
            }
            continue;
        }
        let mut entries = Vec::new();
        for (loc, items, r) in rules {
            if let Some(e) = entry(loc, items, r, &affects) {
                entries.push(e);
            }
        }
        out.chains.push(Chain {
            name,
            priority: c.hook.as_ref().map_or(0, |(_, p)| *p),
            entries,
        });
    }
    Ok(())
}

fn entry(loc: &Loc, items: &[Item], r: &Rule, affects: &dyn Fn(&str) -> bool) -> Option<Entry> {
    let stop = |what: String| {
        Entry::Stop(Stop {
            loc: loc.clone(),
            what,
        })
    };
    let text = show(items);
    let mark = match &r.mark {
        None => {
            return match &r.verdict {
                None => None,
                Some(Verdict::End | Verdict::Final(_)) => Some(stop(format!("'{text}'"))),
                Some(Verdict::Jump(chain, goto)) => (*goto || affects(chain)).then(|| {
                    stop(format!(
                        "'{text}' (chain {chain}'s rules may mark or stop packets; rvs-migrate \
                         does not follow jumps)"
                    ))
                }),
            };
        }
        Some(Err(e)) => {
            return Some(Entry::Untranslated(Untranslated {
                loc: loc.clone(),
                effect: MarkEffect::Unknown,
                why: e.clone(),
            }))
        }
        Some(Ok(m)) => *m,
    };
    let untranslated = |why: String| {
        Some(Entry::Untranslated(Untranslated {
            loc: loc.clone(),
            effect: MarkEffect::Set(mark),
            why,
        }))
    };
    let terminal = match &r.verdict {
        None => false,
        Some(Verdict::End) => true,
        Some(Verdict::Final(v)) => {
            return untranslated(format!("it also ends with '{v}'"));
        }
        Some(Verdict::Jump(chain, goto)) if affects(chain) => {
            return untranslated(format!(
                "it then {} chain {chain}, whose rules rvs-migrate does not follow",
                if *goto { "goes to" } else { "jumps to" }
            ));
        }
        Some(Verdict::Jump(_, goto)) => *goto,
    };
    if !r.blockers.is_empty() {
        return untranslated(r.blockers.join("; "));
    }
    let Some(dests) = &r.dests else {
        return untranslated(
            "it matches every destination address (no ip daddr / ip6 daddr), and rvsd's rules \
             need an address or prefix"
                .into(),
        );
    };
    Some(Entry::Mark(MarkRule {
        loc: loc.clone(),
        text,
        mark,
        protocol: r.protocol.flatten(),
        dests: dests.clone(),
        ports: r.ports.clone().unwrap_or_default(),
        terminal,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Ruleset {
        parse(text, "ruleset.nft").unwrap_or_else(|e| panic!("{e}"))
    }

    fn chain(rules: &str) -> Vec<Entry> {
        let text = format!(
            "table ip mangle {{\n\tchain PREROUTING {{\n\t\ttype filter hook prerouting priority mangle; policy accept;\n{rules}\t}}\n}}\n"
        );
        let mut r = parse_ok(&text);
        assert_eq!(r.chains.len(), 1, "{r:?}");
        assert_eq!(r.chains[0].priority, -150);
        r.chains.remove(0).entries
    }

    fn one(rule: &str) -> Entry {
        let mut e = chain(&format!("\t\t{rule}\n"));
        assert_eq!(e.len(), 1, "{rule}: {e:?}");
        e.remove(0)
    }

    fn mark(rule: &str) -> MarkRule {
        match one(rule) {
            Entry::Mark(m) => m,
            other => panic!("{rule}: {other:?}"),
        }
    }

    fn why(rule: &str) -> (MarkEffect, String) {
        match one(rule) {
            Entry::Untranslated(u) => (u.effect, u.why),
            other => panic!("{rule}: {other:?}"),
        }
    }

    fn dests(m: &MarkRule) -> Vec<String> {
        m.dests.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn meta_mark_set_with_address_and_port() {
        let m = mark("ip daddr 10.0.100.1 tcp dport 80 counter packets 12 bytes 720 meta mark set 0x00000001");
        assert_eq!(
            (m.mark, m.protocol, dests(&m), m.ports.clone(), m.terminal),
            (
                1,
                Some(Protocol::Tcp),
                vec!["10.0.100.1".to_string()],
                Ports::List(vec![80]),
                false
            )
        );
        assert_eq!(m.loc.to_string(), "ruleset.nft line 4");
        assert_eq!(m.text, "ip daddr 10.0.100.1 tcp dport 80 counter packets 12 bytes 720 meta mark set 0x00000001");
    }

    #[test]
    fn sets_prefixes_ranges_and_old_mark_syntax() {
        let m = mark("ip daddr 10.0.100.0/24 tcp dport { 80, 443 } mark set 1");
        assert_eq!(
            (m.mark, dests(&m), m.ports),
            (
                1,
                vec!["10.0.100.0/24".to_string()],
                Ports::List(vec![80, 443])
            )
        );
        let m = mark("ip daddr { 10.0.0.1, 10.0.1.0/28, 10.0.2.1-10.0.2.2 } udp dport 5000-5002 meta mark set 7 accept");
        assert_eq!(
            dests(&m),
            ["10.0.0.1", "10.0.1.0/28", "10.0.2.1", "10.0.2.2"]
        );
        assert_eq!(
            (m.protocol, m.ports, m.terminal),
            (
                Some(Protocol::Udp),
                Ports::List(vec![5000, 5001, 5002]),
                true
            )
        );
        let m =
            mark("meta l4proto { tcp, udp } ip daddr 10.0.0.9 meta mark set 0x2 comment \"dns\"");
        assert_eq!((m.protocol, m.ports), (None, Ports::All));
        let m = mark("ip protocol tcp ip daddr 10.0.0.9 tcp dport https meta mark set 3");
        assert_eq!(
            (m.protocol, m.ports),
            (Some(Protocol::Tcp), Ports::List(vec![443]))
        );
        // A set spread over lines, as nft prints long ones.
        let e =
            chain("\t\tip daddr { 10.0.0.1, 10.0.0.2,\n\t\t\t   10.0.0.3 } meta mark set 0x4\n");
        let Entry::Mark(m) = &e[0] else {
            panic!("{e:?}")
        };
        assert_eq!(dests(m), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(m.loc.line, 4);
    }

    #[test]
    fn ip6_and_inet_tables() {
        let r = parse_ok(
            "table inet lb {\n  chain pre {\n    type filter hook prerouting priority -160; policy accept;\n    \
             ip6 daddr 2001:db8::10 tcp dport 443 meta mark set 0x00000003\n    ip daddr 10.0.0.3 meta mark set 0x3\n  }\n}\n",
        );
        assert_eq!(r.chains[0].priority, -160);
        let d: Vec<String> = r.chains[0]
            .entries
            .iter()
            .map(|e| match e {
                Entry::Mark(m) => dests(m).join(","),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(d, ["2001:db8::10", "10.0.0.3"]);
        let e = parse("table ip6 x {\n chain p {\n  type filter hook prerouting priority 0\n  ip daddr 10.0.0.1 meta mark set 1\n }\n}\n", "n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("n line 4: ip daddr in a table of the other family"),
            "{e}"
        );
    }

    #[test]
    fn priorities_order_names_and_offsets() {
        assert_eq!(priority(&["mangle".into()]), Ok(-150));
        assert_eq!(
            priority(&["mangle".into(), "-".into(), "5".into()]),
            Ok(-155)
        );
        assert_eq!(
            priority(&["filter".into(), "+".into(), "10".into()]),
            Ok(10)
        );
        assert_eq!(priority(&["dstnat".into()]), Ok(-100));
        assert_eq!(priority(&["-300".into()]), Ok(-300));
        assert!(priority(&["soon".into()]).is_err());
    }

    #[test]
    fn what_rvsd_cannot_express_is_described() {
        let cases = [
            (
                "ip daddr != 10.0.0.1 meta mark set 1",
                "ip daddr != 10.0.0.1 (a negation)",
            ),
            (
                "iifname \"eth1\" ip daddr 10.0.0.1 meta mark set 1",
                "iifname \"eth1\" (an interface match)",
            ),
            (
                "meta iifname \"eth1\" ip daddr 10.0.0.1 meta mark set 1",
                "(an interface match)",
            ),
            (
                "ip saddr 192.0.2.0/24 ip daddr 10.0.0.1 meta mark set 1",
                "ip saddr 192.0.2.0/24 (a source address match)",
            ),
            (
                "ip daddr 10.0.0.1 tcp sport 1024-65535 meta mark set 1",
                "tcp sport 1024-65535 (a source port match)",
            ),
            (
                "ct state new ip daddr 10.0.0.1 meta mark set 1",
                "ct state new (a connection-tracking match)",
            ),
            (
                "meta mark 0x2 ip daddr 10.0.0.1 meta mark set 1",
                "meta mark 0x2 (a match on the mark)",
            ),
            ("ip daddr @vips meta mark set 1", "the named set @vips"),
            (
                "ip daddr . tcp dport { 10.0.0.1 . 80 } meta mark set 1",
                "a concatenation or map",
            ),
            (
                "ip daddr 10.0.0.1 th dport 80 meta mark set 1",
                "transport-header match",
            ),
            (
                "ip daddr 10.0.0.1 meta l4proto sctp meta mark set 1",
                "RVS balances TCP and UDP only",
            ),
            (
                "fib daddr type local ip daddr 10.0.0.1 meta mark set 1",
                "fib daddr type local",
            ),
            (
                "ip daddr 10.0.0.1 limit rate 10/second meta mark set 1",
                "(a rate match)",
            ),
            ("tcp dport 80 meta mark set 1", "every destination address"),
            (
                "ip daddr 10.0.0.1 meta mark set 1 drop",
                "it also ends with 'drop'",
            ),
            (
                "ip daddr 10.0.0.1 tcp dport 1-2000 meta mark set 1",
                "more than 1024 ports",
            ),
        ];
        for (rule, want) in cases {
            let (effect, w) = why(rule);
            assert_eq!(effect, MarkEffect::Set(1), "{rule}");
            assert!(w.contains(want), "{rule}: {w}");
        }
        for rule in [
            "ip daddr 10.0.0.1 meta mark set meta mark | 0x00000004",
            "meta mark set ct mark",
            "meta mark set ip daddr map { 10.0.0.1 : 0x1 }",
        ] {
            let (effect, w) = why(rule);
            assert_eq!(effect, MarkEffect::Unknown, "{rule}");
            assert!(w.contains("an expression"), "{rule}: {w}");
        }
    }

    #[test]
    fn verdicts_stops_and_what_is_ignored() {
        let e = chain(
            "\t\tip saddr 10.9.0.0/16 accept\n\t\tct mark set meta mark\n\t\tjump lvs\n\t\tjump quiet\n\t\tcounter\n\t}\n\
             \tchain lvs {\n\t\tip daddr 10.0.0.1 meta mark set 5\n\t}\n\tchain quiet {\n\t\tlog prefix \"x \"\n",
        );
        let what: Vec<String> = e
            .iter()
            .map(|e| match e {
                Entry::Stop(s) => s.what.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(what.len(), 2, "{what:?}");
        assert_eq!(what[0], "'ip saddr 10.9.0.0/16 accept'");
        assert!(
            what[1].starts_with("'jump lvs' (chain lvs's rules"),
            "{what:?}"
        );
    }

    #[test]
    fn marks_elsewhere_and_other_objects() {
        let r = parse_ok(
            "# Warning: table ip filter is managed by iptables-nft, do not touch!\n\
             table ip filter {\n\tset vips {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1, 10.0.0.2 }\n\t}\n\
             \tflags dormant\n\tchain INPUT {\n\t\ttype filter hook input priority filter; policy accept;\n\
             \t\tip daddr 10.0.0.1 meta mark set 0x1\n\t}\n\tchain sub {\n\t\tmeta mark set ct mark\n\t}\n}\n\
             table netdev edge {\n\tchain ingress {\n\t\ttype filter hook ingress device \"eth0\" priority -500; policy accept;\n\
             \t\tip daddr 10.0.0.2 meta mark set 2\n\t}\n}\n",
        );
        assert!(r.chains.is_empty(), "{r:?}");
        let got: Vec<(u32, MarkEffect)> =
            r.elsewhere.iter().map(|u| (u.loc.line, u.effect)).collect();
        assert_eq!(
            got,
            [
                (10, MarkEffect::Set(1)),
                (13, MarkEffect::Unknown),
                (19, MarkEffect::Set(2))
            ]
        );
        assert!(r.elsewhere[0].why.contains("(hook input)"));
        assert!(r.elsewhere[1].why.contains("does not follow"));
    }

    #[test]
    fn malformed_input_names_the_line() {
        let err = |text: &str| parse(text, "r.nft").unwrap_err().to_string();
        assert_eq!(
            err("table ip t {\n chain c {\n  type filter hook prerouting priority 0;\n  ip daddr 10.0.0.300 meta mark set 1\n }\n}\n"),
            "r.nft line 4: '10.0.0.300' is not an address or prefix"
        );
        assert_eq!(
            err("table ip t {\n chain c {\n  type filter hook prerouting priority 0;\n  ip daddr 10.0.0.1 meta mark set one\n }\n}\n"),
            "r.nft line 4: meta mark set one: 'one' is not a mark (a 32-bit number)"
        );
        assert!(err("table ip t {\n chain c {\n  type filter hook prerouting priority 0;\n  ip daddr 10.0.0.1 tcp dport 99999 meta mark set 1\n }\n}\n")
            .starts_with("r.nft line 4: '99999' is not a port"));
        assert!(
            err("table ip t {\n chain c {\n  ip daddr 10.0.0.1 meta mark set\n }\n}\n")
                .contains("the mark is missing")
        );
        assert_eq!(
            err("table ip t {\n chain c {\n  type filter hook prerouting priority 0;\n"),
            "r.nft line 2: this '{' is never closed: add the missing '}'"
        );
        assert!(err("table ip t {\n").starts_with("r.nft line 1: this '{' is never closed"));
        assert!(err("}\n").starts_with("r.nft line 1: '}' without"));
        assert!(err("flush ruleset\n").contains("nft list ruleset"));
        assert!(err("*mangle\n").contains("where a table should start"));
        assert!(err(
            "table ip t {\n chain c {\n  type filter hook prerouting priority soon;\n }\n}\n"
        )
        .starts_with("r.nft line 3: priority 'soon'"));
        assert!(
            err("table ip t {\n chain c {\n  type filter hook sideways priority 0;\n }\n}\n")
                .contains("not a netfilter hook")
        );
        assert!(err("table ip t {\n chain c {\n  comment \"open\n }\n}\n")
            .starts_with("r.nft line 3: unterminated"));
        assert!(err("table wat t {\n}\n").contains("not a table family"));
        assert!(err("table ip t {\n chain c {\n  type filter hook prerouting priority 0;\n  ip daddr { 10.0.0.1\n").contains("never closed"));
        let deep = format!(
            "table ip t {{\n chain c {{\n  ip daddr {}{} meta mark set 1\n }}\n}}\n",
            "{ ".repeat(10_000),
            "} ".repeat(10_000)
        );
        assert_eq!(err(&deep), "r.nft line 3: sets nested too deeply");
    }
}
