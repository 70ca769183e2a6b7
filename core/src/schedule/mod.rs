//! Who sends each message, to whom, and who resends it.
//!
//! A sending RSM *S* (replica stakes `sender_stakes`, at most `f_s` faulty stake) ships the stream
//! seq = 0, 1, 2, … to a receiving RSM *R* (`receiver_stakes`, at most `f_r` faulty stake). For
//! every seq, the [`Schedule`] names a deterministic [`Rotation`]: a list of (sender, receiver)
//! pairs. Pair 0 is the *first send*; pair `r ≥ 1` is *resend number* `r`, performed only when the
//! sender has evidence (duplicate QUACKs) that the earlier pairs failed. Every replica of both RSMs
//! computes the same schedule from the same stakes, so no coordination is needed, and a receiver
//! can check that a record really came from the replica scheduled to send it.
//!
//! The design follows the Picsou artifact's `MessageScheduler` but repairs its defects: its
//! Hamilton apportionment handed leftover seats to the *smallest* remainders, low-stake replicas
//! could get zero seats (the assertion was compiled out), its lookup tables grew with stake
//! (≈ 10⁹ entries with unequal totals) and were rounded up to a power of two (breaking exact
//! periodicity), and resends were effectively capped at 3, which is unsound for n ≥ 7.
//!
//! # First sender and first receiver
//!
//! Each side's replicas get seats in proportion to their stake, interleaved by a golden-ratio
//! stride (module `seating`). For a seq, `x = seq mod A_s`, `q = ⌊seq / A_s⌋ mod A_r`; the first
//! sender is sender slot `x` and the first receiver is receiver slot `(x + q) mod A_r`. Over any
//! `A_s·A_r` consecutive seqs, `(x, q)` takes every value once, hence so does `(x, (x + q) mod
//! A_r)`: every (sender seat, receiver seat) combination is the first pair exactly once per cycle,
//! and replica pair (a, b) exactly `seats(a)·seats(b)` times. The schedule is exactly periodic
//! with period `A_s·A_r` ([`Schedule::cycle_len`]); all arithmetic is in `u64`/`u128` and cannot
//! overflow for any `u64` seq.
//!
//! # Rotation (resends)
//!
//! From pair 0 = (i, j), pair `t` is `(sender (i + t) mod n_s, receiver (j + t + lap) mod n_r)`
//! with `lap = ⌊t / lcm(n_s, n_r)⌋`. Within one lap the pairs are all distinct (the pair index
//! repeats only after `lcm` steps); each lap shifts the receiver by one more, so the `gcd(n_s,
//! n_r)` laps of `n_s·n_r` steps visit each of the `n_s·n_r` pairs exactly once. Consecutive
//! pairs use distinct senders and distinct receivers, so resend load walks around both RSMs.
//!
//! **Length.** The rotation length `k(i, j)` is the smallest `k ≥ 1` for which sound rules show
//! that the first `k` pairs contain a pair with a correct sender and a correct receiver, whatever
//! faulty sets the adversary picks (module `rotation_len`, which also shows why unequal sizes can
//! need more than `f_s + f_r + 1` pairs for any schedule).
//!
//! # Cost
//!
//! [`Schedule::new`] precomputes `k(i, j)` for every (first sender, first receiver): a table of
//! `n_s·n_r` `u32`s (it grows with replica count, never with stake). Building it is incremental in
//! `k` for each (i, j), `O(k)` per entry with `O(1)` work per step plus `O(n²·log n)` for greedy
//! prefix tables of the smaller side; `n ≈ 100` per side builds well under a second. Memory and time
//! are quadratic in replica count, so configurations with thousands of replicas per side are
//! expensive. [`Schedule::rotation`] costs two binary searches (`O(log n_s + log n_r)`); every
//! query on the returned [`Rotation`] is `O(1)` (iterators `O(1)` per item).
//!
//! Rotation lengths can exceed 65536 only in pathological configurations (rule (c) with more than
//! 65536 pairs); callers that encode resend numbers as `u16` should check
//! [`Schedule::max_rotation_len`] once.

mod rotation_len;
mod seating;

use std::fmt;

use self::rotation_len::RotationBuilder;
use self::seating::Seating;

/// Most replicas an RSM may have, so that replica indices fit in a `u16`.
pub const MAX_REPLICAS: usize = u16::MAX as usize;

/// Seats per cycle of an RSM whose total stake exceeds this (the apportionment granularity).
pub const MAX_SEATS: u64 = 1 << 16;

