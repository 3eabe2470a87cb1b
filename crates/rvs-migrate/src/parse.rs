//! keepalived.conf's block syntax: words, `{ }` blocks, `#`/`!` comments,
//! quoted strings with escapes, and `include` (relative to the including
//! file, with wildcards and brace expressions).
//!
//! The result is a tree of [`Node`]s that knows nothing about LVS; every node
//! carries the file and line it came from so later stages can point the
//! operator at the exact place.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a statement came from, so every note and error can name the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// Included file as shown to the operator; `None` for the main file.
    pub file: Option<Arc<str>>,
    /// 1-based line number.
    pub line: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            None => write!(f, "line {}", self.line),
            Some(file) => write!(f, "{file} line {}", self.line),
        }
    }
}

/// One statement: a keyword, its arguments and, for blocks, its children.
#[derive(Debug, Clone)]
pub struct Node {
    /// First word of the statement (`virtual_server`, `weight`, an address …).
    pub key: String,
    /// The remaining words on the statement's line.
    pub args: Vec<String>,
    /// `Some` when the statement opened a `{ }` block.
    pub block: Option<Vec<Node>>,
    /// Where the keyword is.
    pub loc: Loc,
}

impl Node {
    /// Children of a block, empty for a plain statement, so callers can walk
    /// both the same way.
    pub fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// Something said about the input that did not stop the migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Where in the keepalived configuration.
    pub loc: Loc,
    /// What was not carried over, and why.
    pub msg: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.msg)
    }
}

/// Why a keepalived configuration could not be read; nothing is written then.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The main file or an explicitly named include could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A syntax error: what is wrong and what to write instead.
    #[error("{loc}: {msg}")]
    Syntax {
        /// Where.
        loc: Loc,
        /// What to fix.
        msg: String,
    },
}

fn syntax(loc: &Loc, msg: impl Into<String>) -> ParseError {
    ParseError::Syntax {
        loc: loc.clone(),
        msg: msg.into(),
    }
}

#[derive(Debug, Clone)]
enum Tok {
    Word(String),
    Open,
    Close,
    Newline,
}

const MAX_INCLUDE_DEPTH: usize = 16;
const INCLUDE_KEYWORDS: [&str; 6] = [
    "include", "includer", "includem", "includew", "includeb", "includea",
];

/// Reads `path` (following includes) into a statement tree.
///
/// Notes are collected for includes that matched nothing, as keepalived
/// itself carries on in that case.
pub fn parse_file(path: &Path, notes: &mut Vec<Note>) -> Result<Vec<Node>, ParseError> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut toks = Vec::new();
    lex_file(path, None, &base, 0, &mut toks, notes)?;
    let mut p = TreeParser {
        toks,
        pos: 0,
        depth: 0,
    };
    p.items(None)
}

/// Parses configuration text held in memory (no includes relative to a
/// file: they resolve against the current directory).
pub fn parse_str(text: &str, notes: &mut Vec<Note>) -> Result<Vec<Node>, ParseError> {
    let mut toks = Vec::new();
    lex_text(
        text,
        None,
        Path::new("."),
        Path::new("."),
        0,
        &mut toks,
        notes,
    )?;
    let mut p = TreeParser {
        toks,
        pos: 0,
        depth: 0,
    };
    p.items(None)
}

fn lex_file(
    path: &Path,
    shown: Option<Arc<str>>,
    base: &Path,
    depth: usize,
    out: &mut Vec<(Tok, Loc)>,
    notes: &mut Vec<Note>,
) -> Result<(), ParseError> {
    let text = read_text(path, shown.clone())?;
    let dir = path.parent().unwrap_or(Path::new("."));
    lex_text(&text, shown, dir, base, depth, out, notes)
}

