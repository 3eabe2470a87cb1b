//! The firewall files rvs-migrate reads (`--iptables-save`, `--nft`): any
//! text gives rules or an error naming its line, never a panic; and the
//! rules it gives, selected for fwmark services of every mark the seeds
//! use, are written as a file rvsd's parser accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_migrate::convert::Options;
use rvs_migrate::firewall::{iptables, nft};

/// Every mark the seeds set, as services of both families.
const CONF: &str = "virtual_server_group G {\n fwmark 1\n fwmark 2\n fwmark 3\n fwmark 6 inet6\n \
                    fwmark 11\n fwmark 12 inet6\n fwmark 13\n fwmark 21\n fwmark 22 inet6\n}\n\
                    virtual_server group G {\n real_server 10.0.0.2 {\n }\n}\n";

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let parsed = if which & 1 == 0 {
        iptables::parse(text, "fuzz.iptables")
    } else {
        nft::parse(text, "fuzz.nft")
    };
    let rules = match parsed {
        Ok(r) => r,
        Err(e) => {
            assert!(e.to_string().contains(" line "), "no line in: {e}");
            return;
        }
    };
    let opts = Options {
        interfaces: Some(vec!["eth0".into()]),
        source_name: "fuzz.conf".into(),
        firewall: vec![rules],
    };
    let m = rvs_migrate::migrate_str(CONF, &opts).expect("the fixed configuration migrates");
    if let Err(e) = rvs_vocab::schema::Config::parse(&m.toml) {
        panic!("the migration wrote a file rvsd refuses: {e}\n{}", m.toml);
    }
});
