//! The timer table: when [`Endpoint::handle_timeout`](super::Endpoint::handle_timeout) is next
//! needed, in O(1), so a driver may ask after every input.
//!
//! Four kinds of deadline exist: an ack-only frame due on a link, a replica becoming suspect
//! after a silence, the next repair pass, and OTU's next takeover check. The last two are single
//! values. The first two exist per destination and used to be found by scanning every
//! destination on every `poll_timeout`; here:
//!
//! - **Acks.** A link's ack deadline is its last frame's time plus a wait that is shorter while
//!   this replica's report changed since that frame (`changed`) than when it did not
//!   (`unchanged`, the keep-alive). Links are kept per class (cross-RSM; peers) in the order
//!   of their last frame. Time never goes backwards, so last-frame times rise along the list;
//!   every report change makes every link "changed", and a frame makes its link unchanged and
//!   moves it to the back, so the unchanged links are a suffix of the list. With
//!   `changed ≤ unchanged`, deadlines therefore rise along the list: the front has the
//!   earliest, and the links due at any time are a prefix. Due links leave the list until their
//!   next frame.
//! - **Suspicion.** When a replica becomes suspect depends on its own recent gaps, so those
//!   deadlines are in an indexed min-heap, updated in O(log n) when a frame arrives from the
//!   replica or its suspicion changes.
//!
//! A deadline returned is exactly the earliest one (`tests::timer_table_matches_a_scan`
//! compares it with a scan of every destination after every input).

use std::time::Duration;

use super::link::Links;
use crate::time::Time;

/// No slot.
const NIL: u32 = u32::MAX;

/// The links of one class with an ack deadline that is not yet due, oldest frame first.
#[derive(Clone, Debug)]
struct AckClass {
    head: u32,
    tail: u32,
    /// Wait after a frame while the report changed since ...
    changed: Duration,
    /// ... and while it did not (keep-alives).
    unchanged: Duration,
}

/// Every timer of an endpoint.
#[derive(Clone, Debug)]
pub(super) struct TimerTable {
    acks: Vec<AckClass>,
    /// Per link slot: its ack class, if it has ack deadlines ...
    class: Vec<Option<u8>>,
    /// ... and its neighbours in that class's list while listed.
    prev: Vec<u32>,
    next: Vec<u32>,
    listed: Vec<bool>,
    /// Per slot: when the replica becomes suspect.
    silence: DeadlineHeap,
    /// The next repair pass, when some peer awaits one.
    pub(super) repair: Time,
    /// OTU: the next takeover check.
    pub(super) otu: Option<Time>,
}

impl TimerTable {
    /// A table for links in slots `0..classes.len()`, where `classes[slot]` is the index in
    /// `waits` of the link's `(changed, unchanged)` ack waits, or `None` for links without ack
    /// deadlines. Every link is listed, in slot order (all frames "sent" at creation).
    pub(super) fn new(classes: Vec<Option<u8>>, waits: &[(Duration, Duration)], repair: Time) -> Self {
        let n = classes.len();
        let mut t = Self {
            acks: waits
                .iter()
                .map(|&(changed, unchanged)| {
                    debug_assert!(changed <= unchanged, "the table relies on it");
                    AckClass { head: NIL, tail: NIL, changed, unchanged }
                })
                .collect(),
            class: classes,
            prev: vec![NIL; n],
            next: vec![NIL; n],
            listed: vec![false; n],
            silence: DeadlineHeap::new(n),
            repair,
            otu: None,
        };
        for slot in 0..n {
            t.push_back(slot);
        }
        t
    }

    /// A frame was built for the link in `slot` (its ack went with it): it moves to the back.
    pub(super) fn frame_built(&mut self, slot: usize) {
        if self.listed[slot] {
            self.unlink(slot);
        }
        self.push_back(slot);
    }

    /// The earliest ack deadline of a link whose ack is not yet due.
    pub(super) fn next_ack(&self, links: &Links, report_version: u64) -> Option<Time> {
        self.acks
            .iter()
            .filter(|c| c.head != NIL)
            .map(|c| Self::deadline(c, links, c.head as usize, report_version))
            .min()
    }

    /// Marks `ack_due` on every link whose ack deadline is at or before `now`.
    pub(super) fn take_due_acks(&mut self, now: Time, links: &mut Links, report_version: u64) {
        for c in 0..self.acks.len() {
            loop {
                let class = &self.acks[c];
                let head = class.head;
                if head == NIL || Self::deadline(class, links, head as usize, report_version) > now {
                    break;
                }
                self.unlink(head as usize);
                links.slot_mut(head as usize).ack_due = true;
            }
        }
    }

