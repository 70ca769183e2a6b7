//! The receiving half: validation, in-order exactly-once delivery, and dissemination inside
//! the receiving RSM.
//!
//! A record is accepted only if the plan assigns it to the replica that sent it (first sends
//! and resends from the other RSM; forwards and repairs from this RSM), it is not a duplicate,
//! and — when the sending RSM is Byzantine-tolerant — its proof verifies. Accepted messages are
//! held in a window keyed by seq and delivered strictly in order.
//!
//! With library-managed dissemination, a replica forwards each message it received first-hand
//! to its peers (a resent copy only to the peers whose latest report still lacks it, which fixes
//! the artifact's O(n) internal traffic per resend), and *repairs*: a peer whose report still
//! lacks a message this replica has held for `repair_delay` gets it sent directly. Repair is
//! what makes delivery reach every correct replica even when the first-hand receiver is
//! Byzantine and forwards to nobody, or to only some.
//!
//! The common case — a frame of first sends, every one of them new — is forwarded whole: its
//! record section goes to each peer unchanged behind a head of its own (see `wire`), so a
//! forward costs no copy and no hash of the records, however many peers there are. Any other
//! frame (a resend, a duplicate, a record refused) is forwarded record by record.

use std::time::Duration;

use super::{Endpoint, Event, Held, Misbehavior, Pending, QueuedSection};
use crate::ack::Insert;
use crate::adversary::Behavior;
use crate::config::Dissemination;
use crate::ids::ReplicaId;
use crate::time::Time;
use crate::wire::{AckReport, Record, RecordKind, RecordSection};

/// Most messages one repair pass sends to one peer.
const REPAIR_BATCH: u64 = 4096;

impl Endpoint {
    /// Handles the records of a frame from `from` (`cross`: from the other RSM) whose record
    /// section is `section`: stores them, forwards the new first-hand ones, delivers.
    pub(super) fn on_records(
        &mut self,
        now: Time,
        from: ReplicaId,
        cross: bool,
        records: Vec<Record>,
        section: RecordSection,
    ) {
        let count = records.len();
        let mut fresh = std::mem::take(&mut self.fresh_scratch);
        for rec in records {
            let (seq, kind) = (rec.seq, rec.kind);
            if self.on_record(now, from, cross, rec) {
                fresh.push((seq, kind));
            }
        }
        if self.params.dissemination == Dissemination::Library {
            if cross && self.plan.forwards() && self.behavior != Some(Behavior::NoRebroadcast) && !fresh.is_empty() {
                if fresh.len() == count && fresh.iter().all(|&(_, kind)| kind == RecordKind::First) {
                    self.forward_section(now, section, &fresh);
                } else {
                    for &(seq, kind) in &fresh {
                        self.forward_record(now, seq, kind);
                    }
                }
            }
            self.deliver_in_order();
        }
        fresh.clear();
        self.fresh_scratch = fresh;
    }

    /// Forwards every record of `section` (all new, first-hand, listed in `fresh`) to each
    /// peer that is not silent: as one shared section, or record by record to a peer for
    /// which single records already wait (sections leave before records, so this keeps each
    /// peer's forwards in arrival order; with crashed replicas, putting new sections ahead of
    /// the resent copies that deliveries wait for cost 7% of throughput in the simulator).
    fn forward_section(&mut self, now: Time, section: RecordSection, fresh: &[(u64, RecordKind)]) {
        let records = fresh.len() as u32;
        let mut mask = 0u64;
        for p in 0..self.n_local {
            let d = self.n_remote + p;
            if p == usize::from(self.local.index) || self.silent(now, d) {
                continue;
            }
            self.stats.forwards += u64::from(records);
            if !self.queues[d].is_empty() {
                // Single records wait for p (repairs, resent copies: often what its in-order
                // delivery waits for), and sections leave before them: these messages go
                // behind them one by one instead, so p gets everything in arrival order.
                for &(seq, _) in fresh {
                    self.queue_internal(now, p, seq, RecordKind::Forward);
                }
                continue;
            }
            // A peer blocked for that long loses its oldest queued sections (repairs cover
            // what they held).
            while self.section_records[d] + u64::from(records) > self.params.recv_window {
                let Some(old) = self.sections[d].pop_front() else { break };
                self.section_records[d] -= u64::from(old.records);
            }
            self.sections[d].push_back(QueuedSection { section: section.clone(), records, at: now });
            self.section_records[d] += u64::from(records);
            if p < 64 {
                mask |= 1 << p;
            }
        }
        // What repairs need to know: these peers were sent these messages now.
        if mask != 0 {
            for &(seq, _) in fresh {
                if let Some(h) = self.held.get_mut(seq) {
                    h.sent_to |= mask;
                    h.sent_at = now;
                }
            }
        }
    }