/// Which RSM of the pair a configuration problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The sending RSM.
    Sender,
    /// The receiving RSM.
    Receiver,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sender => "sender",
            Self::Receiver => "receiver",
        })
    }
}

/// Why no schedule exists for a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// An RSM has no replicas: nobody could send or receive.
    #[error("{0} rsm has no replicas")]
    NoReplicas(Side),
    /// An RSM has more than [`MAX_REPLICAS`] replicas: indices would not fit a `u16`.
    #[error("{side} rsm has {n} replicas, at most 65535 allowed")]
    TooManyReplicas {
        /// The offending RSM.
        side: Side,
        /// Its replica count.
        n: usize,
    },
    /// A replica has zero stake: it could never be scheduled in proportion to its stake.
    #[error("{side} replica {index} has zero stake")]
    ZeroStake {
        /// The offending RSM.
        side: Side,
        /// Index of the replica within its RSM.
        index: usize,
    },
    /// The faulty stake is not below the total stake: no replica is guaranteed correct, so no
    /// rotation can be safe.
    #[error("{side} fault threshold {f} is not below total stake {total}")]
    FaultTooLarge {
        /// The offending RSM.
        side: Side,
        /// The configured fault threshold.
        f: u64,
        /// The RSM's total stake.
        total: u128,
    },
    /// Some rotation has more pairs than resend numbers fit on the wire (a `u16`).
    #[error("a rotation needs {0} pairs, more than the 65536 the wire format can number")]
    RotationTooLong(usize),
}

/// The deterministic schedule shared by every replica of both RSMs.
///
/// Immutable after [`Schedule::new`]; cheap to share behind an `Arc`.
#[derive(Clone)]
pub struct Schedule {
    senders: Seating,
    receivers: Seating,
    /// `lcm(n_s, n_r)`: rotation steps per lap.
    lcm: u64,
    /// `k(i, j)` at `i·n_r + j`.
    rotation_lens: Vec<u32>,
    max_rotation_len: u32,
    /// The first pair of every seq of one period of the schedule (`A_s·A_r` seqs), when that
    /// period is short (`cycle_len`, small RSMs): one table read instead of two binary searches
    /// and half a dozen divisions per lookup, which the hot path makes several times per
    /// message.
    first_pairs: Option<Vec<(u16, u16)>>,
}

/// Longest schedule period whose first pairs are tabulated (16 KiB of table).
const FIRST_PAIR_TABLE_MAX: u64 = 4096;

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The rotation table can be large; summarise it.
        f.debug_struct("Schedule")
            .field("sender_seats", &self.senders.seats)
            .field("receiver_seats", &self.receivers.seats)
            .field("max_rotation_len", &self.max_rotation_len)
            .finish_non_exhaustive()
    }
}

impl Schedule {
    /// Builds the schedule for a sending RSM with `sender_stakes` tolerating `f_s` faulty stake
    /// and a receiving RSM with `receiver_stakes` tolerating `f_r`.
    ///
    /// Replica `x` of a side is `stakes[x]`. Fails if a side is empty, has more than
    /// [`MAX_REPLICAS`] replicas, has a zero stake, or has `f ≥` its total stake. The fault model
    /// (BFT `3f < S`, CFT `2f < S`) is not checked here: the rotation is safe for any `f < S`.
    ///
    /// Cost: `O(n_s·n_r·k)` time with small constants and `O(n_s·n_r)` memory (see the module
    /// docs); done once per configuration.
    pub fn new(sender_stakes: &[u64], f_s: u64, receiver_stakes: &[u64], f_r: u64) -> Result<Self, ScheduleError> {
        validate(Side::Sender, sender_stakes, f_s)?;
        validate(Side::Receiver, receiver_stakes, f_r)?;
        let senders = Seating::new(sender_stakes);
        let receivers = Seating::new(receiver_stakes);
        let rotation_lens = RotationBuilder::new(sender_stakes, f_s, receiver_stakes, f_r).build();
        let max_rotation_len = rotation_lens.iter().copied().max().unwrap_or(1);
        let mut this = Self {
            senders,
            receivers,
            lcm: lcm(sender_stakes.len() as u64, receiver_stakes.len() as u64),
            rotation_lens,
            max_rotation_len,
            first_pairs: None,
        };
        let period = this.cycle_len();
        if period <= FIRST_PAIR_TABLE_MAX {
            this.first_pairs = Some((0..period).map(|seq| this.first_pair_computed(seq)).collect());
        }
        Ok(this)
    }

