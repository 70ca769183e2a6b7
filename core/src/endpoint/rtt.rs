//! Round-trip time estimation, RFC 6298 style.
//!
//! Picsou detects losses by counting duplicate reports, but a report only counts once the
//! message could have arrived: for tail losses (nothing later to reveal a gap) and for
//! escalating to the next resend, "could have arrived" means one resend timeout (RTO) has
//! passed. Samples come from timestamp echoes on frames (see `WIRE.md`): the time from putting
//! timestamp t on a frame to a peer until a frame from that peer echoes t: the
//! network and queueing delay only (the echoing peer adds the time it held the timestamp), and
//! the RTO adds the peer's report pacing (`ack_interval`) explicitly. Samples taken from cumulative
//! acks instead would measure head-of-line blocking behind every loss and inflate the RTO
//! without bound.

use std::time::Duration;

use crate::time::Time;

/// Smoothed RTT and its variance.
#[derive(Clone, Debug)]
pub(crate) struct RttEstimator {
    srtt: Duration,
    rttvar: Duration,
    sampled: bool,
    min_rto: Duration,
    max_rto: Duration,
    /// Added to every RTO: how long a peer may wait before reporting (its ack pacing).
    report_delay: Duration,
}

impl RttEstimator {
    pub(crate) fn new(initial: Duration, min_rto: Duration, max_rto: Duration, report_delay: Duration) -> Self {
        Self { srtt: initial, rttvar: initial / 2, sampled: false, min_rto, max_rto, report_delay }
    }

    /// Adds a sample.
    pub(crate) fn sample(&mut self, rtt: Duration) {
        if self.sampled {
            let diff = self.srtt.abs_diff(rtt);
            self.rttvar = (self.rttvar * 3 + diff) / 4;
            self.srtt = (self.srtt * 7 + rtt) / 8;
        } else {
            self.srtt = rtt;
            self.rttvar = rtt / 2;
            self.sampled = true;
        }
    }

    /// Smoothed RTT.
    pub(crate) fn srtt(&self) -> Duration {
        self.srtt
    }

    /// Resend timeout: srtt + 4·rttvar + the peer's report delay, clamped to the bounds.
    pub(crate) fn rto(&self) -> Duration {
        (self.srtt + self.rttvar * 4 + self.report_delay).clamp(self.min_rto, self.max_rto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_and_clamps() {
        let mut r = RttEstimator::new(
            Duration::from_millis(5),
            Duration::from_millis(1),
            Duration::from_secs(1),
            Duration::ZERO,
        );
        assert_eq!(r.rto(), Duration::from_millis(15));
        r.sample(Duration::from_millis(2));
        assert_eq!(r.srtt(), Duration::from_millis(2));
        for _ in 0..100 {
            r.sample(Duration::from_millis(2));
        }
        assert!(r.rto() >= Duration::from_millis(2) && r.rto() < Duration::from_millis(3));
        r.sample(Duration::from_secs(100));
        assert_eq!(r.rto(), Duration::from_secs(1));
    }
}

/// How long this replica's forwards wait in its queues (an exponentially weighted average):
/// repairs wait longer than this, so they do not race the forwarding they back up.
#[derive(Clone, Debug, Default)]
pub(crate) struct SendDelay {
    avg: Duration,
}

impl SendDelay {
    pub(crate) fn sample(&mut self, d: Duration) {
        self.avg = (self.avg * 7 + d) / 8;
    }

    pub(crate) fn get(&self) -> Duration {
        self.avg
    }
}

/// The rate at which this replica's stream arrives at the other RSM while it flows, in bytes
/// per second: an average over intervals of at least one RTT of the arrival frontier's advance
/// (`OutStream::frontier`, which holes do not stop as they stop the QUACK). The frontier moves
/// in bursts, so a maximum would overestimate the rate and make resends spurious; intervals
/// of no progress (a stall) are left out rather than averaged in.
///
/// A message released with `b` bytes already in flight ahead of it cannot arrive before
/// those bytes drain, about `b / rate` later; loss detection adds that to its waits. Without
/// it, every message deep in a large window looks lost to resenders, who cannot see the first
/// sender's queues.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeliveryRate {
    anchor: Time,
    anchor_bytes: u64,
    quacked_bytes: u64,
    bytes_per_s: f64,
}

impl DeliveryRate {
    /// Records `bytes` more QUACKed at `now`; `interval` is the shortest sampling interval.
    pub(crate) fn quacked(&mut self, now: Time, bytes: u64, interval: Duration) {
        self.quacked_bytes += bytes;
        let dt = now.saturating_since(self.anchor);
        if dt > interval * 8 && self.bytes_per_s > 0.0 {
            // A stall (the stream waited for a lost message, or nothing was sent): not the
            // delivery rate, which is what the stream achieves while it flows. Counting it
            // would stretch every loss-detection wait exactly when detection must be quick.
            self.anchor = now;
            self.anchor_bytes = self.quacked_bytes;
        } else if dt >= interval && !dt.is_zero() {
            let sample = (self.quacked_bytes - self.anchor_bytes) as f64 / dt.as_secs_f64();
            self.bytes_per_s = if self.bytes_per_s == 0.0 { sample } else { 0.75 * self.bytes_per_s + 0.25 * sample };
            self.anchor = now;
            self.anchor_bytes = self.quacked_bytes;
        }
    }

    /// How long `bytes` take to drain at the current rate, at most `cap` (also the answer
    /// before any sample): an estimate may delay a resend, never stop it.
    pub(crate) fn drain(&self, bytes: u64, cap: Duration) -> Duration {
        if bytes == 0 {
            Duration::ZERO
        } else if self.bytes_per_s > 0.0 {
            // A quarter of margin: the estimate is an average, and arriving late is normal.
            Duration::from_secs_f64((1.25 * bytes as f64 / self.bytes_per_s).min(cap.as_secs_f64()))
        } else {
            cap
        }
    }
}
