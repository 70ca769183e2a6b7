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
            // progress (until then it counts as stuck, as before its restart) and is back
            // within the send window (see `RemoteTracker::pace_base`).
            self.acked = next;
        }
        advanced
    }
}

/// Every replica of the other RSM, indexed by [`RemoteIdx`].
#[derive(Debug)]
pub(super) struct RemoteTracker {
    progress: Vec<RemoteProgress>,
    /// Faulty stake the other RSM tolerates ...
    f: u64,
    /// ... and whether its replicas may lie (Byzantine-tolerant).
    bft: bool,
    /// Reused by `pace_base`.
    pace_scratch: Vec<(u64, u64)>,
}

impl RemoteTracker {
    /// Receivers of the given stakes, none of which has acked beyond `start` yet.
    pub(super) fn new(stakes: &[u64], f: u64, bft: bool, now: Time, start: u64, contact: &Contact) -> Self {
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
        Self { progress, f, bft, pace_scratch: Vec::with_capacity(stakes.len()) }
    }

    /// Faulty stake the other RSM tolerates.
    pub(super) fn f(&self) -> u64 {
        self.f
    }

    /// Records the cumulative ack `next` (clamped) of receiver `j`; true if it advanced.
    pub(super) fn ack(&mut self, j: RemoteIdx, now: Time, next: u64) -> bool {
        self.progress[j.get()].ack(now, next)
    }

    /// The base of the send window: `quack`, or the cumulative ack of the slowest receiver that
    /// pacing waits for, if that is lower.
    ///
    /// Pacing to the slowest receiver keeps every correct receiver within `send_window` of the
    /// stream, hence within its peers' retention, so library-managed dissemination reaches
    /// every correct replica with bounded memory (without it, replicas slower than the f+1 that
    /// make the QUACK fall behind without bound and stall once their peers trimmed what they
    /// miss). Pacing does not wait for a receiver that is:
    /// - distrusted (silent for its silence limit, or convicted: see `evidence`);
    /// - stuck: its ack has not advanced for ten times `suspect_after` (crashed without going
    ///   silent, or withholding acks);
    /// - further than `send_window` behind the QUACK: it restarted from an older checkpoint or
    ///   was cut off, and catches up from its peers' retention, not by holding the stream back
    ///   (waiting for it would stall every other receiver at its ack + `send_window`).
    ///
    /// And since a Byzantine receiver can report any ack — zero, stale, or advancing just slowly
    /// enough to look alive — pacing to a Byzantine-tolerant RSM also leaves out the lowest acks
    /// up to f_r stake, less the stake already left out: at most f_r liars then cannot hold the
    /// window back at all, at the price that the f_r slowest correct receivers are not waited
    /// for (they catch up from their peers' retention, or are told to transfer state).
    pub(super) fn pace_base(&mut self, now: Time, quack: u64, suspect_after: Duration, send_window: u64) -> u64 {
        let stuck_after = suspect_after * 10;
        let floor = quack.saturating_sub(send_window);
        let waited = |r: &RemoteProgress| {
            !r.contact.suspected
                && !r.contact.silent(now, suspect_after)
                && now.saturating_since(r.acked_at) <= stuck_after
                && r.acked >= floor
        };
        if !self.bft {
            return self.progress.iter().filter(|r| waited(r)).map(|r| r.acked).fold(quack, u64::min);
        }
        let left_out: u64 = self.progress.iter().filter(|r| !waited(r)).map(|r| r.stake).sum();
        let mut budget = self.f.saturating_sub(left_out);
        let mut acks = std::mem::take(&mut self.pace_scratch);
        acks.clear();
        acks.extend(self.progress.iter().filter(|r| waited(r)).map(|r| (r.acked, r.stake)));
        acks.sort_unstable();
        let mut base = quack;
        for &(ack, stake) in &acks {
            if stake <= budget {
                budget -= stake;
                continue;
            }
            base = ack.min(quack);
            break;
        }
        self.pace_scratch = acks;
        base
    }

