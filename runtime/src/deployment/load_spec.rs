//! [`LoadSpec`] and [`Senders`]: the `[load]` table, synthetic load for
//! `picsou node|local|bench`.

use std::time::Duration;

use picsou_core::RsmId;
use serde::{Deserialize, Serialize};

/// Which RSMs transmit a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Senders {
    /// Both RSMs send to each other.
    #[default]
    Both,
    /// Only the first `[[rsm]]` (RSM 0) sends.
    First,
    /// Only the second `[[rsm]]` (RSM 1) sends.
    Second,
}

impl Senders {
    /// True if `rsm` transmits a stream.
    pub fn sends(self, rsm: RsmId) -> bool {
        match self {
            Self::Both => true,
            Self::First => rsm.0 == 0,
            Self::Second => rsm.0 == 1,
        }
    }

    /// The name used in files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Both => "both",
            Self::First => "first",
            Self::Second => "second",
        }
    }
}

/// Synthetic load (the `[load]` table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadSpec {
    /// Messages in each sending RSM's stream.
    pub messages: u64,
    /// Payload bytes per message (at least 1, at most `tuning.max_payload_bytes`).
    pub size: usize,
    /// Which RSMs transmit a stream.
    pub senders: Senders,
    /// Messages per second per sending replica; 0 sends as fast as backpressure allows.
    pub rate: u64,
    /// A node gives up after this long (`timeout_s`, seconds).
    pub timeout: Duration,
}

impl Default for LoadSpec {
    fn default() -> Self {
        Self { messages: 100_000, size: 100, senders: Senders::Both, rate: 0, timeout: Duration::from_secs(120) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders() {
        assert!(Senders::Both.sends(RsmId(0)) && Senders::Both.sends(RsmId(1)));
        assert!(Senders::First.sends(RsmId(0)) && !Senders::First.sends(RsmId(1)));
        assert!(!Senders::Second.sends(RsmId(0)) && Senders::Second.sends(RsmId(1)));
    }
}
