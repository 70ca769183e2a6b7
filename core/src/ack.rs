//! Receive windows, cumulative acks and φ-lists.
//!
//! STUB — being written (helper C). The public API below is fixed; bodies are placeholders.

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
#[derive(Clone, Debug)]
pub struct ReceiveWindow {
    next: u64,
}

impl ReceiveWindow {
    /// A window accepting seqs up to `window - 1` beyond the cumulative ack.
    pub fn new(_window: u64) -> Self {
        todo!()
    }
    /// Cumulative ack: every seq below is held.
    pub fn next(&self) -> u64 {
        self.next
    }
    /// Whether `seq` is held.
    pub fn contains(&self, _seq: u64) -> bool {
        todo!()
    }
    /// Records `seq` as held, advancing the cumulative ack over contiguous seqs.
    pub fn insert(&mut self, _seq: u64) -> Insert {
        todo!()
    }
    /// Whether a seq beyond the cumulative ack is held (a gap is outstanding).
    pub fn has_gap(&self) -> bool {
        todo!()
    }
    /// Highest held seq, if any.
    pub fn highest(&self) -> Option<u64> {
        todo!()
    }
    /// Writes the report with a φ-list of `phi_bits` bits into `out` (reusing its allocation).
    pub fn report_into(&self, _phi_bits: u32, _out: &mut AckReport) {
        todo!()
    }
}

impl AckReport {
    /// Whether the report says `seq` is held.
    pub fn covers(&self, _seq: u64) -> bool {
        todo!()
    }
    /// One past the last seq the φ-list can speak about.
    pub fn phi_end(&self) -> u64 {
        self.next + 1 + 64 * self.phi.len() as u64
    }
    /// Highest seq the report says is held.
    pub fn highest_covered(&self) -> Option<u64> {
        todo!()
    }
}
