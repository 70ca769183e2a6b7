//! The sender's view of each replica of the other RSM: what it last reported holding, how its
//! cumulative ack progresses (the send window is paced to the slowest active receiver), and its
//! liveness and round-trip time.
//!
//! One [`RemoteProgress`] per receiver in a [`RemoteTracker`], as raft's leader keeps a
//! `Progress` per follower: the sending logic asks the tracker questions about the receivers
//! (who holds a message, where pacing stands) instead of walking parallel tables.

use std::ops::{Index, IndexMut};
use std::time::Duration;

use super::contact::Contact;
use super::index::RemoteIdx;
use crate::time::Time;
use crate::wire::AckReport;

/// One replica of the other RSM, as a receiver of this replica's stream.
#[derive(Debug)]
pub(super) struct RemoteProgress {
    /// Its stake (QUACKs and loss detection count stake, not replicas).
    pub(super) stake: u64,
    /// The latest ack report it piggybacked.
    pub(super) report: AckReport,
    /// Its highest cumulative ack (clamped to what was submitted here) ...
    acked: u64,
    /// ... and when that last advanced: a receiver whose ack is stuck stops holding the window.
    acked_at: Time,
    pub(super) contact: Contact,
}

impl RemoteProgress {
    /// Records its cumulative ack `next` (already clamped); true if it advanced.
    fn ack(&mut self, now: Time, next: u64) -> bool {
        let advanced = next > self.acked;
        if advanced {
            self.acked_at = now;
            self.acked = next;
        } else if next < self.acked {
            // The receiver restarted from an older checkpoint: pace to it again once it makes
            // progress (until then it counts as stuck, as before its restart).
            self.acked = next;
        }
        advanced
    }
}

/// Every replica of the other RSM, indexed by [`RemoteIdx`].
#[derive(Debug)]
pub(super) struct RemoteTracker {
    progress: Vec<RemoteProgress>,
    /// Faulty stake the other RSM tolerates.
    f: u64,
}

impl RemoteTracker {
    /// Receivers of the given stakes, none of which has acked beyond `start` yet.
    pub(super) fn new(stakes: &[u64], f: u64, now: Time, start: u64, contact: &Contact) -> Self {
        let progress = stakes
            .iter()
            .map(|&stake| RemoteProgress {
                stake,
                report: AckReport::default(),
                acked: start,
                acked_at: now,
                contact: contact.clone(),
            })
            .collect();
        Self { progress, f }
    }

    /// Faulty stake the other RSM tolerates.
    pub(super) fn f(&self) -> u64 {
        self.f
    }

    /// Records the cumulative ack `next` (clamped) of receiver `j`; true if it advanced.
    pub(super) fn ack(&mut self, j: RemoteIdx, now: Time, next: u64) -> bool {
        self.progress[j.get()].ack(now, next)
    }

    /// The base of the send window: `quack`, or the cumulative ack of the slowest *active*
    /// receiver if that is lower.
    ///
    /// Pacing to the slowest receiver keeps every correct receiver within `send_window` of
    /// the stream, hence within its peers' retention, so library-managed dissemination
    /// reaches every correct replica with bounded memory (without it, replicas slower than
    /// the f+1 that make the QUACK fall behind without bound and stall once their peers
    /// trimmed what they miss). A receiver stops counting once it is silent for
    /// `suspect_after` (crashed) or its ack has not advanced for ten times that (stuck, or
    /// withholding acks): a faulty receiver delays the stream by at most that long.
    pub(super) fn pace_base(&self, now: Time, quack: u64, suspect_after: Duration) -> u64 {
        let stuck_after = suspect_after * 10;
        let mut base = quack;
        for r in &self.progress {
            if r.acked < base
                && !r.contact.silent(now, suspect_after)
                && now.saturating_since(r.acked_at) <= stuck_after
            {
                base = r.acked;
            }
        }
        base
    }

    /// Whether a receiver that is not suspected reports holding `seq`.
    pub(super) fn unsuspected_holder(&self, seq: u64) -> bool {
        self.progress.iter().any(|r| !r.contact.suspected && r.report.covers(seq))
    }

    /// Stake of the receivers whose latest report covers `seq`.
    pub(super) fn holding_stake(&self, seq: u64) -> u64 {
        self.progress.iter().filter(|r| r.report.covers(seq)).map(|r| r.stake).sum()
    }

    /// Stake of the receivers that reported `seq` missing at least `threshold` times in the
    /// current round (`counts`, per receiver) and still lack it.
    pub(super) fn missing_stake(&self, seq: u64, counts: &[u8], threshold: u8) -> u64 {
        counts
            .iter()
            .zip(&self.progress)
            .filter(|(c, r)| **c >= threshold && !r.report.covers(seq))
            .map(|(_, r)| r.stake)
            .sum()
    }

    /// The shortest smoothed RTT of any receiver.
    pub(super) fn min_srtt(&self) -> Option<Duration> {
        self.progress.iter().map(|r| r.contact.rtt.srtt()).min()
    }

    /// The median smoothed RTT of the receivers, in nanoseconds (0 without receivers).
    pub(super) fn median_srtt_ns(&self) -> u64 {
        let mut srtts: Vec<u64> =
            self.progress.iter().map(|r| u64::try_from(r.contact.rtt.srtt().as_nanos()).unwrap_or(u64::MAX)).collect();
        srtts.sort_unstable();
        srtts.get(srtts.len() / 2).copied().unwrap_or(0)
    }
}

impl Index<RemoteIdx> for RemoteTracker {
    type Output = RemoteProgress;
    fn index(&self, j: RemoteIdx) -> &RemoteProgress {
        &self.progress[j.get()]
    }
}

impl IndexMut<RemoteIdx> for RemoteTracker {
    fn index_mut(&mut self, j: RemoteIdx) -> &mut RemoteProgress {
        &mut self.progress[j.get()]
    }
}
