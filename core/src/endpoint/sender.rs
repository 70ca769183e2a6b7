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
//! Distrust short-cuts detection. A replica is distrusted while it is silent for its silence
//! limit (live replicas send keep-alives) or convicted from failed first copies (`evidence`:
//! a sender that failed with receivers of more than f_r stake, or a receiver that failed with
//! senders of more than f_s stake, is provably faulty). A message whose first pair has a
//! distrusted replica goes at once to a pair drawn evenly from the trusted ones
//! (`reassign_if_needed`), and loss detection's rounds skip pairs with a distrusted replica, so
//! f faulty replicas per side cost what f crashed ones cost once they are detected: their
//! share of first copies moves to correct pairs instead of waiting for detection message by
//! message (which would cap throughput at about one φ-list per detection delay).
//!
//! What f Byzantine replicas can do against this: make pairs that contain one of them fail
//! (never convicting a correct replica, see `evidence`); claim to hold messages (a claim delays
//! a resend by at most 4 RTOs, and reassignment trusts only claims of more than f_r stake);
//! report low or slowly advancing acks (pacing leaves out the lowest f_r stake of acks, see
//! `RemoteTracker::pace_base`).

use std::time::Duration;

use bytes::Bytes;

use super::index::{Dest, PeerIdx, RemoteIdx};
use super::link::{Pending, record_len};
use super::outgoing::{LossTrack, OutMsg};
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
        // Picsou senders keep every message: any of them may be drawn to send a message whose
        // first pair has a replica known to be down or faulty (`reassign_if_needed`).
        if stores || self.plan.strategy() == Strategy::Picsou {
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
        let base =
            self.remotes.pace_base(now, self.out.quack.value(), self.params.suspect_after, self.params.send_window);
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
                self.reassign_if_needed(now, seq);
            }
        }
    }

    /// When a replica becomes distrusted, messages already in flight whose copy went through it
    /// are sent again (new messages are handled at release). Called from `handle_timeout`.
    pub(super) fn check_suspicions(&mut self, now: Time) {
        if self.refresh_suspicions(now) {
            self.resend_in_flight(now);
        }
    }

    /// After a replica became distrusted: every message in flight whose current copy went
    /// through it is sent again now, to a trusted pair, rather than after loss detection.
    fn resend_in_flight(&mut self, now: Time) {
        for seq in self.out.quack.value()..self.out.released {
            let Some(m) = self.out.msgs.get(seq) else { continue };
            let (reassigned, copy) = m.loss.as_deref().map_or((false, None), |l| (l.reassigned, Some(l.copy)));
            if !reassigned {
                self.reassign_if_needed(now, seq);
            }
            let Some(l) = self.out.msgs.get(seq).and_then(|m| m.loss.as_deref()) else { continue };
            let unchanged = l.reassigned == reassigned;
            if unchanged && copy.is_some_and(|(s, r)| self.distrusted_pair(s, r)) && !self.remotes.vouched_holder(seq) {
                self.escalate(now, seq, false);
            }
        }
    }

    /// Recomputes which replicas are distrusted — silent for their silence limit (crashed or
    /// cut off) or convicted from failed pairs (see `evidence`) — and the trusted lists that
    /// reassignment draws from; returns whether some replica became distrusted. Picsou only.
    fn refresh_suspicions(&mut self, now: Time) -> bool {
        if self.plan.strategy() != Strategy::Picsou {
            return false;
        }
        self.convictions.expire(now);
        let me = self.layout.me();
        let mut changed = false;
        let mut any = false;
        for slot in 0..self.layout.n_dest() {
            let d = self.layout.dest(slot);
            let s = d != Dest::Peer(me) && (self.silent(now, d) || self.convictions.is_convicted(now, slot));
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
        let (remotes, peers) = (&self.remotes, &self.peers);
        self.trusted_receivers.clear();
        self.trusted_receivers
            .extend((0..self.layout.n_remote() as u16).filter(|&j| !remotes[RemoteIdx::new(j)].contact.suspected));
        self.trusted_senders.clear();
        self.trusted_senders
            .extend((0..self.layout.n_local() as u16).filter(|&s| !peers[PeerIdx::new(s)].contact.suspected));
        changed
    }

    /// Whether pair (sender `s` of this RSM, receiver `r` of the other) has a distrusted replica.
    fn distrusted_pair(&self, s: u16, r: u16) -> bool {
        self.peers[PeerIdx::new(s)].contact.suspected || self.remotes[RemoteIdx::new(r)].contact.suspected
    }

    /// A message whose first pair has a distrusted replica is surely lost: it goes at once to a
    /// pair drawn uniformly from the trusted ones (`Plan::reassign`), so the load of the failed
    /// pairs spreads over all correct pairs. Every sender draws the same pair (its view of who
    /// is distrusted permitting); the one drawn sends, once. Not if trusted holders vouch for
    /// the message (`RemoteTracker::vouched_holder`): a copy got through.
    fn reassign_if_needed(&mut self, now: Time, seq: u64) {
        let Some((s0, r0)) = self.plan.pair(seq, 0) else { return };
        if !self.distrusted_pair(s0, r0) || self.remotes.vouched_holder(seq) {
            return;
        }
        let Some((t, s, r)) = self.plan.reassign(seq, mix(seq), &self.trusted_senders, &self.trusted_receivers) else {
            return;
        };
        let released_bytes = self.out.released_bytes;
        let Some(m) = self.out.msgs.get_mut(seq) else { return };
        match m.loss.as_mut() {
            Some(l) if l.reassigned => return,
            Some(l) => {
                l.round_at = now;
                l.ahead = released_bytes;
                l.counts.fill(0);
                l.copy = (s, r);
                l.reassigned = true;
            }
            None => {
                m.loss = Some(Box::new(LossTrack {
                    round: 0,
                    round_at: now,
                    ahead: released_bytes,
                    counts: Vec::new(),
                    copy: (s, r),
                    reassigned: true,
                }));
            }
        }
        if s != self.local.index || self.hooks.skips_resend(now, seq) {
            return;
        }
        let Some(number) = self.plan.wire_number(t) else { return };
        let p = Pending::new(seq, RecordKind::Resend { number }, &m.payload, m.proof.get());
        self.links.remote_mut(RemoteIdx::new(r)).queue.push_back(p);
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
        // The arrival frontier: the highest seq that receivers of more than f_r stake hold (so
        // at least one correct), holes or not. Its pace is the delivery rate that loss
        // detection's waits use; the QUACK's pace would drop to nothing behind one lost message
        // and stretch every wait while the stream is stalled — exactly when detection must be
        // quick.
        let held_to = report.highest_covered().map_or(report.next, |h| h.saturating_add(1)).min(self.out.next_submit);
        let old_frontier = self.out.frontier.value();
        if let Some(f) = self.out.frontier.update(j.get(), held_to) {
            let bytes = self.out.offsets.bytes(old_frontier.max(self.out.msgs.base()), f);
            let interval = self.remotes.min_srtt().unwrap_or_default().max(self.params.ack_interval);
            self.out.delivery.quacked(now, bytes, interval);
        }
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
        if old < out.released {
            out.released_bytes -= out.offsets.bytes(old, q.min(out.released));
        }
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
            let Some(m) = self.out.msgs.get(k) else { continue };
            let Some(released_at) = m.released_at else { continue };
            let (round, base, ahead, copy_to) = match m.loss.as_deref() {
                Some(l) => (l.round, l.round_at, l.ahead, Some(l.copy.1)),
                None => (0, released_at, m.ahead, None),
            };
            // Quick path: the receiver of the latest copy sees later messages but not k.
            // Other receivers get k only through forwarding, which may lag behind; their
            // reports count after a full RTO.
            let gap = highest.is_some_and(|h| h > k);
            let quick = gap && copy_to.or_else(|| self.plan.pair(k, 0).map(|(_, r)| r)).is_some_and(|r| r == j.index());
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
            let first = self.plan.pair(k, 0).unwrap_or((0, 0));
            let Some(m) = self.out.msgs.get_mut(k) else { continue };
            let loss = m.loss.get_or_insert_with(|| {
                Box::new(LossTrack {
                    round: 0,
                    round_at: released_at,
                    ahead: m.ahead,
                    counts: Vec::new(),
                    copy: first,
                    reassigned: false,
                })
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
            // If a trusted receiver holds k, it is probably being forwarded: give forwarding
            // time, at most 4 RTOs (a holder that lies or never forwards delays each message by
            // that much, until its failed pairs convict it).
            if stake > self.remotes.f() && (!self.remotes.trusted_holder(k) || now >= base + rto * 4) {
                escalate.push(k);
            }
        }
        for &k in &escalate {
            self.escalate(now, k, true);
        }
        escalate.clear();
        self.scratch.escalate = escalate;
        self.apply_convictions(now);
    }

    /// Message `k`'s latest copy is lost (`evidence`: found by loss detection, which counts
    /// against the pair that carried it; otherwise the pair became distrusted): advance its
    /// rotation to the next pair without a distrusted replica and, if that pair's sender is
    /// this replica, resend it.
    fn escalate(&mut self, now: Time, k: u64, evidence: bool) {
        let Some(loss) = self.out.msgs.get(k).and_then(|m| m.loss.as_deref()) else { return };
        let (round, (s, r), reassigned) = (loss.round, loss.copy, loss.reassigned);
        // Only first sends count as evidence: every sender knows who sends them, at release.
        // Who sends a later copy depends on each sender's own loss detection, whose reports and
        // timing differ (see `evidence`).
        if evidence && round == 0 && !reassigned {
            self.record_failure(now, s, r);
        }
        let next = self.plan.next_trusted_round(k, round, |s, r| !self.distrusted_pair(s, r));
        let Some((p, s, r)) = self.plan.round_pair(k, next) else { return };
        let released_bytes = self.out.released_bytes;
        let Some(m) = self.out.msgs.get_mut(k) else { return };
        let len = record_len(&m.payload, m.proof.get());
        let Some(loss) = m.loss.as_mut() else { return };
        loss.round = next;
        loss.round_at = now;
        loss.ahead = released_bytes;
        loss.counts.fill(0);
        loss.copy = (s, r);
        if s != self.local.index || self.hooks.skips_resend(now, k) {
            return;
        }
        let Some(number) = self.plan.wire_number(p) else { return };
        let p = Pending { seq: k, kind: RecordKind::Resend { number }, len };
        self.links.remote_mut(RemoteIdx::new(r)).queue.push_back(p);
        self.stats.resends += 1;
        self.events.push_back(Event::Resent { seq: k, number });
    }

    /// Records that the first copy of pair (`s`, `r`) was lost, and convicts the replicas the
    /// evidence proves faulty (see `evidence`). This replica never convicts itself.
    fn record_failure(&mut self, now: Time, s: u16, r: u16) {
        self.failures.record(now, s, r);
        let sender = (s != self.local.index && self.failures.sender_proven(s)).then_some(Dest::Peer(PeerIdx::new(s)));
        let receiver = self.failures.receiver_proven(r).then_some(Dest::Remote(RemoteIdx::new(r)));
        for d in [sender, receiver].into_iter().flatten() {
            let slot = self.layout.slot(d);
            if self.convictions.is_convicted(now, slot) {
                continue;
            }
            self.convictions.convict(now, slot);
            match d {
                Dest::Remote(j) => self.failures.clear_receiver(j.index()),
                Dest::Peer(p) => self.failures.clear_sender(p.get() as u16),
            }
            self.distrust_changed = true;
        }
    }

    /// Applies new convictions once per input (not per conviction), so that every message in
    /// flight is reassigned against the same, complete view of who is distrusted.
    fn apply_convictions(&mut self, now: Time) {
        if std::mem::take(&mut self.distrust_changed) && self.refresh_suspicions(now) {
            self.resend_in_flight(now);
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

/// Where a reassigned message goes, as a fraction of 2^64: the fractional part of `seq / φ` (a
/// Weyl sequence). The same on every replica, so all senders draw the same pair, and of low
/// discrepancy: the messages of one failed pair (seqs one schedule period apart) step evenly
/// around the trusted pairs instead of landing on them at random, which keeps every link's
/// share of the resends even within a window of a few dozen messages.
fn mix(seq: u64) -> u64 {
    seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}
