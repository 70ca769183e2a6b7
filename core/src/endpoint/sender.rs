//! The sending half: submitted messages, flow control, QUACKs, duplicate-QUACK loss detection,
//! resends.
//!
//! Every replica of the sending RSM is handed every message ([`Endpoint::submit`]) but keeps
//! only those it has a duty for in the plan. A message enters the send window once it is less
//! than `send_window` beyond the QUACK; its first sender then queues it for its first receiver.
//!
//! Loss detection follows the paper's duplicate-QUACK idea with two refinements that make it
//! safe against reordering and tail losses: a receiver's report of seq k missing counts only
//! once k could have arrived: one smoothed RTT after k entered the window (or after the last
//! resend) if the report comes from the receiver k was last sent to and shows a later seq held —
//! a gap —, otherwise one RTO (other receivers get k by forwarding, which can lag). Both are
//! measured for that receiver, plus the time the bytes released ahead of k take to drain at
//! the measured delivery rate (resenders cannot see the first sender's queues). When receivers
//! holding at least f_r+1 stake have each reported k missing `dup_threshold` times in the
//! current round (and their latest report still lacks it), k is
//! definitely lost from the point of view of this replica and the round advances: the replica
//! owning the next pair of k's rotation resends it. Rounds stop at the end of the rotation,
//! which the schedule guarantees contains a correct pair. Several messages are tracked at once
//! across the φ-list, so parallel losses recover in parallel.
//!
//! Failure suspicion short-cuts detection: a replica that has sent nothing for
//! `suspect_after` (live replicas send keep-alives) is suspected, and so is a sender replica
//! whose first sends fail far more often than the others' (Byzantine senders that keep
//! answering keep-alives but skip or forge their duties); a message whose earlier
//! rotation pairs all involve suspected replicas is resent at release by the owner of the first
//! unsuspected turn. Without this, losses are detected only within the φ-list, so a crashed
//! receiver would cap throughput at about φ messages per detection delay.

use std::time::Duration;

use bytes::Bytes;

use super::index::{Dest, PeerIdx, RemoteIdx};
use super::link::{Pending, record_len};
use super::outgoing::{LossTrack, OutMsg};
use super::plan::resend_number;
use super::stored_proof::StoredProof;
use super::{Endpoint, Event, SubmitError};
use crate::config::Strategy;
use crate::time::Time;
use crate::wire::{AckReport, RecordKind};

impl Endpoint {
    /// Hands the engine message `seq` that the local RSM committed for the other RSM. Every
    /// replica of the local RSM calls this for every message, in order from 0; `proof` shows the
    /// local RSM committed it (empty under CFT).
    pub fn submit(&mut self, now: Time, seq: u64, payload: Bytes, proof: Bytes) -> Result<(), SubmitError> {
        let now = self.clock(now);
        let out = &mut self.out;
        if seq != out.next_submit {
            return Err(SubmitError::OutOfOrder { expected: out.next_submit, got: seq });
        }
        if payload.len() > self.params.max_payload_bytes {
            return Err(SubmitError::PayloadTooLarge { len: payload.len(), max: self.params.max_payload_bytes });
        }
        if out.capacity(&self.params) == 0 {
            return Err(SubmitError::Backpressure {
                seq,
                quack: out.quack.value(),
                max_buffered: self.params.max_buffered,
            });
        }
        out.next_submit += 1;
        out.offsets.push(payload.len() as u64);
        let (stores, first) = self.plan.duty(seq);
        if stores {
            let msg = OutMsg {
                payload,
                proof: StoredProof::new(proof),
                released_at: None,
                loss: None,
                otu_attempts: 0,
                ahead: 0,
                first,
            };
            // The ring's base is the QUACK, which never passes next_submit.
            let _ = out.msgs.insert(seq, msg);
        }
        // If an earlier message still waits for the window, so does this one: the window
        // opens only on reports (which release) or with time (`handle_timeout` releases), so
        // the per-message cost of recomputing it is skipped.
        if out.released == seq {
            self.release(now);
        }
        Ok(())
    }

