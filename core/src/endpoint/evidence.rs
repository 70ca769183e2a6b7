//! Evidence against replicas from failed first sends, and convictions.
//!
//! The first copy of a message goes from its first sender s to its first receiver r, and every
//! sender knows which pair that is and that s sends it as the message enters the window. The
//! pair *fails* when loss detection gives up on that copy: receivers holding more than f_r
//! stake still report the message missing after it could have arrived. Between a correct
//! sender and a correct receiver that never happens on reliable links (r gets the copy and
//! forwards it), so every failed pair contains a faulty replica, and the faulty replicas form a
//! vertex cover of the failed pairs with at most f_s sender stake and f_r receiver stake:
//!
//! - a sender that failed with receivers holding more than f_r stake is faulty (otherwise all
//!   those receivers would be, which is more than f_r stake);
//! - a receiver that failed with senders holding more than f_s stake is faulty.
//!
//! Neither rule can convict a correct replica, whatever f Byzantine replicas per side do: they
//! can only make pairs that contain one of them fail. Only first sends count: who sends a later
//! copy depends on each sender's own loss detection, whose view differs from another's, so a
//! later copy's failure proves nothing about the pair that was supposed to send it. Timing can
//! mislead (a loaded machine's copies arrive after loss detection gave up), so failures decay
//! (half-life `half_life`) and a conviction lasts a limited time, doubling with each repeat for
//! the same replica ([`Convictions`]): a correct replica wrongly convicted costs one extra copy
//! of the messages it would have sent or received first for a while, never safety.

use std::time::Duration;

use crate::time::Time;

/// Failures a pair needs before it counts as evidence: one (detection already waited for the
/// copy to drain, and the vertex-cover rules need several pairs).
const PAIR_THRESHOLD: f32 = 1.0;
/// The longest conviction, as a multiple of the first.
const MAX_CONVICTION_DOUBLINGS: u32 = 6;

/// Decayed failure counts of every (sender, receiver) pair of one stream.
#[derive(Clone, Debug)]
pub(super) struct PairFailures {
    n_r: usize,
    /// Stakes of the senders (this RSM) and the faulty stake they tolerate ...
    sender_stakes: Vec<u64>,
    f_s: u64,
    /// ... and of the receivers (the other RSM).
    receiver_stakes: Vec<u64>,
    f_r: u64,
    score: Vec<f32>,
    at: Time,
    half_life: Duration,
}

impl PairFailures {
    /// No failures yet, between senders and receivers of the given stakes (f: the faulty
    /// stake each side tolerates).
    pub(super) fn new(senders: (Vec<u64>, u64), receivers: (Vec<u64>, u64), half_life: Duration, now: Time) -> Self {
        let (n_s, n_r) = (senders.0.len(), receivers.0.len());
        Self {
            n_r,
            sender_stakes: senders.0,
            f_s: senders.1,
            receiver_stakes: receivers.0,
            f_r: receivers.1,
            score: vec![0.0; n_s * n_r],
            at: now,
            half_life,
        }
    }

    fn decay(&mut self, now: Time) {
        let dt = now.saturating_since(self.at);
        if dt.is_zero() || self.half_life.is_zero() {
            return;
        }
        let factor = 0.5f32.powf((dt.as_secs_f64() / self.half_life.as_secs_f64()) as f32);
        if factor < 1e-3 {
            self.score.fill(0.0);
        } else {
            self.score.iter_mut().for_each(|x| *x *= factor);
        }
        self.at = now;
    }

    /// Records a failed copy of pair (`s`, `r`).
    pub(super) fn record(&mut self, now: Time, s: u16, r: u16) {
        self.decay(now);
        if let Some(x) = self.score.get_mut(usize::from(s) * self.n_r + usize::from(r)) {
            *x += 1.0;
        }
    }

    fn failed(&self, s: usize, r: usize) -> bool {
        self.score[s * self.n_r + r] >= PAIR_THRESHOLD
    }

    /// Whether sender `s` is proven faulty: it failed with receivers of more than f_r stake.
    pub(super) fn sender_proven(&self, s: u16) -> bool {
        let s = usize::from(s);
        let stake: u64 = (0..self.n_r).filter(|&r| self.failed(s, r)).map(|r| self.receiver_stakes[r]).sum();
        stake > self.f_r
    }

    /// Whether receiver `r` is proven faulty: it failed with senders of more than f_s stake.
    pub(super) fn receiver_proven(&self, r: u16) -> bool {
        let r = usize::from(r);
        let n_s = self.sender_stakes.len();
        let stake: u64 = (0..n_s).filter(|&s| self.failed(s, r)).map(|s| self.sender_stakes[s]).sum();
        stake > self.f_s
    }

    /// Forgets the evidence involving sender `s` (after convicting it).
    pub(super) fn clear_sender(&mut self, s: u16) {
        let s = usize::from(s);
        self.score[s * self.n_r..(s + 1) * self.n_r].fill(0.0);
    }

