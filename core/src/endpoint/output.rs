//! Turning queued records and due acks into frames.
//!
//! Records wait in one queue per destination and are packed into a frame only when the caller
//! asks for one (record sections received first-hand wait in a queue of their own per peer and
//! leave as they are, ahead of single records), so that a frame carries everything queued for that destination (batching
//! follows the caller's pace: a transport that is busy polls less often and gets bigger
//! frames) and the ack piggybacked on it is as fresh as possible. Destinations are served
//! round-robin so a slow or dead peer never holds up the others.
//!
//! Ack-only frames go to a replica of the other RSM when `ack_interval` has passed since the
//! last frame to it and the report changed, and at least every `ack_keepalive` regardless (the
//! repeated reports are what detects tail losses). Inside the RSM (library-managed
//! dissemination only), reports go out on change at a slower pace (4 × `ack_interval`) and as
//! keep-alives every `ack_keepalive`, which also tell peers this replica is alive.

use std::time::Duration;

use bytes::Bytes;

use super::{Endpoint, POOLED_FRAME_MIN, Transmit, dest_replica};
use crate::adversary::Behavior;
use crate::bufpool::BufPool;
use crate::config::Dissemination;
use crate::ids::ReplicaId;
use crate::time::Time;
use crate::wire::{AckReport, EncodedFrame, FrameBuilder, FrameKind, RecordKind};

/// How far behind a stale-ack replica reports.
const STALE_LAG: u64 = 1000;

