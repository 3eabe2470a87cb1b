//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! A director rewrites only addresses and ports, so it updates checksums
//! incrementally ([`adjust`]) the way the kernel's `csum_replace*` does, and
//! computes them in full only for headers it builds itself.
//!
//! Sums are carried "unfolded" in a `u32` so that several pieces (pseudo
//! header, header, payload) can be added with [`combine`] before one final
//! [`fold`]/[`finish`]. Every function here is total: none can panic or
//! overflow.

/// One's-complement sum of `data` as big-endian 16-bit words, an odd last
/// byte padded with a zero byte; the result is not folded yet.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    // 2^32 ≡ 1 (mod 0xffff), so folding the high half in keeps the sum's
    // one's-complement value. A u64 of 16-bit words cannot need more than
    // two rounds for any slice that fits in memory.
    while acc > u64::from(u32::MAX) {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Adds two unfolded sums with end-around carry, so partial sums of any size
/// can be combined without overflow.
pub fn combine(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    // The carry is worth 2^32 ≡ 1 (mod 0xffff); s + 1 cannot overflow again
    // because s < 2^32 - 1 whenever a carry happened.
    s + u32::from(carry)
}

/// Folds the carries of an unfolded sum into 16 bits (not inverted).
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The value to write into a checksum field: the complement of [`fold`].
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// The checksum of `data` alone, e.g. an IPv4 header with its checksum field
/// zeroed. Data that already holds a correct checksum computes to 0.
pub fn compute(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Unfolded sum of the IPv4 pseudo header (RFC 793 §3.1, RFC 768) that TCP
/// and UDP checksums cover; `len` is the L4 length (header + payload).
pub fn pseudo_header_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, len: u16) -> u32 {
    sum(src) + sum(dst) + u32::from(proto) + u32::from(len)
}

/// Unfolded sum of the IPv6 pseudo header (RFC 8200 §8.1) that TCP, UDP and
/// ICMPv6 checksums cover; `len` is the upper-layer packet length.
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: u32) -> u32 {
    sum(src) + sum(dst) + (len >> 16) + (len & 0xffff) + u32::from(proto)
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for old/new byte strings of
/// equal even length (addresses, ports).
///
/// Use it to keep a checksum valid after replacing the bytes `old` by `new`
/// inside the covered data (or its pseudo header) without touching the rest.
/// Unlike RFC 1141's eqn. 2 it never yields -0 (0xffff) for a non-zero sum;
/// the one case it gives 0xffff where a full computation gives 0x0000 is an
/// old checksum of 0xffff with `old` words all 0xffff and `new` all 0x0000 —
/// both encode the same one's-complement zero and both verify. Odd-length
/// strings are padded with a zero byte like [`sum`]; unequal lengths give a
/// meaningless (but never panicking) result.
pub fn adjust(check: u16, old: &[u8], new: &[u8]) -> u16 {
    // ~m is taken word by word, literally as the RFC writes it: folding
    // sum(old) first would turn more inputs into a -0 accumulator and so
    // return 0xffff in more cases than eqn. 3 does.
    let mut not_old: u32 = 0;
    let mut words = old.chunks_exact(2);
    for w in &mut words {
        not_old = combine(not_old, u32::from(!u16::from_be_bytes([w[0], w[1]])));
    }
    if let [last] = words.remainder() {
        not_old = combine(not_old, u32::from(!u16::from_be_bytes([*last, 0])));
    }
    let acc = combine(combine(u32::from(!check), not_old), sum(new));
    !fold(acc)
}

/// [`adjust`] for a single 16-bit word, e.g. the TTL/protocol word of IPv4.
pub fn adjust_u16(check: u16, old: u16, new: u16) -> u16 {
    adjust(check, &old.to_be_bytes(), &new.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0x2ddf0, which folds
    /// to 0xddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0x2ddf0);
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(finish(sum(&data)), !0xddf2);
        assert_eq!(compute(&data), 0x220d);
    }

    #[test]
    fn odd_length_is_zero_padded() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[]), 0);
        assert_eq!(compute(&[]), 0xffff);
    }

    /// A captured IPv4 header (wikipedia "IPv4 header checksum" example):
    /// 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
    #[test]
    fn real_ipv4_header() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(compute(&hdr), 0, "a correct header sums to -0");
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(compute(&hdr), 0xb861);
    }

    #[test]
    fn pseudo_headers() {
        // 192.168.0.1 -> 192.168.0.199, UDP, length 0x5f.
        let v4 = pseudo_header_v4(&[192, 168, 0, 1], &[192, 168, 0, 199], 17, 0x5f);
        assert_eq!(v4, 0xc0a8 + 0x0001 + 0xc0a8 + 0x00c7 + 17 + 0x5f);
        let mut src = [0u8; 16];
        src[0] = 0x20;
        src[1] = 0x01;
        src[15] = 1;
        let mut dst = src;
        dst[15] = 2;
        let v6 = pseudo_header_v6(&src, &dst, 6, 0x0001_0002);
        assert_eq!(v6, 0x2001 + 1 + 0x2001 + 2 + 1 + 2 + 6);
    }

    #[test]
    fn combine_carries_around() {
        assert_eq!(combine(0xffff_ffff, 1), 1);
        assert_eq!(combine(0xffff_ffff, 0xffff_ffff), 0xffff_ffff);
        assert_eq!(fold(combine(0xffff_ffff, 0xffff_ffff)), 0xffff);
        assert_eq!(combine(5, 7), 12);
    }

    #[test]
    fn fold_of_large_sums() {
        assert_eq!(fold(0), 0);
        assert_eq!(fold(0xffff), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        // A sum large enough to need the u64 accumulator folding.
        let big = vec![0xffu8; 200_000];
        assert_eq!(fold(sum(&big)), 0xffff);
    }

    /// RFC 1624 §4 example: HC = 0xdd2f, m = 0x5555 changed to m' = 0x3285
    /// gives HC' = 0x0000 (eqn. 2 wrongly gives 0xffff).
    #[test]
    fn rfc1624_example() {
        assert_eq!(adjust_u16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn adjust_matches_full_recompute_on_real_header() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let new_dst = [10, 1, 2, 3];
        let adjusted = adjust(0xb861, &hdr[16..20], &new_dst);
        hdr[16..20].copy_from_slice(&new_dst);
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(adjusted, compute(&hdr));
    }

    #[test]
    fn adjust_noop_keeps_checksum() {
        assert_eq!(adjust(0x1234, &[1, 2, 3, 4], &[1, 2, 3, 4]), 0x1234);
        // -0 in, unchanged data: eqn. 3 normalises to +0.
        assert_eq!(adjust(0xffff, &[1, 2], &[1, 2]), 0x0000);
    }
}
