//! What a misbehaving (or broken) peer did, as reported in [`Event::PeerMisbehaved`].
//!
//! [`Event::PeerMisbehaved`]: super::Event::PeerMisbehaved

use crate::ids::ReplicaId;
use crate::proof::ProofError;
use crate::wire::{DecodeError, RecordKind};

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
    /// A cross-RSM frame from a replica of this RSM, or an internal frame from the other RSM.
    #[error("frame kind does not match the link it arrived on")]
    WrongFrameKind,
    /// Its cumulative ack went backwards without a restart (same incarnation): a stale or lying
    /// report, ignored.
    #[error("ack went back from {last} to {next} without a restart")]
    AckWentBack {
        /// The last ack it reported.
        last: u64,
        /// This one.
        next: u64,
    },
    /// The transport named a peer that is not in the membership (or this replica itself).
    #[error("unknown peer")]
    UnknownPeer,
}

impl Misbehavior {
    /// Whether this proves the peer faulty: the frame passed authentication under the key of
    /// the link with that peer, which (with per-replica keys) only the peer holds besides this
    /// replica, and a correct replica never sends it (the simulator checks that correct
    /// replicas are never accused). Bytes that fail authentication prove nothing about the
    /// peer: anyone on the network path could have injected them.
    pub fn proves_fault(&self) -> bool {
        matches!(
            self,
            Self::InvalidProof { .. } | Self::Unscheduled { .. } | Self::WrongDestination { .. } | Self::WrongFrameKind
        )
    }
}
