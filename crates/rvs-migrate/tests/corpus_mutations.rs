//! The corpus (tests/corpus) cut at arbitrary points and mutated: tokens
//! deleted, duplicated and swapped, braces flipped, garbage bytes inserted
//! (not UTF-8 too), numbers made huge. Migration must return an error
//! message or a file rvsd's schema reads, never panic; a mutated firewall
//! file must parse to rules rvsd accepts, or be an error naming its line.

mod support;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use rvs_migrate::firewall::{read_iptables_save, read_nft};
use rvs_migrate::{migrate_file, Options};
use rvs_vocab::schema::Config;

/// Numbers past every limit a value may have.
const HUGE: &[&str] = &[
    "99999999999999999999999999",
    "4294967296",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "2147483648",
    "65536",
    "-1",
    "-9223372036854775809",
    "1e400",
    "0x",
    "0xffffffffffffffffff",
    "NaN",
    "inf",
    "255.255.255.256",
    "10.0.0.1-10.255.255.255",
    "::/0",
];

/// A change to the text; the numbers pick what it applies to (modulo the
/// number of candidates).
#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    FlipBrace(usize),
    Garbage(usize, Vec<u8>),
    Huge(usize, usize),
}

/// `n` as one of `len` (which must not be 0).
fn pick(n: usize, len: usize) -> usize {
    n % len
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Weighted so that most mutated files still parse and reach the
    // conversion; braces and garbage mostly stop at the parser.
    prop_oneof![
        3 => any::<usize>().prop_map(Mutation::Delete),
        3 => any::<usize>().prop_map(Mutation::Duplicate),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        1 => any::<usize>().prop_map(Mutation::FlipBrace),
        2 => (
            any::<usize>(),
            prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    Just(b'{'),
                    Just(b'}'),
                    Just(b'"'),
                    Just(b'\n'),
                    Just(b'#'),
                    Just(0xff),
                    Just(0xc3),
                ],
                1..8
            )
        )
            .prop_map(|(i, g)| Mutation::Garbage(i, g)),
        4 => (any::<usize>(), any::<usize>()).prop_map(|(i, h)| Mutation::Huge(i, h)),
    ]
}

/// `text` as words and the blanks between them.
fn pieces(text: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for &b in text {
        let blank = b.is_ascii_whitespace();
        match out.last_mut() {
            Some(p) if p.first().is_some_and(|f| f.is_ascii_whitespace()) == blank => p.push(b),
            _ => out.push(vec![b]),
        }
    }
    out
}

