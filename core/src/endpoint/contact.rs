//! What a replica knows of another one it exchanges frames with, whichever RSM it is in: when it
//! last heard from it (failure suspicion), the timestamps to echo to it, and the round-trip time
//! its echoes of ours measure.
//!
//! Remote receivers ([`super::remote`]) and peers ([`super::peer`]) both hold one; the rest of
//! their state differs.

use std::time::Duration;

use super::rtt::RttEstimator;
use crate::time::Time;

/// Liveness and clock state of one replica.
#[derive(Clone, Debug)]
pub(super) struct Contact {
    /// When it last sent this replica a valid frame.
    last_heard: Time,
    /// The longest recent gap between two of its frames, decaying at a sixteenth of the speed
    /// of time (see [`Contact::silence_limit`]); `None` before its first frame.
    heard_gap: Option<Duration>,
    /// Whether it was suspected at the last check.
    pub(super) suspected: bool,
    /// The first and latest timestamps this replica put on frames to it: an echo outside that
    /// range is not one of ours.
    ts_sent: (u64, u64),
    /// The latest echo of ours it returned.
    echo_seen: u64,
    /// The latest timestamp received from it and when it arrived. Frames to it echo that
    /// timestamp plus the time held here, so its sample is the network round trip alone,
    /// however long this replica waited before answering.
    echo_for: (u64, Time),
    /// Round-trip time from its echoes.
    pub(super) rtt: RttEstimator,
}

impl Contact {
    pub(super) fn new(now: Time, rtt: RttEstimator) -> Self {
        Self {
            last_heard: now,
            heard_gap: None,
            suspected: false,
            ts_sent: (0, 0),
            echo_seen: 0,
            echo_for: (0, now),
            rtt,
        }
    }

    /// A valid frame from it arrived at `now`.
    pub(super) fn heard(&mut self, now: Time) {
        let gap = now.saturating_since(self.last_heard);
        // The wait for the first frame (start-up, connection set-up) says nothing about the
        // peer's pace.
        self.heard_gap = Some(self.heard_gap.map_or(Duration::ZERO, |g| gap.max(g.saturating_sub(gap / 16))));
        self.last_heard = now;
    }

    /// How long it may stay silent before it counts as down (suspected, left out of pacing and
    /// forwarding): `suspect_after`, or twice the longest recent gap between its frames when
    /// that is longer, at most ten times `suspect_after`.
    ///
    /// On a loaded machine a live replica's frames can stop for longer than `suspect_after`
    /// (its thread descheduled, its frames queued behind a backlog), and every false suspicion
    /// makes the senders resend every message in flight that involved it. A replica that was
    /// just that slow is given twice as long before it is suspected again; a crash after a
    /// steady stretch is still detected after `suspect_after`. A Byzantine replica can thereby
    /// delay only its own suspicion, by at most the cap (which is also when pacing stops
    /// waiting for a stuck receiver).
    pub(super) fn silence_limit(&self, suspect_after: Duration) -> Duration {
        let s = suspect_after;
        self.heard_gap.map_or(s, |g| (g * 2).clamp(s, s * 10))
    }

    /// Whether it has been silent for longer than its silence limit.
    pub(super) fn silent(&self, now: Time, suspect_after: Duration) -> bool {
        now.saturating_since(self.last_heard) > self.silence_limit(suspect_after)
    }

    /// The first time at which it counts as silent (unless it is heard from before).
    pub(super) fn silent_from(&self, suspect_after: Duration) -> Time {
        self.last_heard + self.silence_limit(suspect_after) + Duration::from_nanos(1)
    }

    /// Records the timestamp `ts` of its frame (to echo it) and samples the RTT from its `echo`
    /// of ours.
    pub(super) fn on_timestamps(&mut self, now: Time, ts: u64, echo: u64) {
        if ts > self.echo_for.0 {
            self.echo_for = (ts, now);
        }
        let (first, _) = self.ts_sent;
        let plausible = echo != 0 && first != 0 && echo >= first && echo <= now.as_nanos();
        if plausible && echo > self.echo_seen {
            self.echo_seen = echo;
            self.rtt.sample(now.saturating_since(Time::from_nanos(echo)));
        }
    }

    /// The timestamp and echo for a frame to it built at `now`.
    pub(super) fn stamp(&mut self, now: Time) -> (u64, u64) {
        // Timestamps are never 0 (0 means "nothing to echo").
        let ts = now.as_nanos().max(1);
        let (peer_ts, at) = self.echo_for;
        let echo = if peer_ts == 0 { 0 } else { peer_ts.saturating_add(now.as_nanos().saturating_sub(at.as_nanos())) };
        let sent = &mut self.ts_sent;
        *sent = (if sent.0 == 0 { ts } else { sent.0 }, ts);
        (ts, echo)
    }
}
