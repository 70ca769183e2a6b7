//! The outgoing stream (this RSM → the other): the messages this replica keeps for its sending
//! duties, how far the stream was submitted and released into the send window, its byte
//! offsets, and the QUACK that frees it.
//!
//! The sending logic (`sender`) moves messages through these states: submitted
//! (`next_submit`), released into the window (`released`), QUACKed (`quack`).

use bytes::Bytes;

use super::offsets::StreamOffsets;
use super::rtt::DeliveryRate;
use super::stored_proof::StoredProof;
use crate::config::ProtocolParams;
use crate::quack::QuackTracker;
use crate::seqring::SeqRing;
use crate::time::Time;

/// A message of the outgoing stream that this replica keeps for a sending duty.
#[derive(Debug)]
pub(super) struct OutMsg {
    pub(super) payload: Bytes,
    pub(super) proof: StoredProof,
    /// When the message entered the send window (None: still held back by flow control).
    pub(super) released_at: Option<Time>,
    /// Loss-detection state, once a receiver reported the message missing or it was resent
    /// (boxed: rare, and inline it would make every slot of the send window half again larger).
    pub(super) loss: Option<Box<LossTrack>>,
    /// OTU: takeover attempts already made.
    pub(super) otu_attempts: u64,
    /// Payload bytes in flight ahead of this message when it was released (see
    /// `DeliveryRate`).
    pub(super) ahead: u64,
    /// Picsou: the receiver of its first copy, if this replica is its first sender.
    pub(super) first: Option<u16>,
}

/// Duplicate-QUACK state of one message.
#[derive(Debug)]
pub(super) struct LossTrack {
    /// Resends triggered so far (the current position in the rotation).
    pub(super) round: usize,
    /// When the current round began.
    pub(super) round_at: Time,
    /// Bytes in flight when the current round began.
    pub(super) ahead: u64,
    /// Per remote replica: reports of the message missing in the current round (allocated at
    /// the first counted report, so reassignments allocate nothing).
    pub(super) counts: Vec<u8>,
    /// The (sender, receiver) pair of the latest copy.
    pub(super) copy: (u16, u16),
    /// The message was reassigned: its first pair had a distrusted replica (see
    /// `Endpoint::reassign_if_needed`).
    pub(super) reassigned: bool,
}

/// The outgoing stream.
#[derive(Debug)]
pub(super) struct OutStream {
    /// The next seq `submit` expects.
    pub(super) next_submit: u64,
    /// Seqs below this have entered the send window.
    pub(super) released: u64,
    /// Payload bytes released (sent into the window) and not yet QUACKed.
    pub(super) released_bytes: u64,
    /// Payload sizes of the submitted messages from the lowest pacing base on.
    pub(super) offsets: StreamOffsets,
    /// The messages this replica keeps, from the QUACK on.
    pub(super) msgs: SeqRing<OutMsg>,
    pub(super) quack: QuackTracker,
    /// The arrival frontier: the highest seq that receivers of more than f_r stake hold, holes
    /// or not (see `Endpoint::on_remote_report`).
    pub(super) frontier: QuackTracker,
    /// How fast the frontier advances while the stream flows (loss detection waits for queues
    /// to drain).
    pub(super) delivery: DeliveryRate,
}

impl OutStream {
    /// A stream continuing at `start` (a QUACK observed before a restart, or 0), acknowledged
    /// by receivers of `stakes` with threshold `f + 1`.
    pub(super) fn new(start: u64, stakes: Vec<u64>, f: u64) -> Self {
        Self {
            next_submit: start,
            released: start,
            released_bytes: 0,
            offsets: StreamOffsets::new(start),
            msgs: SeqRing::new(start),
            quack: QuackTracker::starting_at(stakes.clone(), f + 1, start),
            frontier: QuackTracker::starting_at(stakes, f + 1, start),
            delivery: DeliveryRate::default(),
        }
    }

    /// How many more messages `submit` accepts right now: messages may run at most
    /// `max_buffered` ahead of the QUACK, and none is accepted while `max_buffered_bytes` are
    /// buffered beyond it.
    pub(super) fn capacity(&self, params: &ProtocolParams) -> u64 {
        let quack = self.quack.value();
        if self.offsets.bytes(quack, self.next_submit) >= params.max_buffered_bytes {
            return 0;
        }
        (quack + params.max_buffered).saturating_sub(self.next_submit)
    }
}