fn lex_text(
    text: &str,
    shown: Option<Arc<str>>,
    dir: &Path,
    base: &Path,
    depth: usize,
    out: &mut Vec<(Tok, Loc)>,
    notes: &mut Vec<Note>,
) -> Result<(), ParseError> {
    for (idx, line) in text.lines().enumerate() {
        let loc = Loc {
            file: shown.clone(),
            line: u32::try_from(idx + 1).unwrap_or(u32::MAX),
        };
        let trimmed = line.trim_start();
        if trimmed.starts_with('@') {
            return Err(syntax(
                &loc,
                "conditional configuration (@config-id) is not supported by rvs-migrate; \
                 keep only the lines for this director and remove the @ prefixes",
            ));
        }
        if trimmed.starts_with('$') && is_param_definition(trimmed) {
            return Err(syntax(
                &loc,
                "parameter definitions ($NAME=VALUE) are not supported by rvs-migrate; \
                 replace each $NAME with its value first",
            ));
        }
        let words = split_line(line, &loc)?;
        if let Some((Tok::Word(first), _)) = words.first() {
            if INCLUDE_KEYWORDS.contains(&first.as_str()) {
                let patterns: Vec<&str> = words[1..]
                    .iter()
                    .filter_map(|(t, _)| match t {
                        Tok::Word(w) => Some(w.as_str()),
                        _ => None,
                    })
                    .collect();
                // Brace expressions are part of the file name here, so take
                // the raw text rather than the brace-split words.
                let raw = raw_include_arg(line, first);
                if patterns.is_empty() || raw.is_empty() {
                    return Err(syntax(&loc, format!("{first} needs a file name")));
                }
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(syntax(
                        &loc,
                        "includes nested too deeply (an include loop?)",
                    ));
                }
                let pattern = if Path::new(&raw).is_absolute() {
                    PathBuf::from(&raw)
                } else {
                    dir.join(&raw)
                };
                let Some(files) = glob(&pattern.to_string_lossy()) else {
                    return Err(syntax(
                        &loc,
                        format!(
                            "include {raw}: more than {MAX_BRACES} brace expressions, or \
                             braces that expand to more than {MAX_BRACE_EXPANSIONS} file \
                             names"
                        ),
                    ));
                };
                if files.is_empty() {
                    notes.push(Note {
                        loc: loc.clone(),
                        msg: format!("include {raw}: no file matches; nothing included"),
                    });
                }
                for f in files {
                    let shown_name: Arc<str> =
                        f.strip_prefix(base).unwrap_or(&f).to_string_lossy().into();
                    lex_file(&f, Some(shown_name), base, depth + 1, out, notes)?;
                }
                continue;
            }
        }
        out.extend(words);
        out.push((Tok::Newline, loc));
    }
    Ok(())
}

/// The text of `path` (`shown` as notes name it; `None`: the main file).
/// Bytes that are not UTF-8 are an error naming their line.
pub(crate) fn read_text(path: &Path, shown: Option<Arc<str>>) -> Result<String, ParseError> {
    let bytes = std::fs::read(path).map_err(|source| ParseError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = valid.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        let byte = e.as_bytes().get(valid.len()).copied().unwrap_or(0);
        ParseError::Syntax {
            loc: Loc {
                file: shown,
                line: u32::try_from(line).unwrap_or(u32::MAX),
            },
            msg: format!(
                "not UTF-8 text (byte 0x{byte:02x} at column {column}): convert the file to \
                 UTF-8 (e.g. iconv -f latin1 -t utf-8)"
            ),
        }
    })
}

fn is_param_definition(s: &str) -> bool {
    let name: String = s[1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    !name.is_empty() && s[1 + name.len()..].starts_with('=')
}

fn raw_include_arg(line: &str, keyword: &str) -> String {
    let rest = line.trim_start();
    let rest = rest.strip_prefix(keyword).unwrap_or(rest);
    let mut out = String::new();
    let mut quote = None;
    for c in rest.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => out.push(c),
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' || c == '!' => break,
            None => out.push(c),
        }
    }
    out.trim().to_string()
}

