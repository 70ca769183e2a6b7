//! Receive windows, cumulative acks and φ-lists.
//!
//! A replica tells the other RSM what it holds with an [`AckReport`]: a cumulative ack `next`
//! (every seq below is held) plus a φ-list bitmap of the seqs just above it, which is what lets
//! senders detect losses without waiting for timeouts. [`ReceiveWindow`] is the receiver-side
//! state that produces those reports.
//!
//! Unlike the reference artifact (a fixed 3·2^30-bit bitmap indexed by a non-power-of-two mask,
//! bits never cleared, 32-bit seqs), the window here is a true ring over 64-bit seqs: bits are
//! cleared as the cumulative ack passes them, so it works for any stream length with memory
//! proportional to the window only.

use crate::wire::AckReport;

/// Outcome of recording a received seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// Newly held.
    New,
    /// Already held.
    Duplicate,
    /// Too far beyond the cumulative ack to be held.
    BeyondWindow,
}

/// Which seqs of the incoming stream a replica holds: all seqs below `next`, plus a bitset of
/// the seqs in `next+1 .. next+window`.
///
/// The bitset is a ring of `capacity` bits (the window rounded up to a power of two, at least
/// 64): seq `s` lives at bit `s mod capacity`. Only seqs in `next+1 .. next+window` ever have a
/// bit set, and advancing `next` clears the bits it passes, so every bit is unambiguous.
/// Memory is `capacity / 8` bytes, allocated once in [`new`](Self::new).
#[derive(Clone, Debug)]
pub struct ReceiveWindow {
    next: u64,
    /// Seqs `next .. next + window` may be recorded.
    window: u64,
    /// Ring bitset; `words.len()` is a power of two.
    words: Vec<u64>,
    /// `capacity - 1` (capacity in bits).
    mask: u64,
    /// Highest held seq.
    highest: Option<u64>,
}

impl ReceiveWindow {
    /// A window accepting seqs up to `window - 1` beyond the cumulative ack. A `window` of 0 is
    /// treated as 1 (only the next seq in order is accepted): an empty window could never make
    /// progress. Allocates `window` bits rounded up to a power of two, once.
    pub fn new(window: u64) -> Self {
        Self::starting_at(window, 0)
    }

    /// Like [`new`](Self::new), for a stream of which every seq below `next` is already held
    /// (e.g. restored from a snapshot).
    ///
    /// # Panics
    /// If `window` exceeds 2^63 (the configuration validates far smaller windows).
    pub fn starting_at(window: u64, next: u64) -> Self {
        let window = window.max(1);
        let capacity = window.max(64).checked_next_power_of_two().expect("receive window too large");
        let nwords = usize::try_from(capacity / 64).expect("receive window too large");
        Self { next, window, words: vec![0; nwords], mask: capacity - 1, highest: next.checked_sub(1) }
    }

    /// Cumulative ack: every seq below is held.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The configured window: seqs `next .. next + window()` can be recorded.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Word index and bit index of `seq` in the ring.
    #[inline]
    fn pos(&self, seq: u64) -> (usize, u32) {
        let p = seq & self.mask;
        ((p >> 6) as usize, (p & 63) as u32)
    }

    /// Whether `seq` is held.
    pub fn contains(&self, seq: u64) -> bool {
        if seq < self.next {
            return true;
        }
        if seq - self.next >= self.window {
            return false;
        }
        let (w, b) = self.pos(seq);
        self.words[w] >> b & 1 == 1
    }

    /// Records `seq` as held, advancing the cumulative ack over contiguous seqs.
    pub fn insert(&mut self, seq: u64) -> Insert {
        if seq < self.next {
            return Insert::Duplicate;
        }
        if seq - self.next >= self.window {
            return Insert::BeyondWindow;
        }
        if self.highest.is_none_or(|h| seq > h) {
            self.highest = Some(seq);
        }
        if seq == self.next {
            self.next += 1;
            self.advance();
            return Insert::New;
        }
        let (w, b) = self.pos(seq);
        let bit = 1u64 << b;
        if self.words[w] & bit != 0 {
            return Insert::Duplicate;
        }
        self.words[w] |= bit;
        Insert::New
    }

