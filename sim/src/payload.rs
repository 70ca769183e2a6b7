//! The messages RSM 0 sends in a simulation: deterministic contents
//! ([`PayloadSpec`]), built once and shared.
//!
//! Each payload is built once and its [`Bytes`] shared by every sender replica (clones are
//! reference counts), and dropped as soon as the slowest live sender replica has taken it.

use std::collections::VecDeque;

use bytes::Bytes;
pub use picsou_core::payload::PayloadSpec;

/// Payloads and proofs of the messages that some live sender replica has yet to take.
#[derive(Debug, Default)]
pub struct PayloadWindow {
    /// Seq of `items[0]`.
    base: u64,
    items: VecDeque<(Bytes, Bytes)>,
}

impl PayloadWindow {
    /// An empty window starting at seq 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Payload and proof of `seq`, building them (and any before it) with `build` if needed.
    /// `seq` must not be below a seq already released.
    pub fn get(&mut self, seq: u64, mut build: impl FnMut(u64) -> (Bytes, Bytes)) -> (Bytes, Bytes) {
        assert!(seq >= self.base, "seq {seq} was already released");
        while self.base + (self.items.len() as u64) <= seq {
            let next = self.base + self.items.len() as u64;
            self.items.push_back(build(next));
        }
        self.items[(seq - self.base) as usize].clone()
    }

    /// Forgets every message below `seq`.
    pub fn release_below(&mut self, seq: u64) {
        while self.base < seq {
            if self.items.pop_front().is_none() {
                self.base = seq;
                break;
            }
            self.base += 1;
        }
    }

    /// Messages currently held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if no message is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_builds_once_and_releases() {
        let spec = PayloadSpec::new(16);
        let mut w = PayloadWindow::new();
        let mut built = 0;
        let mut build = |s| {
            built += 1;
            (spec.make(s), Bytes::new())
        };
        let (p3, _) = w.get(3, &mut build);
        assert!(spec.matches(3, &p3));
        assert_eq!(w.len(), 4);
        let (p1, _) = w.get(1, &mut build);
        assert!(spec.matches(1, &p1));
        w.release_below(2);
        assert_eq!(w.len(), 2);
        let (p3b, _) = w.get(3, &mut build);
        assert_eq!(p3, p3b);
        w.release_below(10);
        assert!(w.is_empty());
        let (p10, _) = w.get(10, &mut build);
        assert!(spec.matches(10, &p10));
        assert_eq!(built, 5);
    }
}
