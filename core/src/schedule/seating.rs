//! Seats: how a side's first sends (or first receives) are shared out in proportion to stake,
//! and in which order they come round.
//!
//! **Seats.** Each side owns `A` seats per cycle. If its total stake `S ≤ 65536`, a replica gets
//! exactly `stake` seats (`A = S`), so the first-send load is exactly proportional to stake.
//! Otherwise `A = 65536` seats are apportioned by exact largest remainder (Hamilton): everyone gets
//! `⌊stake·A/S⌋`, and the leftover seats go to the *largest* remainders, ties to the lower index.
//! Then any replica left with zero seats receives one seat taken from the replica holding the most
//! seats (ties: lower index). No replica is ever starved of first sends — a replica that never
//! sends first could otherwise hide a stalled link forever — at a proportional error of at most
//! one seat per starved replica, i.e. < 1/65536 of the load each. Only per-replica seat counts and
//! their prefix sums are stored (size n): nothing grows with stake.
//!
//! **Seat order.** Handing out seats in index order would make bursts (stakes 4,1,1,1 would give
//! 0,0,0,0,1,2,3), so each of replica 0's first sends would come back-to-back. Slot
//! `t ∈ [0, A)` is therefore mapped to position `p = t·g mod A`, where `g` is an integer coprime
//! to `A` next to `⌊A/φ⌋ ≈ 0.618·A` (a golden-ratio stride, which spreads consecutive slots
//! nearly evenly around the circle), and `p` belongs to the replica whose
//! prefix-sum interval contains it (binary search). Since `t ↦ p` is a bijection of `[0, A)`,
//! every replica still gets exactly its seats per cycle.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{MAX_SEATS, gcd, total_stake};

/// One side's seats: per-replica counts, prefix sums and the interleaving stride.
#[derive(Clone, Debug)]
pub(super) struct Seating {
    pub(super) seats: Vec<u32>,
    /// `ends[x]` = seats of replicas `0..=x`; replica `x` owns positions `[ends[x-1], ends[x])`.
    ends: Vec<u32>,
    /// `A`, the seats per cycle (≤ 65536).
    pub(super) total: u64,
    /// Golden-ratio stride, coprime to `total`.
    stride: u64,
}

impl Seating {
    /// Stakes must be validated (non-empty, ≤ 65535 replicas, no zero).
    pub(super) fn new(stakes: &[u64]) -> Self {
        let sum = total_stake(stakes);
        let seats: Vec<u32> = if sum <= u128::from(MAX_SEATS) {
            // Each stake ≤ sum ≤ 65536.
            stakes.iter().map(|&s| s as u32).collect()
        } else {
            let mut seats = hamilton(stakes, sum, MAX_SEATS);
            unstarve(&mut seats);
            seats
        };
        let ends: Vec<u32> = seats
            .iter()
            .scan(0u32, |acc, &s| {
                *acc += s;
                Some(*acc)
            })
            .collect();
        let total = u64::from(*ends.last().expect("validated non-empty"));
        Self { seats, ends, total, stride: golden_stride(total) }
    }

    /// The replica owning slot `t < A`.
    pub(super) fn replica_at(&self, t: u64) -> u16 {
        debug_assert!(t < self.total);
        // t, stride < 2^17: the product fits a u64. The position is < A ≤ 65536.
        let p = (t * self.stride % self.total) as u32;
        // First replica whose interval ends after p; every replica has ≥ 1 seat.
        self.ends.partition_point(|&end| end <= p) as u16
    }
}

/// Largest-remainder apportionment of `seats` over `stakes` (total `sum`): floor quotas, then
/// one more seat to each of the largest remainders, ties to the lower index.
fn hamilton(stakes: &[u64], sum: u128, seats: u64) -> Vec<u32> {
    let a = u128::from(seats);
    let mut out = Vec::with_capacity(stakes.len());
    let mut rems = Vec::with_capacity(stakes.len());
    for &s in stakes {
        let num = u128::from(s) * a;
        // Quota ≤ seats ≤ 65536.
        out.push((num / sum) as u32);
        rems.push(num % sum);
    }
    let given: u64 = out.iter().map(|&q| u64::from(q)).sum();
    // Fewer than n seats are left, since each floor loses less than one.
    let left = (seats - given) as usize;
    let mut order: Vec<usize> = (0..stakes.len()).collect();
    order.sort_unstable_by(|&x, &y| rems[y].cmp(&rems[x]).then(x.cmp(&y)));
    for &x in &order[..left] {
        out[x] += 1;
    }
    out
}

/// Gives every zero-seat replica one seat taken from the replica with the most seats (ties to the
/// lower index). Always possible: with n ≤ 65535 < 65536 seats and someone at zero, the richest
/// replica has at least 2.
fn unstarve(seats: &mut [u32]) {
    if !seats.contains(&0) {
        return;
    }
    let mut donors: BinaryHeap<(u32, Reverse<usize>)> =
        seats.iter().enumerate().map(|(x, &s)| (s, Reverse(x))).collect();
    for x in 0..seats.len() {
        if seats[x] != 0 {
            continue;
        }
        let (most, Reverse(donor)) = donors.pop().expect("seats outnumber replicas");
        debug_assert!(most >= 2 && seats[donor] == most);
        seats[donor] -= 1;
        seats[x] = 1;
        donors.push((most - 1, Reverse(donor)));
    }
}

