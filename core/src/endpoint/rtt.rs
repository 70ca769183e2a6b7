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
        let mut r =
            RttEstimator::new(Duration::from_millis(5), Duration::from_millis(1), Duration::from_secs(1), Duration::ZERO);
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

/// How long this replica's first copies wait between entering the send window and being put
/// in a frame (an exponentially weighted average). Other sender replicas are loaded alike, so
/// loss detection adds this to its waits: a message that is still queued at its first sender
/// is late, not lost. Without it, a burst released at once looks lost to resenders.
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
