//! What the test files share: where the data is, the firewall rules of a
//! case, and rvsd's validation of a migrated file.

#![allow(dead_code)] // Each test file uses part of it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rvs_health::spec::ServiceHealthSpec;
use rvs_health::CheckSpec;
use rvs_migrate::firewall::{iptables, nft, Ruleset};
use rvs_vocab::schema::Config;
use toml::Value;

/// A file under tests/data.
pub(crate) fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The firewall rules given with `dir/case.conf`: its `.iptables`,
/// `.ip6tables` and `.nft` files, each named by its file name in notes.
pub(crate) fn firewall_in(dir: &Path, case: &str) -> Vec<Ruleset> {
    let mut out = Vec::new();
    for ext in ["iptables", "ip6tables", "nft"] {
        let name = format!("{case}.{ext}");
        let Ok(text) = std::fs::read_to_string(dir.join(&name)) else {
            continue;
        };
        let parsed = if ext == "nft" {
            nft::parse(&text, &name)
        } else {
            iptables::parse(&text, &name)
        };
        out.push(parsed.unwrap_or_else(|e| panic!("{e}")));
    }
    out
}

/// [`firewall_in`] tests/data.
pub(crate) fn firewall(case: &str) -> Vec<Ruleset> {
    firewall_in(&data(""), case)
}

/// What rvsd checks of a file without the machine's interfaces and
/// routes: the schema (unknown keys refused), every service's health keys
/// and checks (rvs-health, as rvsd validates them) and every `[[fwmark]]`
/// rule (the engine's validation, as rvsd's). Returns the parsed file, or
/// panics naming what rvsd would refuse.
pub(crate) fn rvsd_accepts(text: &str) -> Config {
    let c = Config::parse(text).unwrap_or_else(|e| panic!("rvsd's schema refuses it: {e}\n{text}"));
    if let Err(e) = rvsd_validates(&c) {
        panic!("{e}\n{text}");
    }
    c
}

/// rvsd's checks of a parsed file (see [`rvsd_accepts`]).
pub(crate) fn rvsd_validates(c: &Config) -> Result<(), String> {
    for s in &c.services {
        let s = s.get_ref();
        let _: ServiceHealthSpec = Value::Table(s.health_table())
            .try_into()
            .map_err(|e| format!("health keys of {s:?}: {e}"))?;
        for r in &s.real_servers {
            for check in &r.check {
                let _: CheckSpec = check
                    .clone()
                    .try_into()
                    .map_err(|e| format!("check {check}: {e}"))?;
            }
        }
        if let Some(f) = &s.family {
            if s.fwmark.is_none() || !matches!(f.as_str(), "ipv4" | "ipv6") {
                return Err(format!("family '{f}' of {s:?}"));
            }
        }
        // A group: members and nothing of its own, as rvsd requires.
        let own = (s.protocol, s.address, s.port, s.fwmark, &s.family);
        match &s.group {
            Some(_) if s.members.is_empty() || own != (None, None, None, None, &None) => {
                return Err(format!("group {s:?}"));
            }
            None if !s.members.is_empty() => return Err(format!("members without a group {s:?}")),
            _ => {}
        }
        for m in &s.members {
            let addressed = (m.protocol.is_some(), m.address.is_some(), m.port.is_some());
            let ok = match m.fwmark {
                Some(_) => addressed == (false, false, false),
                None => addressed == (true, true, true) && m.family.is_none(),
            };
            if !ok || !matches!(m.family.as_deref(), None | Some("ipv4" | "ipv6")) {
                return Err(format!("member {m:?}"));
            }
        }
    }
    let engine = rvs_engine::Config::default();
    let validator = rvs_engine::Validator::new(&engine).map_err(|e| e.to_string())?;
    for r in &c.fwmarks {
        let (addr, len) = match r.address.split_once('/') {
            Some((a, l)) => (a, l.parse::<u8>().map_err(|e| format!("{r:?}: {e}"))?),
            None => (
                r.address.as_str(),
                if r.address.contains(':') { 128 } else { 32 },
            ),
        };
        let addr: IpAddr = addr.parse().map_err(|e| format!("{r:?}: {e}"))?;
        validator
            .fwmark_rule(&rvs_engine::FwmarkRule {
                mark: r.mark,
                protocol: r.protocol,
                addr,
                prefix_len: len,
                ports: r.ports.clone(),
            })
            .map_err(|e| format!("[[fwmark]] {r:?}: {e}"))?;
    }
    Ok(())
}

/// The fwmark services without a `[[fwmark]]` rule of their mark and
/// family: those `rvsd --check-config` warns about.
pub(crate) fn marks_without_rules(c: &Config) -> Vec<u32> {
    c.services
        .iter()
        .map(|s| s.get_ref())
        .flat_map(|s| {
            let own = (s.fwmark, s.family.clone());
            let members = s.members.iter().map(|m| (m.fwmark, m.family.clone()));
            std::iter::once(own).chain(members)
        })
        .filter_map(|(mark, family)| {
            let mark = mark?;
            let v6 = family.as_deref() == Some("ipv6");
            let covered = c
                .fwmarks
                .iter()
                .any(|r| r.mark == mark && r.address.contains(':') == v6);
            (!covered).then_some(mark)
        })
        .collect()
}
