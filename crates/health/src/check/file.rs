//! FILE_CHECK: keepalived's track_file for a real server. The file holds a
//! number (read as C's strtol with base 0 reads it: leading blanks, a sign,
//! `0x` hex, `0` octal, anything after the digits ignored; a missing or
//! empty file or no digits read as 0). keepalived reads at most 127 bytes;
//! so does this check.
//!
//! With `weight = 0`: 0 = up, anything else = down (`reverse` swaps them).
//! Otherwise `number × weight` (negated with `reverse`) is added to the
//! server's configured weight (the result is clamped to 0..2147483647) and
//! the server is down only when the product reaches −2147483648,
//! keepalived's fault value. A number outside the 32-bit range: keepalived
//! ignores it and keeps the previous state; here the attempt fails, with
//! the reason said (an attempt has no memory of the previous one).
//!
//! keepalived watches the file with inotify; RVS reads it every delay_loop.

use std::io::Read;

use super::CheckResult;
use crate::spec::FileSpec;

/// keepalived's read buffer is 128 bytes with room for the NUL.
const MAX_READ: u64 = 127;

pub(super) async fn check(spec: &FileSpec, server_weight: u32) -> CheckResult {
    let path = spec.path.clone();
    let read = tokio::task::spawn_blocking(move || read_number(&path)).await;
    let what = format!("file {}", spec.path.display());
    match read {
        Err(e) => CheckResult::down(format!("{what}: reader failed: {e}")),
        Ok(Err(e)) => CheckResult::down(format!("{what}: {e}")),
        Ok(Ok(n)) => judge(&what, n, spec, server_weight),
    }
}

/// The verdict for number `n`, pure for tests.
fn judge(what: &str, n: i64, spec: &FileSpec, server_weight: u32) -> CheckResult {
    if spec.weight == 0 {
        let down = (n != 0) != spec.reverse;
        return if down {
            CheckResult::down(format!("{what}: holds {n}"))
        } else {
            CheckResult::up(format!("{what}: holds {n}"))
        };
    }
    let sign = if spec.reverse { -1 } else { 1 };
    let product = n
        .saturating_mul(i64::from(spec.weight))
        .saturating_mul(sign)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    if product == i64::from(i32::MIN) {
        return CheckResult::down(format!(
            "{what}: holds {n}, × weight {} reaches the fault value",
            spec.weight
        ));
    }
    let weight = (i64::from(server_weight) + product).clamp(0, i64::from(i32::MAX)) as u32;
    CheckResult {
        ok: true,
        weight: Some(weight),
        reason: format!("{what}: holds {n}, weight {server_weight} {product:+} = {weight}"),
    }
}

fn read_number(path: &std::path::Path) -> Result<i64, String> {
    let mut buf = Vec::new();
    match std::fs::File::open(path) {
        Ok(f) => {
            f.take(MAX_READ)
                .read_to_end(&mut buf)
                .map_err(|e| format!("reading: {e}"))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("opening: {e}")),
    }
    let n = strtol(&String::from_utf8_lossy(&buf));
    if n < i64::from(i32::MIN) || n > i64::from(i32::MAX) + 1 {
        return Err(format!(
            "holds {n}, outside the 32-bit range keepalived accepts"
        ));
    }
    Ok(n)
}

/// C's `strtol(s, NULL, 0)`: no digits = 0, saturating on overflow.
fn strtol(s: &str) -> i64 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(r) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if r.starts_with(|c: char| c.is_ascii_hexdigit()) {
            (16, r)
        } else {
            (10, "0")
        }
    } else if s.starts_with('0') {
        (8, s)
    } else {
        (10, s)
    };
    let mut v: i64 = 0;
    for c in digits.chars() {
        let Some(d) = c.to_digit(radix) else { break };
        v = v
            .saturating_mul(i64::from(radix))
            .saturating_add(i64::from(d));
    }
    if neg {
        -v
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(weight: i32, reverse: bool) -> FileSpec {
        FileSpec {
            path: "/nonexistent".into(),
            weight,
            reverse,
        }
    }

    #[test]
    fn strtol_as_c() {
        for (s, v) in [
            ("0", 0),
            ("  42\n", 42),
            ("-7x", -7),
            ("+3", 3),
            ("0x1F", 31),
            ("010", 8),
            ("09", 0),
            ("abc", 0),
            ("", 0),
            ("0x", 0),
        ] {
            assert_eq!(strtol(s), v, "{s:?}");
        }
    }

    #[test]
    fn weight_zero_is_a_state() {
        assert!(judge("f", 0, &spec(0, false), 5).ok);
        assert!(!judge("f", 1, &spec(0, false), 5).ok);
        assert!(!judge("f", -3, &spec(0, false), 5).ok);
        assert!(!judge("f", 0, &spec(0, true), 5).ok);
        assert!(judge("f", 1, &spec(0, true), 5).ok);
        assert_eq!(judge("f", 0, &spec(0, false), 5).weight, None);
    }

    #[test]
    fn weighted_adds_to_the_configured_weight() {
        let r = judge("f", 3, &spec(2, false), 10);
        assert!(r.ok);
        assert_eq!(r.weight, Some(16));
        assert_eq!(judge("f", 3, &spec(2, true), 10).weight, Some(4));
        assert_eq!(judge("f", 0, &spec(2, false), 10).weight, Some(10));
        assert_eq!(judge("f", -100, &spec(1, false), 10).weight, Some(0));
        // The fault value: down.
        assert!(!judge("f", i64::from(i32::MIN), &spec(1, false), 10).ok);
        assert!(!judge("f", 1 << 31, &spec(1, true), 10).ok);
    }

    #[tokio::test]
    async fn reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let mut s = spec(0, false);
        s.path = path.clone();
        assert!(check(&s, 1).await.ok, "a missing file reads as 0");
        std::fs::write(&path, "1\n").unwrap();
        assert!(!check(&s, 1).await.ok);
        std::fs::write(&path, "0\n").unwrap();
        assert!(check(&s, 1).await.ok);
        std::fs::write(&path, "99999999999").unwrap();
        let r = check(&s, 1).await;
        assert!(!r.ok && r.reason.contains("32-bit"), "{r:?}");
        // Only the first 127 bytes count, as keepalived.
        std::fs::write(&path, format!("{}5", " ".repeat(127))).unwrap();
        assert!(check(&s, 1).await.ok);
    }
}
