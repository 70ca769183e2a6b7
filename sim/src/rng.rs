//! A tiny seeded pseudo-random generator for the simulator.
//!
//! The simulator must give the same report for the same seed on every platform and with every
//! version of every dependency, so it does not use `rand` (whose algorithms and stream layout may
//! change between releases) and never uses floating point to draw: everything is integer
//! arithmetic on `u64`. The generator is xoshiro256** (Blackman and Vigna), seeded through
//! SplitMix64 as its authors recommend; both are a few lines and well studied. Neither is
//! cryptographic, which is fine: the simulator only needs reproducible, well-spread draws.

/// One step of SplitMix64: advances `state` and returns the next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A xoshiro256** generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimRng {
    s: [u64; 4],
}

impl SimRng {
    /// A generator seeded from `seed` (any value, including 0, gives a valid state).
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        Self { s }
    }

    /// An independent generator for one purpose (`label`), derived from `seed`. Separate streams
    /// keep, e.g., the MAC secret independent of how many loss draws the network made.
    pub fn derive(seed: u64, label: &str) -> Self {
        // FNV-1a of the label, mixed into the seed: stable and dependency-free.
        let mut h: u64 = 0xCBF2_9CE4_8422_2325;
        for b in label.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
        }
        let mut sm = seed ^ h;
        Self::new(splitmix64(&mut sm))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform value in `0..=max` (Lemire's multiply-shift with rejection, so unbiased).
    pub fn up_to(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        let range = max + 1;
        // Reject the low values that would make some outcomes more likely than others.
        let threshold = range.wrapping_neg() % range;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(range);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// True with probability `threshold / 2^64` (see [`probability_threshold`]).
    pub fn chance(&mut self, threshold: u64) -> bool {
        threshold != 0 && self.next_u64() < threshold
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Converts a probability in `[0, 1]` into the integer threshold [`SimRng::chance`] compares
/// against, once, at set-up time (so no floating point is used while drawing).
pub fn probability_threshold(p: f64) -> u64 {
    if p.is_nan() || p <= 0.0 {
        0
    } else if p >= 1.0 {
        u64::MAX
    } else {
        // 2^64 · p, exact enough: the f64 → u64 conversion saturates and truncates.
        (p * 18_446_744_073_709_551_616.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 0 (published reference values).
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let mut a = SimRng::new(42);
        let mut b = SimRng::new(42);
        let mut c = SimRng::new(43);
        let xs: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..16).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert_ne!(SimRng::derive(1, "keys"), SimRng::derive(1, "net"));
        assert_eq!(SimRng::derive(1, "keys"), SimRng::derive(1, "keys"));
    }

    #[test]
    fn up_to_stays_in_range_and_covers_it() {
        let mut r = SimRng::new(7);
        let mut seen = [false; 6];
        for _ in 0..1000 {
            let v = r.up_to(5);
            assert!(v <= 5);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(r.up_to(0), 0);
        let _ = r.up_to(u64::MAX);
    }

    #[test]
    fn chance_matches_probability() {
        let mut r = SimRng::new(3);
        assert!(!r.chance(probability_threshold(0.0)));
        assert!(!r.chance(probability_threshold(-1.0)));
        assert!(!r.chance(probability_threshold(f64::NAN)));
        let t = probability_threshold(0.25);
        let hits = (0..100_000).filter(|_| r.chance(t)).count();
        assert!((24_000..26_000).contains(&hits), "{hits}");
        assert_eq!(probability_threshold(1.0), u64::MAX);
        assert_eq!(probability_threshold(0.5), 1 << 63);
    }

    #[test]
    fn fill_is_deterministic() {
        let mut a = [0u8; 13];
        let mut b = [0u8; 13];
        SimRng::new(9).fill(&mut a);
        SimRng::new(9).fill(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, [0u8; 13]);
    }
}
