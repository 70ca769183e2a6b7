//! Stake-weighted quorum acknowledgements (QUACKs).
//!
//! A sender may only forget a message (stop resending it, release flow-control credit, tell the
//! application it is delivered) once it knows a *correct* receiver holds it. With at most `f`
//! stake faulty, a cumulative ack reported by replicas holding `f + 1` stake is vouched for by
//! at least one correct replica: that value is the QUACK. Only cumulative acks feed it; φ-lists
//! are for loss detection, not for the QUACK.

/// Tracks the cumulative acks reported by the replicas of the other RSM and the QUACK: the
/// largest `v` such that replicas with total stake ≥ `threshold` have reported `next ≥ v`.
///
/// Reports that do not raise a replica's ack, or raise it only up to the current QUACK, are
/// O(1). Other reports cost O(k log k) for the k replicas whose ack is above the QUACK, with no
/// allocation (a scratch buffer is sized once in [`new`](Self::new)).
#[derive(Clone, Debug)]
pub struct QuackTracker {
    value: u64,
    /// Stake of each replica, by index.
    stakes: Vec<u64>,
    /// Highest cumulative ack reported by each replica.
    acks: Vec<u64>,
    threshold: u64,
    /// Reused by `recompute`: (ack, stake) of replicas above the QUACK.
    scratch: Vec<(u64, u64)>,
}

impl QuackTracker {
    /// A tracker over replicas with these stakes; `threshold` is f+1 stake. A threshold of 0
    /// is treated as 1 (a QUACK must be vouched for by someone). If the replicas' total stake
    /// is below the threshold, the QUACK stays 0.
    pub fn new(stakes: Vec<u64>, threshold: u64) -> Self {
        Self::starting_at(stakes, threshold, 0)
    }

    /// Like [`new`](Self::new), for a stream whose QUACK is already known to be `start`
    /// (a replica resuming after a restart from its checkpointed QUACK).
    pub fn starting_at(stakes: Vec<u64>, threshold: u64, start: u64) -> Self {
        let n = stakes.len();
        Self { value: start, stakes, acks: vec![start; n], threshold: threshold.max(1), scratch: Vec::with_capacity(n) }
    }

    /// Records that replica `idx` reported cumulative ack `next` (lower reports are ignored).
    /// Returns the new QUACK if it advanced. An out-of-range `idx` is ignored.
    pub fn update(&mut self, idx: usize, next: u64) -> Option<u64> {
        let ack = self.acks.get_mut(idx)?;
        if next <= *ack {
            return None;
        }
        *ack = next;
        // The replica's ack was below `next ≤ value`, so it counted for no v > value before and
        // still counts for none: the QUACK cannot move.
        if next <= self.value || self.stakes[idx] == 0 {
            return None;
        }
        self.recompute()
    }

    /// Recomputes the QUACK from the acks above it; returns it if it advanced.
    fn recompute(&mut self) -> Option<u64> {
        let value = self.value;
        self.scratch.clear();
        self.scratch
            .extend(self.acks.iter().zip(&self.stakes).filter(|&(&a, &s)| a > value && s > 0).map(|(&a, &s)| (a, s)));
        self.scratch.sort_unstable_by_key(|&(ack, _)| std::cmp::Reverse(ack));
        let mut have = 0u64;
        for &(ack, stake) in &self.scratch {
            have = have.saturating_add(stake);
            if have >= self.threshold {
                self.value = ack;
                return Some(ack);
            }
        }
        None
    }

    /// The current QUACK: every seq below it is held by at least one correct replica.
    pub fn value(&self) -> u64 {
        self.value
    }

    /// The highest cumulative ack reported by replica `idx` (0 if it never reported or `idx`
    /// is out of range).
    pub fn ack_of(&self, idx: usize) -> u64 {
        self.acks.get(idx).copied().unwrap_or(0)
    }

    /// The stake a QUACK needs (f+1 of the acking RSM).
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// Number of replicas tracked.
    pub fn replicas(&self) -> usize {
        self.acks.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Brute force: the largest reported value v with stake(acks ≥ v) ≥ threshold.
    fn model(stakes: &[u64], acks: &[u64], threshold: u64) -> u64 {
        let threshold = threshold.max(1);
        acks.iter()
            .copied()
            .filter(|&v| {
                let s: u64 = acks.iter().zip(stakes).filter(|&(&a, _)| a >= v).map(|(_, &s)| s).sum();
                s >= threshold
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn equal_stakes() {
        let mut q = QuackTracker::new(vec![1; 4], 2);
        assert_eq!(q.threshold(), 2);
        assert_eq!(q.update(0, 10), None);
        assert_eq!(q.value(), 0);
        assert_eq!(q.update(1, 5), Some(5));
        assert_eq!(q.update(2, 7), Some(7));
        assert_eq!(q.update(2, 6), None); // stale
        assert_eq!(q.ack_of(2), 7);
        assert_eq!(q.update(3, 20), Some(10));
        assert_eq!(q.update(9, 100), None); // unknown replica
        assert_eq!(q.ack_of(9), 0);
        assert_eq!(q.value(), 10);
    }

    #[test]
    fn stake_weighted() {
        // Stakes 4,1,1,1; f = 2 stake ⇒ threshold 3: replica 0 alone suffices.
        let mut q = QuackTracker::new(vec![4, 1, 1, 1], 3);
        assert_eq!(q.update(1, 50), None);
        assert_eq!(q.update(2, 40), None);
        assert_eq!(q.update(3, 30), Some(30));
        assert_eq!(q.update(0, 10), None);
        assert_eq!(q.update(0, 45), Some(45));
        assert_eq!(q.update(0, 100), Some(100));
        assert_eq!(q.update(1, 200), None);
        assert_eq!(q.update(0, 300), Some(300));
        // Threshold 5: the heavy replica plus one light one.
        let mut q = QuackTracker::new(vec![4, 1, 1, 1], 5);
        assert_eq!(q.update(0, 100), None);
        assert_eq!(q.update(1, 10), Some(10));
        assert_eq!(q.update(2, 20), Some(20));
        assert_eq!(q.update(3, 200), Some(100));
        assert_eq!(q.update(0, 150), Some(150));
    }

    #[test]
    fn unreachable_threshold_and_zero_stake() {
        let mut q = QuackTracker::new(vec![1, 0, 1], 3);
        for i in 0..3 {
            assert_eq!(q.update(i, 10), None);
        }
        assert_eq!(q.value(), 0);
        let mut q = QuackTracker::new(vec![0, 0], 0);
        assert_eq!(q.update(0, 10), None);
        assert_eq!(q.value(), 0);
    }

    proptest! {
        #[test]
        fn matches_brute_force(
            stakes in proptest::collection::vec(0u64..6, 1..12),
            threshold in 0u64..20,
            ups in proptest::collection::vec((0usize..14, 0u64..60), 0..120),
        ) {
            let mut q = QuackTracker::new(stakes.clone(), threshold);
            let mut acks = vec![0u64; stakes.len()];
            for (i, v) in ups {
                let before = q.value();
                let got = q.update(i, v);
                if let Some(a) = acks.get_mut(i) {
                    *a = (*a).max(v);
                }
                let want = model(&stakes, &acks, threshold);
                prop_assert_eq!(q.value(), want);
                prop_assert_eq!(got, (want > before).then_some(want));
                for (j, &a) in acks.iter().enumerate() {
                    prop_assert_eq!(q.ack_of(j), a);
                }
            }
        }
    }
}
