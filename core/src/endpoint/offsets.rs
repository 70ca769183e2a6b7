//! Byte offsets of the outgoing stream, so the payload bytes between any two retained seqs are
//! one subtraction.
//!
//! The sender bounds its window in bytes from two bases: the QUACK (what is definitely
//! received) and the cumulative ack of the slowest active receiver (see
//! `Endpoint::pace_base`). The second lies below the QUACK, where per-message sizes are no
//! longer otherwise kept; this structure keeps them from the lowest base still needed.

use std::collections::VecDeque;

/// Cumulative payload bytes of seqs `base..base + ends.len()`.
#[derive(Clone, Debug)]
pub(super) struct StreamOffsets {
    /// Lowest seq whose offset is known.
    base: u64,
    /// Offset (bytes of the stream before it) of `base`.
    base_offset: u64,
    /// `ends[i]`: offset just after seq `base + i`.
    ends: VecDeque<u64>,
}

impl StreamOffsets {
    /// An empty stream continuing at `start`.
    pub(super) fn new(start: u64) -> Self {
        Self { base: start, base_offset: 0, ends: VecDeque::new() }
    }

    /// Seq after the last one pushed.
    pub(super) fn end_seq(&self) -> u64 {
        self.base + self.ends.len() as u64
    }

    /// Appends the next seq, of `size` bytes.
    pub(super) fn push(&mut self, size: u64) {
        let last = self.ends.back().copied().unwrap_or(self.base_offset);
        self.ends.push_back(last + size);
    }

    /// Offset of `seq`, clamped to the known range (seqs below the base count from the base,
    /// seqs beyond the end from the end).
    pub(super) fn offset(&self, seq: u64) -> u64 {
        if seq <= self.base {
            self.base_offset
        } else {
            let i = ((seq - self.base) as usize).min(self.ends.len());
            self.ends[i - 1]
        }
    }

    /// Payload bytes of `seq` (0 if unknown).
    pub(super) fn size(&self, seq: u64) -> u64 {
        if seq < self.base || seq >= self.end_seq() { 0 } else { self.offset(seq + 1) - self.offset(seq) }
    }

    /// Bytes of seqs `from..to`.
    pub(super) fn bytes(&self, from: u64, to: u64) -> u64 {
        self.offset(to).saturating_sub(self.offset(from))
    }

    /// Forgets seqs below `seq` (no-op if already forgotten).
    pub(super) fn trim_below(&mut self, seq: u64) {
        let seq = seq.min(self.end_seq());
        if seq <= self.base {
            return;
        }
        let n = (seq - self.base) as usize;
        self.base_offset = self.ends[n - 1];
        self.ends.drain(..n);
        self.base = seq;
    }
}

#[cfg(test)]
mod tests {
    use super::StreamOffsets;

    #[test]
    fn offsets_sizes_and_trimming() {
        let mut o = StreamOffsets::new(10);
        for s in [5, 7, 11, 13] {
            o.push(s);
        }
        assert_eq!(o.end_seq(), 14);
        assert_eq!(o.size(10), 5);
        assert_eq!(o.size(13), 13);
        assert_eq!(o.size(14), 0);
        assert_eq!(o.bytes(10, 14), 36);
        assert_eq!(o.bytes(11, 13), 18);
        o.trim_below(12);
        assert_eq!(o.size(11), 0, "forgotten");
        assert_eq!(o.bytes(12, 14), 24);
        assert_eq!(o.bytes(3, 13), 11, "below the base counts from the base");
        o.trim_below(11);
        assert_eq!(o.bytes(12, 14), 24, "trimming backwards is a no-op");
        o.trim_below(100);
        assert_eq!(o.end_seq(), 14);
        o.push(1);
        assert_eq!(o.size(14), 1);
        assert_eq!(o.bytes(0, 15), 1);
    }
}