    /// Moves messages into the send window and queues their first copies.
    pub(super) fn release(&mut self, now: Time) {
        // The window is bounded from the slowest active receiver in messages and in bytes,
        // and never beyond what a receiver retains for repairs: a receiver that far behind
        // its peers could no longer be repaired by them.
        let base = self.remotes.pace_base(now, self.out.quack.value(), self.params.suspect_after);
        let window = self.params.send_window.min(self.params.retention);
        let window_bytes = self.params.send_window_bytes.min(self.params.retention_bytes as u64);
        let limit = self.out.next_submit.min(base.saturating_add(window));
        // Sizes below the pace base are no longer needed (nor, to bound memory with a receiver
        // excluded from pacing, below the oldest message that can still be buffered).
        let floor = self.out.next_submit.saturating_sub(self.params.max_buffered + self.params.send_window);
        self.out.offsets.trim_below(base.max(floor));
        while self.out.released < limit {
            let out = &mut self.out;
            let seq = out.released;
            let size = out.offsets.size(seq);
            if out.released_bytes > 0 && out.released_bytes + size > self.params.send_window_bytes {
                break;
            }
            if seq > base && out.offsets.bytes(base, seq) + size > window_bytes {
                break;
            }
            let ahead = out.released_bytes;
            out.released_bytes += size;
            out.released += 1;
            let Some(m) = out.msgs.get_mut(seq) else { continue };
            m.released_at = Some(now);
            m.ahead = ahead;
            if self.plan.strategy() == Strategy::Otu && self.timers.otu.is_none() {
                self.timers.otu = Some(now + self.params.otu_timeout);
            }
            if self.hooks.skips_first_send(now, seq) {
                continue;
            }
            if self.plan.strategy() == Strategy::Picsou {
                if let Some(r) = m.first {
                    let p = Pending::new(seq, RecordKind::First, &m.payload, m.proof.get());
                    self.links.remote_mut(RemoteIdx::new(r)).queue.push_back(p);
                    self.stats.first_sends += 1;
                }
            } else {
                let p = Pending::new(seq, RecordKind::First, &m.payload, m.proof.get());
                for r in self.plan.first_dests(seq) {
                    self.links.remote_mut(RemoteIdx::new(r)).queue.push_back(p);
                    self.stats.first_sends += 1;
                }
            }
            if self.any_suspected {
                self.resend_proactively(now, seq);
            }
        }
    }

    /// When a replica becomes suspected, messages already in flight whose earlier rotation
    /// pairs all involve suspected replicas are resent now (new messages are handled at
    /// release). Called from `handle_timeout`.
    pub(super) fn check_suspicions(&mut self, now: Time) {
        if self.refresh_suspicions(now) {
            self.resend_in_flight(now);
        }
    }

    /// Proactive resends for every message in flight (after a new suspicion).
    fn resend_in_flight(&mut self, now: Time) {
        for seq in self.out.quack.value()..self.out.released {
            if self.out.msgs.get(seq).is_some() {
                self.resend_proactively(now, seq);
            }
        }
    }

    /// Recomputes which replicas are suspected (cached: the release path only reads the cache);
    /// returns whether some replica became suspected. Picsou only.
    fn refresh_suspicions(&mut self, now: Time) -> bool {
        if self.plan.strategy() != Strategy::Picsou {
            return false;
        }
        let mut changed = false;
        let mut any = false;
        for slot in 0..self.layout.n_dest() {
            let d = self.layout.dest(slot);
            let s = match d {
                Dest::Remote(j) => self.receiver_suspected(now, j),
                Dest::Peer(p) => self.sender_suspected(now, p),
            };
            let contact = self.contact_mut(d);
            let was = contact.suspected;
            contact.suspected = s;
            changed |= s && !was;
            any |= s;
            if s != was {
                self.update_silence_timer(d);
            }
        }
        self.any_suspected = any;
        changed
    }

    /// Whether replica `j` of the other RSM is suspected: silent for `suspect_after` (or
    /// longer, see `Contact::silence_limit`).
    fn receiver_suspected(&self, now: Time, j: RemoteIdx) -> bool {
        self.remote_silent(now, j)
    }

    /// Whether sender replica `s` of this RSM is suspected: silent for `suspect_after`, or,
    /// in a Byzantine-tolerant RSM, failing its first sends far more often than the others (a
    /// Byzantine sender that stays silent in its duties, or forges, while answering
    /// keep-alives). In a crash-tolerant RSM a replica that answers follows the protocol, so
    /// its failed first sends were merely slow (a loaded replica's queues) or lost, which
    /// duplicate-QUACK detection recovers message by message; suspecting it would resend
    /// every message in flight that it sent first.
    fn sender_suspected(&self, now: Time, s: PeerIdx) -> bool {
        if s == self.layout.me() {
            return false;
        }
        if self.peer_silent(now, s) {
            return true;
        }
        self.peers.bft() && self.peers.failing_first_sends(s)
    }