fn split_line(line: &str, loc: &Loc) -> Result<Vec<(Tok, Loc)>, ParseError> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let flush = |word: &mut String, in_word: &mut bool, out: &mut Vec<(Tok, Loc)>| {
        if *in_word {
            out.push((Tok::Word(std::mem::take(word)), loc.clone()));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' | '!' => break,
            '{' | '}' => {
                flush(&mut word, &mut in_word, &mut out);
                let t = if c == '{' { Tok::Open } else { Tok::Close };
                out.push((t, loc.clone()));
            }
            '"' | '\'' => {
                in_word = true;
                let mut closed = false;
                while let Some(q) = chars.next() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    if q == '\\' {
                        unescape(&mut chars, &mut word);
                    } else {
                        word.push(q);
                    }
                }
                if !closed {
                    return Err(syntax(
                        loc,
                        format!("unterminated quoted string: add the closing {c}"),
                    ));
                }
            }
            c if c.is_whitespace() => flush(&mut word, &mut in_word, &mut out),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush(&mut word, &mut in_word, &mut out);
    Ok(out)
}

fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut String) {
    let Some(c) = chars.next() else {
        out.push('\\');
        return;
    };
    let simple = match c {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'E' => Some('\x1b'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        _ => None,
    };
    if let Some(s) = simple {
        out.push(s);
        return;
    }
    match c {
        '0'..='7' => {
            let mut v = c.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                match chars.peek().and_then(|d| d.to_digit(8)) {
                    Some(d) => {
                        v = v * 8 + d;
                        chars.next();
                    }
                    None => break,
                }
            }
            out.push(char::from_u32(v & 0xff).unwrap_or('?'));
        }
        'x' => {
            let mut v = 0;
            let mut n = 0;
            while n < 2 {
                match chars.peek().and_then(|d| d.to_digit(16)) {
                    Some(d) => {
                        v = v * 16 + d;
                        chars.next();
                        n += 1;
                    }
                    None => break,
                }
            }
            if n == 0 {
                out.push('x');
            } else {
                out.push(char::from_u32(v).unwrap_or('?'));
            }
        }
        'c' => match chars.next() {
            Some(k) => out.push(char::from_u32(u32::from(k) & 0x1f).unwrap_or('?')),
            None => out.push('c'),
        },
        other => out.push(other),
    }
}

/// Blocks nested deeper than this are refused: keepalived's go four or
/// five deep, and parsing recurses once per level.
const MAX_BLOCK_DEPTH: usize = 64;

struct TreeParser {
    toks: Vec<(Tok, Loc)>,
    pos: usize,
    /// Blocks open at this point.
    depth: usize,
}

impl TreeParser {
    fn peek(&self) -> Option<&(Tok, Loc)> {
        self.toks.get(self.pos)
    }

    fn skip_newlines(&mut self) {
        while matches!(self.peek(), Some((Tok::Newline, _))) {
            self.pos += 1;
        }
    }

    fn items(&mut self, open: Option<&Loc>) -> Result<Vec<Node>, ParseError> {
        if let Some(o) = open {
            self.depth += 1;
            if self.depth > MAX_BLOCK_DEPTH {
                return Err(syntax(
                    o,
                    format!("blocks nested more than {MAX_BLOCK_DEPTH} deep: a '}}' is missing?"),
                ));
            }
        }
        let nodes = self.items_inner(open);
        if open.is_some() {
            self.depth -= 1;
        }
        nodes
    }

    fn items_inner(&mut self, open: Option<&Loc>) -> Result<Vec<Node>, ParseError> {
        let mut nodes = Vec::new();
        loop {
            self.skip_newlines();
            let Some((tok, loc)) = self.peek().cloned() else {
                return match open {
                    Some(o) => Err(syntax(o, "this '{' is never closed: add the missing '}'")),
                    None => Ok(nodes),
                };
            };
            self.pos += 1;
            match tok {
                Tok::Close => {
                    return match open {
                        Some(_) => Ok(nodes),
                        None => Err(syntax(
                            &loc,
                            "'}' without a matching '{': remove it or open the block it closes",
                        )),
                    };
                }
                Tok::Open => {
                    return Err(syntax(
                        &loc,
                        "'{' without a keyword before it: name the block (e.g. real_server IP PORT {)",
                    ));
                }
                Tok::Newline => {}
                Tok::Word(key) => {
                    let mut args = Vec::new();
                    while let Some((Tok::Word(w), _)) = self.peek() {
                        args.push(w.clone());
                        self.pos += 1;
                    }
                    let mut block = None;
                    match self.peek().cloned() {
                        Some((Tok::Open, oloc)) => {
                            self.pos += 1;
                            block = Some(self.items(Some(&oloc))?);
                        }
                        Some((Tok::Newline, _)) => {
                            // A block may open on the following line.
                            let save = self.pos;
                            self.skip_newlines();
                            if let Some((Tok::Open, oloc)) = self.peek().cloned() {
                                self.pos += 1;
                                block = Some(self.items(Some(&oloc))?);
                            } else {
                                self.pos = save;
                            }
                        }
                        _ => {}
                    }
                    nodes.push(Node {
                        key,
                        args,
                        block,
                        loc,
                    });
                }
            }
        }
    }
}