    /// The first (sender, receiver) pair of `seq`, computed from the seatings.
    fn first_pair_computed(&self, seq: u64) -> (u16, u16) {
        let (x, y) = self.slots(seq);
        (self.senders.replica_at(x), self.receivers.replica_at(y))
    }

    /// The first (sender, receiver) pair of `seq`.
    fn first_pair(&self, seq: u64) -> (u16, u16) {
        match &self.first_pairs {
            Some(table) => table[(seq % table.len() as u64) as usize],
            None => self.first_pair_computed(seq),
        }
    }

    /// The rotation of `seq`: its first sender and receiver and all its resends.
    ///
    /// Costs a table read for short schedule periods, else two binary searches over the seat
    /// prefix sums; query the returned value when several questions are asked about the same
    /// seq.
    pub fn rotation(&self, seq: u64) -> Rotation {
        let (i, j) = self.first_pair(seq);
        self.rotation_from(i, j)
    }

    /// Number of pairs in the rotation of `seq` (1 + the most resends it can need).
    pub fn rotation_len(&self, seq: u64) -> usize {
        self.rotation(seq).len()
    }

    /// The `r`-th (sender, receiver) pair of the rotation of `seq`; pair 0 is the first send.
    /// `None` if `r ≥ rotation_len(seq)`.
    pub fn pair(&self, seq: u64, r: usize) -> Option<(u16, u16)> {
        self.rotation(seq).pair(r)
    }

    /// Whether `sender` appears in the rotation of `seq` (first send or any resend), i.e.
    /// whether it must keep the message until it is acknowledged.
    pub fn has_role(&self, seq: u64, sender: u16) -> bool {
        self.rotation(seq).has_role(sender)
    }

    /// Every `r` with `pair(seq, r).0 == sender`, increasing; 0 means `sender` sends first.
    /// Empty if `sender` has no role.
    pub fn resend_numbers(&self, seq: u64, sender: u16) -> impl Iterator<Item = usize> + use<> {
        self.rotation(seq).resend_numbers(sender)
    }

    /// The replica of the sending RSM that sends `seq` first.
    pub fn first_sender(&self, seq: u64) -> u16 {
        self.first_pair(seq).0
    }

    /// The replica of the receiving RSM that `seq` is first sent to.
    pub fn first_receiver(&self, seq: u64) -> u16 {
        self.first_pair(seq).1
    }

    /// Longest rotation over all seqs (≥ 1): the most pairs any message can need, e.g. to size
    /// per-message resend state or to check that resend numbers fit the wire format.
    pub fn max_rotation_len(&self) -> usize {
        self.max_rotation_len as usize
    }

    /// Seats per cycle of each sender: how many of every `A_s` consecutive seqs it sends first
    /// (its stake, or its apportioned share of 65536 when the total stake is larger).
    pub fn sender_seats(&self) -> &[u32] {
        &self.senders.seats
    }

    /// Seats per cycle of each receiver, as [`Schedule::sender_seats`].
    pub fn receiver_seats(&self) -> &[u32] {
        &self.receivers.seats
    }

    /// Number of replicas of the sending RSM.
    pub fn sender_count(&self) -> usize {
        self.senders.seats.len()
    }

    /// Number of replicas of the receiving RSM.
    pub fn receiver_count(&self) -> usize {
        self.receivers.seats.len()
    }

    /// Period of the schedule, `A_s·A_r` seqs: seq and seq + `cycle_len()` have the same
    /// rotation, and over any `cycle_len()` consecutive seqs every (sender seat, receiver seat)
    /// combination is the first pair exactly once. At most 2³².
    pub fn cycle_len(&self) -> u64 {
        self.senders.total * self.receivers.total
    }

    /// Sender and receiver slot of `seq` (before mapping slots to replicas).
    fn slots(&self, seq: u64) -> (u64, u64) {
        let (a_s, a_r) = (self.senders.total, self.receivers.total);
        let x = seq % a_s;
        let q = (seq / a_s) % a_r;
        (x, (x % a_r + q) % a_r)
    }

    /// The rotation whose first pair is (`i`, `j`).
    fn rotation_from(&self, i: u16, j: u16) -> Rotation {
        let n_r = self.receivers.seats.len();
        Rotation {
            first_sender: i,
            first_receiver: j,
            len: self.rotation_lens[usize::from(i) * n_r + usize::from(j)],
            n_s: self.senders.seats.len() as u32,
            n_r: n_r as u32,
            lcm: self.lcm,
        }
    }
}

