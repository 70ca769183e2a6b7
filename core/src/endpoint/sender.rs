//! The sending half: submitted messages, flow control, QUACKs, duplicate-QUACK loss detection, resends.
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

use super::plan::resend_number;
use super::{Endpoint, Event, LossTrack, OutMsg, Pending, StoredProof, SubmitError, record_len};
use crate::adversary::Behavior;
use crate::config::Strategy;
use crate::time::Time;
use crate::wire::{AckReport, RecordKind};

impl Endpoint {
    /// Hands the engine message `seq` that the local RSM committed for the other RSM. Every
    /// replica of the local RSM calls this for every message, in order from 0; `proof` shows the
    /// local RSM committed it (empty under CFT).
    pub fn submit(&mut self, now: Time, seq: u64, payload: Bytes, proof: Bytes) -> Result<(), SubmitError> {
        if seq != self.next_submit {
            return Err(SubmitError::OutOfOrder { expected: self.next_submit, got: seq });
        }
        if payload.len() > self.params.max_payload_bytes {
            return Err(SubmitError::PayloadTooLarge { len: payload.len(), max: self.params.max_payload_bytes });
        }
        if self.submit_capacity() == 0 {
            return Err(SubmitError::Backpressure {
                seq,
                quack: self.quack.value(),
                max_buffered: self.params.max_buffered,
            });
        }
        self.next_submit += 1;
        self.tx_offsets.push(payload.len() as u64);
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
            let _ = self.out.insert(seq, msg);
        }
        // If an earlier message still waits for the window, so does this one: the window
        // opens only on reports (which release) or with time (`handle_timeout` releases), so
        // the per-message cost of recomputing it is skipped.
        if self.released == seq {
            self.release(now);
        }
        Ok(())
    }

    /// Moves messages into the send window and queues their first copies.
    pub(super) fn release(&mut self, now: Time) {
        // The window is bounded from the slowest active receiver in messages and in bytes,
        // and never beyond what a receiver retains for repairs: a receiver that far behind
        // its peers could no longer be repaired by them.
        let base = self.pace_base(now);
        let window = self.params.send_window.min(self.params.retention);
        let window_bytes = self.params.send_window_bytes.min(self.params.retention_bytes as u64);
        let limit = self.next_submit.min(base.saturating_add(window));
        let silent = self.behavior == Some(Behavior::Silent);
        // Sizes below the pace base are no longer needed (nor, to bound memory with a receiver
        // excluded from pacing, below the oldest message that can still be buffered).
        let floor = self.next_submit.saturating_sub(self.params.max_buffered + self.params.send_window);
        self.tx_offsets.trim_below(base.max(floor));
        while self.released < limit {
            let seq = self.released;
            let size = self.tx_offsets.size(seq);
            if self.released_bytes > 0 && self.released_bytes + size > self.params.send_window_bytes {
                break;
            }
            if seq > base && self.tx_offsets.bytes(base, seq) + size > window_bytes {
                break;
            }
            let ahead = self.released_bytes;
            self.released_bytes += size;
            self.released += 1;
            let Some(m) = self.out.get_mut(seq) else { continue };
            m.released_at = Some(now);
            m.ahead = ahead;
            if self.plan.strategy() == Strategy::Otu && self.next_otu_check.is_none() {
                self.next_otu_check = Some(now + self.params.otu_timeout);
            }
            if silent {
                continue;
            }
            if self.plan.strategy() == Strategy::Picsou {
                if let Some(r) = m.first {
                    self.queues[usize::from(r)].push_back(Pending::new(
                        seq,
                        RecordKind::First,
                        &m.payload,
                        m.proof.get(),
                    ));
                    self.stats.first_sends += 1;
                }
            } else {
                let p = Pending::new(seq, RecordKind::First, &m.payload, m.proof.get());
                for r in self.plan.first_dests(seq) {
                    self.queues[usize::from(r)].push_back(p);
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
        for seq in self.quack.value()..self.released {
            if self.out.get(seq).is_some() {
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
        for d in 0..self.last_heard.len() {
            let s = if d < self.n_remote {
                self.receiver_suspected(now, d as u16)
            } else {
                self.sender_suspected(now, (d - self.n_remote) as u16)
            };
            changed |= s && !self.suspected[d];
            self.suspected[d] = s;
        }
        self.any_suspected = self.suspected.iter().any(|s| *s);
        changed
    }

    /// When the next replica may become suspected (for `poll_timeout`).
    pub(super) fn next_suspicion(&self) -> Option<Time> {
        if self.plan.strategy() != Strategy::Picsou {
            return None;
        }
        let me = self.n_remote + usize::from(self.local.index);
        (0..self.last_heard.len())
            .filter(|&d| d != me && !self.suspected[d])
            .map(|d| self.last_heard[d] + self.silence_limit(d) + Duration::from_nanos(1))
            .min()
    }

    /// Whether replica `r` of the other RSM is suspected: silent for `suspect_after` (or
    /// longer, see `silence_limit`).
    fn receiver_suspected(&self, now: Time, r: u16) -> bool {
        self.silent(now, usize::from(r))
    }

    /// Whether sender replica `s` of this RSM is suspected: silent for `suspect_after`, or,
    /// in a Byzantine-tolerant RSM, failing its first sends far more often than the others (a
    /// Byzantine sender that stays silent in its duties, or forges, while answering
    /// keep-alives). In a crash-tolerant RSM a replica that answers follows the protocol, so
    /// its failed first sends were merely slow (a loaded replica's queues) or lost, which
    /// duplicate-QUACK detection recovers message by message; suspecting it would resend
    /// every message in flight that it sent first.
    fn sender_suspected(&self, now: Time, s: u16) -> bool {
        if s == self.local.index {
            return false;
        }
        let i = usize::from(s);
        if self.silent(now, self.n_remote + i) {
            return true;
        }
        if !self.local_bft {
            return false;
        }
        let score = self.first_send_failures[i];
        let total: f64 = self.first_send_failures.iter().sum();
        score >= 16.0 && score * self.n_local as f64 >= 1.5 * total
    }

    /// Counts a failed first send against its sender (scores halve every second), unless its
    /// receiver is suspected, which explains the failure instead.
    fn note_failed_first_send(&mut self, now: Time, k: u64) {
        if !self.local_bft {
            return;
        }
        let Some((s, r)) = self.plan.pair(k, 0) else { return };
        if self.receiver_suspected(now, r) {
            return;
        }
        let dt = now.saturating_since(self.failures_at).as_secs_f64();
        if dt > 0.0 {
            let decay = 0.5f64.powf(dt);
            self.first_send_failures.iter_mut().for_each(|x| *x *= decay);
            self.failures_at = now;
        }
        self.first_send_failures[usize::from(s)] += 1.0;
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
        let held = (0..self.n_remote).any(|j| !self.suspected[j] && self.reports[j].covers(seq));
        if held {
            return;
        }
        let (flags, n_remote) = (&self.suspected, self.n_remote);
        let suspected = |s: u16, r: u16| flags[n_remote + usize::from(s)] || flags[usize::from(r)];
        let Some((round, recv)) = self.plan.proactive_resend(seq, suspected) else { return };
        let Some(m) = self.out.get_mut(seq) else { return };
        if m.loss.as_ref().is_some_and(|l| l.round >= round) {
            return;
        }
        m.loss = Some(Box::new(LossTrack { round, round_at: now, ahead: self.released_bytes, counts: Vec::new() }));
        let number = resend_number(round);
        let p = Pending::new(seq, RecordKind::Resend { number }, &m.payload, m.proof.get());
        self.queues[usize::from(recv)].push_back(p);
        self.stats.resends += 1;
        self.events.push_back(Event::Resent { seq, number });
    }

    /// The base of the send window: the QUACK, or the cumulative ack of the slowest *active*
    /// receiver if that is lower.
    ///
    /// Pacing to the slowest receiver keeps every correct receiver within `send_window` of
    /// the stream, hence within its peers' retention, so library-managed dissemination
    /// reaches every correct replica with bounded memory (without it, replicas slower than
    /// the f+1 that make the QUACK fall behind without bound and stall once their peers
    /// trimmed what they miss). A receiver stops counting once it is silent for
    /// `suspect_after` (crashed) or its ack has not advanced for ten times that (stuck, or
    /// withholding acks): a faulty receiver delays the stream by at most that long.
    fn pace_base(&self, now: Time) -> u64 {
        let quack = self.quack.value();
        let stuck_after = self.params.suspect_after * 10;
        let mut base = quack;
        for (j, &(ack, since)) in self.ack_progress.iter().enumerate() {
            if ack < base && !self.silent(now, j) && now.saturating_since(since) <= stuck_after {
                base = ack;
            }
        }
        base
    }

    /// Handles the ack report that remote replica `j` piggybacked on a frame.
    pub(super) fn on_remote_report(&mut self, now: Time, j: usize, report: AckReport) {
        // A receiver may legitimately hold messages this replica's application has not
        // transmitted yet (replicas commit at different times); only what was transmitted
        // here counts. Inflated acks are thereby clamped, and the f+1 threshold bounds them.
        let next = report.next.min(self.next_submit);
        let (prev, since) = self.ack_progress[j];
        let advanced = next > prev;
        if advanced {
            self.ack_progress[j] = (next, now);
        } else if next < prev {
            // The receiver restarted from an older checkpoint: pace to it again once it makes
            // progress (until then it counts as stuck, as before its restart).
            self.ack_progress[j] = (next, since);
        }
        if let Some(q) = self.quack.update(j, next) {
            self.on_quack(now, q);
        } else if advanced {
            self.release(now);
        }
        self.reports[j] = report;
        if self.plan.strategy() == Strategy::Picsou {
            self.detect_losses(now, j);
        }
    }

    /// The QUACK advanced to `q`: free resend state below it and open the window.
    fn on_quack(&mut self, now: Time, q: u64) {
        let old = self.out.base();
        let bytes = self.tx_offsets.bytes(old, q);
        if old < self.released {
            self.released_bytes -= self.tx_offsets.bytes(old, q.min(self.released));
        }
        let interval = self.rtt.iter().map(|r| r.srtt()).min().unwrap_or_default().max(self.params.ack_interval);
        self.delivery.quacked(now, bytes, interval);
        self.out.advance_to(q);
        self.released = self.released.max(q);
        // Records for QUACKed messages are useless; a blocked or dead peer's queue would
        // otherwise grow with the stream.
        for queue in &mut self.queues[..self.n_remote] {
            while queue.front().is_some_and(|p| p.seq < q) {
                queue.pop_front();
            }
        }
        self.events.push_back(Event::Quacked { up_to: q });
        self.release(now);
    }

    /// Counts remote replica `j`'s latest report towards duplicate-QUACKs.
    fn detect_losses(&mut self, now: Time, j: usize) {
        let report = &self.reports[j];
        let start = self.quack.value().max(report.next);
        let end = report.phi_end().min(self.released);
        if start >= end {
            return;
        }
        let highest = report.highest_covered();
        let srtt = self.rtt[j].srtt();
        let rto = self.rtt[j].rto();
        let max_rto = self.params.max_rto;
        let threshold = self.params.dup_threshold;
        let n_remote = self.n_remote;
        let mut escalate = std::mem::take(&mut self.escalate_scratch);
        for k in report.missing_in(start, end) {
            let Some(m) = self.out.get_mut(k) else { continue };
            let Some(released_at) = m.released_at else { continue };
            let (round, base, ahead) =
                m.loss.as_ref().map_or((0, released_at, m.ahead), |l| (l.round, l.round_at, l.ahead));
            // Quick path: the receiver of the current round sees later messages but not k.
            // Other receivers get k only through forwarding, which may lag behind; their
            // reports count after a full RTO.
            let gap = highest.is_some_and(|h| h > k);
            let quick = gap && self.plan.pair_receiver(k, round) == Some(j as u16);
            let mut wait: Duration = if quick { srtt } else { rto } + self.delivery.drain(ahead, max_rto);
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
            loss.counts[j] = loss.counts[j].saturating_add(1);
            if loss.counts[j] < threshold {
                continue;
            }
            let stake: u64 = loss
                .counts
                .iter()
                .zip(&self.reports)
                .zip(&self.remote_stakes)
                .filter(|((c, r), _)| **c >= threshold && !r.covers(k))
                .map(|(_, s)| *s)
                .sum();
            // If some receivers already hold k, it is being forwarded: give forwarding time
            // (a receiver that lies about holding it only delays the resend, by 4 RTOs).
            let holding: u64 =
                self.reports.iter().zip(&self.remote_stakes).filter(|(r, _)| r.covers(k)).map(|(_, s)| *s).sum();
            if stake > self.f_remote && (holding == 0 || now >= base + rto * 4) {
                escalate.push(k);
            }
        }
        for &k in &escalate {
            self.escalate(now, k);
        }
        escalate.clear();
        self.escalate_scratch = escalate;
    }

    /// Message `k` is definitely lost as of this round: advance its rotation and, if the next
    /// pair is this replica's, resend it.
    fn escalate(&mut self, now: Time, k: u64) {
        if self.out.get(k).and_then(|m| m.loss.as_ref()).is_some_and(|l| l.round == 0) {
            self.note_failed_first_send(now, k);
        }
        let Some(m) = self.out.get_mut(k) else { return };
        let len = record_len(&m.payload, m.proof.get());
        let Some(loss) = m.loss.as_mut() else { return };
        loss.round += 1;
        loss.round_at = now;
        loss.ahead = self.released_bytes;
        loss.counts.fill(0);
        let round = loss.round;
        if self.behavior == Some(Behavior::Silent) {
            return;
        }
        if let Some(r) = self.plan.resend_dest(k, round) {
            let number = resend_number(round);
            self.queues[usize::from(r)].push_back(Pending { seq: k, kind: RecordKind::Resend { number }, len });
            self.stats.resends += 1;
            self.events.push_back(Event::Resent { seq: k, number });
        }
    }

    /// OTU baseline: a message not QUACKed `otu_timeout · a` after release is resent by sender
    /// replica `a mod n` (GeoBFT's remote leader takeover, without a resend cap).
    pub(super) fn otu_check(&mut self, now: Time) {
        let Some(at) = self.next_otu_check else { return };
        if now < at {
            return;
        }
        let timeout = self.params.otu_timeout;
        let q = self.quack.value();
        let hi = self.released.min(q + 4096);
        let me = self.local.index;
        let silent = self.behavior == Some(Behavior::Silent);
        for k in q..hi {
            let Some(m) = self.out.get_mut(k) else { continue };
            let Some(rel) = m.released_at else { continue };
            let attempt = (now.saturating_since(rel).as_nanos() / timeout.as_nanos().max(1)) as u64;
            if attempt == 0 || attempt <= m.otu_attempts {
                continue;
            }
            m.otu_attempts = attempt;
            if silent || self.plan.otu_takeover(attempt) != me {
                continue;
            }
            let number = u16::try_from(attempt).unwrap_or(u16::MAX);
            let p = Pending::new(k, RecordKind::Resend { number }, &m.payload, m.proof.get());
            for &r in self.plan.otu_out_set() {
                self.queues[usize::from(r)].push_back(p);
                self.stats.resends += 1;
            }
            self.events.push_back(Event::Resent { seq: k, number });
        }
        self.next_otu_check = (self.quack.value() < self.released).then(|| now + timeout / 4);
        if self.next_otu_check.is_none() && self.released < self.next_submit {
            self.next_otu_check = Some(now + timeout / 4);
        }
    }
}
