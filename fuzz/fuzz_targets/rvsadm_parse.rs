//! rvsadm's command-line parser (`crates/rvsadm/src/parse.rs`, compiled in
//! here as it is: rvsadm is a binary) on argument vectors and on `-R`
//! input: a clean error or a request, never a panic.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use rvs_api::Protocol;

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/rvsadm/src/parse.rs"]
mod parse;

/// Names resolve without DNS: a fixed host and two services.
struct Lookup;

impl parse::Lookup for Lookup {
    fn host(&self, name: &str) -> Option<IpAddr> {
        (name == "web").then_some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
    }
    fn service(&self, name: &str, _proto: Protocol) -> Option<u16> {
        match name {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As a command line: words split on NUL or blanks.
    let args: Vec<String> = text
        .split(['\0', ' ', '\n'])
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect();
    let _ = parse::parse(&args, &Lookup);
    // As restore input.
    if let Ok(lines) = parse::parse_restore(text, &Lookup) {
        let _ = parse::replace_mark_rules(lines, &[]);
    }
});
