//! Why the engine refused an input from the application. (Bad input from peers is never an
//! error: it becomes an [`Event::PeerMisbehaved`](super::Event::PeerMisbehaved).)

/// Why [`Endpoint::submit`](super::Endpoint::submit) refused a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// Messages must be submitted as 0, 1, 2, … with no gap or repeat.
    #[error("out of order: expected seq {expected}, got {got}")]
    OutOfOrder {
        /// The seq expected next.
        expected: u64,
        /// The seq given.
        got: u64,
    },
    /// Too far ahead of the QUACK (`max_buffered` messages or `max_buffered_bytes` bytes
    /// buffered); try again once `Quacked` advances.
    #[error(
        "backpressure: seq {seq} is beyond QUACK {quack} + {max_buffered} buffered messages, or max_buffered_bytes are buffered"
    )]
    Backpressure {
        /// The seq given.
        seq: u64,
        /// Current QUACK.
        quack: u64,
        /// Configured limit.
        max_buffered: u64,
    },
    /// The payload exceeds `max_payload_bytes`.
    #[error("payload of {len} bytes exceeds {max}")]
    PayloadTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why [`Endpoint::local_has`](super::Endpoint::local_has) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocalHasError {
    /// Only valid with application-managed dissemination.
    #[error("local_has is only valid with application-managed dissemination")]
    LibraryManaged,
    /// Too far beyond the cumulative ack.
    #[error("seq {seq} is beyond the receive window (cumulative ack {next})")]
    BeyondWindow {
        /// The seq given.
        seq: u64,
        /// Cumulative ack.
        next: u64,
    },
}
