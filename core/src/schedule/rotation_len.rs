//! How many pairs each rotation needs: the smallest prefix that surely holds a pair of correct
//! replicas, and why no schedule can do with fewer in general.
//!
//! **Length.** The rotation length `k(i, j)` is the smallest `k ≥ 1` for which one of these
//! *sound* rules shows that the first `k` pairs contain a pair with a correct sender and a correct
//! receiver, whatever faulty sets `F_s` (stake ≤ `f_s`) and `F_r` (stake ≤ `f_r`) the adversary
//! picks:
//!
//! - **(a) certainly correct pair**: some pair (s, r) has `stake(s) > f_s` and `stake(r) > f_r`;
//!   neither can be in a faulty set.
//! - **(b) counting**: let `K_s` be the largest number of distinct senders appearing in the `k`
//!   pairs whose stakes can sum to ≤ `f_s` (greedily over the smallest stakes), and `K_s'` the sum
//!   of the `K_s` largest per-sender pair counts. A faulty sender set has at most `K_s` members
//!   among those senders, so it kills at most `K_s'` pairs; likewise `K_r`, `K_r'` for receivers.
//!   If `k > K_s' + K_r'`, some pair survives both.
//! - **(c) exhaustion**: `k = n_s·n_r`. Every pair has been visited, and since `f_s` is below the
//!   total sender stake and `f_r` below the total receiver stake, some sender and some receiver
//!   are correct, and their pair is in the list.
//!
//! With unit stakes and `n_s = n_r` this yields exactly `f_s + f_r + 1` pairs (the paper's "at
//! most `f_s + f_r` resends"), which is optimal: the adversary can fail the first `f_s` senders
//! and the next `f_r` receivers of any `f_s + f_r` pairs with distinct senders and receivers.
//!
//! **Unequal sizes can need more, for any schedule.** Take 4 unit senders with `f_s = 1` against
//! 19 unit receivers with `f_r = 6`. In *any* list of `k` pairs, some sender holds at least
//! `⌈k/4⌉` of them (pigeonhole); the adversary fails it, and the remaining `≤ k − ⌈k/4⌉` pairs
//! must then involve at least `f_r + 1 = 7` distinct receivers, or the adversary fails all of
//! them. `k − ⌈k/4⌉ ≥ 7` first holds at `k = 10` (`k = 9` gives 6), so 10 pairs are necessary;
//! the rotation of the schedule reaches safety with exactly 10 (rule (b): `K_s' = ⌈10/4⌉ = 3`,
//! `K_r' = 6`, `10 > 9`). In general, the worst sender holds `≥ ⌈k/n_s⌉` pairs and the rest must
//! cover `f_r + 1` receivers. Rule (b) is conservative with skewed stakes (it pairs the *smallest*
//! stakes with the *largest* counts), so some rotations are longer than strictly necessary, but
//! never unsafe; rule (a) shortens the common case where a single replica outweighs `f`.

use std::collections::BinaryHeap;

use super::lcm;

/// Incremental greedy: the largest number of stakes seen so far whose sum is ≤ `budget`.
///
/// Keeps the chosen stakes in a max-heap. A new stake joins if it fits; otherwise it replaces
/// the largest chosen stake when smaller. This keeps the chosen set equal to the `K` smallest
/// stakes seen, with `K` maximal, which is exactly what sorting and taking a prefix would give.
struct Greedy {
    budget: u128,
    sum: u128,
    chosen: BinaryHeap<u64>,
}

impl Greedy {
    fn new(budget: u64) -> Self {
        Self { budget: u128::from(budget), sum: 0, chosen: BinaryHeap::new() }
    }

    fn push(&mut self, stake: u64) {
        if self.sum + u128::from(stake) <= self.budget {
            self.sum += u128::from(stake);
            self.chosen.push(stake);
        } else if let Some(&top) = self.chosen.peek()
            && stake < top
        {
            self.chosen.pop();
            self.chosen.push(stake);
            self.sum = self.sum - u128::from(top) + u128::from(stake);
        }
    }