/// `text` cut after `cut` bytes (modulo its length + 1; `None`: whole),
/// then mutated.
fn mutate(text: &[u8], cut: Option<usize>, mutations: &[Mutation]) -> Vec<u8> {
    let text = match cut {
        Some(c) => &text[..pick(c, text.len() + 1)],
        None => text,
    };
    let mut p = pieces(text);
    // Words other than a lone brace: braces have a mutation of their own,
    // and moving them mostly tests the parser's brace errors again.
    let words = |p: &Vec<Vec<u8>>| -> Vec<usize> {
        (0..p.len())
            .filter(|&i| {
                p[i].first().is_some_and(|b| !b.is_ascii_whitespace())
                    && p[i] != b"{"
                    && p[i] != b"}"
            })
            .collect()
    };
    for m in mutations {
        let w = words(&p);
        match m {
            Mutation::Delete(i) if !w.is_empty() => {
                p.remove(w[pick(*i, w.len())]);
            }
            Mutation::Duplicate(i) if !w.is_empty() => {
                let at = w[pick(*i, w.len())];
                let copy = p[at].clone();
                p.insert(at + 1, copy);
                p.insert(at + 1, b" ".to_vec());
            }
            Mutation::Swap(a, b) if !w.is_empty() => {
                p.swap(w[pick(*a, w.len())], w[pick(*b, w.len())]);
            }
            Mutation::FlipBrace(i) => {
                let braces: Vec<(usize, usize)> = p
                    .iter()
                    .enumerate()
                    .flat_map(|(n, piece)| {
                        piece
                            .iter()
                            .enumerate()
                            .filter(|(_, b)| **b == b'{' || **b == b'}')
                            .map(move |(k, _)| (n, k))
                    })
                    .collect();
                if !braces.is_empty() {
                    let (n, k) = braces[pick(*i, braces.len())];
                    p[n][k] = if p[n][k] == b'{' { b'}' } else { b'{' };
                }
            }
            Mutation::Garbage(i, bytes) => {
                p.insert(pick(*i, p.len() + 1), bytes.clone());
            }
            Mutation::Huge(i, h) if !w.is_empty() => {
                p[w[pick(*i, w.len())]] = HUGE[pick(*h, HUGE.len())].as_bytes().to_vec();
            }
            _ => {}
        }
    }
    p.concat()
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// The corpus files whose names end in `ext`, with their contents.
fn seeds(dirs: &[PathBuf], ext: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in dirs {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(ext) && !name.ends_with(".keepalived.conf") {
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A scratch directory with the corpus' include.d, so mutated includes
/// still find (or miss) files as the originals do.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let inc = dir.path().join("include.d");
    std::fs::create_dir(&inc).unwrap();
    for e in std::fs::read_dir(corpus_dir().join("include.d")).unwrap() {
        let path = e.unwrap().path();
        std::fs::copy(&path, inc.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

proptest! {
    // About a thousand cases each: a few seconds in a debug build.
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn mutated_keepalived_conf_gives_an_error_or_a_file_rvsd_reads(
        file in any::<usize>(),
        cut in prop::option::weighted(0.2, any::<usize>()),
        mutations in prop::collection::vec(mutation(), 0..5),
    ) {
        let seeds = seeds(&[corpus_dir()], ".conf");
        let (name, text) = &seeds[pick(file, seeds.len())];
        let dir = scratch();
        let path = dir.path().join(name);
        std::fs::write(&path, mutate(text, cut, &mutations)).unwrap();
        let opts = Options {
            interfaces: Some(vec!["eth0".into()]),
            source_name: name.clone(),
            ..Default::default()
        };
        match migrate_file(&path, &opts) {
            Ok(m) => {
                if let Err(e) = Config::parse(&m.toml) {
                    panic!("rvsd's schema refuses what was written: {e}\n{}", m.toml);
                }
            }
            Err(e) => prop_assert!(!e.to_string().trim().is_empty()),
        }
    }

    #[test]
    fn mutated_firewall_rules_give_an_error_or_rules_rvsd_accepts(
        file in any::<usize>(),
        cut in prop::option::weighted(0.2, any::<usize>()),
        mutations in prop::collection::vec(mutation(), 0..5),
    ) {
        let dirs = [corpus_dir(), support::data("")];
        let mut seeds = seeds(&dirs, ".nft");
        seeds.extend(seeds_of(&dirs));
        let (name, text) = &seeds[pick(file, seeds.len())];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, mutate(text, cut, &mutations)).unwrap();
        let read = if name.ends_with(".nft") {
            read_nft(&path)
        } else {
            read_iptables_save(&path)
        };
        let rules = match read {
            Ok(r) => r,
            Err(e) => {
                let e = e.to_string();
                prop_assert!(e.contains(" line "), "no line in '{e}'");
                return Ok(());
            }
        };
        // Every mark the seeds set, wanted by a service of each family.
        let conf = "virtual_server_group G {\n fwmark 1\n fwmark 2\n fwmark 3\n fwmark 4\n fwmark 6\n \
                    fwmark 11\n fwmark 12 inet6\n fwmark 13\n fwmark 14\n fwmark 21\n fwmark 22 inet6\n \
                    fwmark 23 inet6\n}\nvirtual_server group G {\n real_server 10.0.0.2 {\n }\n}\n";
        let m = rvs_migrate::migrate_str(
            conf,
            &Options {
                interfaces: Some(vec!["eth0".into()]),
                firewall: vec![rules],
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        support::rvsd_accepts(&m.toml);
    }
}

/// The iptables-save seeds (`.iptables`, `.ip6tables`).
fn seeds_of(dirs: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    let mut out = seeds(dirs, ".iptables");
    out.extend(seeds(dirs, ".ip6tables"));
    out
}

/// The mutations do what they say (a test of the test).
#[test]
fn mutations_change_the_text_as_described() {
    let text = b"a {\n  b 1\n}\n";
    let all = 0;
    assert_eq!(mutate(text, None, &[]), text.to_vec());
    assert_eq!(mutate(text, Some(0), &[]), b"".to_vec());
    assert_eq!(mutate(text, Some(3), &[]), b"a {".to_vec());
    let full = None;
    assert_eq!(
        mutate(text, full, &[Mutation::Delete(all)]),
        b" {\n  b 1\n}\n".to_vec()
    );
    assert_eq!(
        mutate(text, full, &[Mutation::Duplicate(all)]),
        b"a a {\n  b 1\n}\n".to_vec()
    );
    assert_eq!(
        mutate(text, full, &[Mutation::FlipBrace(all)]),
        b"a }\n  b 1\n}\n".to_vec()
    );
    assert_eq!(
        mutate(text, full, &[Mutation::Huge(all, all)]),
        b"99999999999999999999999999 {\n  b 1\n}\n".to_vec()
    );
    assert_eq!(
        mutate(text, full, &[Mutation::Garbage(all, vec![0xff])]),
        b"\xffa {\n  b 1\n}\n".to_vec()
    );
}