/// The first integer in `[1, a)` coprime to `a` in the order `g, g+1, g−1, g+2, g−2, …` with
/// `g = ⌊a/φ⌋` (so within a few units of `0.618·a`); 1 for `a ≤ 2`.
fn golden_stride(a: u64) -> u64 {
    if a <= 2 {
        return 1;
    }
    // 2^64/φ, so this is ⌊a/φ⌋ ∈ [1, a).
    let g0 = ((u128::from(a) * 0x9E37_79B9_7F4A_7C15) >> 64) as u64;
    (0..a)
        .flat_map(|d| [g0.checked_add(d), g0.checked_sub(d).filter(|_| d > 0)])
        .flatten()
        .find(|&g| (1..a).contains(&g) && gcd(g, a) == 1)
        .expect("1 is coprime to every a")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::tests::sched;
    use super::*;

    #[test]
    fn hamilton_gives_leftovers_to_largest_remainders() {
        // Quotas 21845.33 and 43690.67: the leftover seat goes to the larger remainder (the
        // artifact gave it to the smaller one).
        let s = sched(&[65_537, 131_074], 0, &[1], 0);
        assert_eq!(s.sender_seats(), [21_845, 43_691]);
        // Equal remainders: lower index first.
        let s = sched(&[100_000; 3], 0, &[1], 0);
        assert_eq!(s.sender_seats(), [21_846, 21_845, 21_845]);
        // Exactly 65536 total stake keeps stake = seats.
        let s = sched(&[65_535, 1], 0, &[1], 0);
        assert_eq!(s.sender_seats(), [65_535, 1]);
    }

    #[test]
    fn nobody_starved() {
        let s = sched(&[1_000_000_000_000, 1, 1, 2], 0, &[1], 0);
        assert_eq!(s.sender_seats(), [65_533, 1, 1, 1]);
        let firsts: std::collections::BTreeSet<u16> = (0..65_536).map(|seq| s.first_sender(seq)).collect();
        assert_eq!(firsts.len(), 4);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// Huge skewed stakes (> 65536 in total): exactly 65536 seats, apportioned by largest
        /// remainder, nobody at zero, everybody first sender within one cycle.
        #[test]
        fn prop_no_replica_starved(
            whales in prop::collection::vec(1_000_000_000u64..=1_000_000_000_000, 1..=3),
            minnows in prop::collection::vec(1u64..=1000, 0..=40),
        ) {
            let mut stakes = whales.clone();
            stakes.extend(&minnows);
            let s = sched(&stakes, 0, &[1], 0);
            let seats = s.sender_seats();
            prop_assert_eq!(seats.iter().map(|&x| u64::from(x)).sum::<u64>(), MAX_SEATS);
            prop_assert!(seats.iter().all(|&x| x >= 1));
            let mut seen = vec![false; stakes.len()];
            for seq in 0..MAX_SEATS {
                seen[usize::from(s.first_sender(seq))] = true;
            }
            prop_assert!(seen.iter().all(|&x| x));
            // Minnows have at most the one rescue seat or their fair share.
            let total: u128 = stakes.iter().map(|&x| u128::from(x)).sum();
            for (x, &stake) in stakes.iter().enumerate().skip(whales.len()) {
                let fair = (u128::from(stake) * u128::from(MAX_SEATS)).div_ceil(total);
                prop_assert!(u128::from(seats[x]) <= fair.max(1));
            }
        }

        /// Hamilton exactly: without starvation, every seat count is its quota's floor or ceiling,
        /// and rounded-up replicas have larger remainders (ties: lower index) than the others.
        #[test]
        fn prop_hamilton_exact(stakes in prop::collection::vec(1_000_000u64..=1_000_000_000, 1..=40)) {
            let s = sched(&stakes, 0, &[1], 0);
            let seats = s.sender_seats();
            let total: u128 = stakes.iter().map(|&x| u128::from(x)).sum();
            let quota = |x: usize| u128::from(stakes[x]) * u128::from(MAX_SEATS) / total;
            let rem = |x: usize| u128::from(stakes[x]) * u128::from(MAX_SEATS) % total;
            prop_assert_eq!(seats.iter().map(|&x| u64::from(x)).sum::<u64>(), MAX_SEATS);
            let ups: Vec<u128> = seats.iter().enumerate().map(|(x, &n)| u128::from(n) - quota(x)).collect();
            for (x, &up) in ups.iter().enumerate() {
                prop_assert!(up <= 1);
                for (y, &y_up) in ups.iter().enumerate() {
                    if up == 1 && y_up == 0 {
                        prop_assert!(rem(x) > rem(y) || (rem(x) == rem(y) && x < y));
                    }
                }
            }
        }
    }
}
