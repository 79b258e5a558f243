/*!
Counter-based hashing (SplitMix64 finalizer), the engine's only source of randomness: initial
positions, thermal noise and directions for coincident nodes are pure functions of (seed, ids), so
runs are bitwise reproducible and the CUDA kernels compute the same values.
*/

/// SplitMix64's finalizer.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hash of three words.
#[inline]
pub fn mix3(a: u64, b: u64, c: u64) -> u64 {
    mix64(
        a ^ mix64(
            b.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ mix64(c.wrapping_add(0x632b_e59b_d9b4_e019)),
        ),
    )
}

/// The top 24 bits as a float in [0, 1).
#[inline]
pub fn unit_f32(h: u64) -> f32 {
    (h >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}
