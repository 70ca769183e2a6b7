//! [`NodeTuning`]: the `[node]` table, how a node thread batches work.

use std::time::Duration;

/// How a node thread batches work (the `[node]` table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTuning {
    /// Most messages taken from the application per loop iteration (`batch_messages`).
    pub batch_messages: usize,
    /// How long the node may wait for more submissions before building frames
    /// (`batch_linger_us`, microseconds); zero never waits.
    pub batch_linger: Duration,
    /// Capacity of the submit and delivery queues, in messages (`queue_capacity`; a
    /// `submit_batch` takes one place).
    pub queue_capacity: usize,
    /// Capacity of the submit and delivery queues, in bytes (`queue_mib`, MiB): payloads and
    /// proofs plus each message's bookkeeping. With large messages a message count alone would
    /// let them hold gigabytes; a hand-off between the application and the node thread needs
    /// milliseconds of traffic, not seconds (the engine buffers its windows itself).
    pub queue_bytes: usize,
    /// How often statistics are published (`stats_interval_ms`, milliseconds).
    pub stats_interval: Duration,
}

impl Default for NodeTuning {
    fn default() -> Self {
        Self {
            batch_messages: 4096,
            batch_linger: Duration::ZERO,
            queue_capacity: 65_536,
            queue_bytes: 8 << 20,
            stats_interval: Duration::from_millis(100),
        }
    }
}