    /// Forwards new first-hand message `seq` (received as `kind`) to the peers that are not
    /// silent; a resent copy only to those whose latest report lacks it.
    fn forward_record(&mut self, now: Time, seq: u64, kind: RecordKind) {
        let resent = matches!(kind, RecordKind::Resend { .. });
        for p in 0..self.n_local {
            if p == usize::from(self.local.index) || self.silent(now, self.n_remote + p) {
                continue;
            }
            if resent && self.peer_reports[p].as_ref().is_some_and(|r| r.covers(seq)) {
                continue;
            }
            self.queue_internal(now, p, seq, RecordKind::Forward);
            self.stats.forwards += 1;
        }
    }

    /// Handles one record of a frame from `from` (`cross`: from the other RSM): true if it is
    /// new and now held (library-managed dissemination; the caller forwards and delivers) or
    /// handed to the application (application-managed).
    fn on_record(&mut self, now: Time, from: ReplicaId, cross: bool, rec: Record) -> bool {
        // Inside an RSM every record is a forward or a repair, whatever its kind byte: a
        // section forwarded unchanged keeps the kinds it crossed with.
        let allowed = if cross {
            self.plan.allows_incoming(rec.seq, rec.kind, from.index)
        } else {
            self.params.dissemination == Dissemination::Library
        };
        if !allowed {
            self.misbehaved(from, Misbehavior::Unscheduled { seq: rec.seq, kind: rec.kind });
            return false;
        }
        let seq = rec.seq;
        if self.window.contains(seq) {
            self.stats.duplicates += 1;
            return false;
        }
        if seq >= self.window.next().saturating_add(self.params.recv_window) {
            // A correct sender can be ahead of this replica (the QUACK only needs f+1 stake);
            // this replica catches up through repairs, so this is not misbehaviour.
            return false;
        }
        if self.verify_proofs
            && let Err(error) = self.verifier.verify(self.in_stream, seq, &rec.payload, &rec.proof)
        {
            self.misbehaved(from, Misbehavior::InvalidProof { seq, error });
            return false;
        }
        if self.window.insert(seq) != Insert::New {
            return false;
        }
        self.report_changed();
        match self.params.dissemination {
            Dissemination::Application => {
                if !cross {
                    return false;
                }
                self.stats.delivered += 1;
                self.events.push_back(Event::Received { seq, payload: rec.payload, proof: rec.proof });
            }
            Dissemination::Library => {
                self.held_bytes += rec.payload.len();
                let _ = self.held.insert(seq, Held::new(rec.payload, rec.proof, now));
            }
        }
        true
    }

    /// Delivers every held message from `deliver_next` on that is contiguous.
    fn deliver_in_order(&mut self) {
        let start = self.deliver_next;
        while let Some(h) = self.held.get(self.deliver_next) {
            self.events.push_back(Event::Deliver { seq: self.deliver_next, payload: h.payload.clone() });
            self.deliver_next += 1;
        }
        self.stats.delivered += self.deliver_next - start;
        if self.deliver_next != start {
            self.trim_held();
        }
    }

