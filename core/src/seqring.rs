//! A window of slots indexed by sequence number.
//!
//! The engine keeps per-seq state (messages awaiting a QUACK, messages awaiting in-order
//! delivery, resend bookkeeping) for a sliding range of a 64-bit stream. A [`SeqRing`] stores it
//! in a `VecDeque` of slots so that access is O(1), sliding the base forward costs O(slots
//! removed), and, once the deque has grown to the working span, nothing allocates.
//!
//! The deque grows by a quarter at a time, not by doubling: a sliding window cycles through
//! its whole allocation, so every slot of capacity is memory the process touches. Windows
//! settle just above a configured size (retention, a send window), where doubling would make
//! the engine's largest rings, and the replica's resident memory, nearly twice what they hold.

use std::collections::VecDeque;

/// Fewest slots a growing window adds at once.
const MIN_GROWTH: usize = 64;

/// Slots for sequence numbers `base .. base + len`, each empty or holding a `T`. Sliding the
/// base forward frees the slots below it. O(1) access; no allocation once grown.
///
/// Growth is driven by [`insert`](Self::insert): storing at a seq far above [`end`](Self::end)
/// allocates every slot in between, so callers that accept seqs from peers must bound the span
/// first, or use [`insert_within`](Self::insert_within), which does it for them.
///
/// Seq `u64::MAX` can never be stored (its slot would make [`end`](Self::end) overflow); a
/// stream does not get there in practice.
#[derive(Clone, Debug)]
pub struct SeqRing<T> {
    base: u64,
    slots: VecDeque<Option<T>>,
    /// Number of `Some` slots, so that `len`/`is_empty` are O(1).
    occupied: usize,
}

impl<T> Default for SeqRing<T> {
    /// An empty window starting at seq 0, the start of every stream.
    fn default() -> Self {
        Self::new(0)
    }
}

impl<T> SeqRing<T> {
    /// An empty window starting at `base`.
    pub fn new(base: u64) -> Self {
        Self { base, slots: VecDeque::new(), occupied: 0 }
    }

    /// An empty window starting at `base` with room for `span` slots, so that the first `span`
    /// seqs never allocate.
    pub fn with_capacity(base: u64, span: usize) -> Self {
        Self { base, slots: VecDeque::with_capacity(span), occupied: 0 }
    }

    /// Lowest seq the window can hold.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// One past the highest slot allocated.
    pub fn end(&self) -> u64 {
        self.base + self.slots.len() as u64
    }