/// The rotation of one seq: its ordered (sender, receiver) pairs.
///
/// A small `Copy` value; every query is `O(1)`. Pair `t` is `(sender (i + t) mod n_s, receiver
/// (j + t + ⌊t / lcm(n_s, n_r)⌋) mod n_r)` for the first pair (i, j) and `t < len()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rotation {
    first_sender: u16,
    first_receiver: u16,
    len: u32,
    n_s: u32,
    n_r: u32,
    lcm: u64,
}

impl Rotation {
    /// The replica that sends first (pair 0's sender).
    pub fn first_sender(&self) -> u16 {
        self.first_sender
    }

    /// The replica the message is first sent to (pair 0's receiver).
    pub fn first_receiver(&self) -> u16 {
        self.first_receiver
    }

    /// Number of pairs: 1 + the most resends the message can need.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Always `false`: a rotation has at least its first send.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `r`-th (sender, receiver) pair, `None` if `r ≥ len()`.
    pub fn pair(&self, r: usize) -> Option<(u16, u16)> {
        (r < self.len()).then(|| self.cycle_pair(r))
    }

    /// Pairs in the whole cycle: every (sender, receiver) combination appears exactly once at
    /// positions `0..cycle_pairs()` (the rotation is the first `len()` of them).
    pub fn cycle_pairs(&self) -> usize {
        (self.n_s as usize) * (self.n_r as usize)
    }

    /// The pair at position `t` of the whole cycle (taken mod `cycle_pairs()`): the rotation's
    /// pairs continued past its length. `pair(r) == Some(cycle_pair(r))` for `r < len()`.
    pub fn cycle_pair(&self, t: usize) -> (u16, u16) {
        let t = (t % self.cycle_pairs().max(1)) as u64;
        let (n_s, n_r) = (u64::from(self.n_s), u64::from(self.n_r));
        let s = (u64::from(self.first_sender) + t % n_s) % n_s;
        let lap = t / self.lcm;
        let recv = (u64::from(self.first_receiver) + t % n_r + lap % n_r) % n_r;
        // Both are below n ≤ 65535.
        (s as u16, recv as u16)
    }

    /// The position in the whole cycle of pair (`sender`, `receiver`); `None` for indices out
    /// of range. `O(n_r)`: the sender fixes the position modulo `n_s`.
    pub fn cycle_position(&self, sender: u16, receiver: u16) -> Option<usize> {
        if u32::from(sender) >= self.n_s || u32::from(receiver) >= self.n_r {
            return None;
        }
        let n_s = self.n_s as usize;
        let d = (usize::from(sender) + n_s - usize::from(self.first_sender)) % n_s;
        (0..self.n_r as usize).map(|m| d + n_s * m).find(|&t| self.cycle_pair(t).1 == receiver)
    }

    /// All pairs in order; pair 0 is the first send.
    pub fn pairs(&self) -> impl Iterator<Item = (u16, u16)> + use<> {
        let this = *self;
        (0..this.len()).filter_map(move |r| this.pair(r))
    }

    /// The first `r` at which `sender` acts, `None` if it has no role. `O(1)`: sender `s` first
    /// appears at `t = (s − i) mod n_s`.
    pub fn first_turn(&self, sender: u16) -> Option<usize> {
        if u32::from(sender) >= self.n_s {
            return None;
        }
        let d = (sender as usize + self.n_s as usize - self.first_sender as usize) % self.n_s as usize;
        (d < self.len()).then_some(d)
    }

    /// Whether `sender` appears in the rotation (first send or any resend).
    pub fn has_role(&self, sender: u16) -> bool {
        self.first_turn(sender).is_some()
    }

    /// Every `r` with `pair(r).0 == sender`, increasing (`r = 0` is the first send). Empty if
    /// `sender` has no role; otherwise `⌈(len − first_turn) / n_s⌉` items.
    pub fn resend_numbers(&self, sender: u16) -> impl Iterator<Item = usize> + use<> {
        let len = self.len();
        let start = self.first_turn(sender).unwrap_or(len);
        (start..len).step_by(self.n_s as usize)
    }

    /// `sender`'s turns as (resend number, receiver) pairs, increasing.
    pub fn turns(&self, sender: u16) -> impl Iterator<Item = (usize, u16)> + use<> {
        let this = *self;
        this.resend_numbers(sender).filter_map(move |r| this.pair(r).map(|(_, recv)| (r, recv)))
    }
}

