//! `iptables-save` / `ip6tables-save` output: the rules of table mangle's
//! PREROUTING chain that set marks (`-j MARK --set-mark N` or, as
//! iptables-save writes it, `--set-xmark N/0xffffffff`), with the matches
//! rvsd's rules can express: `-d ADDR[/LEN]`, `-p tcp|udp`, `--dport P[:Q]`,
//! `-m multiport --dports …` and `-m iprange --dst-range A-B` (split into
//! prefixes). Every other match keeps a rule from being carried over
//! ([`super::Untranslated`], with what it matches on); marks set anywhere
//! else are reported, not followed.

use std::sync::Arc;

use rvs_vocab::Protocol;

use super::{
    push_port_range, range_prefixes, Chain, Entry, MarkEffect, MarkRule, Ports, Prefix, Ruleset,
    Stop, Untranslated,
};
use crate::parse::{Loc, ParseError};

/// The mangle table's hook priority (NF_IP_PRI_MANGLE).
const MANGLE_PRIORITY: i32 = -150;

/// One word of a rule; `quoted` words are values, never options.
#[derive(Debug, Clone)]
struct Tok {
    text: String,
    quoted: bool,
}

/// A rule as read, before its table is complete.
struct RawRule {
    loc: Loc,
    text: String,
    rule: Rule,
}

/// What a rule matches and does, as far as marks are concerned.
#[derive(Default)]
struct Rule {
    chain: String,
    dests: Option<Vec<Prefix>>,
    protocol: Option<Protocol>,
    ports: Option<Ports>,
    /// The matches rvsd cannot express, each described.
    blockers: Vec<String>,
    target: Target,
}

#[derive(Default)]
enum Target {
    /// No target, or one that does not touch marks or the traversal.
    #[default]
    Other,
    /// `-j MARK` setting this mark on any packet.
    SetMark(u32),
    /// `-j MARK` with a mask or arithmetic, or another target changing
    /// marks (CONNMARK --restore-mark, TPROXY): described.
    ChangeMark(String),
    /// A verdict that ends the chain (`-j ACCEPT`, …): described.
    Stop(String),
    /// `-j CHAIN` / `-g CHAIN` to a chain of the table.
    Jump(String, bool),
}

impl Target {
    fn touches_marks_or_traversal(&self) -> bool {
        !matches!(self, Target::Other)
    }
}

struct Table {
    name: String,
    loc: Loc,
    /// Declared chains and whether each is built in (has a policy).
    chains: Vec<(String, bool)>,
    rules: Vec<RawRule>,
}

