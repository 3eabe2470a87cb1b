//! The IPVS sysctls RVS takes (`/proc/sys/net/ipv4/vs/` in the kernel),
//! under the kernel's names, each defined once here: what values it takes,
//! where it lives in rvsd's file, and one line on what it does. rvsadm
//! (`--sysctl KEY=VALUE`, `--defense KEY=VALUE`, `-L --sysctl`), rvsd's
//! file and the control API all use these names.

use thiserror::Error;

/// What values a sysctl takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    /// A defence mode: 0 off, 1 and 2 automatic, 3 always.
    Mode,
    /// 0 (off) or 1 (on). The kernel takes any integer as "not 0"; RVS
    /// refuses other values so a typo cannot switch something on.
    Switch,
    /// A count from `min` up to `u32::MAX`.
    Count {
        /// The smallest value allowed.
        min: u32,
    },
}

/// One sysctl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sysctl {
    /// The kernel's name (`sloppy_tcp`).
    pub name: &'static str,
    /// The table of rvsd's file that holds it (`defense`, `sysctl`).
    pub table: &'static str,
    /// What it takes.
    pub values: Values,
    /// The default, as the kernel's.
    pub default: u32,
    /// What it does, in one line.
    pub help: &'static str,
}

/// The `[defense]` table and `rvsadm --defense`: the SYN-flood defence.
pub const DEFENSE_TABLE: &str = "defense";
/// The `[sysctl]` table: every other sysctl.
pub const SYSCTL_TABLE: &str = "sysctl";

/// Every sysctl RVS takes, in the kernel's alphabetical listing order.
pub const SYSCTLS: [Sysctl; 8] = [
    Sysctl {
        name: "am_droprate",
        table: DEFENSE_TABLE,
        values: Values::Count { min: 1 },
        default: 10,
        help: "drop_packet mode 3 drops one new connection in this many",
    },
    Sysctl {
        name: "amemthresh",
        table: DEFENSE_TABLE,
        values: Values::Count { min: 0 },
        default: 1024,
        help: "free connection-table entries below which the automatic defence modes act",
    },
    Sysctl {
        name: "drop_entry",
        table: DEFENSE_TABLE,
        values: Values::Mode,
        default: 0,
        help: "remove random half-open connections each second",
    },
    Sysctl {
        name: "drop_packet",
        table: DEFENSE_TABLE,
        values: Values::Mode,
        default: 0,
        help: "drop one in rate packets that would create a connection",
    },
    Sysctl {
        name: "secure_tcp",
        table: DEFENSE_TABLE,
        values: Values::Mode,
        default: 0,
        help: "use the secure TCP state table",
    },
    Sysctl {
        name: "sloppy_sctp",
        table: SYSCTL_TABLE,
        values: Values::Switch,
        default: 0,
        help: "schedule an SCTP packet of an unknown connection that is not an INIT (never an ABORT; when RVS balances SCTP)",
    },
    Sysctl {
        name: "sloppy_tcp",
        table: SYSCTL_TABLE,
        values: Values::Switch,
        default: 0,
        help: "schedule a TCP segment of an unknown connection that is not a SYN (never a RST)",
    },
    Sysctl {
        name: "sync_persist_mode",
        table: SYSCTL_TABLE,
        values: Values::Switch,
        default: 0,
        help: "a sync master sends a connection controlled by a persistence template as the template only",
    },
];

/// Why a `KEY=VALUE` was refused; the message says what to write instead.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SysctlError {
    /// No such sysctl (in this group).
    #[error("{key}: unknown key; use one of {known}")]
    Unknown {
        /// What was given.
        key: String,
        /// The keys allowed there.
        known: String,
    },
    /// Not `KEY=VALUE`.
    #[error("{0}: give KEY=VALUE")]
    NotKeyValue(String),
    /// A value out of the sysctl's range.
    #[error("{key}={value}: {expected}")]
    BadValue {
        /// The sysctl.
        key: &'static str,
        /// What was given.
        value: String,
        /// What it takes.
        expected: String,
    },
}

impl Values {
    /// What a value must be, as an operator reads it.
    pub fn expected(self) -> String {
        match self {
            Values::Mode => "a mode is 0 (off), 1 or 2 (automatic) or 3 (always)".into(),
            Values::Switch => "use 0 (off) or 1 (on)".into(),
            Values::Count { min } => format!("give a number from {min} to {}", u32::MAX),
        }
    }

