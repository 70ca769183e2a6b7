//! The protocol engine: one [`Endpoint`] per replica per link between its RSM and the other.
//!
//! STUB API — the engine is being written. Signatures are fixed.

use bytes::Bytes;

use crate::config::{ConfigError, EndpointConfig};
use crate::ids::ReplicaId;
use crate::proof::ProofError;
use crate::time::Time;
use crate::wire::{DecodeError, RecordKind};

/// A frame the engine wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination replica (of either RSM).
    pub to: ReplicaId,
    /// The encoded, authenticated frame.
    pub frame: Bytes,
}

/// Something the application should know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Library-managed dissemination: the next message of the incoming stream, in order,
    /// exactly once.
    Deliver {
        /// Position in the stream.
        seq: u64,
        /// The message.
        payload: Bytes,
    },
    /// Application-managed dissemination: a message received first-hand from the other RSM,
    /// exactly once, in arrival order; the application spreads it inside its RSM.
    Received {
        /// Position in the stream.
        seq: u64,
        /// The message.
        payload: Bytes,
        /// Its proof, for the application to pass on.
        proof: Bytes,
    },
    /// The other RSM has definitely received every message below `up_to` (at least one
    /// correct replica holds each); their resend state is freed.
    Quacked {
        /// One past the highest definitely received seq.
        up_to: u64,
    },
    /// This replica resent a message (resend `number` of its rotation).
    Resent {
        /// The message.
        seq: u64,
        /// Its resend number.
        number: u16,
    },
    /// A peer sent something a correct replica never sends; the input was dropped.
    PeerMisbehaved {
        /// The peer (as the transport identified it).
        peer: ReplicaId,
        /// What it did.
        reason: Misbehavior,
    },
}

/// What a misbehaving (or broken) peer did.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misbehavior {
    /// The bytes are not a valid, authentic frame.
    #[error("bad frame: {0}")]
    BadFrame(#[from] DecodeError),
    /// The frame's authenticated source is not the peer it came from.
    #[error("frame claims source {claimed} but arrived from another peer")]
    WrongSource {
        /// Claimed source.
        claimed: ReplicaId,
    },
    /// The frame is addressed to another replica.
    #[error("frame addressed to {dst}")]
    WrongDestination {
        /// Its destination.
        dst: ReplicaId,
    },
    /// A message's proof does not verify.
    #[error("invalid proof for seq {seq}: {error}")]
    InvalidProof {
        /// The message.
        seq: u64,
        /// Why.
        error: ProofError,
    },
    /// A record that the schedule does not assign to this sender (or kind of frame).
    #[error("unscheduled {kind:?} of seq {seq}")]
    Unscheduled {
        /// The message.
        seq: u64,
        /// Role claimed.
        kind: RecordKind,
    },
    /// An ack for messages the local RSM has not even transmitted yet.
    #[error("ack {next} beyond the {transmitted} messages transmitted")]
    AckBeyondStream {
        /// Reported cumulative ack.
        next: u64,
        /// Messages transmitted so far.
        transmitted: u64,
    },
    /// A payload larger than allowed.
    #[error("payload of {len} bytes exceeds {max}")]
    PayloadTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why [`Endpoint::transmit`] refused a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransmitError {
    /// Messages must be transmitted as 0, 1, 2, … with no gap or repeat.
    #[error("out of order: expected seq {expected}, got {got}")]
    OutOfOrder {
        /// The seq expected next.
        expected: u64,
        /// The seq given.
        got: u64,
    },
    /// Too far ahead of the QUACK; try again once `Quacked` advances.
    #[error("backpressure: seq {seq} is beyond QUACK {quack} + {max_buffered} buffered messages")]
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

/// Why [`Endpoint::local_has`] was refused.
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

/// Counters, for reports and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
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

/// The engine of one replica on one link.
pub struct Endpoint {
    _cfg: EndpointConfig,
}

impl Endpoint {
    /// Builds an endpoint; fails if the configuration is invalid.
    pub fn new(_cfg: EndpointConfig, _now: Time) -> Result<Self, ConfigError> {
        todo!()
    }
    /// This replica.
    pub fn local(&self) -> ReplicaId {
        self._cfg.local
    }
    /// Hands the engine message `seq` that the local RSM committed for the other RSM. Every
    /// replica of the local RSM calls this for every message, in order from 0.
    pub fn transmit(&mut self, _now: Time, _seq: u64, _payload: Bytes, _proof: Bytes) -> Result<(), TransmitError> {
        todo!()
    }
    /// The next seq `transmit` expects.
    pub fn next_transmit(&self) -> u64 {
        todo!()
    }
    /// How many more messages `transmit` accepts right now (backpressure).
    pub fn transmit_capacity(&self) -> u64 {
        todo!()
    }
    /// Handles a frame that the transport received from `from`.
    pub fn handle_frame(&mut self, _now: Time, _from: ReplicaId, _frame: Bytes) {
        todo!()
    }
    /// Handles the passing of time (call at or after `poll_timeout`).
    pub fn handle_timeout(&mut self, _now: Time) {
        todo!()
    }
    /// Application-managed dissemination: the local RSM holds `seq` of the incoming stream.
    pub fn local_has(&mut self, _now: Time, _seq: u64) -> Result<(), LocalHasError> {
        todo!()
    }
    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self, _now: Time) -> Option<Transmit> {
        todo!()
    }
    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }
    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        todo!()
    }
    /// The current QUACK of the outgoing stream.
    pub fn quack(&self) -> u64 {
        todo!()
    }
    /// The cumulative ack of the incoming stream.
    pub fn received(&self) -> u64 {
        todo!()
    }
    /// Counters.
    pub fn stats(&self) -> EndpointStats {
        todo!()
    }
}