/// Reads iptables-save (or ip6tables-save) output; `source` names the
/// file in notes and errors. Malformed input is an error naming the line.
pub fn parse(text: &str, source: &str) -> Result<Ruleset, ParseError> {
    let source: Arc<str> = source.into();
    let mut out = Ruleset::default();
    let mut table: Option<Table> = None;
    for (idx, raw) in text.lines().enumerate() {
        let loc = Loc {
            file: Some(source.clone()),
            line: u32::try_from(idx + 1).unwrap_or(u32::MAX),
        };
        let err = |msg: String| ParseError::Syntax {
            loc: loc.clone(),
            msg,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if let Some(t) = &table {
                return Err(err(format!(
                    "table *{name} starts before table *{} ({}) ends with COMMIT",
                    t.name, t.loc
                )));
            }
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(err(format!("'{line}' is not a table name like *mangle")));
            }
            table = Some(Table {
                name: name.to_string(),
                loc: loc.clone(),
                chains: Vec::new(),
                rules: Vec::new(),
            });
            continue;
        }
        if line == "COMMIT" {
            let t = table
                .take()
                .ok_or_else(|| err("COMMIT outside a table (no *table before it)".into()))?;
            finish_table(t, &mut out);
            continue;
        }
        if line.starts_with("iptables") || line.starts_with("ip6tables") {
            return Err(err(
                "this is an iptables command, not iptables-save output: give the output of \
                 iptables-save (and ip6tables-save)"
                    .into(),
            ));
        }
        if line.starts_with("table ") {
            return Err(err(
                "this looks like nft's ruleset: give it with --nft, not --iptables-save".into(),
            ));
        }
        let Some(t) = table.as_mut() else {
            return Err(err(format!(
                "'{}' outside a table: iptables-save output starts each table with *name",
                shorten(line)
            )));
        };
        if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            let (Some(name), Some(policy)) = (words.next(), words.next()) else {
                return Err(err(format!(
                    "'{line}' is not a chain declaration like :PREROUTING ACCEPT [0:0]"
                )));
            };
            t.chains.push((name.to_string(), policy != "-"));
            continue;
        }
        // `iptables-save -c` puts the counters first.
        let rule_text = match line.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((_, r)) => r.trim_start(),
                None => return Err(err(format!("'{}': unclosed [counters]", shorten(line)))),
            },
            None => line,
        };
        if !(rule_text.starts_with("-A ") || rule_text.starts_with("--append ")) {
            return Err(err(format!(
                "'{}' is not iptables-save output: expected *table, :CHAIN, -A CHAIN … or COMMIT",
                shorten(line)
            )));
        }
        let toks = tokenize(rule_text).map_err(err)?;
        let rule = rule(&toks, &t.chains).map_err(err)?;
        t.rules.push(RawRule {
            loc: loc.clone(),
            text: rule_text.to_string(),
            rule,
        });
    }
    if let Some(t) = table {
        return Err(ParseError::Syntax {
            loc: t.loc,
            msg: format!(
                "table *{} is not closed by COMMIT (a truncated file?)",
                t.name
            ),
        });
    }
    Ok(out)
}

fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

/// The table's marking rules into `out`: mangle PREROUTING as a chain,
/// marks set anywhere else as [`Ruleset::elsewhere`].
fn finish_table(t: Table, out: &mut Ruleset) {
    let affects = |chain: &str| {
        t.rules
            .iter()
            .any(|r| r.rule.chain == chain && r.rule.target.touches_marks_or_traversal())
    };
    let mut prerouting = Vec::new();
    for raw in &t.rules {
        let r = &raw.rule;
        if t.name == "mangle" && r.chain == "PREROUTING" {
            if let Some(e) = entry(raw, &affects) {
                prerouting.push(e);
            }
            continue;
        }
        let effect = match &r.target {
            Target::SetMark(m) => MarkEffect::Set(*m),
            Target::ChangeMark(_) => MarkEffect::Unknown,
            _ => continue,
        };
        let builtin = t.chains.iter().any(|(c, b)| c == &r.chain && *b);
        let place = if t.name != "mangle" {
            format!(
                "it is in table {}, chain {}: only table mangle's PREROUTING rules are carried over",
                t.name, r.chain
            )
        } else if builtin {
            format!(
                "it is in chain {}: only PREROUTING's rules are carried over",
                r.chain
            )
        } else {
            format!(
                "it is in chain {}, which rvs-migrate does not follow from PREROUTING's jumps \
                 (move the rule into PREROUTING, or write its [[fwmark]] rule by hand)",
                r.chain
            )
        };
        let why = match &r.target {
            Target::ChangeMark(d) => format!("{d}; {place}"),
            _ => place,
        };
        out.elsewhere.push(Untranslated {
            loc: raw.loc.clone(),
            effect,
            why,
        });
    }
    if t.name == "mangle" {
        out.chains.push(Chain {
            name: "mangle PREROUTING".into(),
            priority: MANGLE_PRIORITY,
            entries: prerouting,
        });
    }
}