    fn count(&self) -> u16 {
        // At most n ≤ 65535 stakes are ever pushed.
        self.chosen.len() as u16
    }
}

/// `row[k-1]` = greedy count over the stakes of replicas `start, start+1, …` (k of them, wrapping),
/// for k = 1..=n.
fn greedy_row(stakes: &[u64], f: u64, start: usize, row: &mut [u16]) {
    let n = stakes.len();
    let mut greedy = Greedy::new(f);
    for (k, slot) in row.iter_mut().enumerate() {
        greedy.push(stakes[(start + k) % n]);
        *slot = greedy.count();
    }
}

/// Computes `k(i, j)` for every first pair (see the module docs for the rules).
pub(super) struct RotationBuilder<'a> {
    sender_stakes: &'a [u64],
    f_s: u64,
    receiver_stakes: &'a [u64],
    f_r: u64,
    n_s: u64,
    n_r: u64,
    lcm: u64,
    /// Below this many pairs, some replica of the larger side has not appeared yet, so the
    /// greedy counts still depend on the first pair; from here on they are constant.
    k0: u64,
    /// Smallest `k ≥ k0` at which rule (b) or (c) holds (the same for every first pair).
    limit: u64,
    big_s: Vec<bool>,
    big_r: Vec<bool>,
    /// Whether rule (a) can ever apply.
    any_big: bool,
}

impl<'a> RotationBuilder<'a> {
    pub(super) fn new(sender_stakes: &'a [u64], f_s: u64, receiver_stakes: &'a [u64], f_r: u64) -> Self {
        let n_s = sender_stakes.len() as u64;
        let n_r = receiver_stakes.len() as u64;
        let big_s: Vec<bool> = sender_stakes.iter().map(|&s| s > f_s).collect();
        let big_r: Vec<bool> = receiver_stakes.iter().map(|&s| s > f_r).collect();
        let any_big = big_s.contains(&true) && big_r.contains(&true);
        let mut this = Self {
            sender_stakes,
            f_s,
            receiver_stakes,
            f_r,
            n_s,
            n_r,
            lcm: lcm(n_s, n_r),
            k0: n_s.max(n_r),
            limit: 0,
            big_s,
            big_r,
            any_big,
        };
        // Once every replica has appeared, the greedy counts are those of the whole side.
        let ks_all = greedy_all(sender_stakes, f_s);
        let kr_all = greedy_all(receiver_stakes, f_r);
        let total = n_s * n_r;
        this.limit = (this.k0..total).find(|&k| k > this.counting_bound(ks_all, kr_all, k)).unwrap_or(total);
        this
    }

    /// `K_s' + K_r'` for the first `k` pairs given the greedy counts `ks`, `kr`.
    ///
    /// Per-sender counts take two values: `⌊k/n_s⌋ + 1` for `k mod n_s` senders and `⌊k/n_s⌋`
    /// for the rest, so the `ks` largest sum to `ks·⌊k/n_s⌋ + min(ks, k mod n_s)`. Receivers get
    /// `lcm/n_r` per full lap, and the partial lap of `p` steps visits `p` consecutive receivers
    /// (as `n_r` divides `lcm`), so the same formula applies with `⌊k/lcm⌋·lcm/n_r + ⌊p/n_r⌋` and
    /// `p mod n_r`.
    fn counting_bound(&self, ks: u16, kr: u16, k: u64) -> u64 {
        let (ks, kr) = (u64::from(ks), u64::from(kr));
        let sender_side = ks * (k / self.n_s) + ks.min(k % self.n_s);
        let p = k % self.lcm;
        let base = (k / self.lcm) * (self.lcm / self.n_r) + p / self.n_r;
        let receiver_side = kr * base + kr.min(p % self.n_r);
        sender_side + receiver_side
    }

