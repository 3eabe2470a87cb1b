//! Scheduler names and flags, as ipvsadm spells them and the kernel numbers
//! them.
//!
//! `-b` takes three flags (IPVS's `IP_VS_SVC_F_SCHED1..3`). They are
//! `flag-1`, `flag-2`, `flag-3` for any scheduler; `sh` and `mh` give flags
//! 1 and 2 names of their own (`sh-fallback`, `sh-port`, …), which ipvsadm
//! accepts only with that scheduler and prints whenever it lists one.

/// Every scheduler RVS implements, under its ipvsadm name, in ipvsadm's
/// order. The engine registers one implementation per name.
pub const NAMES: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "sed", "nq", "lblc", "lblcr", "dh", "sh", "mh", "fo", "ovf", "twos",
];

/// The scheduler of a service that names none (ipvsadm without `-s`, a
/// `[[service]]` without `scheduler`, keepalived without `lvs_sched`).
pub const DEFAULT: &str = "wlc";

/// The flag bits, with the kernel's values.
pub mod flags {
    /// Flag 1 (`IP_VS_SVC_F_SCHED1`).
    pub const FLAG_1: u32 = 0x08;
    /// Flag 2 (`IP_VS_SVC_F_SCHED2`).
    pub const FLAG_2: u32 = 0x10;
    /// Flag 3 (`IP_VS_SVC_F_SCHED3`).
    pub const FLAG_3: u32 = 0x20;
    /// sh: if the hashed server is unavailable, walk on to the next one.
    pub const SH_FALLBACK: u32 = FLAG_1;
    /// sh: hash the source port too.
    pub const SH_PORT: u32 = FLAG_2;
    /// mh: if the looked-up server is unavailable, walk on to the next one.
    pub const MH_FALLBACK: u32 = FLAG_1;
    /// mh: hash the source port too.
    pub const MH_PORT: u32 = FLAG_2;
}

/// Flag numbers, 1..=3.
const NUMBERS: std::ops::RangeInclusive<u8> = 1..=3;

/// The names schedulers give their flags: (name, scheduler, number).
const NAMED: [(&str, &str, u8); 4] = [
    ("sh-fallback", "sh", 1),
    ("sh-port", "sh", 2),
    ("mh-fallback", "mh", 1),
    ("mh-port", "mh", 2),
];

/// The kernel bit of flag `n` (1..=3); 0 for any other number.
pub const fn flag_bit(n: u8) -> u32 {
    match n {
        1 => flags::FLAG_1,
        2 => flags::FLAG_2,
        3 => flags::FLAG_3,
        _ => 0,
    }
}

/// The number (1..=3) of a `-b` name: `flag-N`, or a scheduler's own name.
pub fn flag_number(name: &str) -> Option<u8> {
    if let Some((_, _, n)) = NAMED.iter().find(|(f, _, _)| *f == name) {
        return Some(*n);
    }
    NUMBERS.clone().find(|n| name == generic_name(*n))
}

/// The scheduler a `-b` name belongs to; `None` for `flag-N` (any) and
/// for names that are no flag.
pub fn flag_owner(name: &str) -> Option<&'static str> {
    NAMED
        .iter()
        .find(|(f, _, _)| *f == name)
        .map(|(_, s, _)| *s)
}

/// The name `scheduler` gives flag `n`, if it gives it one (`sh-port`).
pub fn named_flag(scheduler: &str, n: u8) -> Option<&'static str> {
    NAMED
        .iter()
        .find(|(_, s, number)| *s == scheduler && *number == n)
        .map(|(f, _, _)| *f)
}

/// The name flag `n` goes by under `scheduler`, as ipvsadm prints it:
/// the scheduler's own name, else `flag-N`.
pub fn flag_name(scheduler: &str, n: u8) -> String {
    named_flag(scheduler, n).map_or_else(|| generic_name(n), String::from)
}

fn generic_name(n: u8) -> String {
    format!("flag-{n}")
}

/// The bits of `-b` names, each a known name (of any scheduler).
pub fn flag_bits<S: AsRef<str>>(names: &[S]) -> Result<u32, UnknownFlag> {
    names.iter().try_fold(0, |bits, name| {
        let name = name.as_ref();
        flag_number(name)
            .map(|n| bits | flag_bit(n))
            .ok_or_else(|| UnknownFlag(name.to_string()))
    })
}

/// The names of the flags set in `bits`, in bit order, as `scheduler` names
/// them: what listings show and `-S` writes back.
pub fn flag_names(scheduler: &str, bits: u32) -> Vec<String> {
    NUMBERS
        .filter(|n| bits & flag_bit(*n) != 0)
        .map(|n| flag_name(scheduler, n))
        .collect()
}

/// A `-b` name that is no scheduler flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scheduler flag '{0}'; use sh-fallback, sh-port, mh-fallback or mh-port")]
pub struct UnknownFlag(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_hold_the_default() {
        assert!(NAMES.contains(&DEFAULT));
        for (i, n) in NAMES.iter().enumerate() {
            assert!(!NAMES[..i].contains(n), "{n} twice");
        }
    }

    #[test]
    fn flags_by_name_number_and_bit() {
        assert_eq!(
            [flag_bit(1), flag_bit(2), flag_bit(3), flag_bit(0)],
            [0x08, 0x10, 0x20, 0]
        );
        for (name, n) in [
            ("flag-1", 1),
            ("flag-2", 2),
            ("flag-3", 3),
            ("sh-fallback", 1),
            ("sh-port", 2),
            ("mh-fallback", 1),
            ("mh-port", 2),
        ] {
            assert_eq!(flag_number(name), Some(n), "{name}");
        }
        assert_eq!(flag_number("flag-4"), None);
        assert_eq!(flag_number("sh"), None);
        assert_eq!(flag_owner("mh-port"), Some("mh"));
        assert_eq!(flag_owner("flag-2"), None);
        assert_eq!(flag_bits(&["sh-port", "sh-fallback"]), Ok(0x18));
        assert_eq!(flag_bits(&["flag-3", "mh-port"]), Ok(0x30));
        assert_eq!(
            flag_bits(&["sh-port", "nope"]),
            Err(UnknownFlag("nope".into()))
        );
    }

    #[test]
    fn listed_names_follow_the_scheduler() {
        assert_eq!(flag_names("sh", 0x18), ["sh-fallback", "sh-port"]);
        assert_eq!(flag_names("mh", 0x10), ["mh-port"]);
        assert_eq!(flag_names("rr", 0x38), ["flag-1", "flag-2", "flag-3"]);
        assert_eq!(flag_names("sh", 0x20), ["flag-3"]);
        assert!(flag_names("wlc", 0).is_empty());
        assert_eq!(named_flag("sh", 1), Some("sh-fallback"));
        assert_eq!(named_flag("rr", 1), None);
        assert_eq!(named_flag("sh", 3), None);
    }
}