    /// Moves `next` over the held seqs starting at `next`, clearing their bits, a word at a
    /// time so that closing a long gap costs O(run / 64).
    fn advance(&mut self) {
        loop {
            let (w, b) = self.pos(self.next);
            let run = (self.words[w] >> b).trailing_ones();
            if run == 0 {
                return;
            }
            let clear = if run == 64 { !0 } else { ((1u64 << run) - 1) << b };
            self.words[w] &= !clear;
            self.next += u64::from(run);
            if b + run < 64 {
                return;
            }
        }
    }

    /// Whether a seq beyond the cumulative ack is held (a gap is outstanding).
    pub fn has_gap(&self) -> bool {
        // `next` itself is never held, so a held seq ≥ next is a held seq beyond a hole.
        self.highest.is_some_and(|h| h >= self.next)
    }

    /// Highest held seq, if any.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// 64 ring bits starting at `seq` (bit 0 = `seq`), wrapping around the ring.
    #[inline]
    fn extract(&self, seq: u64) -> u64 {
        let (w, b) = self.pos(seq);
        let lo = self.words[w] >> b;
        if b == 0 {
            lo
        } else {
            let hi = self.words[(w + 1) & (self.words.len() - 1)];
            lo | hi << (64 - b)
        }
    }

    /// Writes the report with a φ-list of `phi_bits` bits into `out` (reusing its allocation).
    ///
    /// The φ-list covers seqs `next+1 .. next+1+phi_bits`; trailing all-zero words are dropped
    /// (zero words in the middle are kept, so holes beyond an empty word stay visible, unlike
    /// the reference artifact). `phi_bits == 0` means no φ-list at all. Cost is O(words up to
    /// the highest held seq), independent of `phi_bits` when there is no gap.
    pub fn report_into(&self, phi_bits: u32, out: &mut AckReport) {
        out.next = self.next;
        out.phi.clear();
        let Some(highest) = self.highest.filter(|&h| h > self.next) else {
            return;
        };
        // Bits worth sending: up to the highest held seq (bit i ↔ seq next+1+i), never beyond
        // the window (no other seq can be held) nor beyond what was asked for.
        let bits = (highest - self.next).min(self.window - 1).min(u64::from(phi_bits));
        let nwords = bits.div_ceil(64);
        let start = self.next + 1;
        for k in 0..nwords {
            let mut word = self.extract(start + 64 * k);
            let left = bits - 64 * k;
            if left < 64 {
                word &= (1u64 << left) - 1;
            }
            out.phi.push(word);
        }
        while out.phi.last() == Some(&0) {
            out.phi.pop();
        }
    }

    /// The report with a φ-list of `phi_bits` bits, freshly allocated. Use
    /// [`report_into`](Self::report_into) on hot paths.
    pub fn report(&self, phi_bits: u32) -> AckReport {
        let mut out = AckReport::default();
        self.report_into(phi_bits, &mut out);
        out
    }
}

impl AckReport {
    /// Whether the report says `seq` is held.
    pub fn covers(&self, seq: u64) -> bool {
        if seq < self.next {
            return true;
        }
        if seq == self.next {
            return false;
        }
        let i = seq - self.next - 1;
        let Ok(w) = usize::try_from(i / 64) else {
            return false;
        };
        self.phi.get(w).is_some_and(|word| word >> (i % 64) & 1 == 1)
    }

    /// One past the last seq the φ-list can speak about.
    /// Saturates at `u64::MAX`: `next` is peer-chosen.
    pub fn phi_end(&self) -> u64 {
        self.next.saturating_add(1).saturating_add(64u64.saturating_mul(self.phi.len() as u64))
    }

    /// Highest seq the report says is held.
    pub fn highest_covered(&self) -> Option<u64> {
        for (k, &word) in self.phi.iter().enumerate().rev() {
            if word != 0 {
                let bit = 64 * k as u64 + u64::from(63 - word.leading_zeros());
                return Some(self.next.saturating_add(1).saturating_add(bit));
            }
        }
        self.next.checked_sub(1)
    }

    /// The seqs in `[start, end) ∩ [next, phi_end)` the report says are missing (not held), in
    /// increasing order: what a sender may consider resending. `next` itself is always among
    /// them when in range. Cost is O(words scanned + seqs yielded).
    pub fn missing_in(&self, start: u64, end: u64) -> impl Iterator<Item = u64> + '_ {
        let lo = start.max(self.next);
        let hi = end.min(self.phi_end());
        Missing { report: self, cur: lo, end: hi }
    }
}

/// Iterator behind [`AckReport::missing_in`].
struct Missing<'a> {
    report: &'a AckReport,
    /// Next seq to examine.
    cur: u64,
    /// One past the last seq to examine.
    end: u64,
}