    /// `k(i, j)`, given `ks_row[k-1]` = sender greedy count for the first k senders from `i`,
    /// and `kr_row` likewise for receivers from `j`.
    fn len_for(&self, i: usize, j: usize, ks_row: &[u16], kr_row: &[u16]) -> u32 {
        let (n_s, n_r) = (self.n_s as usize, self.n_r as usize);
        // Pair t = k - 1 is (s, r); lap_pos = t mod lcm.
        let (mut s, mut r) = (i, j);
        let mut lap_pos = 0u64;
        let mut k = 1u64;
        loop {
            if self.any_big && self.big_s[s] && self.big_r[r] {
                break; // rule (a)
            }
            if k < self.k0 {
                // Before k0 ≤ n_s·n_r, rule (c) cannot hold. Up to k pairs, senders i..i+k-1
                // have appeared (all of them once k ≥ n_s), and likewise receivers: the first
                // lap is lcm ≥ n_r steps long.
                let ks = ks_row[(k as usize).min(n_s) - 1];
                let kr = kr_row[(k as usize).min(n_r) - 1];
                if k > self.counting_bound(ks, kr, k) {
                    break; // rule (b)
                }
            } else if !self.any_big || k >= self.limit {
                // Rules (b) and (c) no longer depend on (i, j): `limit` is their first k ≥ k0.
                k = self.limit;
                break;
            }
            k += 1;
            s = if s + 1 == n_s { 0 } else { s + 1 };
            r = if r + 1 == n_r { 0 } else { r + 1 };
            lap_pos += 1;
            if lap_pos == self.lcm {
                lap_pos = 0;
                r = if r + 1 == n_r { 0 } else { r + 1 };
            }
        }
        // k ≤ n_s·n_r < 2^32.
        k as u32
    }

    /// The `n_s·n_r` table, row-major by first sender. The smaller side's greedy rows are all
    /// precomputed (`min(n)²` entries, never more than the table itself); the larger side's row is
    /// recomputed once per outer iteration.
    pub(super) fn build(&self) -> Vec<u32> {
        let (n_s, n_r) = (self.n_s as usize, self.n_r as usize);
        let mut out = vec![0u32; n_s * n_r];
        if n_s <= n_r {
            let ks_tab = greedy_table(self.sender_stakes, self.f_s);
            let mut kr_row = vec![0u16; n_r];
            for j in 0..n_r {
                greedy_row(self.receiver_stakes, self.f_r, j, &mut kr_row);
                for (i, ks_row) in ks_tab.chunks_exact(n_s).enumerate() {
                    out[i * n_r + j] = self.len_for(i, j, ks_row, &kr_row);
                }
            }
        } else {
            let kr_tab = greedy_table(self.receiver_stakes, self.f_r);
            let mut ks_row = vec![0u16; n_s];
            for (i, out_row) in out.chunks_exact_mut(n_r).enumerate() {
                greedy_row(self.sender_stakes, self.f_s, i, &mut ks_row);
                for (j, (slot, kr_row)) in out_row.iter_mut().zip(kr_tab.chunks_exact(n_r)).enumerate() {
                    *slot = self.len_for(i, j, &ks_row, kr_row);
                }
            }
        }
        out
    }
}

/// Greedy rows for every start, row-major (`n·n` entries).
fn greedy_table(stakes: &[u64], f: u64) -> Vec<u16> {
    let n = stakes.len();
    let mut tab = vec![0u16; n * n];
    for (start, row) in tab.chunks_exact_mut(n).enumerate() {
        greedy_row(stakes, f, start, row);
    }
    tab
}

