//! The messages RSM 0 sends in a simulation: deterministic contents, built once, shared.
//!
//! Message `k` is `size` bytes: `k` as 8 little-endian bytes, then a fixed filler pattern. The
//! checker can therefore tell, from the bytes alone, whether a delivered payload is exactly what
//! RSM 0 transmitted at that position, without the simulator remembering every payload (a run of
//! 10,000 one-megabyte messages would otherwise hold 10 GB). Each payload is built once and its
//! [`Bytes`] shared by every sender replica (clones are reference counts), and dropped as soon
//! as the slowest live sender replica has taken it.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

/// Byte `i` of the filler that follows the sequence number.
fn filler_byte(i: usize) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(7)
}

/// The shape of every message of a run.
#[derive(Clone, Debug)]
pub struct PayloadSpec {
    size: usize,
    /// The full-size filler pattern, shared by every payload built and every check.
    filler: Bytes,
}

impl PayloadSpec {
    /// Messages of `size` bytes.
    pub fn new(size: usize) -> Self {
        let filler: Vec<u8> = (0..size).map(filler_byte).collect();
        Self { size, filler: Bytes::from(filler) }
    }

    /// Size of every message.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Number of leading bytes that carry the sequence number.
    fn header_len(&self) -> usize {
        self.size.min(8)
    }

    /// The contents of message `seq`.
    pub fn make(&self, seq: u64) -> Bytes {
        let mut b = BytesMut::with_capacity(self.size);
        self.write_into(seq, &mut b);
        b.freeze()
    }

    /// Appends the contents of message `seq` to `out`.
    pub fn write_into(&self, seq: u64, out: &mut impl BufMut) {
        let h = self.header_len();
        out.put_slice(&seq.to_le_bytes()[..h]);
        out.put_slice(&self.filler[h..]);
    }

    /// Turns `payload`, the contents of some message of this spec, into those of message
    /// `seq` (only the leading sequence number differs between messages).
    ///
    /// # Panics
    ///
    /// If `payload` is shorter than the sequence number field.
    pub fn write_seq(&self, seq: u64, payload: &mut [u8]) {
        let h = self.header_len();
        payload[..h].copy_from_slice(&seq.to_le_bytes()[..h]);
    }

    /// True if `payload` is exactly the contents of message `seq`.
    pub fn matches(&self, seq: u64, payload: &[u8]) -> bool {
        let h = self.header_len();
        payload.len() == self.size && payload[..h] == seq.to_le_bytes()[..h] && payload[h..] == self.filler[h..]
    }
}

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
    fn payloads_encode_their_seq_and_check() {
        let spec = PayloadSpec::new(100);
        let p = spec.make(12345);
        assert_eq!(p.len(), 100);
        assert_eq!(&p[..8], &12345u64.to_le_bytes());
        assert!(spec.matches(12345, &p));
        assert!(!spec.matches(12346, &p));
        let mut bad = p.to_vec();
        bad[50] ^= 1;
        assert!(!spec.matches(12345, &bad));
        assert!(!spec.matches(12345, &p[..99]));
        assert_ne!(spec.make(1), spec.make(2));
    }

    #[test]
    fn tiny_payloads_are_truncated_seqs() {
        let spec = PayloadSpec::new(3);
        let p = spec.make(0x0A0B0C0D);
        assert_eq!(&p[..], &[0x0D, 0x0C, 0x0B]);
        assert!(spec.matches(0x0A0B0C0D, &p));
    }

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
