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
//! keep-alives every `ack_keepalive`, which also tell peers this replica is alive. The timer
//! table (`timers`) keeps these deadlines.

use super::Endpoint;
use super::index::Dest;
use crate::bufpool::BufPool;
use crate::ids::ReplicaId;
use crate::time::Time;
use crate::wire::{EncodedFrame, FrameBuilder, FrameKind, RecordKind};

/// Outgoing frames of at least this many bytes are built in recycled buffers: below it the
/// allocator's own free lists serve as well.
const POOLED_FRAME_MIN: usize = 64 * 1024;

/// A frame the engine wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination replica (of either RSM).
    pub to: ReplicaId,
    /// The encoded, authenticated frame: one buffer, or a head and a record section shared
    /// with other frames (forwards; see [`EncodedFrame`]).
    pub frame: EncodedFrame,
}

impl Endpoint {
    /// The next frame to send, if any.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Time) -> Option<Transmit> {
        let now = self.clock(now);
        let d = self.links.next_ready()?;
        Some(self.build_frame(now, d))
    }

    /// Builds the next frame for destination `d`: a queued record section, shared; or as many
    /// queued records as fit, plus the ack.
    fn build_frame(&mut self, now: Time, d: Dest) -> Transmit {
        let to = self.layout.replica(d);
        if let Some(q) = self.links[d].sections.pop_front() {
            self.links[d].section_records -= u64::from(q.records);
            self.inc.forward_delay.sample(now.saturating_since(q.at));
            let b = self.frame_head(now, d, None, None);
            let frame = b.finish_sharing(&self.links[d].send_key, &q.section);
            return self.frame_built(now, d, to, frame);
        }
        let max = self.params.max_frame_bytes;
        // Size the buffer exactly: receivers keep payloads as slices of the frame, so spare
        // capacity would stay allocated for as long as any of its messages is retained.
        let room = self.queued_bytes(d, max);
        let pool = (room >= POOLED_FRAME_MIN).then(|| self.frame_pool.clone());
        let mut b = self.frame_head(now, d, Some(room), pool.as_ref());
        let link = &mut self.links[d];
        while let Some(p) = link.queue.front().copied() {
            if p.kind == RecordKind::Forward
                && let Some(h) = self.inc.held.get(p.seq)
            {
                self.inc.forward_delay.sample(now.saturating_since(h.at));
            }
            let item = match p.kind {
                RecordKind::First | RecordKind::Resend { .. } => {
                    self.out.msgs.get(p.seq).map(|m| (&m.payload, m.proof.get()))
                }
                RecordKind::Forward | RecordKind::Repair => {
                    self.inc.held.get(p.seq).map(|h| (&h.payload, h.proof.get()))
                }
            };
            let Some((payload, proof)) = item else {
                // Freed meanwhile (QUACKed): nobody needs it any more.
                link.queue.pop_front();
                continue;
            };
            let len = FrameBuilder::record_len(payload.len(), proof.len());
            if b.records() > 0 && b.len() + len > max {
                break;
            }
            let forged = match p.kind {
                RecordKind::First | RecordKind::Resend { .. } => self.hooks.forge(now, p.seq, payload, proof),
                RecordKind::Forward | RecordKind::Repair => None,
            };
            match forged {
                Some((fp, fq)) => b.push(p.kind, p.seq, &fp, &fq),
                None => b.push(p.kind, p.seq, payload, proof),
            }
            link.queue.pop_front();
            if matches!(p.kind, RecordKind::Forward | RecordKind::Repair) {
                self.inc.internal_sent(p.seq);
            }
        }
        if b.records() == 0 {
            self.stats.ack_only_frames += 1;
        }
        let frame = b.finish(&self.links[d].send_key).into();
        self.frame_built(now, d, to, frame)
    }

    /// Starts a frame to destination `d`: its header with this replica's report and
    /// timestamps, with room for `room` bytes of records (`None`: the head of a frame that
    /// shares a received record section).
    fn frame_head(&mut self, now: Time, d: Dest, room: Option<usize>, pool: Option<&BufPool>) -> FrameBuilder {
        let to = self.layout.replica(d);
        let kind = match d {
            Dest::Remote(_) => FrameKind::Cross,
            Dest::Peer(_) => FrameKind::Internal,
        };
        let local = self.local;
        let phi_bits = self.params.phi_bits;
        // The report this replica puts on its frames: the truth, or a Byzantine replica's lie.
        let report = self.hooks.report(now, self.inc.report(phi_bits), phi_bits);
        let mut b = match room {
            Some(room) => FrameBuilder::with_capacity_in(kind, local, to, report, room, pool),
            None => FrameBuilder::head_for_section(kind, local, to, report),
        };
        let (ts, echo) = self.contact_mut(d).stamp(now);
        b.set_timestamps(ts, echo);
        b
    }

    /// Accounts for `frame`, just built for destination `d` (its ack went with it).
    fn frame_built(&mut self, now: Time, d: Dest, to: ReplicaId, frame: EncodedFrame) -> Transmit {
        let link = &mut self.links[d];
        link.ack_due = false;
        link.last_sent = now;
        link.sent_version = self.inc.version;
        self.timers.frame_built(self.layout.slot(d));
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += frame.len() as u64;
        Transmit { to, frame }
    }

    /// Bytes of the records that the next frame to `d` will carry (at most `max`, but at least
    /// the first record).
    /// (Records freed since they were queued still count: the frame may have a little spare
    /// room, never too little.)
    fn queued_bytes(&self, d: Dest, max: usize) -> usize {
        let mut total = 0;
        for p in &self.links[d].queue {
            let len = p.len as usize;
            if total > 0 && total + len > max {
                break;
            }
            total += len;
        }
        total + self.hooks.extra_frame_bytes()
    }
}