/// A PREROUTING rule as far as marks go; `None` for one that neither
/// marks nor changes the traversal.
fn entry(raw: &RawRule, affects: &dyn Fn(&str) -> bool) -> Option<Entry> {
    let r = &raw.rule;
    let loc = raw.loc.clone();
    Some(match &r.target {
        Target::Other => return None,
        Target::SetMark(m) if !r.blockers.is_empty() => Entry::Untranslated(Untranslated {
            loc,
            effect: MarkEffect::Set(*m),
            why: r.blockers.join("; "),
        }),
        Target::SetMark(m) => match &r.dests {
            None => Entry::Untranslated(Untranslated {
                loc,
                effect: MarkEffect::Set(*m),
                why: "it matches every destination address (no -d), and rvsd's rules need an \
                      address or prefix"
                    .into(),
            }),
            Some(dests) => Entry::Mark(MarkRule {
                loc,
                text: raw.text.clone(),
                mark: *m,
                protocol: r.protocol,
                dests: dests.clone(),
                ports: r.ports.clone().unwrap_or_default(),
                terminal: false,
            }),
        },
        Target::ChangeMark(d) => Entry::Untranslated(Untranslated {
            loc,
            effect: MarkEffect::Unknown,
            why: d.clone(),
        }),
        Target::Stop(what) => Entry::Stop(Stop {
            loc,
            what: what.clone(),
        }),
        Target::Jump(chain, goto) => {
            if !*goto && !affects(chain) {
                return None;
            }
            let flag = if *goto { "-g" } else { "-j" };
            Entry::Stop(Stop {
                loc,
                what: format!(
                    "{flag} {chain} (its rules may mark or stop packets; rvs-migrate does not \
                     follow jumps)"
                ),
            })
        }
    })
}

/// Splits a rule into words as iptables-restore does: blanks separate,
/// double or single quotes group (backslash escapes inside).
fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut text = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '"' || c == '\'' {
                quoted = true;
                let mut closed = false;
                while let Some(q) = chars.next() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    if q == '\\' {
                        if let Some(e) = chars.next() {
                            text.push(e);
                        }
                    } else {
                        text.push(q);
                    }
                }
                if !closed {
                    return Err(format!("unterminated quoted string: add the closing {c}"));
                }
            } else {
                text.push(c);
            }
        }
        out.push(Tok { text, quoted });
    }
}

/// A mark value: decimal or 0x hexadecimal, 32 bits.
fn mark_value(s: &str) -> Result<u32, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    v.map_err(|_| format!("'{s}' is not a mark (a 32-bit number)"))
}

/// `V` or `V/MASK`.
fn mark_and_mask(s: &str) -> Result<(u32, u32), String> {
    match s.split_once('/') {
        Some((v, m)) => Ok((mark_value(v)?, mark_value(m)?)),
        None => Ok((mark_value(s)?, u32::MAX)),
    }
}

fn port(s: &str) -> Result<u16, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not a port (0..65535)"))
}

/// `P`, `P:Q` (`P:` and `:Q` open-ended) into `ports`.
fn port_spec(s: &str, ports: &mut Vec<u16>, full: &mut bool) -> Result<(), String> {
    let (lo, hi) = match s.split_once(':') {
        Some((l, h)) => (
            if l.is_empty() { 0 } else { port(l)? },
            if h.is_empty() { u16::MAX } else { port(h)? },
        ),
        None => {
            let p = port(s)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!("port range {s} ends before it starts"));
    }
    if (lo, hi) == (0, u16::MAX) {
        *full = true;
        return Ok(());
    }
    push_port_range(ports, lo, hi)
}

/// iptables' own options (not a match module's).
fn is_core(opt: &str) -> bool {
    matches!(
        opt,
        "-d" | "--destination"
            | "--dst"
            | "-s"
            | "--source"
            | "--src"
            | "-p"
            | "--protocol"
            | "-i"
            | "--in-interface"
            | "-o"
            | "--out-interface"
            | "-f"
            | "--fragment"
            | "-m"
            | "--match"
            | "-c"
            | "--set-counters"
            | "-4"
            | "--ipv4"
            | "-6"
            | "--ipv6"
    )
}

/// What a match module matches on, for notes.
fn module_kind(name: &str) -> &'static str {
    match name {
        "state" | "conntrack" | "ctstate" | "connbytes" | "connlimit" | "helper" => {
            "a connection-tracking match"
        }
        "mark" | "connmark" => "a match on the mark",
        "set" => "an ipset match",
        "addrtype" => "an address-type match",
        "mac" | "physdev" => "a link-layer match",
        "limit" | "hashlimit" | "recent" | "statistic" | "quota" => "a rate or count match",
        "length" | "string" | "u32" | "bpf" | "tos" | "dscp" | "ttl" | "hl" | "ecn" => {
            "a packet-content match"
        }
        _ => "a match rvsd's rules cannot express",
    }
}