    /// Counts a failed first send against its sender (scores halve every second), unless its
    /// receiver is suspected, which explains the failure instead.
    fn note_failed_first_send(&mut self, now: Time, k: u64) {
        if !self.peers.bft() {
            return;
        }
        let Some((s, r)) = self.plan.pair(k, 0) else { return };
        if self.receiver_suspected(now, RemoteIdx::new(r)) {
            return;
        }
        self.peers.first_send_failed(now, PeerIdx::new(s));
        if self.refresh_suspicions(now) {
            self.resend_in_flight(now);
        }
    }

    /// If every pair before one of this replica's turns in `seq`'s rotation involves a suspected
    /// replica, the first copies are surely lost: resend now rather than after detection.
    ///
    /// Not if an unsuspected receiver already reports holding `seq`: a copy got through and the
    /// receiving RSM disseminates it (should that receiver fail too, its suspicion or
    /// duplicate-QUACK detection brings the resend). A false suspicion of a slow replica thus
    /// costs resends only of what nobody has acknowledged yet.
    fn resend_proactively(&mut self, now: Time, seq: u64) {
        if self.remotes.unsuspected_holder(seq) {
            return;
        }
        let (remotes, peers) = (&self.remotes, &self.peers);
        let suspected =
            |s: u16, r: u16| peers[PeerIdx::new(s)].contact.suspected || remotes[RemoteIdx::new(r)].contact.suspected;
        let Some((round, recv)) = self.plan.proactive_resend(seq, suspected) else { return };
        let Some(m) = self.out.msgs.get_mut(seq) else { return };
        if m.loss.as_ref().is_some_and(|l| l.round >= round) {
            return;
        }
        m.loss = Some(Box::new(LossTrack { round, round_at: now, ahead: self.out.released_bytes, counts: Vec::new() }));
        let number = resend_number(round);
        let p = Pending::new(seq, RecordKind::Resend { number }, &m.payload, m.proof.get());
        self.links.remote_mut(RemoteIdx::new(recv)).queue.push_back(p);
        self.stats.resends += 1;
        self.events.push_back(Event::Resent { seq, number });
    }

    /// Handles the ack report that remote replica `j` piggybacked on a frame.
    pub(super) fn on_remote_report(&mut self, now: Time, j: RemoteIdx, report: AckReport) {
        // A receiver may legitimately hold messages this replica's application has not
        // submitted yet (replicas commit at different times); only what was submitted
        // here counts. Inflated acks are thereby clamped, and the f+1 threshold bounds them.
        let next = report.next.min(self.out.next_submit);
        let advanced = self.remotes.ack(j, now, next);
        if let Some(q) = self.out.quack.update(j.get(), next) {
            self.on_quack(now, q);
        } else if advanced {
            self.release(now);
        }
        self.remotes[j].report = report;
        if self.plan.strategy() == Strategy::Picsou {
            self.detect_losses(now, j);
        }
    }

    /// The QUACK advanced to `q`: free resend state below it and open the window.
    fn on_quack(&mut self, now: Time, q: u64) {
        let out = &mut self.out;
        let old = out.msgs.base();
        let bytes = out.offsets.bytes(old, q);
        if old < out.released {
            out.released_bytes -= out.offsets.bytes(old, q.min(out.released));
        }
        let interval = self.remotes.min_srtt().unwrap_or_default().max(self.params.ack_interval);
        out.delivery.quacked(now, bytes, interval);
        out.msgs.advance_to(q);
        out.released = out.released.max(q);
        // Records for QUACKed messages are useless; a blocked or dead peer's queue would
        // otherwise grow with the stream.
        for link in self.links.remotes_mut() {
            while link.queue.front().is_some_and(|p| p.seq < q) {
                link.queue.pop_front();
            }
        }
        self.events.push_back(Event::Quacked { up_to: q });
        self.release(now);
    }

