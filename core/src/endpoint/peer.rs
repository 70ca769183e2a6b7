//! This replica's view of its peers (the other replicas of its own RSM): what each reports
//! holding of the incoming stream (repairs fill the gaps), whether it restarted, its liveness
//! and round-trip time, and — as a fellow sender — how often its first sends fail.
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
    /// Decayed count of its failed first sends (Byzantine-tolerant RSMs only, see
    /// [`PeerTracker::failing_first_sends`]).
    first_send_failures: f64,
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
    /// This RSM tolerates Byzantine replicas.
    bft: bool,
    /// When the failure scores were last decayed.
    failures_at: Time,
    /// Peers for which [`PeerProgress::awaits_repair`] holds (so the repair timer is O(1)).
    awaiting_repair: usize,
}

impl PeerTracker {
    pub(super) fn new(n: usize, bft: bool, now: Time, contact: &Contact) -> Self {
        let progress = (0..n)
            .map(|_| PeerProgress {
                report: None,
                report_version: 0,
                repaired_version: 0,
                reset_at: now,
                first_send_failures: 0.0,
                contact: contact.clone(),
            })
            .collect();
        Self { progress, bft, failures_at: now, awaiting_repair: 0 }
    }

    /// Whether this RSM tolerates Byzantine replicas.
    pub(super) fn bft(&self) -> bool {
        self.bft
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

    /// Counts a failed first send against sender `s` (scores halve every second).
    pub(super) fn first_send_failed(&mut self, now: Time, s: PeerIdx) {
        let dt = now.saturating_since(self.failures_at).as_secs_f64();
        if dt > 0.0 {
            let decay = 0.5f64.powf(dt);
            self.progress.iter_mut().for_each(|x| x.first_send_failures *= decay);
            self.failures_at = now;
        }
        self.progress[s.get()].first_send_failures += 1.0;
    }

    /// Whether sender `s` fails its first sends far more often than the others (the share of
    /// a Byzantine sender that skips or forges its duties while answering keep-alives).
    pub(super) fn failing_first_sends(&self, s: PeerIdx) -> bool {
        let score = self.progress[s.get()].first_send_failures;
        let total: f64 = self.progress.iter().map(|x| x.first_send_failures).sum();
        score >= 16.0 && score * self.progress.len() as f64 >= 1.5 * total
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