/// Reads `-A CHAIN` and its options (`chains`: those declared so far, to
/// tell a jump from a verdict).
fn rule(toks: &[Tok], chains: &[(String, bool)]) -> Result<Rule, String> {
    let mut i = 0;
    let word = |i: usize| toks.get(i).map(|t| t.text.as_str());
    let is_opt = |i: usize| {
        toks.get(i)
            .is_some_and(|t| !t.quoted && t.text.len() > 1 && t.text.starts_with('-'))
    };
    let is_bang = |i: usize| toks.get(i).is_some_and(|t| !t.quoted && t.text == "!");
    let mut r = Rule {
        chain: word(1).ok_or("-A needs a chain name")?.to_string(),
        ..Rule::default()
    };
    i += 2;
    let mut negate = false;
    // Inside `-m NAME` of a module rvsd cannot express: its options are
    // part of that blocker.
    let mut unknown_module = false;
    while i < toks.len() {
        if is_bang(i) {
            negate = true;
            i += 1;
            continue;
        }
        if !is_opt(i) {
            return Err(format!(
                "unexpected '{}': expected an option such as -d, -p, -m or -j",
                toks[i].text
            ));
        }
        let opt = toks[i].text.clone();
        i += 1;
        // The option's values: every word up to the next option or '!'.
        let start = i;
        while i < toks.len() && !is_opt(i) && !is_bang(i) {
            i += 1;
        }
        // An old-style negation after the option (`-d ! 10.0.0.1`).
        let mut vals: Vec<&str> = toks[start..i].iter().map(|t| t.text.as_str()).collect();
        if vals.is_empty() && is_bang(i) && i + 1 < toks.len() && !is_opt(i + 1) {
            negate = true;
            i += 1;
            let s = i;
            while i < toks.len() && !is_opt(i) && !is_bang(i) {
                i += 1;
            }
            vals = toks[s..i].iter().map(|t| t.text.as_str()).collect();
        }
        let shown = if vals.is_empty() {
            opt.clone()
        } else {
            format!("{opt} {}", vals.join(" "))
        };
        let one = |what: &str| -> Result<&str, String> {
            match vals.as_slice() {
                [v] => Ok(*v),
                [] => Err(format!("{opt} needs {what}")),
                _ => Err(format!("{opt} takes one value, not '{}'", vals.join(" "))),
            }
        };
        if matches!(opt.as_str(), "-j" | "--jump" | "-g" | "--goto") {
            let name = vals
                .first()
                .copied()
                .ok_or(format!("{opt} needs a target"))?;
            if negate {
                return Err(format!("{opt} cannot be negated"));
            }
            let goto = matches!(opt.as_str(), "-g" | "--goto");
            r.target = target(name, &toks[start + 1..], chains, goto)?;
            return Ok(r);
        }
        if negate {
            r.blockers.push(format!("! {shown} (a negation)"));
            negate = false;
            continue;
        }
        match opt.as_str() {
            "-m" | "--match" => {
                let name = one("a match name")?;
                unknown_module =
                    !matches!(name, "tcp" | "udp" | "multiport" | "comment" | "iprange");
                if unknown_module {
                    r.blockers
                        .push(format!("-m {name} ({})", module_kind(name)));
                }
                continue;
            }
            _ if unknown_module && !is_core(&opt) => {
                if let Some(b) = r.blockers.last_mut() {
                    // "-m NAME (kind)" → "-m NAME --opt v (kind)"
                    if let Some(pos) = b.rfind(" (") {
                        b.insert_str(pos, &format!(" {shown}"));
                    }
                }
                continue;
            }
            _ => {}
        }
        unknown_module = false;
        match opt.as_str() {
            "-d" | "--destination" | "--dst" => {
                let mut dests = Vec::new();
                for a in one("an address or prefix")?.split(',') {
                    dests.push(Prefix::parse(a)?);
                }
                if r.dests.is_some() {
                    r.blockers
                        .push(format!("{shown} (a second destination match)"));
                } else {
                    r.dests = Some(dests);
                }
            }
            "--dst-range" => {
                let v = one("an address range A-B")?;
                let (lo, hi) = v
                    .split_once('-')
                    .ok_or(format!("--dst-range '{v}' is not an address range A-B"))?;
                let lo = lo
                    .parse()
                    .map_err(|_| format!("--dst-range: '{lo}' is not an address"))?;
                let hi = hi
                    .parse()
                    .map_err(|_| format!("--dst-range: '{hi}' is not an address"))?;
                match range_prefixes(lo, hi) {
                    Ok(p) if r.dests.is_none() => r.dests = Some(p),
                    Ok(_) => r
                        .blockers
                        .push(format!("{shown} (a second destination match)")),
                    Err(e) => r.blockers.push(format!("{shown} ({e})")),
                }
            }
            "-p" | "--protocol" => match one("a protocol")?.to_ascii_lowercase().as_str() {
                "tcp" | "6" => r.protocol = Some(Protocol::Tcp),
                "udp" | "17" => r.protocol = Some(Protocol::Udp),
                "all" | "0" => r.protocol = None,
                other => r
                    .blockers
                    .push(format!("-p {other} (RVS balances TCP and UDP only)")),
            },
            "--dport" | "--destination-port" | "--dports" | "--destination-ports" => {
                let mut list = Vec::new();
                let mut full = false;
                let v = one("ports")?;
                let specs: Vec<&str> = if opt.ends_with('s') {
                    v.split(',').collect()
                } else {
                    vec![v]
                };
                let mut too_many = None;
                for s in specs {
                    if let Err(e) = port_spec(s, &mut list, &mut full) {
                        if e.contains("more than") {
                            too_many = Some(e);
                        } else {
                            return Err(format!("{opt}: {e}"));
                        }
                    }
                }
                if let Some(e) = too_many {
                    r.blockers.push(format!("{shown} ({e})"));
                } else if r.ports.is_some() {
                    r.blockers.push(format!("{shown} (a second port match)"));
                } else {
                    r.ports = Some(if full { Ports::All } else { Ports::List(list) });
                }
            }
            "-s" | "--source" | "--src" | "--src-range" => {
                r.blockers.push(format!("{shown} (a source address match)"))
            }
            "--sport" | "--source-port" | "--sports" | "--source-ports" | "--ports" => {
                r.blockers.push(format!("{shown} (a source port match)"))
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                r.blockers.push(format!("{shown} (an interface match)"))
            }
            "-f" | "--fragment" => r.blockers.push(format!("{shown} (a fragment match)")),
            "--tcp-flags" | "--syn" | "--tcp-option" => {
                r.blockers.push(format!("{shown} (a TCP flags match)"))
            }
            "--comment" | "-c" | "--set-counters" | "-4" | "--ipv4" | "-6" | "--ipv6" => {}
            _ => r.blockers.push(format!("{shown} (not understood)")),
        }
    }
    Ok(r)
}