impl Endpoint {
    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self, now: Time) -> Option<Transmit> {
        let n = self.queues.len();
        for i in 0..n {
            let d = (self.rr + i) % n;
            if !self.blocked[d] && (!self.queues[d].is_empty() || !self.sections[d].is_empty() || self.ack_due[d]) {
                self.rr = (d + 1) % n;
                return Some(self.build_frame(now, d));
            }
        }
        None
    }

    /// Builds the next frame for destination `d`: a queued record section, shared; or as many
    /// queued records as fit, plus the ack.
    fn build_frame(&mut self, now: Time, d: usize) -> Transmit {
        let to = dest_replica(self.local, self.n_remote, d);
        if let Some(q) = self.sections[d].pop_front() {
            self.section_records[d] -= u64::from(q.records);
            self.forward_delay.sample(now.saturating_since(q.at));
            let b = self.frame_head(now, d, None, None);
            let frame = b.finish_sharing(&self.keys[d], &q.section);
            return self.frame_built(now, d, to, frame);
        }
        let max = self.params.max_frame_bytes;
        // Size the buffer exactly: receivers keep payloads as slices of the frame, so spare
        // capacity would stay allocated for as long as any of its messages is retained.
        let room = self.queued_bytes(d, max);
        let pool = (room >= POOLED_FRAME_MIN).then(|| self.frame_pool.clone());
        let mut b = self.frame_head(now, d, Some(room), pool.as_ref());
        let forge = self.behavior == Some(Behavior::Forge);
        while let Some(p) = self.queues[d].front().copied() {
            if p.kind == RecordKind::Forward
                && let Some(h) = self.held.get(p.seq)
            {
                self.forward_delay.sample(now.saturating_since(h.at));
            }
            let item = match p.kind {
                RecordKind::First | RecordKind::Resend { .. } => {
                    self.out.get(p.seq).map(|m| (&m.payload, m.proof.get()))
                }
                RecordKind::Forward | RecordKind::Repair => self.held.get(p.seq).map(|h| (&h.payload, h.proof.get())),
            };
            let Some((payload, proof)) = item else {
                // Freed meanwhile (QUACKed): nobody needs it any more.
                self.queues[d].pop_front();
                continue;
            };
            let len = FrameBuilder::record_len(payload.len(), proof.len());
            if b.records() > 0 && b.len() + len > max {
                break;
            }
            if forge && matches!(p.kind, RecordKind::First | RecordKind::Resend { .. }) {
                let (fp, fq) = forged(payload, proof, p.seq);
                b.push(p.kind, p.seq, &fp, &fq);
            } else {
                b.push(p.kind, p.seq, payload, proof);
            }
            self.queues[d].pop_front();
            if matches!(p.kind, RecordKind::Forward | RecordKind::Repair) {
                self.internal_sent(p.seq);
            }
        }
        if b.records() == 0 {
            self.stats.ack_only_frames += 1;
        }
        let frame = b.finish(&self.keys[d]).into();
        self.frame_built(now, d, to, frame)
    }

    /// Starts a frame to destination `d`: its header with this replica's report and
    /// timestamps, with room for `room` bytes of records (`None`: the head of a frame that
    /// shares a received record section).
    fn frame_head(&mut self, now: Time, d: usize, room: Option<usize>, pool: Option<&BufPool>) -> FrameBuilder {
        if self.report_stale() {
            self.window.report_into(self.params.phi_bits, &mut self.report);
            self.built_version = self.report_version;
        }
        let to = dest_replica(self.local, self.n_remote, d);
        let kind = if d < self.n_remote { FrameKind::Cross } else { FrameKind::Internal };
        let local = self.local;
        let report = self.outgoing_report();
        let mut b = match room {
            Some(room) => FrameBuilder::with_capacity_in(kind, local, to, report, room, pool),
            None => FrameBuilder::head_for_section(kind, local, to, report),
        };
        // Timestamps are never 0 (0 means "nothing to echo").
        let ts = now.as_nanos().max(1);
        let (peer_ts, at) = self.echo_for[d];
        let echo = if peer_ts == 0 { 0 } else { peer_ts.saturating_add(now.as_nanos().saturating_sub(at.as_nanos())) };
        b.set_timestamps(ts, echo);
        let sent = &mut self.ts_sent[d];
        *sent = (if sent.0 == 0 { ts } else { sent.0 }, ts);
        b
    }

    /// Accounts for `frame`, just built for destination `d` (its ack went with it).
    fn frame_built(&mut self, now: Time, d: usize, to: ReplicaId, frame: EncodedFrame) -> Transmit {
        self.ack_due[d] = false;
        self.last_sent[d] = now;
        self.sent_version[d] = self.report_version;
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += frame.len() as u64;
        Transmit { to, frame }
    }

    /// Bytes of the records that the next frame to `d` will carry (at most `max`, but at least
    /// the first record).
    /// (Records freed since they were queued still count: the frame may have a little spare
    /// room, never too little.)
    fn queued_bytes(&self, d: usize, max: usize) -> usize {
        let mut total = 0;
        for p in &self.queues[d] {
            let len = p.len as usize;
            if total > 0 && total + len > max {
                break;
            }
            total += len;
        }
        // Forged copies can be a few bytes longer.
        if self.behavior == Some(Behavior::Forge) { total + 64 } else { total }
    }

    /// Whether the cached report is older than the window.
    fn report_stale(&self) -> bool {
        self.built_version != self.report_version
    }

    /// The report this replica puts on its frames: the truth, or a Byzantine replica's lie.
    fn outgoing_report(&mut self) -> &AckReport {
        let Some(b) = self.behavior else { return &self.report };
        let lie = &mut self.lie_report;
        lie.phi.clear();
        match b {
            Behavior::InflateAck => lie.next = self.report.next.saturating_add(1_000_000_000),
            Behavior::ZeroAck => lie.next = 0,
            Behavior::StaleAck => lie.next = self.report.next.saturating_sub(STALE_LAG),
            Behavior::LiePhi => {
                lie.next = self.report.next;
                let words = (self.params.phi_bits / 64) as usize;
                lie.phi.extend((0..words).map(|i| !self.report.phi.get(i).copied().unwrap_or(0)));
            }
            Behavior::Forge | Behavior::Silent | Behavior::NoRebroadcast => return &self.report,
        }
        &self.lie_report
    }

    /// Marks destinations whose ack is due.
    pub(super) fn mark_due_acks(&mut self, now: Time) {
        for d in 0..self.queues.len() {
            if !self.ack_due[d] && self.ack_deadline(d).is_some_and(|t| t <= now) {
                self.ack_due[d] = true;
            }
        }
    }

    /// The earliest time an ack becomes due for some destination.
    pub(super) fn next_ack_deadline(&self) -> Option<Time> {
        (0..self.queues.len()).filter(|&d| !self.ack_due[d]).filter_map(|d| self.ack_deadline(d)).min()
    }

    /// When destination `d` should next get an ack-only frame, if ever.
    fn ack_deadline(&self, d: usize) -> Option<Time> {
        let changed = self.sent_version[d] != self.report_version;
        let last = self.last_sent[d];
        if d < self.n_remote {
            let wait = if changed { self.params.ack_interval } else { self.params.ack_keepalive };
            return Some(last + wait);
        }
        let p = d - self.n_remote;
        if p == usize::from(self.local.index) || self.params.dissemination != Dissemination::Library {
            return None;
        }
        let interval: Duration = self.params.ack_interval * 4;
        if changed {
            Some(last + interval)
        } else {
            // Keep-alives also feed the peers' failure suspicion (`suspect_after`).
            Some(last + self.params.ack_keepalive.max(interval))
        }
    }
}

/// What a forging replica sends instead of a message: the payload with its first byte flipped
/// and the proof reversed (or a made-up proof if there is none).
fn forged(payload: &Bytes, proof: &Bytes, seq: u64) -> (Vec<u8>, Vec<u8>) {
    let mut p = payload.to_vec();
    match p.first_mut() {
        Some(b) => *b ^= 0x5a,
        None => p.push(0x5a),
    }
    let mut q: Vec<u8> = proof.iter().rev().copied().collect();
    if q.is_empty() || q == proof.as_ref() {
        q = seq.to_le_bytes().iter().chain(b"forged proof").copied().collect();
    }
    (p, q)
}