    /// Number of slots between [`base`](Self::base) and [`end`](Self::end), occupied or not:
    /// the memory footprint of the window, in slots.
    pub fn len_span(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Number of occupied slots.
    pub fn len(&self) -> usize {
        self.occupied
    }

    /// Whether no slot holds an item (the span may still be non-zero).
    pub fn is_empty(&self) -> bool {
        self.occupied == 0
    }

    /// Index of `seq` in `slots`, if `seq` lies inside the allocated span.
    fn index(&self, seq: u64) -> Option<usize> {
        let off = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        (off < self.slots.len()).then_some(off)
    }

    /// Whether the slot at `seq` holds an item.
    pub fn contains(&self, seq: u64) -> bool {
        self.get(seq).is_some()
    }

    /// The item at `seq`, if any.
    pub fn get(&self, seq: u64) -> Option<&T> {
        let i = self.index(seq)?;
        self.slots[i].as_ref()
    }

    /// The item at `seq`, mutably.
    pub fn get_mut(&mut self, seq: u64) -> Option<&mut T> {
        let i = self.index(seq)?;
        self.slots[i].as_mut()
    }

    /// Stores `item` at `seq` (growing the window); returns the previous item. `Err(item)` if
    /// `seq < base`, or if `seq` cannot be represented (it is `u64::MAX`, or its distance from
    /// the base does not fit in memory addresses).
    ///
    /// Growing allocates every slot between [`end`](Self::end) and `seq`: an untrusted seq must
    /// be bounded by the caller, or stored with [`insert_within`](Self::insert_within).
    pub fn insert(&mut self, seq: u64, item: T) -> Result<Option<T>, T> {
        if seq < self.base || seq == u64::MAX {
            return Err(item);
        }
        let Ok(off) = usize::try_from(seq - self.base) else {
            return Err(item);
        };
        self.reserve_span(off.saturating_add(1));
        if off == self.slots.len() {
            // Appending, the common case: one write instead of an empty slot then a swap.
            self.slots.push_back(Some(item));
            self.occupied += 1;
            return Ok(None);
        }
        if off > self.slots.len() {
            self.slots.resize_with(off + 1, || None);
        }
        let prev = self.slots[off].replace(item);
        if prev.is_none() {
            self.occupied += 1;
        }
        Ok(prev)
    }

    /// Makes room for a span of `span` slots, growing the allocation by at least a quarter.
    fn reserve_span(&mut self, span: usize) {
        let len = self.slots.len();
        if span > self.slots.capacity() {
            self.slots.reserve_exact((span - len).max(len / 4).max(MIN_GROWTH));
        }
    }

    /// Like [`insert`](Self::insert), but also refuses (`Err(item)`) any `seq ≥ base + max_span`,
    /// so that a seq chosen by a peer can never make the window allocate more than `max_span`
    /// slots.
    pub fn insert_within(&mut self, seq: u64, item: T, max_span: u64) -> Result<Option<T>, T> {
        if seq >= self.base.saturating_add(max_span) {
            return Err(item);
        }
        self.insert(seq, item)
    }

    /// Takes the item at `seq`, leaving the slot empty (the span does not shrink).
    pub fn take(&mut self, seq: u64) -> Option<T> {
        let i = self.index(seq)?;
        let item = self.slots[i].take();
        if item.is_some() {
            self.occupied -= 1;
        }
        item
    }

    /// Moves the base up to `new_base`, dropping every slot below it. A `new_base` at or below
    /// the current base does nothing. O(slots removed).
    pub fn advance_to(&mut self, new_base: u64) {
        if new_base <= self.base {
            return;
        }
        let n = new_base - self.base;
        if n >= self.slots.len() as u64 {
            self.slots.clear();
            self.occupied = 0;
        } else {
            // `n < slots.len()`, so it fits in usize.
            for slot in self.slots.drain(..n as usize) {
                if slot.is_some() {
                    self.occupied -= 1;
                }
            }
        }
        self.base = new_base;
    }

    /// Removes and returns the item at the base (if any) and moves the base up by one.
    pub fn pop_front(&mut self) -> Option<T> {
        let item = self.slots.pop_front().flatten();
        if item.is_some() {
            self.occupied -= 1;
        }
        self.base = self.base.saturating_add(1);
        item
    }

    /// The lowest seq whose slot holds an item. O(empty slots below it).
    pub fn front_seq(&self) -> Option<u64> {
        if self.occupied == 0 {
            return None;
        }
        self.slots.iter().position(Option::is_some).map(|i| self.base + i as u64)
    }

    /// The occupied slots, as `(seq, item)` in increasing seq order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (u64, &T)> + '_ {
        let base = self.base;
        self.slots.iter().enumerate().filter_map(move |(i, s)| s.as_ref().map(|t| (base + i as u64, t)))
    }

