//! Small helpers over the seeded generators (uniform picks and coin flips), so that every
//! random choice of the simulator comes from a seed.

use rand_core::Rng;

/// A uniform number in `0..n` (`0` when `n` is 0).
pub(crate) fn below<R: Rng + ?Sized>(rng: &mut R, n: u64) -> u64 {
    if n == 0 { 0 } else { rng.next_u64() % n }
}

/// True with probability `p` (clamped to 0..=1).
pub(crate) fn chance<R: Rng + ?Sized>(rng: &mut R, p: f64) -> bool {
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    unit < p
}

/// A well-mixed 64-bit value from `x` (SplitMix64's finaliser): derives per-node and
/// per-link values from the one seed without consuming a generator.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