    /// Whether `v` is allowed.
    pub fn allows(self, v: u64) -> bool {
        match self {
            Values::Mode => v <= 3,
            Values::Switch => v <= 1,
            Values::Count { min } => v >= u64::from(min) && v <= u64::from(u32::MAX),
        }
    }
}

impl Sysctl {
    /// `text` as this sysctl's value.
    pub fn parse(&self, text: &str) -> Result<u32, SysctlError> {
        match text.trim().parse::<u64>() {
            Ok(v) if self.values.allows(v) => Ok(v as u32),
            _ => Err(self.bad(text)),
        }
    }

    /// The refusal of `value`.
    pub fn bad(&self, value: impl std::fmt::Display) -> SysctlError {
        SysctlError::BadValue {
            key: self.name,
            value: value.to_string(),
            expected: self.values.expected(),
        }
    }
}

/// The sysctl called `name`.
pub fn find(name: &str) -> Option<&'static Sysctl> {
    SYSCTLS.iter().find(|s| s.name == name)
}

/// The names of `table`'s sysctls (every one with `None`), for messages.
pub fn names(table: Option<&str>) -> String {
    SYSCTLS
        .iter()
        .filter(|s| table.is_none_or(|t| s.table == t))
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One `KEY=VALUE` of the sysctls in `table` (every one with `None`):
/// the sysctl and its checked value.
pub fn parse_assignment(
    item: &str,
    table: Option<&str>,
) -> Result<(&'static Sysctl, u32), SysctlError> {
    let Some((key, value)) = item.split_once('=') else {
        return Err(SysctlError::NotKeyValue(item.to_owned()));
    };
    let s = find(key)
        .filter(|s| table.is_none_or(|t| s.table == t))
        .ok_or_else(|| SysctlError::Unknown {
            key: key.to_owned(),
            known: names(table),
        })?;
    Ok((s, s.parse(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_sorted_and_in_a_known_table() {
        for w in SYSCTLS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for s in SYSCTLS {
            assert!([DEFENSE_TABLE, SYSCTL_TABLE].contains(&s.table), "{s:?}");
            assert!(s.values.allows(u64::from(s.default)), "{s:?}");
        }
    }

    #[test]
    fn assignments_are_checked_with_the_fix_in_the_message() {
        let (s, v) = parse_assignment("sloppy_tcp=1", None).unwrap();
        assert_eq!((s.name, v), ("sloppy_tcp", 1));
        assert_eq!(parse_assignment("sloppy_sctp=0", None).unwrap().1, 0);
        assert_eq!(parse_assignment("drop_entry=3", None).unwrap().1, 3);
        assert_eq!(parse_assignment("amemthresh=0", None).unwrap().1, 0);
        let e = |item: &str, table| parse_assignment(item, table).unwrap_err().to_string();
        assert_eq!(
            e("sloppy_tcp=2", None),
            "sloppy_tcp=2: use 0 (off) or 1 (on)"
        );
        assert_eq!(
            e("sloppy_tcp=on", None),
            "sloppy_tcp=on: use 0 (off) or 1 (on)"
        );
        assert_eq!(
            e("sloppy_tcp=-1", None),
            "sloppy_tcp=-1: use 0 (off) or 1 (on)"
        );
        assert!(e("drop_entry=4", None).contains("a mode is 0 (off)"));
        assert!(e("am_droprate=0", None).contains("from 1"));
        assert!(e("amemthresh=4294967296", None).contains("give a number"));
        assert_eq!(e("sloppy_tcp", None), "sloppy_tcp: give KEY=VALUE");
        assert_eq!(
            e("sloppy_udp=1", None),
            "sloppy_udp: unknown key; use one of am_droprate, amemthresh, drop_entry, \
             drop_packet, secure_tcp, sloppy_sctp, sloppy_tcp, sync_persist_mode"
        );
        assert_eq!(
            e("sloppy_tcp=1", Some(DEFENSE_TABLE)),
            "sloppy_tcp: unknown key; use one of am_droprate, amemthresh, drop_entry, \
             drop_packet, secure_tcp"
        );
    }
}
