//! Stake-weighted quorum acknowledgements (QUACKs).
//!
//! STUB — being written (helper C). The public API below is fixed; bodies are placeholders.

/// Tracks the cumulative acks reported by the replicas of the other RSM and the QUACK: the
/// largest `v` such that replicas with total stake ≥ `threshold` have reported `next ≥ v`.
#[derive(Clone, Debug)]
pub struct QuackTracker {
    value: u64,
}

impl QuackTracker {
    /// A tracker over replicas with these stakes; `threshold` is f+1 stake.
    pub fn new(_stakes: Vec<u64>, _threshold: u64) -> Self {
        todo!()
    }
    /// Records that replica `idx` reported cumulative ack `next` (lower reports are ignored).
    /// Returns the new QUACK if it advanced.
    pub fn update(&mut self, _idx: usize, _next: u64) -> Option<u64> {
        todo!()
    }
    /// The current QUACK: every seq below it is held by at least one correct replica.
    pub fn value(&self) -> u64 {
        self.value
    }
    /// The highest cumulative ack reported by replica `idx`.
    pub fn ack_of(&self, _idx: usize) -> u64 {
        todo!()
    }
}