    /// The occupied slots, as `(seq, item)` in increasing seq order, mutably.
    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (u64, &mut T)> + '_ {
        let base = self.base;
        self.slots.iter_mut().enumerate().filter_map(move |(i, s)| s.as_mut().map(|t| (base + i as u64, t)))
    }

    /// Drops every item and empties the span, keeping the base and the allocation.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.occupied = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn basic_insert_get_take() {
        let mut r = SeqRing::new(10);
        assert!(r.is_empty());
        assert_eq!(r.insert(9, "x"), Err("x"));
        assert_eq!(r.insert(12, "a"), Ok(None));
        assert_eq!(r.end(), 13);
        assert_eq!(r.len_span(), 3);
        assert_eq!(r.len(), 1);
        assert_eq!(r.get(12), Some(&"a"));
        assert_eq!(r.get(11), None);
        assert_eq!(r.get(13), None);
        assert_eq!(r.get(3), None);
        assert_eq!(r.insert(12, "b"), Ok(Some("a")));
        assert_eq!(r.len(), 1);
        *r.get_mut(12).unwrap() = "c";
        assert_eq!(r.front_seq(), Some(12));
        assert_eq!(r.take(12), Some("c"));
        assert_eq!(r.take(12), None);
        assert!(r.is_empty());
        assert_eq!(r.front_seq(), None);
    }

    #[test]
    fn a_sliding_window_allocates_about_its_span_not_twice_it() {
        // A window that settles just above a power of two (retention plus in-flight messages):
        // doubling would allocate 2^17 slots for it.
        let span = (1 << 16) + 1000;
        let mut r = SeqRing::new(0);
        for s in 0..(4 * span as u64) {
            r.insert(s, s).unwrap();
            r.advance_to((s + 1).saturating_sub(span as u64));
        }
        assert_eq!(r.len_span(), span as u64);
        let cap = r.slots.capacity();
        assert!(cap >= span && cap <= span + span / 4 + MIN_GROWTH, "capacity {cap} for a span of {span}");
    }

    #[test]
    fn advance_and_pop() {
        let mut r = SeqRing::new(0);
        for s in 0..10u64 {
            r.insert(s, s * 10).unwrap();
        }
        assert_eq!(r.pop_front(), Some(0));
        assert_eq!(r.base(), 1);
        r.advance_to(5);
        assert_eq!(r.base(), 5);
        assert_eq!(r.len(), 5);
        assert_eq!(r.iter().map(|(s, _)| s).collect::<Vec<_>>(), vec![5, 6, 7, 8, 9]);
        r.advance_to(3); // backwards: no-op
        assert_eq!(r.base(), 5);
        r.advance_to(100);
        assert_eq!(r.base(), 100);
        assert!(r.is_empty());
        assert_eq!(r.len_span(), 0);
        assert_eq!(r.pop_front(), None);
        assert_eq!(r.base(), 101);
    }

    #[test]
    fn insert_within_bounds_growth() {
        let mut r = SeqRing::new(1 << 40);
        assert_eq!(r.insert_within((1 << 40) + 8, 1, 8), Err(1));
        assert_eq!(r.insert_within((1 << 40) + 7, 1, 8), Ok(None));
        assert_eq!(r.len_span(), 8);
        assert_eq!(r.insert_within(u64::MAX, 2, u64::MAX), Err(2));
        assert_eq!(r.insert(u64::MAX, 3), Err(3));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u32),
        InsertWithin(u64, u32, u64),
        Take(u64),
        Advance(u64),
        Pop,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..80, any::<u32>()).prop_map(|(s, v)| Op::Insert(s, v)),
            2 => (0u64..80, any::<u32>(), 0u64..40).prop_map(|(s, v, m)| Op::InsertWithin(s, v, m)),
            2 => (0u64..80).prop_map(Op::Take),
            1 => (0u64..80).prop_map(Op::Advance),
            1 => Just(Op::Pop),
        ]
    }

    proptest! {
        #[test]
        fn matches_btreemap_model(start in 0u64..(1 << 50), ops in proptest::collection::vec(op(), 0..200)) {
            let mut ring = SeqRing::new(start);
            let mut model: BTreeMap<u64, u32> = BTreeMap::new();
            let mut base = start;
            for op in ops {
                match op {
                    Op::Insert(s, v) => {
                        let s = start + s;
                        let got = ring.insert(s, v);
                        if s < base {
                            prop_assert_eq!(got, Err(v));
                        } else {
                            prop_assert_eq!(got, Ok(model.insert(s, v)));
                        }
                    }
                    Op::InsertWithin(s, v, m) => {
                        let s = start + s;
                        let got = ring.insert_within(s, v, m);
                        if s < base || s >= base + m {
                            prop_assert_eq!(got, Err(v));
                        } else {
                            prop_assert_eq!(got, Ok(model.insert(s, v)));
                        }
                    }
                    Op::Take(s) => {
                        let s = start + s;
                        prop_assert_eq!(ring.take(s), model.remove(&s));
                    }
                    Op::Advance(s) => {
                        let s = start + s;
                        ring.advance_to(s);
                        if s > base {
                            base = s;
                            model = model.split_off(&s);
                        }
                    }
                    Op::Pop => {
                        prop_assert_eq!(ring.pop_front(), model.remove(&base));
                        base += 1;
                    }
                }
                prop_assert_eq!(ring.base(), base);
                prop_assert!(ring.end() >= base);
                prop_assert_eq!(ring.len(), model.len());
                prop_assert_eq!(ring.is_empty(), model.is_empty());
                prop_assert_eq!(ring.front_seq(), model.keys().next().copied());
                let got: Vec<(u64, u32)> = ring.iter().map(|(s, v)| (s, *v)).collect();
                let want: Vec<(u64, u32)> = model.iter().map(|(s, v)| (*s, *v)).collect();
                prop_assert_eq!(got, want);
                for s in start.saturating_sub(2)..start + 82 {
                    prop_assert_eq!(ring.get(s), model.get(&s));
                }
            }
        }
    }
}
