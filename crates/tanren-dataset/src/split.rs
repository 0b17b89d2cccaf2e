//! Seeded stratified holdout. Used for the 80/20 train/test split of class-folder uploads and by the
//! trainer for its validation split, so both get the same guarantees: every class with at least two
//! items lands on both sides, and the same (labels, fraction, seed) always gives the same split on every
//! platform (a hand-rolled SplitMix64, not a crate whose stream may change between versions).

/// Stratified holdout of `fraction` of each class, seeded.
///
/// Per class of `n` items: holdout = round(fraction * n), raised to 1 when `n >= 2`, capped at `n - 1`
/// so the kept side is never empty. Returns `(keep, holdout)`: index lists into `labels`, each sorted.
pub fn stratified_split(labels: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let num_classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let (mut keep, mut holdout) = (Vec::with_capacity(labels.len()), Vec::new());
    for (class, mut members) in by_class.into_iter().enumerate() {
        let n = members.len();
        if n == 0 {
            continue;
        }
        let mut take = (fraction * n as f64).round() as usize;
        if n >= 2 {
            take = take.clamp(1, n - 1);
        } else {
            take = 0;
        }
        // Each class gets its own stream so adding a class does not reshuffle the others.
        let mut rng = SplitMix64::new(seed ^ (class as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        shuffle(&mut members, &mut rng);
        holdout.extend_from_slice(&members[..take]);
        keep.extend_from_slice(&members[take..]);
    }
    keep.sort_unstable();
    holdout.sort_unstable();
    (keep, holdout)
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, well mixed, and fixed forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` without modulo bias (Lemire's multiply-shift with rejection).
    fn below(&mut self, bound: u64) -> u64 {
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let m = (self.next_u64() as u128) * (bound as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

/// Fisher–Yates.
fn shuffle(items: &mut [usize], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_class() {
        // class 0: 10 items -> 2 held out; class 1: 2 -> 1; class 2: 1 -> 0; class 3: 7 -> round(1.4)=1.
        let labels: Vec<usize> = [vec![0; 10], vec![1; 2], vec![2; 1], vec![3; 7]]
            .into_iter()
            .flatten()
            .collect();
        let (keep, hold) = stratified_split(&labels, 0.2, 7);
        let count = |idx: &[usize], c| idx.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!([0, 1, 2, 3].map(|c| count(&hold, c)), [2, 1, 0, 1]);
        assert_eq!([0, 1, 2, 3].map(|c| count(&keep, c)), [8, 1, 1, 6]);
        let mut all: Vec<usize> = keep.iter().chain(&hold).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
        assert!(keep.windows(2).all(|w| w[0] < w[1]) && hold.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let labels: Vec<usize> = (0..200).map(|i| i % 3).collect();
        let a = stratified_split(&labels, 0.2, 1);
        assert_eq!(a, stratified_split(&labels, 0.2, 1));
        assert_ne!(a.1, stratified_split(&labels, 0.2, 2).1);
    }

    #[test]
    fn never_empties_the_kept_side() {
        let labels = vec![0, 0, 1, 1];
        let (keep, hold) = stratified_split(&labels, 0.9, 3);
        assert_eq!((keep.len(), hold.len()), (2, 2));
        assert_eq!(stratified_split(&[], 0.2, 0), (vec![], vec![]));
    }
}
