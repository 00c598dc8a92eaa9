//! The two 64-bit mixers Maglev derives a backend's permutation from. Plain
//! arithmetic with fixed constants: the same key gives the same values in
//! every process and on every machine (no `RandomState`).

/// splitmix64's finalizer (Steele, Lea, Flood 2014) of `key` offset by the
/// golden ratio.
pub(crate) fn h1(key: u64) -> u64 {
    let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// MurmurHash3's `fmix64` of `key` xor a different constant (the
/// fractional part of sqrt(2)), so that `h2` is not a function of `h1`.
pub(crate) fn h2(key: u64) -> u64 {
    let mut z = key ^ 0x6a09_e667_f3bc_c908;
    z ^= z >> 33;
    z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
    z ^= z >> 33;
    z = z.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    z ^ (z >> 33)
}
