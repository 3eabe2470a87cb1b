//! The constants with which the XDP program updates an SCTP packet's
//! CRC32c after rewriting its ports, instead of summing the whole packet
//! again (NAT to another port, FullNAT).
//!
//! A CRC is linear: for two packets of one length, `crc(a) ^ crc(b)` is the
//! CRC of `a ^ b` with no initial value and no final XOR. The ports are the
//! packet's first 4 bytes, so the change is the raw CRC of the 4 changed
//! bits followed by `n` zero bytes: the 4 bytes' raw CRC multiplied by
//! x^(8n) modulo the polynomial. The program multiplies by x^(8·2^k) for
//! each bit k of `n`; this module computes those 16 factors, which the
//! loader writes into the program's `.rodata` (`crc32c_zeros`), so they are
//! defined once, here.

/// CRC32c's (Castagnoli's) polynomial, bit-reflected as SCTP computes it.
pub(crate) const POLY: u32 = 0x82f6_3b78;

/// `a · b` modulo [`POLY`], both bit-reflected (bit 31 is x^0), as the
/// program's `crc32c_mul`.
pub(crate) const fn multiply(a: u32, mut b: u32) -> u32 {
    let mut r = 0;
    let mut i = 0;
    while i < 32 {
        if a & (0x8000_0000 >> i) != 0 {
            r ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        i += 1;
    }
    r
}

/// x^(8·2^k) modulo [`POLY`] for k = 0..16: the factor that carries a CRC
/// over 2^k zero bytes (lengths up to 65535 bytes).
pub(crate) const fn zeros_operators() -> [u32; 16] {
    let mut t = [0u32; 16];
    t[0] = 0x8000_0000 >> 8; // x^8
    let mut k = 1;
    while k < 16 {
        t[k] = multiply(t[k - 1], t[k - 1]);
        k += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRC without initial value and final XOR, from the crc32c crate:
    /// the two cancel between a message and zeros of its length.
    fn raw(m: &[u8]) -> u32 {
        crc32c::crc32c(m) ^ crc32c::crc32c(&vec![0; m.len()])
    }

    /// What the program does: the 4 changed bytes' raw CRC, then carried
    /// over `n` zero bytes with the table.
    fn update(delta: [u8; 4], n: u32) -> u32 {
        let mut s = u32::from_le_bytes(delta);
        for _ in 0..32 {
            s = if s & 1 != 0 { (s >> 1) ^ POLY } else { s >> 1 };
        }
        let t = zeros_operators();
        for (k, f) in t.iter().enumerate() {
            if n & (1 << k) != 0 {
                s = multiply(*f, s);
            }
        }
        s
    }

    #[test]
    fn a_port_change_updates_the_crc_as_a_full_recompute_would() {
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for n in [0u32, 1, 7, 8, 12, 100, 1000, 1476, 4095, 9000, 65531] {
            let mut packet: Vec<u8> = (0..n + 4).map(|_| next() as u8).collect();
            let before = crc32c::crc32c(&packet);
            let new_ports = next().to_be_bytes();
            let mut delta = [0u8; 4];
            for i in 0..4 {
                delta[i] = packet[i] ^ new_ports[i];
                packet[i] = new_ports[i];
            }
            let after = crc32c::crc32c(&packet);
            assert_eq!(before ^ update(delta, n), after, "n = {n}");
            assert_eq!(
                update(delta, n),
                raw(&[&delta[..], &vec![0; n as usize]].concat())
            );
        }
    }

    #[test]
    fn the_first_factor_is_x_to_the_8_and_each_squares_the_last() {
        let t = zeros_operators();
        assert_eq!(t[0], 0x0080_0000);
        // Carrying a CRC over 2^k zero bytes one byte at a time agrees.
        for (k, f) in t.iter().enumerate().take(12) {
            let mut s = 0x8000_0000u32; // 1
            for _ in 0..(8u32 << k) {
                s = if s & 1 != 0 { (s >> 1) ^ POLY } else { s >> 1 };
            }
            assert_eq!(*f, s, "k = {k}");
        }
    }
}
