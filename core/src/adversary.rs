//! Byzantine behaviours that a faulty replica can exhibit.
//!
//! Faulty replicas in the simulator run the real engine with one of these switched on, so the
//! correct replicas are tested against frames that a real attacker could produce (valid MACs on
//! their own links, lying content). Only the simulator and tests set these.

use serde::{Deserialize, Serialize};

/// A Byzantine behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behavior {
    /// Reports a cumulative ack far beyond what it has (tries to make senders QUACK and free
    /// messages too early).
    InflateAck,
    /// Always reports a cumulative ack of 0 and an empty φ-list (tries to cause resend storms).
    ZeroAck,
    /// Replays an old ack: reports the ack it had long ago and stops advancing it.
    StaleAck,
    /// Lies in the φ-list: reports every seq it has as missing and every seq it lacks as present.
    LiePhi,
    /// Sends forged payloads (with the original proof) and forged proofs in its sending duties.
    Forge,
    /// Stays silent in its sending and resending duties (still acks and receives).
    Silent,
    /// Receives and acks, but never forwards or repairs inside its RSM.
    NoRebroadcast,
}

impl Behavior {
    /// All behaviours.
    pub const ALL: [Self; 7] =
        [Self::InflateAck, Self::ZeroAck, Self::StaleAck, Self::LiePhi, Self::Forge, Self::Silent, Self::NoRebroadcast];

    /// The kebab-case name used on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::InflateAck => "inflate-ack",
            Self::ZeroAck => "zero-ack",
            Self::StaleAck => "stale-ack",
            Self::LiePhi => "lie-phi",
            Self::Forge => "forge",
            Self::Silent => "silent",
            Self::NoRebroadcast => "no-rebroadcast",
        }
    }
}

impl std::str::FromStr for Behavior {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| {
            format!(
                "unknown Byzantine behaviour {s:?}; expected one of inflate-ack, zero-ack, stale-ack, lie-phi, forge, silent, no-rebroadcast"
            )
        })
    }
}
