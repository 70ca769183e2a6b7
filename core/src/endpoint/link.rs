//! The outgoing side of each destination: the records and forwarded sections waiting for its
//! next frame, the MAC key of the link, when it was last sent a frame and which report that
//! frame carried (ack pacing), and whether the transport to it is full.
//!
//! Frames are built only when the caller asks for one (see `output`), from what waits here.

use std::collections::VecDeque;
use std::ops::{Index, IndexMut};

use bytes::Bytes;

use super::index::{Dest, Layout, RemoteIdx};
use crate::handshake::Incarnation;
use crate::keys::MacKey;
use crate::time::Time;
use crate::wire::{RecordKind, RecordSection};

/// A record waiting in a destination's queue; payloads are looked up when the frame is built.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pending {
    pub(super) seq: u64,
    pub(super) kind: RecordKind,
    /// Its encoded size, so that sizing a frame needs no payload lookups.
    pub(super) len: u32,
}

impl Pending {
    pub(super) fn new(seq: u64, kind: RecordKind, payload: &Bytes, proof: &Bytes) -> Self {
        Self { seq, kind, len: record_len(payload, proof) }
    }
}

/// Encoded size of a record carrying `payload` and `proof`.
pub(super) fn record_len(payload: &Bytes, proof: &Bytes) -> u32 {
    u32::try_from(crate::wire::FrameBuilder::record_len(payload.len(), proof.len())).unwrap_or(u32::MAX)
}

/// A received record section waiting to be forwarded unchanged to a peer of this RSM.
#[derive(Debug)]
pub(super) struct QueuedSection {
    pub(super) section: RecordSection,
    /// Records it holds.
    pub(super) records: u32,
    /// When it arrived.
    pub(super) at: Time,
}

/// The outgoing state of one destination.
#[derive(Debug)]
pub(super) struct Link {
    /// MAC key of the frames this replica sends it: the link key, or the session key of the
    /// current outgoing connection once the transport has one (see `Endpoint::set_session`).
    pub(super) send_key: MacKey,
    /// MAC key of the frames it sends: likewise, of its current connection to this replica.
    pub(super) recv_key: MacKey,
    /// Its incarnation, once a session told it (`None`: the transport has no sessions).
    pub(super) incarnation: Option<Incarnation>,
    /// It restarted (a new incarnation) and has not reported since: its next ack may go
    /// backwards.
    pub(super) restarted: bool,
    /// Records for its next frames.
    pub(super) queue: VecDeque<Pending>,
    /// Peers of this RSM only: received record sections to forward as they are, sent before
    /// the records in `queue`, and how many records they hold in all.
    pub(super) sections: VecDeque<QueuedSection>,
    pub(super) section_records: u64,
    /// When its last frame was built ...
    pub(super) last_sent: Time,
    /// ... and the version of this replica's report that frame carried.
    pub(super) sent_version: u64,
    /// An ack-only frame is due (see the timer table).
    pub(super) ack_due: bool,
    /// Its transport is full: `poll_transmit` skips it (its records wait).
    pub(super) blocked: bool,
}

impl Link {
    fn new(key: MacKey, now: Time) -> Self {
        Self {
            send_key: key,
            recv_key: key,
            incarnation: None,
            restarted: false,
            queue: VecDeque::new(),
            sections: VecDeque::new(),
            section_records: 0,
            last_sent: now,
            sent_version: 0,
            ack_due: false,
            blocked: false,
        }
    }

    /// Whether a frame to it can be built now.
    fn ready(&self) -> bool {
        !self.blocked && (!self.queue.is_empty() || !self.sections.is_empty() || self.ack_due)
    }
}

/// Every destination's link, indexed by [`Dest`], served round-robin.
#[derive(Debug)]
pub(super) struct Links {
    links: Vec<Link>,
    layout: Layout,
    /// The slot served first by the next `next_ready`.
    rr: usize,
}

impl Links {
    /// One link per destination of `layout`, with `keys` in slot order.
    pub(super) fn new(layout: Layout, keys: Vec<MacKey>, now: Time) -> Self {
        Self { links: keys.into_iter().map(|k| Link::new(k, now)).collect(), layout, rr: 0 }
    }

    /// The next destination a frame can be built for, round-robin so that a slow or dead peer
    /// never holds up the others.
    pub(super) fn next_ready(&mut self) -> Option<Dest> {
        let n = self.links.len();
        for i in 0..n {
            let slot = (self.rr + i) % n;
            if self.links[slot].ready() {
                self.rr = (slot + 1) % n;
                return Some(self.layout.dest(slot));
            }
        }
        None
    }

    /// The link to receiver `j` of the other RSM.
    pub(super) fn remote_mut(&mut self, j: RemoteIdx) -> &mut Link {
        &mut self.links[j.get()]
    }

    /// The links to the other RSM.
    pub(super) fn remotes_mut(&mut self) -> &mut [Link] {
        &mut self.links[..self.layout.n_remote()]
    }

    /// The link in `slot` (timer bookkeeping).
    pub(super) fn slot(&self, slot: usize) -> &Link {
        &self.links[slot]
    }

    /// The link in `slot` (timer bookkeeping).
    pub(super) fn slot_mut(&mut self, slot: usize) -> &mut Link {
        &mut self.links[slot]
    }
}

impl Index<Dest> for Links {
    type Output = Link;
    fn index(&self, d: Dest) -> &Link {
        &self.links[self.layout.slot(d)]
    }
}

impl IndexMut<Dest> for Links {
    fn index_mut(&mut self, d: Dest) -> &mut Link {
        &mut self.links[self.layout.slot(d)]
    }
}
