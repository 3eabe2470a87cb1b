//! rvsd's configuration file parser (`rvs_vocab::schema`): any text gives
//! a configuration or an error naming where, never a panic; a file that
//! parses also renders back to TOML that parses to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_vocab::schema::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text) else {
        return;
    };
    // NaN is never equal to itself; a free-form table may hold one.
    if text.contains("nan") {
        return;
    }
    // What rvs-migrate does: serialise the schema types.
    let Ok(rendered) = toml::to_string(&config) else {
        return;
    };
    let again = Config::parse(&rendered)
        .unwrap_or_else(|e| panic!("rendered configuration does not parse: {e}\n{rendered}"));
    assert_eq!(again, config, "render → parse changed it:\n{rendered}");
});