/// Most file names one include's brace expressions may expand to: nested
/// or repeated braces grow exponentially (`{a,b}` twenty times is a
/// million names), and a config file must not hang the migration.
const MAX_BRACE_EXPANSIONS: usize = 4096;
/// Most `{` one include may hold (the expansion recurses once per brace).
const MAX_BRACES: usize = 64;

/// Expands `{a,b}` brace expressions, then wildcards (`*`, `?`, `[...]`)
/// component by component; results are sorted like glob(3). `None`: more
/// than [`MAX_BRACES`] braces, or more than [`MAX_BRACE_EXPANSIONS`] names.
fn glob(pattern: &str) -> Option<Vec<PathBuf>> {
    if pattern.matches('{').count() > MAX_BRACES {
        return None;
    }
    let mut expanded = Vec::new();
    expand_braces(pattern, &mut expanded)?;
    let mut out = Vec::new();
    for p in expanded {
        let mut found = glob_one(&p);
        found.sort();
        for f in found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Some(out)
}

/// Appends the expansions of `p`'s brace expressions to `out`; `None` once
/// `out` would hold more than [`MAX_BRACE_EXPANSIONS`].
fn expand_braces(p: &str, out: &mut Vec<String>) -> Option<()> {
    let bytes: Vec<char> = p.chars().collect();
    let Some(open) = bytes.iter().position(|&c| c == '{') else {
        if out.len() >= MAX_BRACE_EXPANSIONS {
            return None;
        }
        out.push(p.to_string());
        return Some(());
    };
    let mut depth = 0;
    let mut close = None;
    let mut commas = Vec::new();
    for (i, &c) in bytes.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(i),
            _ => {}
        }
    }
    let Some(close) = close else {
        if out.len() >= MAX_BRACE_EXPANSIONS {
            return None;
        }
        out.push(p.to_string());
        return Some(());
    };
    let prefix: String = bytes[..open].iter().collect();
    let suffix: String = bytes[close + 1..].iter().collect();
    let mut bounds = vec![open];
    bounds.extend(&commas);
    bounds.push(close);
    for w in bounds.windows(2) {
        let alt: String = bytes[w[0] + 1..w[1]].iter().collect();
        expand_braces(&format!("{prefix}{alt}{suffix}"), out)?;
    }
    Some(())
}

fn has_wild(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn glob_one(pattern: &str) -> Vec<PathBuf> {
    if !has_wild(pattern) {
        let p = PathBuf::from(pattern);
        return if p.is_file() { vec![p] } else { Vec::new() };
    }
    let (mut paths, rest) = if let Some(r) = pattern.strip_prefix('/') {
        (vec![PathBuf::from("/")], r)
    } else {
        (vec![PathBuf::new()], pattern)
    };
    let comps: Vec<&str> = rest.split('/').filter(|c| !c.is_empty()).collect();
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut next = Vec::new();
        for base in &paths {
            if has_wild(comp) {
                let dir = if base.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    base.as_path()
                };
                let Ok(rd) = std::fs::read_dir(dir) else {
                    continue;
                };
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if name.starts_with('.') && !comp.starts_with('.') {
                        continue;
                    }
                    if wild_match(comp, &name) {
                        next.push(base.join(&name));
                    }
                }
            } else {
                next.push(base.join(comp));
            }
        }
        next.retain(|p| if last { p.is_file() } else { p.is_dir() });
        paths = next;
    }
    paths
}