    /// Sets (or clears) when the replica in `slot` becomes suspect.
    pub(super) fn set_silence(&mut self, slot: usize, at: Option<Time>) {
        self.silence.set(slot, at);
    }

    /// The earliest deadline of all: acks, suspicion, the repair pass (if `repair_pending`),
    /// and OTU's check.
    pub(super) fn next(&self, links: &Links, report_version: u64, repair_pending: bool) -> Option<Time> {
        [self.next_ack(links, report_version), repair_pending.then_some(self.repair), self.otu, self.silence.peek()]
            .into_iter()
            .flatten()
            .min()
    }

    fn deadline(class: &AckClass, links: &Links, slot: usize, report_version: u64) -> Time {
        let link = links.slot(slot);
        let wait = if link.sent_version != report_version { class.changed } else { class.unchanged };
        link.last_sent + wait
    }

    fn push_back(&mut self, slot: usize) {
        let Some(c) = self.class[slot] else { return };
        let class = &mut self.acks[usize::from(c)];
        let s = slot as u32;
        self.prev[slot] = class.tail;
        self.next[slot] = NIL;
        match class.tail {
            NIL => class.head = s,
            t => self.next[t as usize] = s,
        }
        class.tail = s;
        self.listed[slot] = true;
    }

    fn unlink(&mut self, slot: usize) {
        let Some(c) = self.class[slot] else { return };
        let class = &mut self.acks[usize::from(c)];
        let (p, n) = (self.prev[slot], self.next[slot]);
        match p {
            NIL => class.head = n,
            p => self.next[p as usize] = n,
        }
        match n {
            NIL => class.tail = p,
            n => self.prev[n as usize] = p,
        }
        self.prev[slot] = NIL;
        self.next[slot] = NIL;
        self.listed[slot] = false;
    }
}

/// A min-heap of deadlines keyed by slot, with O(log n) update and removal of any slot.
#[derive(Clone, Debug)]
struct DeadlineHeap {
    /// (deadline, slot), a binary heap ordered by deadline then slot.
    heap: Vec<(Time, u32)>,
    /// Per slot: its position in `heap`, or `NIL`.
    pos: Vec<u32>,
}

impl DeadlineHeap {
    fn new(slots: usize) -> Self {
        Self { heap: Vec::with_capacity(slots), pos: vec![NIL; slots] }
    }

    fn peek(&self) -> Option<Time> {
        self.heap.first().map(|&(t, _)| t)
    }

    fn set(&mut self, slot: usize, at: Option<Time>) {
        let i = self.pos[slot];
        match (i, at) {
            (NIL, None) => {}
            (NIL, Some(t)) => {
                self.heap.push((t, slot as u32));
                let last = self.heap.len() - 1;
                self.pos[slot] = last as u32;
                self.sift_up(last);
            }
            (i, Some(t)) => {
                let i = i as usize;
                let old = self.heap[i].0;
                self.heap[i].0 = t;
                if t < old { self.sift_up(i) } else { self.sift_down(i) }
            }
            (i, None) => {
                let i = i as usize;
                let last = self.heap.len() - 1;
                self.swap(i, last);
                self.heap.pop();
                self.pos[slot] = NIL;
                if i < self.heap.len() {
                    self.sift_down(i);
                    self.sift_up(i);
                }
            }
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].1 as usize] = a as u32;
        self.pos[self.heap[b].1 as usize] = b as u32;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i] >= self.heap[parent] {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < self.heap.len() && self.heap[l] < self.heap[least] {
                least = l;
            }
            if r < self.heap.len() && self.heap[r] < self.heap[least] {
                least = r;
            }
            if least == i {
                break;
            }
            self.swap(i, least);
            i = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The heap's minimum is always that of the deadlines set, across random updates and
        /// removals.
        #[test]
        fn heap_minimum_matches_a_scan(ops in prop::collection::vec((0usize..12, prop::option::of(0u64..50)), 0..200)) {
            let mut heap = DeadlineHeap::new(12);
            let mut naive: Vec<Option<Time>> = vec![None; 12];
            for (slot, at) in ops {
                let at = at.map(Time::from_nanos);
                heap.set(slot, at);
                naive[slot] = at;
                prop_assert_eq!(heap.peek(), naive.iter().flatten().min().copied());
                for (i, &(_, s)) in heap.heap.iter().enumerate() {
                    prop_assert_eq!(heap.pos[s as usize] as usize, i);
                }
            }
        }
    }
}
