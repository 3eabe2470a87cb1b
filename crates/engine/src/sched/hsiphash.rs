//! `hsiphash` as the kernel computes it on 64-bit machines (lib/siphash.c):
//! there "HalfSipHash-1-3" is really SipHash-1-3 on 64-bit words, truncated
//! to 32 bits. The Maglev scheduler (`mh`) hashes with it, so our tables only
//! equal the kernel's if this function does, bit for bit. Checked against the
//! kernel's own test vectors (lib/tests/siphash_kunit.c, 64-bit branch).

/// A 128-bit hsiphash key, as the kernel's 64-bit `hsiphash_key_t`
/// (`unsigned long key[2]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HsipKey(pub(crate) [u64; 2]);

/// SipHash state words.
struct State([u64; 4]);

impl State {
    fn new(key: &HsipKey, len: usize) -> (Self, u64) {
        let [k0, k1] = key.0;
        let s = State([
            0x736f_6d65_7073_6575 ^ k0,
            0x646f_7261_6e64_6f6d ^ k1,
            0x6c79_6765_6e65_7261 ^ k0,
            0x7465_6462_7974_6573 ^ k1,
        ]);
        // The length byte goes into the top of the final block.
        (s, (len as u64) << 56)
    }

    fn round(&mut self) {
        let [v0, v1, v2, v3] = &mut self.0;
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v2 = v2.rotate_left(32);
    }

    /// One compression round per 8-byte word (the "1" of 1-3).
    fn absorb(&mut self, m: u64) {
        self.0[3] ^= m;
        self.round();
        self.0[0] ^= m;
    }

    /// Last block, then three finalisation rounds (the "3" of 1-3).
    fn finish(mut self, b: u64) -> u32 {
        self.absorb(b);
        self.0[2] ^= 0xff;
        self.round();
        self.round();
        self.round();
        let [v0, v1, v2, v3] = self.0;
        // The kernel returns the 64-bit result in a u32: the low half.
        ((v0 ^ v1) ^ (v2 ^ v3)) as u32
    }
}

/// `hsiphash(data, len, key)` of the kernel on a 64-bit machine.
pub(crate) fn hsiphash(data: &[u8], key: &HsipKey) -> u32 {
    let (mut s, mut b) = State::new(key, data.len());
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut m = [0u8; 8];
        m.copy_from_slice(w);
        s.absorb(u64::from_le_bytes(m));
    }
    for (i, &byte) in words.remainder().iter().enumerate() {
        b |= u64::from(byte) << (8 * i);
    }
    s.finish(b)
}

/// `hsiphash_1u32(first, key)`: the same value as hashing the four
/// little-endian bytes of `first` (checked against the kernel's vector).
#[cfg(test)]
pub(crate) fn hsiphash_1u32(first: u32, key: &HsipKey) -> u32 {
    let (s, b) = State::new(key, 4);
    s.finish(b | u64::from(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// lib/tests/siphash_kunit.c, `test_key_hsiphash` for BITS_PER_LONG == 64.
    const KEY: HsipKey = HsipKey([0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908]);

    /// lib/tests/siphash_kunit.c, `test_vectors_hsiphash` (64-bit branch):
    /// entry i is the hash of the bytes 0, 1, ..., i-1.
    const VECTORS: [u32; 64] = [
        0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7,
        0x9bb11140, 0x8d299a8e, 0x6c063de4, 0x92ff097f, 0xf94dc352, 0x57b4d9a2, 0x1229ffa7,
        0xc0f95d34, 0x2a519956, 0x7d908b66, 0x63dbd80c, 0xb473e63e, 0x8d297d1c, 0xa6cce040,
        0x2b45f844, 0xa320872e, 0xdae6c123, 0x67349c8c, 0x705b0979, 0xca9913a5, 0x4ade3b35,
        0xef6cd00d, 0x4ab1e1f4, 0x43c5e663, 0x8c21d1bc, 0x16a7b60d, 0x7a8ff9bf, 0x1f2a753e,
        0xbf186b91, 0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392, 0x99e41531, 0x3f1ad944,
        0xc8138825, 0xc28949a6, 0xfaf8876b, 0x9f042196, 0x68b1d623, 0x8b5114fd, 0xdf074c46,
        0x12cc86b3, 0x0a52098f, 0x9d292f9a, 0xa2f41f12, 0x43a71ed0, 0x73f0bce6, 0x70a7e980,
        0x243c6d75, 0xfdb71513, 0xa67d8a08, 0xb7e8f148, 0xf7a644ee, 0x0f1837f2, 0x4b6694e0,
        0xb7bbb3a8,
    ];

    #[test]
    fn kernel_test_vectors() {
        let input: Vec<u8> = (0..64).collect();
        for (i, &want) in VECTORS.iter().enumerate() {
            assert_eq!(hsiphash(&input[..i], &KEY), want, "length {i}");
        }
    }

    #[test]
    fn one_u32_matches_the_byte_form() {
        // siphash_kunit.c: hsiphash_1u32(0x03020100) == vectors[4].
        assert_eq!(hsiphash_1u32(0x0302_0100, &KEY), VECTORS[4]);
        for v in [0u32, 1, 0x0a00_020b, u32::MAX] {
            assert_eq!(hsiphash_1u32(v, &KEY), hsiphash(&v.to_le_bytes(), &KEY));
        }
    }
}