    /// Forgets the evidence involving receiver `r`.
    pub(super) fn clear_receiver(&mut self, r: u16) {
        let r = usize::from(r);
        for x in self.score.iter_mut().skip(r).step_by(self.n_r) {
            *x = 0.0;
        }
    }
}

/// When each replica's conviction ends, and how often it was convicted.
#[derive(Clone, Debug)]
pub(super) struct Convictions {
    until: Vec<Option<Time>>,
    count: Vec<u32>,
    base: Duration,
    /// The earliest `until` (cached: `poll_timeout` reads it on every call).
    next: Option<Time>,
}

impl Convictions {
    pub(super) fn new(n: usize, base: Duration) -> Self {
        Self { until: vec![None; n], count: vec![0; n], base, next: None }
    }

    /// Convicts replica `i` from `now`: for `base`, doubling with each conviction.
    pub(super) fn convict(&mut self, now: Time, i: usize) {
        let c = self.count[i].min(MAX_CONVICTION_DOUBLINGS);
        self.count[i] += 1;
        self.until[i] = Some(now + self.base * (1u32 << c));
        self.next = self.until.iter().flatten().copied().min();
    }

    pub(super) fn is_convicted(&self, now: Time, i: usize) -> bool {
        self.until[i].is_some_and(|t| now < t)
    }

    /// When replica `i`'s conviction ends, if it is convicted at `now`.
    pub(super) fn until(&self, now: Time, i: usize) -> Option<Time> {
        self.until[i].filter(|&t| now < t)
    }

    /// Forgets convictions that ended by `now`.
    pub(super) fn expire(&mut self, now: Time) {
        if self.next.is_none_or(|t| t > now) {
            return;
        }
        for u in &mut self.until {
            if u.is_some_and(|t| t <= now) {
                *u = None;
            }
        }
        self.next = self.until.iter().flatten().copied().min();
    }

    /// When each replica's conviction ends, if it is convicted (for tests: the scan that the
    /// cached `next_end` must match).
    #[cfg(test)]
    pub(super) fn ends(&self) -> impl Iterator<Item = Time> + '_ {
        self.until.iter().flatten().copied()
    }

    /// The earliest end of a conviction not yet expired.
    pub(super) fn next_end(&self) -> Option<Time> {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    /// 4 senders and 4 receivers of unit stake, f = 1 on each side.
    fn failures() -> PairFailures {
        PairFailures::new((vec![1; 4], 1), (vec![1; 4], 1), Duration::from_secs(1), t(0))
    }

    #[test]
    fn a_faulty_sender_is_convicted_once_it_failed_with_more_than_f_receivers() {
        let mut f = failures();
        f.record(t(1), 2, 0);
        assert!(!f.sender_proven(2), "one failed pair may be the receiver's fault");
        f.record(t(1), 2, 3);
        assert!(f.sender_proven(2), "two receivers cannot both be faulty with f_r = 1");
        assert!(!f.receiver_proven(0) && !f.receiver_proven(3));
        f.clear_sender(2);
        assert!(!f.sender_proven(2));
    }

    #[test]
    fn f_byzantine_replicas_never_get_a_correct_one_convicted() {
        // Faulty: sender 1 and receiver 2. Every pair with one of them fails, as often as they
        // like; pairs of correct replicas never fail.
        let mut f = failures();
        for round in 0..10 {
            for s in 0..4u16 {
                for r in 0..4u16 {
                    if s == 1 || r == 2 {
                        f.record(t(round), s, r);
                    }
                }
            }
        }
        for s in [0, 2, 3] {
            assert!(!f.sender_proven(s), "correct sender {s} convicted");
        }
        for r in [0, 1, 3] {
            assert!(!f.receiver_proven(r), "correct receiver {r} convicted");
        }
        assert!(f.sender_proven(1) && f.receiver_proven(2));
    }

    #[test]
    fn failures_fade() {
        let mut f = failures();
        f.record(t(0), 0, 0);
        // Ten half-lives later the first failure no longer counts towards a conviction.
        f.record(t(10_000), 0, 1);
        assert!(!f.sender_proven(0));
    }

    #[test]
    fn convictions_end_and_double_with_each_repeat() {
        let mut c = Convictions::new(3, Duration::from_millis(100));
        assert_eq!(c.next_end(), None);
        c.convict(t(0), 1);
        assert!(c.is_convicted(t(99), 1) && !c.is_convicted(t(99), 0));
        assert_eq!(c.next_end(), Some(t(100)));
        c.expire(t(100));
        assert!(!c.is_convicted(t(100), 1));
        assert_eq!(c.next_end(), None);
        c.convict(t(200), 1);
        assert_eq!(c.next_end(), Some(t(400)), "the second conviction lasts twice as long");
        for k in 0..10 {
            c.convict(t(1000 * k), 2);
        }
        assert_eq!(c.next_end(), Some(t(400)));
        assert!(c.is_convicted(t(9000 + 6400 - 1), 2), "doubling stops at 2^6");
        assert!(!c.is_convicted(t(9000 + 6400), 2));
    }
}
