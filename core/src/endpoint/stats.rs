//! Counters of an endpoint, for reports and benchmarks ([`Endpoint::stats`](super::Endpoint::stats)).

/// Counters, for reports and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointStats {
    /// Frames handed out by `poll_transmit`.
    pub frames_sent: u64,
    /// Bytes handed out by `poll_transmit`.
    pub bytes_sent: u64,
    /// Frames given to `handle_frame`.
    pub frames_received: u64,
    /// Bytes given to `handle_frame`.
    pub bytes_received: u64,
    /// Frames that carried only an ack.
    pub ack_only_frames: u64,
    /// First sends of messages.
    pub first_sends: u64,
    /// Resends of messages.
    pub resends: u64,
    /// Forwards inside the receiving RSM.
    pub forwards: u64,
    /// Repairs inside the receiving RSM.
    pub repairs: u64,
    /// Messages delivered (or handed over as `Received`).
    pub delivered: u64,
    /// Copies of messages already held.
    pub duplicates: u64,
    /// Frames or records dropped as misbehaviour.
    pub misbehaviors: u64,
    /// Current QUACK.
    pub quack: u64,
    /// Smoothed RTT estimate, in nanoseconds.
    pub srtt_ns: u64,
}