impl Iterator for Missing<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let r = self.report;
        while self.cur < self.end {
            if self.cur == r.next {
                self.cur += 1;
                return Some(r.next);
            }
            let i = self.cur - r.next - 1;
            let (w, b) = ((i / 64) as usize, (i % 64) as u32);
            // Missing bits of this word at or above bit b.
            let missing = !r.phi[w] >> b;
            if missing == 0 {
                self.cur = self.cur.saturating_add(u64::from(64 - b));
                continue;
            }
            let seq = self.cur.saturating_add(u64::from(missing.trailing_zeros()));
            if seq >= self.end {
                self.cur = self.end;
                return None;
            }
            self.cur = seq + 1;
            return Some(seq);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn in_order_and_gaps() {
        let mut w = ReceiveWindow::new(100);
        assert_eq!(w.highest(), None);
        assert!(!w.has_gap());
        assert_eq!(w.insert(0), Insert::New);
        assert_eq!(w.insert(0), Insert::Duplicate);
        assert_eq!(w.next(), 1);
        assert_eq!(w.insert(3), Insert::New);
        assert_eq!(w.insert(3), Insert::Duplicate);
        assert!(w.has_gap());
        assert!(w.contains(3));
        assert!(!w.contains(2));
        assert_eq!(w.highest(), Some(3));
        assert_eq!(w.insert(101), Insert::BeyondWindow);
        assert_eq!(w.insert(100), Insert::New);
        let r = w.report(256);
        assert_eq!(r.next, 1);
        assert!(r.covers(0) && !r.covers(1) && !r.covers(2) && r.covers(3) && r.covers(100));
        assert_eq!(r.highest_covered(), Some(100));
        assert_eq!(r.missing_in(0, 6).collect::<Vec<_>>(), vec![1, 2, 4, 5]);
        assert_eq!(w.insert(1), Insert::New);
        assert_eq!(w.insert(2), Insert::New);
        assert_eq!(w.next(), 4);
        for s in 4..100 {
            w.insert(s);
        }
        assert_eq!(w.next(), 101);
        assert!(!w.has_gap());
        assert_eq!(w.report(256), AckReport { next: 101, phi: vec![] });
    }

    #[test]
    fn trailing_zero_words_only_are_truncated() {
        let mut w = ReceiveWindow::new(1024);
        // Hole at 0; held 1 (bit 0, word 0) and 1 + 64*2 + 5 (word 2): word 1 is empty.
        w.insert(1);
        w.insert(1 + 128 + 5);
        let r = w.report(1000);
        assert_eq!(r.phi, vec![1, 0, 1 << 5]);
        assert!(r.covers(134));
        // Limited φ-list: bits beyond phi_bits are not reported.
        let r = w.report(100);
        assert_eq!(r.phi, vec![1]);
        let r = w.report(0);
        assert_eq!(r.phi, Vec::<u64>::new());
        assert_eq!(r.highest_covered(), None);
    }

    #[test]
    fn report_wraps_ring_and_word_boundaries() {
        let mut w = ReceiveWindow::starting_at(128, (1 << 40) + 100);
        let n = w.next();
        for s in [n + 1, n + 63, n + 64, n + 65, n + 127] {
            assert_eq!(w.insert(s), Insert::New);
        }
        assert_eq!(w.insert(n + 128), Insert::BeyondWindow);
        let r = w.report(1024);
        for s in n..n + 200 {
            assert_eq!(r.covers(s), w.contains(s), "seq {s}");
        }
        assert_eq!(r.highest_covered(), Some(n + 127));
    }

    #[test]
    fn long_stream_wraps_many_times() {
        let mut w = ReceiveWindow::new(64);
        let mut s = 0u64;
        while s < 100_000 {
            // Insert in reverse blocks of 50, so gaps open and close across word boundaries.
            for k in (0..50).rev() {
                assert_eq!(w.insert(s + k), Insert::New);
            }
            s += 50;
            assert_eq!(w.next(), s);
            assert!(!w.has_gap());
        }
        assert!(w.words.iter().all(|&x| x == 0));
    }

    #[test]
    fn missing_in_bounds() {
        let r = AckReport { next: 10, phi: vec![0b1011, 0, !0] };
        assert_eq!(r.phi_end(), 10 + 1 + 192);
        let v: Vec<u64> = r.missing_in(0, 16).collect();
        assert_eq!(v, vec![10, 13, 15]);
        // Word 1 (seqs 75..139) is empty, word 2 (139..203) full.
        let v: Vec<u64> = r.missing_in(130, 1000).collect();
        assert_eq!(v, (130..139).collect::<Vec<_>>());
        assert_eq!(r.missing_in(139, 1000).count(), 0);
        assert_eq!(r.missing_in(11, 1000).count(), 61 + 64);
        assert_eq!(r.missing_in(20, 20).count(), 0);
        assert_eq!(AckReport { next: 5, phi: vec![] }.missing_in(0, 100).collect::<Vec<_>>(), vec![5]);
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Offset from the current `next`, possibly negative or beyond the window.
        Near(i64),
        /// Fill the gap: insert `next`.
        Next,
        Report(u32),
    }

    fn op(window: u64) -> impl Strategy<Value = Op> {
        let w = window as i64;
        prop_oneof![
            6 => (-3i64..w + 70).prop_map(Op::Near),
            3 => Just(Op::Next),
            1 => (0u32..600).prop_map(Op::Report),
        ]
    }

    fn check(start: u64, window: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut w = ReceiveWindow::starting_at(window, start);
        let mut held: BTreeSet<u64> = BTreeSet::new();
        let mut next = start;
        let mut highest = start.checked_sub(1);
        let mut out = AckReport::default();
        for op in ops {
            let seq = match op {
                Op::Near(d) => Some(next.wrapping_add_signed(d)),
                Op::Next => Some(next),
                Op::Report(bits) => {
                    w.report_into(bits, &mut out);
                    prop_assert_eq!(out.next, next);
                    prop_assert!(out.phi.last() != Some(&0));
                    prop_assert!(out.phi.len() as u64 * 64 <= u64::from(bits) + 63);
                    let lim = next + 1 + u64::from(bits);
                    for s in next.saturating_sub(3)..next + window + 130 {
                        let want = s < next || (s < lim && held.contains(&s));
                        prop_assert_eq!(out.covers(s), want, "seq {}", s);
                    }
                    let want_hi = held.range(..lim).next_back().copied().or(next.checked_sub(1));
                    prop_assert_eq!(out.highest_covered(), want_hi);
                    let miss: Vec<u64> = out.missing_in(next.saturating_sub(5), next + 700).collect();
                    let want: Vec<u64> = (next..out.phi_end()).filter(|s| !out.covers(*s)).collect();
                    prop_assert_eq!(miss, want);
                    None
                }
            };
            if let Some(seq) = seq {
                let got = w.insert(seq);
                let want = if seq < next || held.contains(&seq) {
                    Insert::Duplicate
                } else if seq >= next + window.max(1) {
                    Insert::BeyondWindow
                } else {
                    held.insert(seq);
                    highest = highest.max(Some(seq));
                    while held.remove(&next) {
                        next += 1;
                    }
                    Insert::New
                };
                prop_assert_eq!(got, want);
            }
            prop_assert_eq!(w.next(), next);
            prop_assert_eq!(w.highest(), highest);
            prop_assert_eq!(w.has_gap(), !held.is_empty());
            for s in next.saturating_sub(3)..next + window + 70 {
                prop_assert_eq!(w.contains(s), s < next || held.contains(&s));
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn matches_btreeset_model(
            start in prop_oneof![Just(0u64), 0u64..1000, (1u64 << 40) - 200..(1u64 << 40) + 200],
            window in prop_oneof![0u64..3, 60u64..70, 100u64..300],
            seed_ops in proptest::collection::vec(op(300), 0..400),
        ) {
            // Ops were generated for the widest window; clamp offsets to this window's range.
            let ops = seed_ops
                .into_iter()
                .map(|o| match o {
                    Op::Near(d) => Op::Near(d.min(window as i64 + 70)),
                    o => o,
                })
                .collect();
            check(start, window, ops)?;
        }

        #[test]
        fn wraps_many_times(start in 0u64..(1 << 41), window in 1u64..200, seed in any::<u64>()) {
            // Mostly in-order traffic with local reordering, over ~50 ring turns.
            let mut ops = Vec::new();
            let mut x = seed;
            for _ in 0..3000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ops.push(match x >> 60 {
                    0..=7 => Op::Next,
                    8..=14 => Op::Near(((x >> 20) % (window + 5)) as i64),
                    _ => Op::Report(((x >> 8) % 400) as u32),
                });
            }
            check(start, window, ops)?;
        }
    }
}