fn validate(side: Side, stakes: &[u64], f: u64) -> Result<(), ScheduleError> {
    if stakes.is_empty() {
        return Err(ScheduleError::NoReplicas(side));
    }
    if stakes.len() > MAX_REPLICAS {
        return Err(ScheduleError::TooManyReplicas { side, n: stakes.len() });
    }
    if let Some(index) = stakes.iter().position(|&s| s == 0) {
        return Err(ScheduleError::ZeroStake { side, index });
    }
    let total = total_stake(stakes);
    if u128::from(f) >= total {
        return Err(ScheduleError::FaultTooLarge { side, f, total });
    }
    Ok(())
}

fn total_stake(stakes: &[u64]) -> u128 {
    stakes.iter().map(|&s| u128::from(s)).sum()
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    pub(super) fn sched(ss: &[u64], f_s: u64, rs: &[u64], f_r: u64) -> Schedule {
        Schedule::new(ss, f_s, rs, f_r).expect("valid configuration")
    }

    pub(super) fn rot(s: &Schedule, i: usize, j: usize) -> Rotation {
        s.rotation_from(i as u16, j as u16)
    }

    #[test]
    fn tabulated_first_pairs_equal_computed_ones() {
        for (ss, f_s, rs, f_r) in [
            (&[1u64, 1, 1, 1][..], 1, &[1u64, 1, 1, 1][..], 1),
            (&[4, 1, 1, 1][..], 2, &[1, 1, 1][..], 1),
            (&[5, 3, 2][..], 4, &[7, 1, 1, 1, 1][..], 3),
        ] {
            let s = sched(ss, f_s, rs, f_r);
            assert!(s.first_pairs.is_some(), "a short period is tabulated");
            for seq in (0..3 * s.cycle_len()).chain([u64::MAX - 5, u64::MAX - 1, 1 << 40]) {
                let (i, j) = s.first_pair_computed(seq);
                assert_eq!(s.rotation(seq), rot(&s, usize::from(i), usize::from(j)), "seq {seq}");
                assert_eq!((s.first_sender(seq), s.first_receiver(seq)), (i, j));
            }
        }
        // Large stakes give a long period: computed on the fly.
        assert!(sched(&[1000, 999, 998, 997], 1000, &[1, 1, 1, 1], 1).first_pairs.is_none());
    }

    #[test]
    fn errors() {
        use ScheduleError::*;
        assert_eq!(Schedule::new(&[], 0, &[1], 0).unwrap_err(), NoReplicas(Side::Sender));
        assert_eq!(Schedule::new(&[1], 0, &[], 0).unwrap_err(), NoReplicas(Side::Receiver));
        assert_eq!(Schedule::new(&[1, 0], 0, &[1], 0).unwrap_err(), ZeroStake { side: Side::Sender, index: 1 });
        assert_eq!(Schedule::new(&[1], 0, &[2, 2, 0], 0).unwrap_err(), ZeroStake { side: Side::Receiver, index: 2 });
        assert_eq!(
            Schedule::new(&[1, 1], 2, &[1], 0).unwrap_err(),
            FaultTooLarge { side: Side::Sender, f: 2, total: 2 }
        );
        assert_eq!(
            Schedule::new(&[1], 0, &[3], 3).unwrap_err(),
            FaultTooLarge { side: Side::Receiver, f: 3, total: 3 }
        );
        let many = vec![1; MAX_REPLICAS + 1];
        assert_eq!(
            Schedule::new(&[1], 0, &many, 0).unwrap_err(),
            TooManyReplicas { side: Side::Receiver, n: MAX_REPLICAS + 1 }
        );
        // Total stake beyond u64 is fine; f just has to be below it.
        assert!(Schedule::new(&[u64::MAX, u64::MAX], u64::MAX, &[1], 0).is_ok());
        assert_eq!(
            Schedule::new(&[1, 1], 2, &[1], 0).unwrap_err().to_string(),
            "sender fault threshold 2 is not below total stake 2"
        );
        assert_eq!(NoReplicas(Side::Receiver).to_string(), "receiver rsm has no replicas");
    }

    /// One side: stakes in `1..=max_stake`, and a fault threshold valid under BFT (3f < S) or CFT
    /// (2f < S), half the time the largest allowed.
    pub(super) fn side(max_n: usize, max_stake: u64) -> impl Strategy<Value = (Vec<u64>, u64)> {
        (prop::collection::vec(1..=max_stake, 1..=max_n), any::<bool>(), any::<u64>()).prop_map(
            |(stakes, bft, pick)| {
                let total: u64 = stakes.iter().sum();
                let max_f = if bft { (total - 1) / 3 } else { (total - 1) / 2 };
                let f = if pick & 1 == 0 { max_f } else { (pick >> 1) % (max_f + 1) };
                (stakes, f)
            },
        )
    }

    pub(super) fn unit_side(max_n: usize) -> impl Strategy<Value = (usize, u64)> {
        (1..=max_n, any::<bool>(), any::<u64>()).prop_map(|(n, bft, pick)| {
            let max_f = if bft { (n as u64 - 1) / 3 } else { (n as u64 - 1) / 2 };
            (n, if pick & 1 == 0 { max_f } else { (pick >> 1) % (max_f + 1) })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// BALANCE: over one cycle from any start, each replica is first sender (receiver)
        /// exactly seats·A_r (seats·A_s) times, every seat combination occurs once, and the
        /// schedule repeats with the cycle.
        #[test]
        fn prop_first_pairs_balanced(
            (ss, f_s) in side(6, 5),
            (rs, f_r) in side(6, 5),
            start in any::<u64>(),
        ) {
            let s = sched(&ss, f_s, &rs, f_r);
            let (a_s, a_r) = (s.senders.total, s.receivers.total);
            prop_assert_eq!(s.cycle_len(), a_s * a_r);
            let start = start % (u64::MAX - s.cycle_len());
            let mut by_sender = vec![0u64; ss.len()];
            let mut by_receiver = vec![0u64; rs.len()];
            let mut combos = std::collections::HashSet::new();
            for seq in start..start + s.cycle_len() {
                by_sender[usize::from(s.first_sender(seq))] += 1;
                by_receiver[usize::from(s.first_receiver(seq))] += 1;
                prop_assert!(combos.insert(s.slots(seq)));
                prop_assert_eq!(s.rotation(seq), s.rotation(seq + s.cycle_len()));
            }
            for (x, &c) in by_sender.iter().enumerate() {
                prop_assert_eq!(c, u64::from(s.sender_seats()[x]) * a_r);
            }
            for (x, &c) in by_receiver.iter().enumerate() {
                prop_assert_eq!(c, u64::from(s.receiver_seats()[x]) * a_s);
            }
        }

        /// BALANCE of resends with unit stakes: over a cycle every sender owns the same number of
        /// resend slots, and every receiver is the target of the same number.
        #[test]
        fn prop_resends_balanced_unit((n_s, f_s) in unit_side(12), (n_r, f_r) in unit_side(12)) {
            let s = sched(&vec![1; n_s], f_s, &vec![1; n_r], f_r);
            let mut by_sender = vec![0usize; n_s];
            let mut by_receiver = vec![0usize; n_r];
            for seq in 0..s.cycle_len() {
                for (sender, receiver) in s.rotation(seq).pairs().skip(1) {
                    by_sender[usize::from(sender)] += 1;
                    by_receiver[usize::from(receiver)] += 1;
                }
            }
            let spread = |v: &[usize]| v.iter().max().unwrap() - v.iter().min().unwrap();
            prop_assert!(spread(&by_sender) <= 1, "{:?}", by_sender);
            prop_assert!(spread(&by_receiver) <= 1, "{:?}", by_receiver);
        }

        /// Determinism and no overflow near u64::MAX, including the largest seat counts.
        #[test]
        fn prop_deterministic_near_max((ss, f_s) in side(8, 1_000_000_000), (rs, f_r) in side(8, 5), back in 0u64..64) {
            let a = sched(&ss, f_s, &rs, f_r);
            let b = sched(&ss, f_s, &rs, f_r);
            for seq in [u64::MAX - back, back, u64::MAX / 2 + back] {
                let ra = a.rotation(seq);
                prop_assert_eq!(ra, b.rotation(seq));
                prop_assert_eq!(ra.pairs().collect::<Vec<_>>(), b.rotation(seq).pairs().collect::<Vec<_>>());
                prop_assert!(!ra.is_empty() && ra.len() <= a.max_rotation_len());
                prop_assert_eq!(a.rotation(seq % a.cycle_len()), ra);
                for sender in 0..ss.len() as u16 {
                    prop_assert_eq!(
                        a.resend_numbers(seq, sender).collect::<Vec<_>>(),
                        b.resend_numbers(seq, sender).collect::<Vec<_>>()
                    );
                }
            }
        }
    }
}
