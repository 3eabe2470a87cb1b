//! keepalived.conf migration (`rvs_migrate::migrate_str`): any text gives
//! a migration or a parse error with its line, never a panic; and what a
//! migration writes is a configuration rvsd's parser accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_migrate::convert::Options;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `include` resolves against the working directory: keep the fuzzer
    // from reading the machine's files.
    if text.contains("include") {
        return;
    }
    let opts = Options {
        interfaces: Some(vec!["eth0".into()]),
        source_name: "fuzz.conf".into(),
        ..Default::default()
    };
    if let Ok(m) = rvs_migrate::migrate_str(text, &opts) {
        if let Err(e) = rvs_vocab::schema::Config::parse(&m.toml) {
            panic!("the migration wrote a file rvsd refuses: {e}\n{}", m.toml);
        }
    }
});
