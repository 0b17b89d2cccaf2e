//! Small, self-contained PRNG (SplitMix64 seeding a xoshiro256++ stream).
//!
//! Written here rather than taken from a crate so that the sequence for a given seed never
//! changes with a dependency upgrade: a study restored from its trial records must make the
//! same suggestions it would have made had the control plane never restarted.

/// One step of SplitMix64; also used as a mixing function to derive stream seeds.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes several words into one seed; used to derive a per-trial stream from
/// (study seed, trial number, purpose) so no running RNG state has to be stored.
pub(crate) fn mix(words: &[u64]) -> u64 {
    let mut s = 0x6A09_E667_F3BC_C908u64;
    let mut out = 0;
    for &w in words {
        s ^= w;
        out = splitmix64(&mut s);
        s = out;
    }
    out
}

/// Stream purposes, so that different consumers of one trial's randomness never share draws.
pub(crate) mod purpose {
    pub const SAMPLE: u64 = 1;
    pub const GRID: u64 = 2;
    pub const BRACKET: u64 = 3;
    pub const QMC: u64 = 4;
}

/// xoshiro256++: fast, small state, good statistical quality.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Rng { s }
    }

    /// The stream for one trial of a study and one purpose.
    pub(crate) fn for_trial(seed: u64, number: u64, purpose: u64) -> Rng {
        Rng::new(mix(&[seed, number, purpose]))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[0]
            .wrapping_add(self.s[3])
            .rotate_left(23)
            .wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) without modulo bias (Lemire's method). `n` must be > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = (self.next_u64() as u128) * (n as u128);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = (self.next_u64() as u128) * (n as u128);
            }
        }
        (m >> 64) as u64
    }

    /// Index drawn with probability proportional to `weights` (non-negative, not all zero).
    pub fn weighted_index(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut u = self.f64() * total;
        for (i, &w) in weights.iter().enumerate() {
            if u < w {
                return i;
            }
            u -= w;
        }
        // Rounding can leave `u` a hair above the last bucket; the last positive weight wins.
        weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn pinned_sequence_never_changes() {
        // Pinned so that an accidental change to the generator (which would silently change
        // every restored study's future) fails loudly.
        // The value was computed independently (a Python transcription of SplitMix64 seeding
        // xoshiro256++).
        assert_eq!(Rng::new(0).next_u64(), 5_987_356_902_031_041_503);
        assert_ne!(Rng::new(0).next_u64(), Rng::new(1).next_u64());
    }

    #[test]
    fn below_is_in_range_and_covers() {
        let mut r = Rng::new(3);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let x = r.below(7) as usize;
            seen[x] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