/// The target `name` with its options `opts`.
fn target(
    name: &str,
    opts: &[Tok],
    chains: &[(String, bool)],
    goto: bool,
) -> Result<Target, String> {
    let words: Vec<&str> = opts.iter().map(|t| t.text.as_str()).collect();
    let shown = format!("-j {name} {}", words.join(" "));
    let shown = shown.trim_end();
    if chains.iter().any(|(c, builtin)| c == name && !builtin) {
        return Ok(Target::Jump(name.to_string(), goto));
    }
    if goto {
        return Err(format!(
            "-g {name}: {name} is not a chain declared in this table"
        ));
    }
    Ok(match name {
        "MARK" => {
            let [op, value] = words.as_slice() else {
                return Err(format!(
                    "{shown}: MARK takes one of --set-mark, --set-xmark, --and-mark, --or-mark, \
                     --xor-mark with a value"
                ));
            };
            match *op {
                "--set-mark" | "--set-xmark" => {
                    let (v, m) = mark_and_mask(value).map_err(|e| format!("{op}: {e}"))?;
                    if m == u32::MAX {
                        Target::SetMark(v)
                    } else {
                        Target::ChangeMark(format!(
                            "{shown} (a mask other than 0xffffffff: the mark it leaves depends \
                             on the mark before)"
                        ))
                    }
                }
                "--and-mark" | "--or-mark" | "--xor-mark" => {
                    mark_value(value).map_err(|e| format!("{op}: {e}"))?;
                    Target::ChangeMark(format!("{shown} (arithmetic on the mark before)"))
                }
                other => return Err(format!("{shown}: MARK has no option {other}")),
            }
        }
        "CONNMARK" if words.contains(&"--restore-mark") => Target::ChangeMark(format!(
            "{shown} (copies the connection's mark, which RVS does not keep)"
        )),
        "TPROXY" => Target::ChangeMark(format!("{shown} (a transparent proxy)")),
        "ACCEPT" | "DROP" | "REJECT" | "RETURN" | "QUEUE" | "NFQUEUE" => {
            Target::Stop(shown.to_string())
        }
        _ => Target::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Ruleset {
        parse(text, "rules.v4").unwrap_or_else(|e| panic!("{e}"))
    }

    fn mangle(rules: &str) -> Vec<Entry> {
        let text = format!(
            "# Generated by iptables-save\n*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n\
             :LVS - [0:0]\n{rules}COMMIT\n"
        );
        let mut r = parse_ok(&text);
        assert_eq!(r.chains.len(), 1);
        r.chains.remove(0).entries
    }

    fn one(rule: &str) -> Entry {
        let mut e = mangle(&format!("{rule}\n"));
        assert_eq!(e.len(), 1, "{e:?}");
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
    fn set_xmark_with_address_protocol_and_port() {
        let m = mark(
            "-A PREROUTING -d 10.0.100.1/32 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x1/0xffffffff",
        );
        assert_eq!(
            (m.mark, m.protocol, dests(&m), m.ports.clone()),
            (
                1,
                Some(Protocol::Tcp),
                vec!["10.0.100.1".to_string()],
                Ports::List(vec![80])
            )
        );
        assert_eq!(m.loc.to_string(), "rules.v4 line 6");
        assert!(m.text.starts_with("-A PREROUTING -d 10.0.100.1/32"));
        assert!(!m.terminal);
    }

    #[test]
    fn set_mark_multiport_ranges_and_prefixes() {
        let m = mark("-A PREROUTING -d 10.0.100.0/24 -p udp -m multiport --dports 53,5000:5002 -j MARK --set-mark 7");
        assert_eq!(
            (m.mark, m.protocol, dests(&m), m.ports),
            (
                7,
                Some(Protocol::Udp),
                vec!["10.0.100.0/24".to_string()],
                Ports::List(vec![53, 5000, 5001, 5002])
            )
        );
        let m = mark("-A PREROUTING -d 10.0.0.0/255.255.255.0 -j MARK --set-mark 0x10/0xffffffff");
        assert_eq!((m.mark, m.protocol, m.ports), (16, None, Ports::All));
        let m = mark("-A PREROUTING -d 10.0.0.1 -p tcp --dport 0:65535 -j MARK --set-mark 2");
        assert_eq!(m.ports, Ports::All);
        let m = mark("-A PREROUTING -d 2001:db8::10/128 -p tcp -m tcp --dport 443 -j MARK --set-xmark 0x3/0xffffffff");
        assert_eq!(dests(&m), ["2001:db8::10"]);
        // iptables-save -c: counters first; comments are ignored.
        let m = mark("[12:3400] -A PREROUTING -d 10.0.0.5/32 -m comment --comment \"web \\\"vip\\\"\" -j MARK --set-mark 4");
        assert_eq!((m.mark, dests(&m)), (4, vec!["10.0.0.5".to_string()]));
    }

    #[test]
    fn address_ranges_become_prefixes_or_a_note() {
        let m = mark("-A PREROUTING -m iprange --dst-range 10.0.0.1-10.0.0.6 -p tcp --dport 80 -j MARK --set-mark 1");
        assert_eq!(
            dests(&m),
            ["10.0.0.1", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6"]
        );
        let (_, w) =
            why("-A PREROUTING -m iprange --dst-range ::1-ffff::fffe -j MARK --set-mark 1");
        assert!(w.contains("takes more than 64 prefixes"), "{w}");
        let (_, w) = why("-A PREROUTING -m iprange --src-range 10.0.0.1-10.0.0.6 -d 10.0.0.9 -j MARK --set-mark 1");
        assert!(
            w.contains("--src-range 10.0.0.1-10.0.0.6 (a source address match)"),
            "{w}"
        );
    }

    #[test]
    fn what_rvsd_cannot_express_is_described() {
        let cases = [
            ("-A PREROUTING ! -d 10.0.0.1/32 -j MARK --set-mark 1", "! -d 10.0.0.1/32 (a negation)"),
            ("-A PREROUTING -d 10.0.0.1/32 -p tcp -m tcp ! --dport 22 -j MARK --set-mark 1", "! --dport 22 (a negation)"),
            ("-A PREROUTING -i eth1 -d 10.0.0.1/32 -j MARK --set-mark 1", "-i eth1 (an interface match)"),
            ("-A PREROUTING -s 192.0.2.0/24 -d 10.0.0.1/32 -j MARK --set-mark 1", "-s 192.0.2.0/24 (a source address match)"),
            ("-A PREROUTING -d 10.0.0.1/32 -p tcp -m tcp --sport 1024:65535 -j MARK --set-mark 1", "--sport 1024:65535 (a source port match)"),
            ("-A PREROUTING -d 10.0.0.1/32 -m conntrack --ctstate NEW -j MARK --set-mark 1", "-m conntrack --ctstate NEW (a connection-tracking match)"),
            ("-A PREROUTING -d 10.0.0.1/32 -m mark --mark 0x2 -j MARK --set-mark 1", "-m mark --mark 0x2 (a match on the mark)"),
            ("-A PREROUTING -d 10.0.0.1/32 -p sctp -j MARK --set-mark 1", "-p sctp (RVS balances TCP and UDP only)"),
            ("-A PREROUTING -d 10.0.0.1/32 -p tcp -m tcp --tcp-flags FIN,SYN SYN -j MARK --set-mark 1", "--tcp-flags FIN,SYN SYN (a TCP flags match)"),
            ("-A PREROUTING -d 10.0.0.1/32 -p tcp -m tcp --dport 1:2000 -j MARK --set-mark 1", "more than 1024 ports"),
            ("-A PREROUTING -p tcp -m tcp --dport 80 -j MARK --set-mark 1", "every destination address"),
        ];
        for (rule, want) in cases {
            let (effect, w) = why(rule);
            assert_eq!(effect, MarkEffect::Set(1), "{rule}");
            assert!(w.contains(want), "{rule}: {w}");
        }
        // Old-style negation after the option.
        let (_, w) = why("-A PREROUTING -d ! 10.0.0.1 -j MARK --set-mark 1");
        assert!(w.contains("! -d 10.0.0.1 (a negation)"), "{w}");
    }

    #[test]
    fn masks_arithmetic_and_restores_change_marks_in_unknown_ways() {
        for (rule, want) in [
            (
                "-A PREROUTING -d 10.0.0.1/32 -j MARK --set-xmark 0x1/0xff",
                "a mask other than 0xffffffff",
            ),
            (
                "-A PREROUTING -d 10.0.0.1/32 -j MARK --or-mark 0x4",
                "arithmetic",
            ),
            (
                "-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff",
                "connection's mark",
            ),
        ] {
            let (effect, w) = why(rule);
            assert_eq!(effect, MarkEffect::Unknown, "{rule}");
            assert!(w.contains(want), "{rule}: {w}");
        }
    }

    #[test]
    fn verdicts_and_jumps_are_stops_other_targets_nothing() {
        let e = mangle(
            "-A PREROUTING -s 10.9.0.0/16 -j ACCEPT\n-A PREROUTING -j LVS\n-A PREROUTING -j LOG --log-prefix \"x y\"\n\
             -A PREROUTING -j CONNMARK --save-mark\n-A PREROUTING -j LVS2\n-A LVS -d 10.0.0.1/32 -j MARK --set-mark 1\n",
        );
        // LVS2 is not declared: a target rvs-migrate does not know.
        let stops: Vec<String> = e
            .iter()
            .map(|e| match e {
                Entry::Stop(s) => s.what.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(stops.len(), 2, "{stops:?}");
        assert_eq!(stops[0], "-j ACCEPT");
        assert!(
            stops[1].starts_with("-j LVS (its rules may mark"),
            "{stops:?}"
        );
    }

    #[test]
    fn marks_elsewhere_are_reported_with_where() {
        let r = parse_ok(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:LVS - [0:0]\n\
             -A INPUT -d 10.0.0.1/32 -j MARK --set-mark 1\n-A LVS -d 10.0.0.2/32 -j MARK --set-mark 2\nCOMMIT\n\
             *nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d 10.0.0.3/32 -j MARK --set-mark 3\n\
             -A PREROUTING -d 10.0.0.3/32 -j DNAT --to-destination 10.1.1.1\nCOMMIT\n",
        );
        let got: Vec<(u32, MarkEffect, bool)> = r
            .elsewhere
            .iter()
            .map(|u| {
                (
                    u.loc.line,
                    u.effect,
                    u.why.contains("rvs-migrate does not follow"),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (5, MarkEffect::Set(1), false),
                (6, MarkEffect::Set(2), true),
                (10, MarkEffect::Set(3), false)
            ]
        );
        assert!(r.elsewhere[2].why.contains("table nat, chain PREROUTING"));
        assert!(r.chains[0].entries.is_empty());
    }

    #[test]
    fn malformed_input_names_the_line() {
        let err = |text: &str| parse(text, "rules.v4").unwrap_err().to_string();
        assert_eq!(
            err("*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d 10.0.0.300 -j MARK --set-mark 1\nCOMMIT\n"),
            "rules.v4 line 3: '10.0.0.300' is not an address or prefix"
        );
        assert_eq!(
            err("*mangle\n-A PREROUTING -d 10.0.0.1 -j MARK --set-mark one\nCOMMIT\n"),
            "rules.v4 line 2: --set-mark: 'one' is not a mark (a 32-bit number)"
        );
        assert!(
            err("*mangle\n-A PREROUTING -p tcp --dport 99999 -j MARK --set-mark 1\nCOMMIT\n")
                .starts_with("rules.v4 line 2: --dport: '99999' is not a port")
        );
        assert!(err("*mangle\n-A PREROUTING -d 10.0.0.1 -j MARK\nCOMMIT\n")
            .starts_with("rules.v4 line 2: -j MARK: MARK takes"));
        assert!(err("*mangle\n-A PREROUTING -j\nCOMMIT\n").contains("-j needs a target"));
        assert!(
            err("*mangle\n-A PREROUTING -d 10.0.0.1 stray -j ACCEPT\nCOMMIT\n")
                .contains("-d takes one value")
        );
        assert!(
            err("*mangle\n-A PREROUTING -m comment --comment \"open\nCOMMIT\n")
                .contains("unterminated")
        );
        assert_eq!(
            err("*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j ACCEPT\n"),
            "rules.v4 line 1: table *mangle is not closed by COMMIT (a truncated file?)"
        );
        assert!(err("COMMIT\n").starts_with("rules.v4 line 1: COMMIT outside a table"));
        assert!(err("*mangle\n*nat\n").contains("starts before table *mangle"));
        assert!(err("-A PREROUTING -j ACCEPT\n").contains("outside a table"));
        assert!(err("iptables -t mangle -A PREROUTING -j ACCEPT\n").contains("iptables command"));
        assert!(err("table ip mangle {\n").contains("--nft"));
        assert!(err("*mangle\nhello\nCOMMIT\n")
            .starts_with("rules.v4 line 2: 'hello' is not iptables-save output"));
    }
}
