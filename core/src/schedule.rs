//! Who sends each message, to whom, and who resends it.
//!
//! STUB — being written (helper B). The public API below is fixed; bodies are placeholders.

/// Why no schedule exists for a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// An RSM has no replicas or a zero stake.
    #[error("invalid stakes: {0}")]
    InvalidStakes(String),
}

/// The deterministic schedule shared by every replica of both RSMs.
#[derive(Clone, Debug)]
pub struct Schedule {}

impl Schedule {
    /// Builds the schedule for a sending RSM with `sender_stakes` tolerating `f_s` faulty stake
    /// and a receiving RSM with `receiver_stakes` tolerating `f_r`.
    pub fn new(_sender_stakes: &[u64], _f_s: u64, _receiver_stakes: &[u64], _f_r: u64) -> Result<Self, ScheduleError> {
        todo!()
    }
    /// Number of pairs in the rotation of `seq` (1 + the most resends it can need).
    pub fn rotation_len(&self, _seq: u64) -> usize {
        todo!()
    }
    /// The `r`-th (sender, receiver) pair of the rotation of `seq`; pair 0 is the first send.
    pub fn pair(&self, _seq: u64, _r: usize) -> Option<(u16, u16)> {
        todo!()
    }
    /// Whether `sender` appears in the rotation of `seq`.
    pub fn has_role(&self, _seq: u64, _sender: u16) -> bool {
        todo!()
    }
    /// Longest rotation over all seqs.
    pub fn max_rotation_len(&self) -> usize {
        todo!()
    }
}
