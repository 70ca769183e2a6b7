//! Warnings about what peers (or strangers) do, limited in rate: a peer that misbehaves on
//! every frame, or a flood of connections, must not turn the log into the bottleneck or bury
//! everything else. Each kind of warning is written at most once per interval; the next one
//! written says how many were left out.

use std::time::{Duration, Instant};

/// How often one kind of warning may be written.
pub(super) const WARN_INTERVAL: Duration = Duration::from_secs(1);

/// The rate limit of one kind of warning.
#[derive(Debug, Default)]
pub(super) struct LogLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// Whether to write a warning now: `Some(n)` (with `n` warnings left out since the last
    /// one written), or `None` (this one is left out and counted).
    pub(super) fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now.saturating_duration_since(t) < WARN_INTERVAL) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_and_a_count_of_the_rest() {
        let mut l = LogLimit::default();
        let t = Instant::now();
        assert_eq!(l.allow(t), Some(0));
        assert_eq!(l.allow(t + Duration::from_millis(10)), None);
        assert_eq!(l.allow(t + Duration::from_millis(999)), None);
        assert_eq!(l.allow(t + WARN_INTERVAL), Some(2));
        assert_eq!(l.allow(t + WARN_INTERVAL * 3), Some(0));
    }
}
