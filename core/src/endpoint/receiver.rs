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

use bytes::Bytes;

use super::incoming::Held;
use super::index::{Dest, PeerIdx};
use super::link::{Pending, QueuedSection};
use super::{Endpoint, Event, Misbehavior};
use crate::ack::Insert;
use crate::config::Dissemination;
use crate::ids::ReplicaId;
use crate::time::Time;
use crate::wire::{RECORD_HEADER_LEN, Record, RecordKind, RecordSection};

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
        let section_len = section.bytes.len();
        let events_before = self.events.len();
        let mut fresh = std::mem::take(&mut self.scratch.fresh);
        let mut kept = 0usize;
        for rec in records {
            let (seq, kind) = (rec.seq, rec.kind);
            let size = RECORD_HEADER_LEN + rec.payload.len() + rec.proof.len();
            let misbehaviors = self.stats.misbehaviors;
            if self.on_record(now, from, cross, rec) {
                fresh.push((seq, kind));
                kept += size;
            }
            // A record that proved the peer faulty ends the frame: the rest is not checked.
            if self.stats.misbehaviors != misbehaviors && self.is_quarantined(from) {
                break;
            }
        }
        // Records are slices of their frame. When what is kept is less than half of the frame
        // (duplicates, records refused, records beyond the window), it is copied out, so a peer
        // cannot pin a large frame in memory with a small message: retained messages hold at
        // most twice their own bytes.
        let compact = !fresh.is_empty() && kept.saturating_mul(2) < section_len;
        if compact {
            self.compact_fresh(&fresh, events_before);
        }
        if self.params.dissemination == Dissemination::Library {
            if cross && self.plan.forwards() && !fresh.is_empty() && !self.hooks.skips_rebroadcast(now) {
                if !compact && fresh.len() == count && fresh.iter().all(|&(_, kind)| kind == RecordKind::First) {
                    self.forward_section(now, section, &fresh);
                } else {
                    for &(seq, kind) in &fresh {
                        self.forward_record(now, seq, kind);
                    }
                }
            }
            let delivered = self.inc.deliver_in_order(&mut self.events);
            self.stats.delivered += delivered;
            if delivered > 0 {
                self.inc.trim(self.params.retention, self.params.retention_bytes);
            }
        }
        fresh.clear();
        self.scratch.fresh = fresh;
    }

    /// Replaces the kept messages of a frame (held, or handed over in the events from
    /// `events_from` on) by copies, releasing the frame.
    fn compact_fresh(&mut self, fresh: &[(u64, RecordKind)], events_from: usize) {
        match self.params.dissemination {
            Dissemination::Library => {
                for &(seq, _) in fresh {
                    self.inc.compact(seq);
                }
            }
            Dissemination::Application => {
                for e in self.events.range_mut(events_from..) {
                    if let Event::Received { payload, proof, .. } = e {
                        *payload = Bytes::copy_from_slice(payload);
                        *proof = Bytes::copy_from_slice(proof);
                    }
                }
            }
        }
    }

    /// The peers that forwards and repairs go to: every other replica of this RSM.
    fn others(&self) -> impl Iterator<Item = PeerIdx> + use<> {
        let me = self.layout.me();
        self.layout.peers().filter(move |&p| p != me)
    }

    /// Forwards every record of `section` (all new, first-hand, listed in `fresh`) to each
    /// peer that is not silent: as one shared section, or record by record to a peer for
    /// which single records already wait (sections leave before records, so this keeps each
    /// peer's forwards in arrival order; with crashed replicas, putting new sections ahead of
    /// the resent copies that deliveries wait for cost 7% of throughput in the simulator).
    fn forward_section(&mut self, now: Time, section: RecordSection, fresh: &[(u64, RecordKind)]) {
        let records = fresh.len() as u32;
        let mut mask = 0u64;
        for p in self.others() {
            if self.peer_silent(now, p) {
                continue;
            }
            self.stats.forwards += u64::from(records);
            if !self.links[Dest::Peer(p)].queue.is_empty() {
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
            let link = &mut self.links[Dest::Peer(p)];
            while link.section_records + u64::from(records) > self.params.recv_window {
                let Some(old) = link.sections.pop_front() else { break };
                link.section_records -= u64::from(old.records);
            }
            link.sections.push_back(QueuedSection { section: section.clone(), records, at: now });
            link.section_records += u64::from(records);
            if p.get() < 64 {
                mask |= 1 << p.get();
            }
        }
        // What repairs need to know: these peers were sent these messages now.
        if mask != 0 {
            for &(seq, _) in fresh {
                if let Some(h) = self.inc.held.get_mut(seq) {
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
        for p in self.others() {
            if self.peer_silent(now, p) {
                continue;
            }
            if resent && self.peers.holds(p, seq) {
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
        if self.inc.window.contains(seq) {
            self.stats.duplicates += 1;
            return false;
        }
        if seq >= self.inc.window.next().saturating_add(self.params.recv_window) {
            // A correct sender can be ahead of this replica (the QUACK only needs f+1 stake);
            // this replica catches up through repairs, so this is not misbehaviour.
            return false;
        }
        let inc = &self.inc;
        if inc.verify_proofs
            && let Err(error) = inc.verifier.verify(inc.stream, seq, &rec.payload, &rec.proof)
        {
            self.misbehaved(from, Misbehavior::InvalidProof { seq, error });
            return false;
        }
        if self.inc.window.insert(seq) != Insert::New {
            return false;
        }
        self.inc.changed();
        match self.params.dissemination {
            Dissemination::Application => {
                if !cross {
                    return false;
                }
                self.stats.delivered += 1;
                self.events.push_back(Event::Received { seq, payload: rec.payload, proof: rec.proof });
            }
            Dissemination::Library => self.inc.hold(now, seq, rec.payload, rec.proof),
        }
        true
    }

    /// Queues a forward or repair of held message `seq` to peer `p`, bounding the queue: a
    /// peer blocked for that long loses its oldest queued records (repairs cover it later).
    fn queue_internal(&mut self, now: Time, p: PeerIdx, seq: u64, kind: RecordKind) {
        let link = &mut self.links[Dest::Peer(p)];
        if link.queue.len() as u64 >= self.params.recv_window
            && let Some(old) = link.queue.pop_front()
        {
            self.inc.internal_sent(old.seq);
        }
        let Some(h) = self.inc.held.get_mut(seq) else { return };
        h.pending += 1;
        if p.get() < 64 {
            h.sent_to |= 1 << p.get();
        }
        h.sent_at = now;
        self.links[Dest::Peer(p)].queue.push_back(Pending::new(seq, kind, &h.payload, h.proof.get()));
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
        if now < self.timers.repair {
            return;
        }
        let base_delay = self.params.repair_delay.max(self.inc.forward_delay.get() * 2);
        self.timers.repair = now + base_delay / 2;
        if self.params.dissemination != Dissemination::Library || self.hooks.skips_rebroadcast(now) {
            return;
        }
        let me = self.layout.me();
        let n = self.layout.n_local();
        for p in self.others() {
            if !self.peers.awaits_repair(p) {
                continue;
            }
            let peer = &self.peers[p];
            let Some(report) = peer.report.as_ref() else { continue };
            // A forward to p may still be crossing a loaded link: wait for it at least as
            // long as a copy takes to get there.
            let delay = base_delay.max(peer.contact.rtt.rto());
            let held = &self.inc.held;
            let lo = report.next.max(held.base());
            let hi = held.end().min(lo.saturating_add(REPAIR_BATCH));
            // The seqs the report proves missing: below `next + 1 + phi_bits` and not covered.
            // A φ-list stops at the peer's highest held seq (trailing empty words are not
            // sent), so a peer that holds nothing past `next` — a replica restarted from a
            // checkpoint, catching up — sends an empty φ-list, and `missing_in` (which stops
            // where the φ-list does) named only `next`: such a peer was repaired one message
            // per report, about a hundred a second, and never caught up with a stream of
            // 100,000 a second (issue 16). Beyond the φ-list's reach nothing is known, and
            // nothing is repaired.
            let known_end = hi.min(report.next.saturating_add(1 + u64::from(self.params.phi_bits)));
            let mut deferred = false;
            let mut repairs = std::mem::take(&mut self.scratch.repair);
            for k in (lo.max(report.next)..known_end).filter(|&k| !report.covers(k)) {
                let Some(h) = held.get(k) else { continue };
                let sent = p.get() < 64 && h.sent_to & (1 << p.get()) != 0 && h.sent_at >= peer.reset_at;
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
                    .map(|step| PeerIdx::new(((p.get() + step) % n) as u16))
                    .take_while(|&q| q != me)
                    .filter(|&q| self.peers.holds(q, k))
                    .count() as u32;
                if now < h.at + delay * (rank + 1) {
                    deferred = true;
                    continue;
                }
                repairs.push(k);
            }
            for &k in &repairs {
                self.queue_internal(now, p, k, RecordKind::Repair);
                if let Some(h) = self.inc.held.get_mut(k) {
                    h.repairs = h.repairs.saturating_add(1);
                }
                self.stats.repairs += 1;
            }
            repairs.clear();
            self.scratch.repair = repairs;
            if !deferred {
                self.peers.repaired(p);
            }
        }
    }
}
