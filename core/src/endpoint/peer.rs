//! This replica's view of its peers (the other replicas of its own RSM): what each reports
//! holding of the incoming stream (repairs fill the gaps), whether it restarted, its liveness
//! and round-trip time.
//!
//! One [`PeerProgress`] per peer in a [`PeerTracker`]; this replica's own entry exists (so that
//! peers index the table directly) but never gets a report.

use std::ops::{Index, IndexMut};

use super::contact::Contact;
use super::index::PeerIdx;
use crate::time::Time;
use crate::wire::AckReport;

/// One replica of this RSM.
#[derive(Debug)]
pub(super) struct PeerProgress {
    /// Its latest report of the incoming stream, once it sent one.
    pub(super) report: Option<AckReport>,
    /// Reports received from it so far ...
    report_version: u64,
    /// ... and the count at the last repair pass that had nothing left to wait for: a peer is
    /// repaired at most once per report.
    repaired_version: u64,
    /// When it last restarted or came back from silence, as far as this replica can tell; what
    /// was sent to it before may never have arrived.
    pub(super) reset_at: Time,
    pub(super) contact: Contact,
}

impl PeerProgress {
    /// Whether a report arrived since its last complete repair pass.
    fn awaits_repair(&self) -> bool {
        self.report.is_some() && self.repaired_version != self.report_version
    }
}

/// Every replica of this RSM, indexed by [`PeerIdx`].
#[derive(Debug)]
pub(super) struct PeerTracker {
    progress: Vec<PeerProgress>,
    /// Peers for which [`PeerProgress::awaits_repair`] holds (so the repair timer is O(1)).
    awaiting_repair: usize,
}

impl PeerTracker {
    pub(super) fn new(n: usize, now: Time, contact: &Contact) -> Self {
        let progress = (0..n)
            .map(|_| PeerProgress {
                report: None,
                report_version: 0,
                repaired_version: 0,
                reset_at: now,
                contact: contact.clone(),
            })
            .collect();
        Self { progress, awaiting_repair: 0 }
    }

    /// Stores the report peer `p` piggybacked (about the incoming stream). `was_silent`: the
    /// peer had been silent long enough to be suspected until this frame. Either that or a
    /// report going backwards (a restart from an older checkpoint) means what was sent to it
    /// before may be lost: it becomes repairable at once.
    pub(super) fn on_report(&mut self, p: PeerIdx, now: Time, report: AckReport, was_silent: bool) {
        let peer = &mut self.progress[p.get()];
        let regressed = peer.report.as_ref().is_some_and(|old| report.next < old.next);
        if was_silent || regressed {
            peer.reset_at = now;
        }
        let awaited = peer.awaits_repair();
        peer.report_version += 1;
        peer.report = Some(report);
        if !awaited {
            self.awaiting_repair += 1;
        }
    }

    /// Whether `p` sent a report since its last complete repair pass.
    pub(super) fn awaits_repair(&self, p: PeerIdx) -> bool {
        self.progress[p.get()].awaits_repair()
    }

    /// A repair pass left nothing to wait for in `p`'s latest report.
    pub(super) fn repaired(&mut self, p: PeerIdx) {
        let peer = &mut self.progress[p.get()];
        if peer.awaits_repair() {
            self.awaiting_repair -= 1;
        }
        peer.repaired_version = peer.report_version;
    }

    /// Whether some peer awaits a repair pass.
    pub(super) fn any_awaiting_repair(&self) -> bool {
        self.awaiting_repair > 0
    }

    /// Whether peer `q` reports holding `seq`.
    pub(super) fn holds(&self, q: PeerIdx, seq: u64) -> bool {
        self.progress[q.get()].report.as_ref().is_some_and(|r| r.covers(seq))
    }
}

impl Index<PeerIdx> for PeerTracker {
    type Output = PeerProgress;
    fn index(&self, p: PeerIdx) -> &PeerProgress {
        &self.progress[p.get()]
    }
}

impl IndexMut<PeerIdx> for PeerTracker {
    fn index_mut(&mut self, p: PeerIdx) -> &mut PeerProgress {
        &mut self.progress[p.get()]
    }
}
