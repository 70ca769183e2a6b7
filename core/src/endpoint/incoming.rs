//! The incoming stream (the other RSM → this one): which seqs this replica holds (its receive
//! window, whose report every frame carries), the messages it keeps for delivery and for
//! repairing its peers (retention), and how far it delivered.
//!
//! The receiving logic (`receiver`) fills it from records and empties it by delivering in order
//! and trimming what retention no longer needs.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::event::Event;
use super::rtt::SendDelay;
use super::stored_proof::StoredProof;
use crate::ack::ReceiveWindow;
use crate::proof::{ProofVerifier, StreamId};
use crate::seqring::SeqRing;
use crate::time::Time;
use crate::wire::AckReport;

/// A message of the incoming stream this replica holds (library-managed dissemination).
#[derive(Debug)]
pub(super) struct Held {
    pub(super) payload: Bytes,
    pub(super) proof: StoredProof,
    /// When this replica got it (repairs wait `repair_delay` after this).
    pub(super) at: Time,
    /// Forwards and repairs of it still queued: it is not trimmed while any are.
    pub(super) pending: u32,
    /// Peers of this RSM (indexes below 64) it was queued to, as a forward or a repair.
    /// Links are FIFO and reliable while up, so such a peer gets it unless it restarted or
    /// its connection broke; it is not repaired again before `resend_wait` has passed.
    pub(super) sent_to: u64,
    /// When it was last queued to a peer.
    pub(super) sent_at: Time,
    /// Repairs of it so far (each waits twice as long as the previous before another).
    pub(super) repairs: u8,
}

impl Held {
    fn new(payload: Bytes, proof: Bytes, at: Time) -> Self {
        Self { payload, proof: StoredProof::new(proof), at, pending: 0, sent_to: 0, sent_at: at, repairs: 0 }
    }
}

/// The incoming stream.
pub(super) struct InStream {
    /// Which stream this is (proofs are bound to it).
    pub(super) stream: StreamId,
    /// Checks that the other RSM committed each message (when it is Byzantine-tolerant).
    pub(super) verifier: Arc<dyn ProofVerifier>,
    pub(super) verify_proofs: bool,
    /// Seqs held: cumulative ack and φ-list.
    pub(super) window: ReceiveWindow,
    /// The messages kept, from the retention floor on.
    pub(super) held: SeqRing<Held>,
    pub(super) held_bytes: usize,
    /// The next seq to deliver.
    pub(super) deliver_next: u64,
    /// The report of `window` frames carry, rebuilt when the window changed (`version`) since
    /// it was built (`built_version`).
    report: AckReport,
    pub(super) version: u64,
    built_version: u64,
    /// How long forwards wait in this replica's queues (repairs wait longer than this).
    pub(super) forward_delay: SendDelay,
}

impl InStream {
    pub(super) fn new(
        stream: StreamId,
        verifier: Arc<dyn ProofVerifier>,
        verify_proofs: bool,
        recv_window: u64,
        phi_bits: u32,
        start: u64,
    ) -> Self {
        let window = ReceiveWindow::starting_at(recv_window, start);
        let mut report = AckReport::default();
        window.report_into(phi_bits, &mut report);
        Self {
            stream,
            verifier,
            verify_proofs,
            window,
            held: SeqRing::new(start),
            held_bytes: 0,
            deliver_next: start,
            report,
            version: 0,
            built_version: 0,
            forward_delay: SendDelay::default(),
        }
    }

    /// The window changed: the report is rebuilt before the next frame.
    pub(super) fn changed(&mut self) {
        self.version += 1;
    }

    /// The current report, rebuilt first if the window changed since.
    pub(super) fn report(&mut self, phi_bits: u32) -> &AckReport {
        if self.built_version != self.version {
            self.window.report_into(phi_bits, &mut self.report);
            self.built_version = self.version;
        }
        &self.report
    }

    /// Keeps `payload` of `seq` (new, within the window), received at `now`.
    pub(super) fn hold(&mut self, now: Time, seq: u64, payload: Bytes, proof: Bytes) {
        self.held_bytes += payload.len();
        let _ = self.held.insert(seq, Held::new(payload, proof, now));
    }

    /// Replaces held message `seq`'s payload and proof by copies of their own (see
    /// `on_records`: they were slices of a mostly discarded frame).
    pub(super) fn compact(&mut self, seq: u64) {
        if let Some(h) = self.held.get_mut(seq) {
            h.payload = Bytes::copy_from_slice(&h.payload);
            h.proof = StoredProof::new(Bytes::copy_from_slice(h.proof.get()));
        }
    }

    /// Delivers every held message from `deliver_next` on that is contiguous; returns how many.
    pub(super) fn deliver_in_order(&mut self, events: &mut VecDeque<Event>) -> u64 {
        let start = self.deliver_next;
        while let Some(h) = self.held.get(self.deliver_next) {
            events.push_back(Event::Deliver { seq: self.deliver_next, payload: h.payload.clone() });
            self.deliver_next += 1;
        }
        self.deliver_next - start
    }

    /// Drops delivered messages beyond the retention limits (count and bytes).
    ///
    /// Messages are kept even once every peer reported holding them: a peer that restarts
    /// resumes from its last checkpoint, which may be older than what it reported before the
    /// crash, and catches up from what its peers retained.
    pub(super) fn trim(&mut self, retention: u64, retention_bytes: usize) {
        let target = self.deliver_next.saturating_sub(retention);
        while self.held.base() < target || (self.held_bytes > retention_bytes && self.held.base() < self.deliver_next) {
            // A message with forwards or repairs still queued is needed: trimming stops there
            // (queues are bounded, so this is too).
            if self.held.get(self.held.base()).is_some_and(|h| h.pending > 0) {
                break;
            }
            if let Some(h) = self.held.pop_front() {
                self.held_bytes -= h.payload.len();
            }
        }
    }

    /// A queued forward or repair of `seq` left its queue (sent or dropped).
    pub(super) fn internal_sent(&mut self, seq: u64) {
        if let Some(h) = self.held.get_mut(seq) {
            h.pending = h.pending.saturating_sub(1);
        }
    }
}