fn wild_match(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    wm(&p, &n)
}

fn wm(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| wm(&p[1..], &n[i..])),
        Some('?') => !n.is_empty() && wm(&p[1..], &n[1..]),
        Some('[') => {
            let Some(end) = p.iter().skip(2).position(|&c| c == ']').map(|i| i + 2) else {
                return n.first() == Some(&'[') && wm(&p[1..], &n[1..]);
            };
            let Some(&c) = n.first() else { return false };
            let set = &p[1..end];
            let (neg, set) = match set.first() {
                Some('!') | Some('^') => (true, &set[1..]),
                _ => (false, set),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != neg && wm(&p[end + 1..], &n[1..])
        }
        Some(&c) => n.first() == Some(&c) && wm(&p[1..], &n[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<Node>, ParseError> {
        parse_str(s, &mut Vec::new())
    }

    #[test]
    fn blocks_comments_quotes() {
        let t = parse(
            "a 1 2 # c\n! full comment\nb {\n  c \"x y\" 'z\\tw'\n  d { e }\n}\nf\n{\n g\n}\n",
        )
        .unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].args, vec!["1", "2"]);
        assert_eq!(t[1].children()[0].args, vec!["x y", "z\tw"]);
        assert_eq!(t[1].children()[1].children()[0].key, "e");
        assert_eq!(t[2].key, "f");
        assert_eq!(t[2].children()[0].key, "g");
        assert_eq!(t[2].children()[0].loc.line, 9);
    }

    #[test]
    fn adjacent_quotes_join() {
        let t = parse("k ab\"c d\"e\n").unwrap();
        assert_eq!(t[0].args, vec!["abc de"]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("a {\n b\n").unwrap_err().to_string();
        assert!(e.starts_with("line 1: this '{' is never closed"), "{e}");
        let e = parse("a\n}\n").unwrap_err().to_string();
        assert!(e.starts_with("line 2: '}' without"), "{e}");
        let e = parse("a\nb \"open\n").unwrap_err().to_string();
        assert!(e.starts_with("line 2: unterminated"), "{e}");
        let e = parse("x\n\n@main a 1\n").unwrap_err().to_string();
        assert!(e.starts_with("line 3: conditional"), "{e}");
        let e = parse("$X=1\n").unwrap_err().to_string();
        assert!(e.starts_with("line 1: parameter"), "{e}");
        // Parsing recurses per block: a deep nest is refused, not a crash.
        let deep = "a {\n".repeat(100_000) + &"}\n".repeat(100_000);
        let e = parse(&deep).unwrap_err().to_string();
        assert!(
            e.starts_with("line 65: blocks nested more than 64 deep"),
            "{e}"
        );
        assert!(parse(&("a {\n".repeat(64) + &"}\n".repeat(64))).is_ok());
    }

    #[test]
    fn braces_and_wildcards() {
        let expand = |p: &str| {
            let mut v = Vec::new();
            expand_braces(p, &mut v).map(|()| v)
        };
        assert_eq!(expand("a{b,c{d,e}}f").unwrap(), ["abf", "acdf", "acef"]);
        assert_eq!(expand("x{,y}").unwrap(), ["x", "xy"]);
        // 2^12 names is the limit; 2^13 is refused, without building them.
        assert_eq!(expand(&"{a,b}".repeat(12)).unwrap().len(), 4096);
        assert_eq!(expand(&"{a,b}".repeat(13)), None);
        assert_eq!(expand(&"{a,b}".repeat(40)), None);
        // Deep nests are refused before any recursion.
        let nest = "{".repeat(10_000) + "a" + &"}".repeat(10_000);
        assert_eq!(glob(&nest), None);
        assert!(glob(&("{".repeat(64) + "a" + &"}".repeat(64))).is_some());
        assert!(wild_match("*.conf", "web.conf"));
        assert!(!wild_match("*.conf", "web.conf.bak"));
        assert!(wild_match("vs[0-9]?.c*", "vs1a.conf"));
        assert!(!wild_match("vs[!0-9]", "vs1"));
    }
}
