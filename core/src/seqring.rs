//! A window of slots indexed by sequence number.
//!
//! STUB — being written (helper C). The public API below is fixed; bodies are placeholders.

use std::collections::VecDeque;

/// Slots for sequence numbers `base .. base + len`, each empty or holding a `T`. Sliding the
/// base forward frees the slots below it. O(1) access; no allocation once grown.
#[derive(Clone, Debug)]
pub struct SeqRing<T> {
    base: u64,
    slots: VecDeque<Option<T>>,
}

impl<T> SeqRing<T> {
    /// An empty window starting at `base`.
    pub fn new(base: u64) -> Self {
        Self { base, slots: VecDeque::new() }
    }
    /// Lowest seq the window can hold.
    pub fn base(&self) -> u64 {
        self.base
    }
    /// One past the highest slot allocated.
    pub fn end(&self) -> u64 {
        self.base + self.slots.len() as u64
    }
    /// The item at `seq`, if any.
    pub fn get(&self, _seq: u64) -> Option<&T> {
        todo!()
    }
    /// The item at `seq`, mutably.
    pub fn get_mut(&mut self, _seq: u64) -> Option<&mut T> {
        todo!()
    }
    /// Stores `item` at `seq` (growing the window); returns the previous item. `Err(item)` if
    /// `seq < base`.
    pub fn insert(&mut self, _seq: u64, item: T) -> Result<Option<T>, T> {
        Err(item)
    }
    /// Takes the item at `seq`.
    pub fn take(&mut self, _seq: u64) -> Option<T> {
        todo!()
    }
    /// Moves the base up to `new_base`, dropping every slot below it.
    pub fn advance_to(&mut self, _new_base: u64) {
        todo!()
    }
    /// Removes and returns the item at the base (if any) and moves the base up by one.
    pub fn pop_front(&mut self) -> Option<T> {
        todo!()
    }
}