    /// Drops delivered messages beyond the retention limits (count and bytes).
    ///
    /// Messages are kept even once every peer reported holding them: a peer that restarts
    /// resumes from its last checkpoint, which may be older than what it reported before the
    /// crash, and catches up from what its peers retained.
    fn trim_held(&mut self) {
        let target = self.deliver_next.saturating_sub(self.params.retention);
        while self.held.base() < target
            || (self.held_bytes > self.params.retention_bytes && self.held.base() < self.deliver_next)
        {
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

    /// Queues a forward or repair of held message `seq` to peer `p`, bounding the queue: a
    /// peer blocked for that long loses its oldest queued records (repairs cover it later).
    fn queue_internal(&mut self, now: Time, p: usize, seq: u64, kind: RecordKind) {
        let d = self.n_remote + p;
        if self.queues[d].len() as u64 >= self.params.recv_window
            && let Some(old) = self.queues[d].pop_front()
        {
            self.internal_sent(old.seq);
        }
        let Some(h) = self.held.get_mut(seq) else { return };
        h.pending += 1;
        if p < 64 {
            h.sent_to |= 1 << p;
        }
        h.sent_at = now;
        self.queues[d].push_back(Pending::new(seq, kind, &h.payload, h.proof.get()));
    }

    /// A queued forward or repair of `seq` left its queue (sent or dropped).
    pub(super) fn internal_sent(&mut self, seq: u64) {
        if let Some(h) = self.held.get_mut(seq) {
            h.pending = h.pending.saturating_sub(1);
        }
    }

    /// Stores the report a peer of this RSM piggybacked (about the incoming stream).
    /// `was_silent`: the peer had been silent long enough to be suspected until this frame.
    /// Either that or a report going backwards (a restart from an older checkpoint) means what
    /// was sent to it before may be lost: it becomes repairable at once.
    pub(super) fn on_peer_report(&mut self, now: Time, p: usize, report: AckReport, was_silent: bool) {
        let regressed = self.peer_reports[p].as_ref().is_some_and(|old| report.next < old.next);
        if was_silent || regressed {
            self.peer_reset_at[p] = now;
        }
        self.peer_report_version[p] += 1;
        self.peer_reports[p] = Some(report);
    }

    /// How long after queuing message `h` to a peer this replica waits before repairing it to
    /// that peer again: long enough for a copy to cross a loaded FIFO link, doubling per repair.
    fn resend_wait(&self, h: &Held, delay: Duration) -> Duration {
        let base = (self.params.suspect_after * 2).max(delay * 4);
        base * (1u32 << h.repairs.min(4))
    }

    /// Library-managed dissemination: sends peers the messages their latest reports lack.
    ///
    /// Repairs must not race the forwarding they back up, nor each other: a peer lacking k is
    /// repaired by the holders of k one at a time, in ring order after the peer (holders known
    /// from their reports), the r-th holder waiting (r+1) repair delays after getting k. The
    /// delay is the longest of the configured `repair_delay`, twice the time forwards currently
    /// wait in this replica's queues, and the resend timeout of the link to the peer (its RTT
    /// with queueing: with large messages a forward spends far longer in transport and kernel
    /// buffers than in the engine). A peer is repaired at most once per report it sends, so a
    /// crashed peer costs one batch, not a stream; and a message this replica already sent to
    /// a peer is sent again only after [`Self::resend_wait`] (links are FIFO), unless the peer
    /// restarted or fell silent meanwhile — without that, every report a peer sent while a
    /// copy was in flight triggered another copy.
    pub(super) fn repair_peers(&mut self, now: Time) {
        if now < self.next_repair {
            return;
        }
        let base_delay = self.params.repair_delay.max(self.forward_delay.get() * 2);
        self.next_repair = now + base_delay / 2;
        if self.params.dissemination != Dissemination::Library || self.behavior == Some(Behavior::NoRebroadcast) {
            return;
        }
        let me = usize::from(self.local.index);
        let n = self.n_local;
        for p in 0..n {
            if p == me || self.repaired_version[p] == self.peer_report_version[p] {
                continue;
            }
            let Some(report) = self.peer_reports[p].as_ref() else { continue };
            // A forward to p may still be crossing a loaded link: wait for it at least as
            // long as a copy takes to get there.
            let delay = base_delay.max(self.peer_rtt[p].rto());
            let lo = report.next.max(self.held.base());
            let hi = self.held.end().min(lo + REPAIR_BATCH);
            let mut deferred = false;
            let mut repairs = std::mem::take(&mut self.repair_scratch);
            for k in report.missing_in(lo, hi) {
                let Some(h) = self.held.get(k) else { continue };
                let sent = p < 64 && h.sent_to & (1 << p) != 0 && h.sent_at >= self.peer_reset_at[p];
                if sent {
                    // Still on its way over a FIFO link, most likely.
                    if now < h.sent_at + self.resend_wait(h, delay) {
                        deferred = true;
                        continue;
                    }
                } else if now < h.at + delay {
                    // Later seqs mostly arrived later still: look again next pass.
                    deferred = true;
                    break;
                }
                // Holders of k strictly between p and this replica in ring order go first.
                let rank = (1..n)
                    .map(|step| (p + step) % n)
                    .take_while(|&q| q != me)
                    .filter(|&q| self.peer_reports[q].as_ref().is_some_and(|r| r.covers(k)))
                    .count() as u32;
                if now < h.at + delay * (rank + 1) {
                    deferred = true;
                    continue;
                }
                repairs.push(k);
            }
            for &k in &repairs {
                self.queue_internal(now, p, k, RecordKind::Repair);
                if let Some(h) = self.held.get_mut(k) {
                    h.repairs = h.repairs.saturating_add(1);
                }
                self.stats.repairs += 1;
            }
            repairs.clear();
            self.repair_scratch = repairs;
            if !deferred {
                self.repaired_version[p] = self.peer_report_version[p];
            }
        }
    }

    /// When the next repair pass is useful.
    pub(super) fn next_repair_deadline(&self) -> Option<Time> {
        let me = usize::from(self.local.index);
        let pending = (0..self.n_local).any(|p| {
            p != me && self.peer_reports[p].is_some() && self.repaired_version[p] != self.peer_report_version[p]
        });
        (pending && self.params.dissemination == Dissemination::Library).then_some(self.next_repair)
    }

    /// The incoming window changed: the report is rebuilt before the next frame.
    pub(super) fn report_changed(&mut self) {
        self.report_version += 1;
    }
}