    /// Counts remote replica `j`'s latest report towards duplicate-QUACKs.
    fn detect_losses(&mut self, now: Time, j: RemoteIdx) {
        let receiver = &self.remotes[j];
        let report = &receiver.report;
        let start = self.out.quack.value().max(report.next);
        let end = report.phi_end().min(self.out.released);
        if start >= end {
            return;
        }
        let highest = report.highest_covered();
        let srtt = receiver.contact.rtt.srtt();
        let rto = receiver.contact.rtt.rto();
        let max_rto = self.params.max_rto;
        let threshold = self.params.dup_threshold;
        let n_remote = self.layout.n_remote();
        let mut escalate = std::mem::take(&mut self.scratch.escalate);
        for k in report.missing_in(start, end) {
            let Some(m) = self.out.msgs.get_mut(k) else { continue };
            let Some(released_at) = m.released_at else { continue };
            let (round, base, ahead) =
                m.loss.as_ref().map_or((0, released_at, m.ahead), |l| (l.round, l.round_at, l.ahead));
            // Quick path: the receiver of the current round sees later messages but not k.
            // Other receivers get k only through forwarding, which may lag behind; their
            // reports count after a full RTO.
            let gap = highest.is_some_and(|h| h > k);
            let quick = gap && self.plan.pair_receiver(k, round) == Some(j.index());
            let mut wait: Duration = if quick { srtt } else { rto } + self.out.delivery.drain(ahead, max_rto);
            // Past the rotation (every pair's copy was lost, which reliable links between
            // correct replicas never do: a transport dropped them), back off per lap.
            // (Round 0 is always in the first lap: no schedule lookup on the common path.)
            let lap = if round == 0 { 0 } else { round / self.plan.rotation_len(k).max(1) };
            if lap > 0 {
                wait = (wait * (1u32 << lap.min(6))).min(max_rto.max(wait));
            }
            if now < base + wait {
                continue;
            }
            let loss = m.loss.get_or_insert_with(|| {
                Box::new(LossTrack { round: 0, round_at: released_at, ahead: m.ahead, counts: Vec::new() })
            });
            if loss.counts.is_empty() {
                loss.counts.resize(n_remote, 0);
            }
            let count = &mut loss.counts[j.get()];
            *count = count.saturating_add(1);
            if *count < threshold {
                continue;
            }
            let stake = self.remotes.missing_stake(k, &loss.counts, threshold);
            // If some receivers already hold k, it is being forwarded: give forwarding time
            // (a receiver that lies about holding it only delays the resend, by 4 RTOs).
            let holding = self.remotes.holding_stake(k);
            if stake > self.remotes.f() && (holding == 0 || now >= base + rto * 4) {
                escalate.push(k);
            }
        }
        for &k in &escalate {
            self.escalate(now, k);
        }
        escalate.clear();
        self.scratch.escalate = escalate;
    }

    /// Message `k` is definitely lost as of this round: advance its rotation and, if the next
    /// pair is this replica's, resend it.
    fn escalate(&mut self, now: Time, k: u64) {
        if self.out.msgs.get(k).and_then(|m| m.loss.as_ref()).is_some_and(|l| l.round == 0) {
            self.note_failed_first_send(now, k);
        }
        let released_bytes = self.out.released_bytes;
        let Some(m) = self.out.msgs.get_mut(k) else { return };
        let len = record_len(&m.payload, m.proof.get());
        let Some(loss) = m.loss.as_mut() else { return };
        loss.round += 1;
        loss.round_at = now;
        loss.ahead = released_bytes;
        loss.counts.fill(0);
        let round = loss.round;
        if self.hooks.skips_resend(now, k) {
            return;
        }
        if let Some(r) = self.plan.resend_dest(k, round) {
            let number = resend_number(round);
            let p = Pending { seq: k, kind: RecordKind::Resend { number }, len };
            self.links.remote_mut(RemoteIdx::new(r)).queue.push_back(p);
            self.stats.resends += 1;
            self.events.push_back(Event::Resent { seq: k, number });
        }
    }

    /// OTU baseline: a message not QUACKed `otu_timeout · a` after release is resent by sender
    /// replica `a mod n` (GeoBFT's remote leader takeover, without a resend cap).
    pub(super) fn otu_check(&mut self, now: Time) {
        let Some(at) = self.timers.otu else { return };
        if now < at {
            return;
        }
        let timeout = self.params.otu_timeout;
        let q = self.out.quack.value();
        let hi = self.out.released.min(q + 4096);
        let me = self.local.index;
        for k in q..hi {
            let Some(m) = self.out.msgs.get_mut(k) else { continue };
            let Some(rel) = m.released_at else { continue };
            let attempt = (now.saturating_since(rel).as_nanos() / timeout.as_nanos().max(1)) as u64;
            if attempt == 0 || attempt <= m.otu_attempts {
                continue;
            }
            m.otu_attempts = attempt;
            if self.plan.otu_takeover(attempt) != me || self.hooks.skips_resend(now, k) {
                continue;
            }
            let number = u16::try_from(attempt).unwrap_or(u16::MAX);
            let p = Pending::new(k, RecordKind::Resend { number }, &m.payload, m.proof.get());
            for &r in self.plan.otu_out_set() {
                self.links.remote_mut(RemoteIdx::new(r)).queue.push_back(p);
                self.stats.resends += 1;
            }
            self.events.push_back(Event::Resent { seq: k, number });
        }
        let q = self.out.quack.value();
        self.timers.otu = (q < self.out.released).then(|| now + timeout / 4);
        if self.timers.otu.is_none() && self.out.released < self.out.next_submit {
            self.timers.otu = Some(now + timeout / 4);
        }
    }
}
