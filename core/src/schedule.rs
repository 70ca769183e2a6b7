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
//! # First sender and first receiver: apportioned stake-weighted round robin
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
//!
//! **Pairing.** For a seq, `x = seq mod A_s`, `q = ⌊seq / A_s⌋ mod A_r`; the first sender is
//! sender slot `x` and the first receiver is receiver slot `(x + q) mod A_r`. Over any `A_s·A_r`
//! consecutive seqs, `(x, q)` takes every value once, hence so does `(x, (x + q) mod A_r)`: every
//! (sender seat, receiver seat) combination is the first pair exactly once per cycle, and replica
//! pair (a, b) exactly `seats(a)·seats(b)` times. The schedule is exactly periodic with period
//! `A_s·A_r` ([`Schedule::cycle_len`]); all arithmetic is in `u64`/`u128` and cannot overflow
//! for any `u64` seq.
//!
//! # Rotation (resends)
//!
//! From pair 0 = (i, j), pair `t` is `(sender (i + t) mod n_s, receiver (j + t + lap) mod n_r)`
//! with `lap = ⌊t / lcm(n_s, n_r)⌋`. Within one lap the pairs are all distinct (the pair index
//! repeats only after `lcm` steps); each lap shifts the receiver by one more, so the `gcd(n_s,
//! n_r)` laps of `n_s·n_r` steps visit each of the `n_s·n_r` pairs exactly once. Consecutive
//! pairs use distinct senders and distinct receivers, so resend load walks around both RSMs.
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
//! the rotation above reaches safety with exactly 10 (rule (b): `K_s' = ⌈10/4⌉ = 3`,
//! `K_r' = 6`, `10 > 9`). In general, the worst sender holds `≥ ⌈k/n_s⌉` pairs and the rest must
//! cover `f_r + 1` receivers. Rule (b) is conservative with skewed stakes (it pairs the *smallest*
//! stakes with the *largest* counts), so some rotations are longer than strictly necessary, but
//! never unsafe; rule (a) shortens the common case where a single replica outweighs `f`.
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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

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
        if r >= self.len() {
            return None;
        }
        let t = r as u64;
        let (n_s, n_r) = (u64::from(self.n_s), u64::from(self.n_r));
        let s = (u64::from(self.first_sender) + t % n_s) % n_s;
        let lap = t / self.lcm;
        let recv = (u64::from(self.first_receiver) + t % n_r + lap % n_r) % n_r;
        // Both are below n ≤ 65535.
        Some((s as u16, recv as u16))
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

/// One side's seats: per-replica counts, prefix sums and the interleaving stride.
#[derive(Clone, Debug)]
struct Seating {
    seats: Vec<u32>,
    /// `ends[x]` = seats of replicas `0..=x`; replica `x` owns positions `[ends[x-1], ends[x])`.
    ends: Vec<u32>,
    /// `A`, the seats per cycle (≤ 65536).
    total: u64,
    /// Golden-ratio stride, coprime to `total`.
    stride: u64,
}

impl Seating {
    /// Stakes must be validated (non-empty, ≤ 65535 replicas, no zero).
    fn new(stakes: &[u64]) -> Self {
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
    fn replica_at(&self, t: u64) -> u16 {
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
struct RotationBuilder<'a> {
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
    fn new(sender_stakes: &'a [u64], f_s: u64, receiver_stakes: &'a [u64], f_r: u64) -> Self {
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
    fn build(&self) -> Vec<u32> {
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
    use super::*;
    use proptest::prelude::*;

    fn sched(ss: &[u64], f_s: u64, rs: &[u64], f_r: u64) -> Schedule {
        Schedule::new(ss, f_s, rs, f_r).expect("valid configuration")
    }

    fn rot(s: &Schedule, i: usize, j: usize) -> Rotation {
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

    // ---- worked examples ----

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

    // ---- property tests ----

    /// One side: stakes in `1..=max_stake`, and a fault threshold valid under BFT (3f < S) or CFT
    /// (2f < S), half the time the largest allowed.
    fn side(max_n: usize, max_stake: u64) -> impl Strategy<Value = (Vec<u64>, u64)> {
        (prop::collection::vec(1..=max_stake, 1..=max_n), any::<bool>(), any::<u64>()).prop_map(
            |(stakes, bft, pick)| {
                let total: u64 = stakes.iter().sum();
                let max_f = if bft { (total - 1) / 3 } else { (total - 1) / 2 };
                let f = if pick & 1 == 0 { max_f } else { (pick >> 1) % (max_f + 1) };
                (stakes, f)
            },
        )
    }

    fn unit_side(max_n: usize) -> impl Strategy<Value = (usize, u64)> {
        (1..=max_n, any::<bool>(), any::<u64>()).prop_map(|(n, bft, pick)| {
            let max_f = if bft { (n as u64 - 1) / 3 } else { (n as u64 - 1) / 2 };
            (n, if pick & 1 == 0 { max_f } else { (pick >> 1) % (max_f + 1) })
        })
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
