//! Round-trip time estimation, RFC 6298 style.
//!
//! Picsou detects losses by counting duplicate reports, but a report only counts once the
//! message could have arrived: for tail losses (nothing later to reveal a gap) and for
//! escalating to the next resend, "could have arrived" means one resend timeout (RTO) has
//! passed. Samples come from first sends: the time from sending seq k to a receiver until that
//! receiver's cumulative ack covers k (it includes the receiver's ack delay, which is what the
//! sender actually waits for).

use std::time::Duration;

/// Smoothed RTT and its variance.
#[derive(Clone, Debug)]
pub(crate) struct RttEstimator {
    srtt: Duration,
    rttvar: Duration,
    sampled: bool,
    min_rto: Duration,
    max_rto: Duration,
}

impl RttEstimator {
    pub(crate) fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        Self { srtt: initial, rttvar: initial / 2, sampled: false, min_rto, max_rto }
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

    /// Resend timeout: srtt + 4·rttvar, clamped to the configured bounds.
    pub(crate) fn rto(&self) -> Duration {
        (self.srtt + self.rttvar * 4).clamp(self.min_rto, self.max_rto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_and_clamps() {
        let mut r = RttEstimator::new(Duration::from_millis(5), Duration::from_millis(1), Duration::from_secs(1));
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