    /// Whether a receiver that is not distrusted reports holding `seq`: it is probably being
    /// forwarded inside the other RSM.
    pub(super) fn trusted_holder(&self, seq: u64) -> bool {
        self.progress.iter().any(|r| !r.contact.suspected && r.report.covers(seq))
    }

    /// Whether trusted receivers that report holding `seq` vouch for a correct one among them:
    /// more than f_r stake of a Byzantine-tolerant RSM, any of a crash-tolerant one (whose live
    /// replicas follow the protocol). Such a holder forwards and repairs it inside its RSM; a
    /// claim by at most f_r stake of a Byzantine RSM may be a lie.
    pub(super) fn vouched_holder(&self, seq: u64) -> bool {
        let holding: u64 =
            self.progress.iter().filter(|r| !r.contact.suspected && r.report.covers(seq)).map(|r| r.stake).sum();
        if self.bft { holding > self.f } else { holding > 0 }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::rtt::RttEstimator;

    const SUSPECT: Duration = Duration::from_millis(100);
    const WINDOW: u64 = 1000;

    fn t(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    fn tracker(bft: bool) -> RemoteTracker {
        let ms = Duration::from_millis;
        let contact = Contact::new(t(0), RttEstimator::new(ms(1), ms(5), ms(500), ms(1)));
        RemoteTracker::new(&[1; 4], 1, bft, t(0), 0, &contact)
    }

    /// Every receiver is heard at `now` and reports ack `acks[j]`.
    fn report(tr: &mut RemoteTracker, now: Time, acks: [u64; 4]) {
        for (j, a) in acks.into_iter().enumerate() {
            tr[RemoteIdx::new(j as u16)].contact.heard(now);
            tr.ack(RemoteIdx::new(j as u16), now, a);
        }
    }

    #[test]
    fn crash_tolerant_pacing_waits_for_the_slowest_live_receiver() {
        let mut tr = tracker(false);
        report(&mut tr, t(10), [500, 400, 300, 200]);
        assert_eq!(tr.pace_base(t(10), 400, SUSPECT, WINDOW), 200);
    }

    #[test]
    fn byzantine_pacing_leaves_out_the_lowest_f_acks() {
        // A receiver reporting ack 0 forever (zero-ack, or slow-ack advancing 1 per report)
        // cannot hold the window back: the lowest f_r = 1 stake of acks is not waited for.
        let mut tr = tracker(true);
        report(&mut tr, t(10), [500, 400, 300, 1]);
        assert_eq!(tr.pace_base(t(10), 400, SUSPECT, WINDOW), 300);
    }

    #[test]
    fn a_receiver_far_behind_does_not_hold_the_window() {
        // Restarted from an old checkpoint: its ack went back by more than a send window. It
        // catches up from its peers' retention; pacing does not wait for it.
        let mut tr = tracker(false);
        report(&mut tr, t(10), [5000, 5000, 5000, 5000]);
        report(&mut tr, t(20), [5000, 5000, 5000, 100]);
        assert_eq!(tr.pace_base(t(20), 5000, SUSPECT, WINDOW), 5000);
        // Back within the window, it is waited for again.
        report(&mut tr, t(30), [5000, 5000, 5000, 4500]);
        assert_eq!(tr.pace_base(t(30), 5000, SUSPECT, WINDOW), 4500);
    }

    #[test]
    fn a_stuck_receiver_stops_holding_the_window() {
        let mut tr = tracker(false);
        report(&mut tr, t(10), [500, 500, 500, 200]);
        // Receiver 3 keeps talking but its ack never moves for 10 × suspect_after.
        for now in (20..=1010).step_by(10) {
            report(&mut tr, t(now), [600, 600, 600, 200]);
        }
        assert_eq!(tr.pace_base(t(1010), 600, SUSPECT, WINDOW), 200);
        report(&mut tr, t(1011), [600, 600, 600, 200]);
        assert_eq!(tr.pace_base(t(1011), 600, SUSPECT, WINDOW), 600);
    }
}