/// Greedy count over a whole side.
fn greedy_all(stakes: &[u64], f: u64) -> u16 {
    let mut sorted = stakes.to_vec();
    sorted.sort_unstable();
    let mut sum = 0u128;
    let mut count = 0u16;
    for s in sorted {
        sum += u128::from(s);
        if sum > u128::from(f) {
            break;
        }
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::tests::{rot, sched, side, unit_side};
    use super::super::*;

    /// Exhaustive adversary for sides of at most 20 replicas.
    struct Adversary {
        n_s: usize,
        n_r: usize,
        f_s: u128,
        f_r: u128,
        /// Stake of every subset (bitmask) of each side.
        s_masks: Vec<u128>,
        r_masks: Vec<u128>,
    }

    fn mask_stakes(stakes: &[u64]) -> Vec<u128> {
        assert!(stakes.len() <= 20);
        let mut out = vec![0u128; 1 << stakes.len()];
        for m in 1..out.len() {
            out[m] = out[m & (m - 1)] + u128::from(stakes[m.trailing_zeros() as usize]);
        }
        out
    }

    impl Adversary {
        fn new(ss: &[u64], f_s: u64, rs: &[u64], f_r: u64) -> Self {
            Self {
                n_s: ss.len(),
                n_r: rs.len(),
                f_s: f_s.into(),
                f_r: f_r.into(),
                s_masks: mask_stakes(ss),
                r_masks: mask_stakes(rs),
            }
        }

        /// Faulty sets (sender mask, receiver mask) within budget that kill every pair, if any.
        ///
        /// Enumerates every within-budget faulty subset of the smaller side; the other side's
        /// adversary then has to fail every replica still paired with a correct one, which it
        /// can exactly when their stake is within its budget. So this is exhaustive over all
        /// pairs of faulty subsets.
        fn counterexample(&self, pairs: &[(u16, u16)]) -> Option<(u32, u32)> {
            if self.n_s <= self.n_r {
                (0u32..1 << self.n_s).filter(|&fs| self.s_masks[fs as usize] <= self.f_s).find_map(|fs| {
                    let need = pairs.iter().filter(|&&(s, _)| fs >> s & 1 == 0).fold(0u32, |m, &(_, r)| m | 1 << r);
                    (self.r_masks[need as usize] <= self.f_r).then_some((fs, need))
                })
            } else {
                (0u32..1 << self.n_r).filter(|&fr| self.r_masks[fr as usize] <= self.f_r).find_map(|fr| {
                    let need = pairs.iter().filter(|&&(_, r)| fr >> r & 1 == 0).fold(0u32, |m, &(s, _)| m | 1 << s);
                    (self.s_masks[need as usize] <= self.f_s).then_some((need, fr))
                })
            }
        }
    }

    /// Pair `t` of the rotation from (i, j), straight from the definition.
    fn naive_pair(n_s: usize, n_r: usize, i: usize, j: usize, t: usize) -> (u16, u16) {
        let l = lcm(n_s as u64, n_r as u64) as usize;
        (((i + t) % n_s) as u16, ((j + t + t / l) % n_r) as u16)
    }

    /// The rotation length straight from the rules, recomputing everything at every k.
    fn naive_len(ss: &[u64], f_s: u64, rs: &[u64], f_r: u64, i: usize, j: usize) -> usize {
        let (n_s, n_r) = (ss.len(), rs.len());
        fn killable(stakes: &[u64], f: u64, counts: &[usize]) -> usize {
            let mut appearing: Vec<u64> = (0..stakes.len()).filter(|&x| counts[x] > 0).map(|x| stakes[x]).collect();
            appearing.sort_unstable();
            let mut sum = 0u128;
            let members = appearing
                .iter()
                .take_while(|&&s| {
                    sum += u128::from(s);
                    sum <= u128::from(f)
                })
                .count();
            let mut c = counts.to_vec();
            c.sort_unstable_by(|a, b| b.cmp(a));
            c[..members].iter().sum()
        }
        for k in 1..=n_s * n_r {
            let pairs: Vec<(usize, usize)> = (0..k)
                .map(|t| {
                    let (s, r) = naive_pair(n_s, n_r, i, j, t);
                    (usize::from(s), usize::from(r))
                })
                .collect();
            if pairs.iter().any(|&(s, r)| ss[s] > f_s && rs[r] > f_r) {
                return k;
            }
            let mut cs = vec![0; n_s];
            let mut cr = vec![0; n_r];
            for &(s, r) in &pairs {
                cs[s] += 1;
                cr[r] += 1;
            }
            if k > killable(ss, f_s, &cs) + killable(rs, f_r, &cr) {
                return k;
            }
        }
        n_s * n_r
    }

    /// Checks every rotation of a configuration (sides of at most 12): definition, minimality
    /// under the rules, exhaustive safety; then the seq-level API at `seqs`, against maximal
    /// faulty sets drawn from `picks`.
    fn check_config(ss: &[u64], f_s: u64, rs: &[u64], f_r: u64, seqs: &[u64], picks: &[u64]) {
        let s = sched(ss, f_s, rs, f_r);
        let adv = Adversary::new(ss, f_s, rs, f_r);
        let (n_s, n_r) = (ss.len(), rs.len());
        let mut max = 0;
        for i in 0..n_s {
            for j in 0..n_r {
                let rotation = rot(&s, i, j);
                let pairs: Vec<_> = rotation.pairs().collect();
                assert_eq!(pairs.len(), naive_len(ss, f_s, rs, f_r, i, j), "length of ({i}, {j})");
                for (t, &p) in pairs.iter().enumerate() {
                    assert_eq!(p, naive_pair(n_s, n_r, i, j, t));
                }
                assert_eq!(adv.counterexample(&pairs), None, "rotation ({i}, {j}) is unsafe: {pairs:?}");
                max = max.max(pairs.len());
            }
        }
        assert_eq!(s.max_rotation_len(), max);
        for &seq in seqs {
            let rotation = s.rotation(seq);
            assert_eq!(rotation.first_sender(), s.first_sender(seq));
            assert_eq!(rotation.first_receiver(), s.first_receiver(seq));
            assert_eq!(s.rotation_len(seq), rotation.len());
            assert_eq!(s.pair(seq, 0), Some((s.first_sender(seq), s.first_receiver(seq))));
            assert_eq!(s.pair(seq, rotation.len()), None);
            let pairs: Vec<_> = (0..rotation.len()).map(|r| s.pair(seq, r).unwrap()).collect();
            for sender in 0..=n_s as u16 {
                let expected: Vec<usize> = (0..pairs.len()).filter(|&r| pairs[r].0 == sender).collect();
                assert_eq!(s.resend_numbers(seq, sender).collect::<Vec<_>>(), expected);
                assert_eq!(s.has_role(seq, sender), !expected.is_empty());
                assert_eq!(rotation.first_turn(sender), expected.first().copied());
                let turns: Vec<_> = rotation.turns(sender).collect();
                assert_eq!(turns, expected.iter().map(|&r| (r, pairs[r].1)).collect::<Vec<_>>());
            }
            for (a, b) in picks.iter().zip(picks.iter().rev()) {
                let fs = maximal_faulty_set(ss, f_s, *a);
                let fr = maximal_faulty_set(rs, f_r, *b);
                assert!(
                    pairs.iter().any(|&(x, y)| !fs[usize::from(x)] && !fr[usize::from(y)]),
                    "seq {seq}: every pair of {pairs:?} hits faulty senders {fs:?} or receivers {fr:?}"
                );
            }
        }
    }

    /// A faulty set that cannot grow within `f`: replicas considered in an order drawn from
    /// `seed`, each added if it fits.
    fn maximal_faulty_set(stakes: &[u64], f: u64, mut seed: u64) -> Vec<bool> {
        let mut order: Vec<usize> = (0..stakes.len()).collect();
        for x in (1..order.len()).rev() {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            order.swap(x, (seed >> 33) as usize % (x + 1));
        }
        let mut faulty = vec![false; stakes.len()];
        let mut sum = 0u128;
        for x in order {
            if sum + u128::from(stakes[x]) <= u128::from(f) {
                sum += u128::from(stakes[x]);
                faulty[x] = true;
            }
        }
        faulty
    }

    #[test]
    fn four_by_four_unit() {
        let s = sched(&[1; 4], 1, &[1; 4], 1);
        assert_eq!(s.max_rotation_len(), 3);
        let adv = Adversary::new(&[1; 4], 1, &[1; 4], 1);
        for i in 0..4 {
            for j in 0..4 {
                let pairs: Vec<_> = rot(&s, i, j).pairs().collect();
                assert_eq!(pairs.len(), 3);
                // Two pairs would not do: the paper's f_s + f_r resends are needed.
                assert!(adv.counterexample(&pairs[..2]).is_some());
            }
        }
        assert_eq!(s.cycle_len(), 16);
        for start in [0, 16, 1 << 40, u64::MAX - 15] {
            let mut firsts: Vec<_> = (start..=start + 15).map(|seq| s.pair(seq, 0).unwrap()).collect();
            firsts.sort_unstable();
            firsts.dedup();
            assert_eq!(firsts.len(), 16, "every first pair once per cycle from {start}");
        }
        // Resends step sender and receiver together.
        let first = s.rotation(0);
        let (i, j) = (first.first_sender(), first.first_receiver());
        let pairs: Vec<_> = first.pairs().collect();
        assert_eq!(pairs, [(i, j), ((i + 1) % 4, (j + 1) % 4), ((i + 2) % 4, (j + 2) % 4)]);
    }

    #[test]
    fn skewed_stakes_4111() {
        let stakes = [4, 1, 1, 1];
        let s = sched(&stakes, 2, &stakes, 2);
        assert_eq!(s.sender_seats(), [4, 1, 1, 1]);
        assert_eq!(s.cycle_len(), 49);
        // Golden stride 4 over 7 seats interleaves the heavy replica instead of 0,0,0,0,1,2,3.
        let cycle: Vec<u16> = (0..7).map(|seq| s.first_sender(seq)).collect();
        assert_eq!(cycle, [0, 1, 0, 2, 0, 3, 0]);
        // Replica 0 alone outweighs f on both sides: rule (a) at once.
        assert_eq!(rot(&s, 0, 0).len(), 1);
        // Rule (a) reached at pair (0, 0) after three unit pairs; rule (b) never fires first.
        assert_eq!(rot(&s, 1, 1).len(), 4);
        // From (1, 0) the heavy pair (0, 0) comes only at t = 7 (second lap).
        let pairs: Vec<_> = rot(&s, 1, 0).pairs().collect();
        assert_eq!(pairs, [(1, 0), (2, 1), (3, 2), (0, 3), (1, 1), (2, 2), (3, 3), (0, 0)]);
        // ... and seven pairs really are not enough: F_s = {1, 2}, F_r = {2, 3} kills them all.
        let adv = Adversary::new(&stakes, 2, &stakes, 2);
        assert!(adv.counterexample(&pairs[..7]).is_some());
        check_config(&stakes, 2, &stakes, 2, &[0, 1, 5, 48, 49, u64::MAX], &[1, 2, 3, 4]);
    }

    #[test]
    fn unequal_sizes() {
        // 4 vs 7: f_s + f_r + 1 = 4 pairs suffice and are needed.
        let s = sched(&[1; 4], 1, &[1; 7], 2);
        let adv = Adversary::new(&[1; 4], 1, &[1; 7], 2);
        for i in 0..4 {
            for j in 0..7 {
                let pairs: Vec<_> = rot(&s, i, j).pairs().collect();
                assert_eq!(pairs.len(), 4);
                assert!(adv.counterexample(&pairs[..3]).is_some());
            }
        }
        check_config(&[1; 4], 1, &[1; 7], 2, &[0, 27, 28, 1000], &[5, 6, 7]);

        // 4 vs 19: 10 pairs, and no schedule can do with 9 (see module docs).
        let s = sched(&[1; 4], 1, &[1; 19], 6);
        assert_eq!(s.max_rotation_len(), 10);
        let adv = Adversary::new(&[1; 4], 1, &[1; 19], 6);
        for i in 0..4 {
            for j in 0..19 {
                let pairs: Vec<_> = rot(&s, i, j).pairs().collect();
                assert_eq!(pairs.len(), 10);
                assert_eq!(adv.counterexample(&pairs), None);
                assert!(adv.counterexample(&pairs[..9]).is_some());
            }
        }
        // The lower bound of the docs: k − ⌈k/4⌉ ≥ 7 first holds at k = 10.
        assert_eq!((1..).find(|k: &usize| k - k.div_ceil(4) >= 7), Some(10));
    }

    #[test]
    fn single_replica_sides() {
        let s = sched(&[1], 0, &[1], 0);
        assert_eq!(s.max_rotation_len(), 1);
        assert_eq!(s.pair(u64::MAX, 0), Some((0, 0)));
        // One sender (always correct) against 4 unit receivers with f = 1: two pairs.
        let s = sched(&[7], 3, &[1; 4], 1);
        assert_eq!(s.max_rotation_len(), 2);
        check_config(&[7], 3, &[1; 4], 1, &[0, 1, 2, 3], &[9]);
        check_config(&[1; 5], 2, &[3], 1, &[0, 1, 2, 3], &[9]);
    }

    #[test]
    fn builds_fast_for_a_hundred_replicas() {
        let start = std::time::Instant::now();
        let s = sched(&[1; 100], 33, &[1; 100], 33);
        assert_eq!(s.max_rotation_len(), 67);
        // Rule (b) never fires and no replica outweighs f: every rotation is exhaustive.
        let mut heavy = vec![1; 100];
        heavy.extend([100, 100]);
        let s = sched(&heavy, 149, &[1; 100], 33);
        assert_eq!(s.max_rotation_len(), 102 * 100);
        // One heavy replica per side: rule (a) ends each rotation after a long walk.
        let mut one_heavy = vec![1; 98];
        one_heavy.push(1000);
        let s = sched(&one_heavy, 548, &one_heavy, 548);
        assert!(s.max_rotation_len() <= 99 * 99);
        // Unequal sides, stakes from 1 to 5, BFT.
        let a: Vec<u64> = (0..97).map(|x| x % 5 + 1).collect();
        let b: Vec<u64> = (0..101).map(|x| (x * 7) % 5 + 1).collect();
        let (fa, fb) = ((a.iter().sum::<u64>() - 1) / 3, (b.iter().sum::<u64>() - 1) / 3);
        let s = sched(&a, fa, &b, fb);
        assert!(s.max_rotation_len() >= 1);
        let elapsed = start.elapsed();
        eprintln!("built four 100-replica schedules in {elapsed:?}");
        assert!(elapsed.as_secs() < 10, "building took {elapsed:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// SAFETY (exhaustive over all faulty subsets and all first pairs) and minimality under
        /// the stopping rules, small stakes.
        #[test]
        fn prop_safe_small_stakes(
            (ss, f_s) in side(12, 5),
            (rs, f_r) in side(12, 5),
            seqs in prop::collection::vec(any::<u64>(), 6),
            picks in prop::collection::vec(any::<u64>(), 12),
        ) {
            check_config(&ss, f_s, &rs, f_r, &seqs, &picks);
        }

        /// The same with large stakes (up to 1e9, so seats are apportioned).
        #[test]
        fn prop_safe_large_stakes(
            (ss, f_s) in side(12, 1_000_000_000),
            (rs, f_r) in side(12, 1_000_000_000),
            seqs in prop::collection::vec(any::<u64>(), 6),
            picks in prop::collection::vec(any::<u64>(), 12),
        ) {
            check_config(&ss, f_s, &rs, f_r, &seqs, &picks);
        }

        /// Unit stakes and equal sizes: exactly f_s + f_r + 1 pairs, and one fewer is unsafe.
        #[test]
        fn prop_unit_equal_sizes((n, f_s) in unit_side(12), pick in any::<u64>(), bft in any::<bool>()) {
            let max_f = if bft { (n as u64 - 1) / 3 } else { (n as u64 - 1) / 2 };
            let f_r = pick % (max_f + 1);
            let stakes = vec![1; n];
            let s = sched(&stakes, f_s, &stakes, f_r);
            let expected = (f_s + f_r + 1) as usize;
            prop_assert_eq!(s.max_rotation_len(), expected);
            let adv = Adversary::new(&stakes, f_s, &stakes, f_r);
            for i in 0..n {
                for j in 0..n {
                    let pairs: Vec<_> = rot(&s, i, j).pairs().collect();
                    prop_assert_eq!(pairs.len(), expected);
                    prop_assert!(adv.counterexample(&pairs[..expected - 1]).is_some());
                }
            }
        }
    }
}
