//! What the engine tells the application, through [`Endpoint::poll_event`](super::Endpoint::poll_event).

use bytes::Bytes;

use super::misbehavior::Misbehavior;
use crate::ids::ReplicaId;

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
    /// Library-managed dissemination: this replica is further behind than its peers retain
    /// (peers with more than f stake report holding beyond `next + retention`), so repairs can
    /// no longer bring it back. Signalled once per endpoint. Install a snapshot of the RSM's
    /// state taken at some seq `s >= next` (a peer's checkpoint) and resume with
    /// [`Endpoint::resuming`](super::Endpoint::resuming) at `receive = s`; messages before
    /// `s` are never delivered by this endpoint.
    StateTransferNeeded {
        /// The first seq this replica lacks (its cumulative ack).
        next: u64,
        /// The lowest cumulative ack among the peers that are too far ahead.
        peers_at: u64,
    },
    /// A peer sent something a correct replica never sends; the input was dropped.
    PeerMisbehaved {
        /// The peer (as the transport identified it).
        peer: ReplicaId,
        /// What it did.
        reason: Misbehavior,
    },
}
