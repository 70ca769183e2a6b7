//! Byzantine behaviours that a faulty replica can exhibit (cargo feature `adversary`).
//!
//! Faulty replicas in the simulator run the real engine with an [`Adversary`] plugged in, so the
//! correct replicas are tested against frames that a real attacker could produce (valid MACs on
//! their own links, lying content). The engine asks the adversary at the few points where such a
//! replica departs from the protocol: its sending duties, its dissemination inside its RSM, the
//! report it puts on frames and the records it sends. Without the feature none of this exists
//! and those points compile to nothing: production builds (`picsou-runtime`, `libpicsou`) carry
//! no adversary code. The simulator, the tests, `picsou sim --byzantine` and the Python
//! package's `byzantine` options enable it.
//!
//! Every hook gets the current time, so that behaviours can start late or vary over time.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::Time;
use crate::wire::AckReport;

/// A Byzantine behaviour, as configurations name it.
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

    /// The adversary that exhibits this behaviour.
    pub fn adversary(self) -> Box<dyn Adversary> {
        Box::new(Scripted { behavior: self, lie: AckReport::default() })
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

/// What the engine asks a Byzantine replica at the points where it may depart from the
/// protocol. Every method defaults to the correct behaviour.
pub trait Adversary: Send + fmt::Debug {
    /// Whether to skip this replica's duties for `seq` as it enters the send window (its first
    /// send, and a resend at once when earlier pairs of its rotation are suspected).
    fn skips_first_send(&mut self, _now: Time, _seq: u64) -> bool {
        false
    }

    /// Whether to skip this replica's resend of `seq` (after loss detection, or an OTU takeover).
    fn skips_resend(&mut self, _now: Time, _seq: u64) -> bool {
        false
    }

    /// Whether to skip forwarding and repairing inside this replica's RSM.
    fn skips_rebroadcast(&mut self, _now: Time) -> bool {
        false
    }

    /// The report to put on a frame instead of `truth`, this replica's real report of the
    /// incoming stream (`phi_bits`: the configured φ-list size).
    fn report<'a>(&'a mut self, _now: Time, truth: &'a AckReport, _phi_bits: u32) -> &'a AckReport {
        truth
    }

    /// The payload and proof to send instead of message `seq`'s, in a first send or resend.
    fn forge(&mut self, _now: Time, _seq: u64, _payload: &[u8], _proof: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        None
    }

    /// Bytes beyond the real records that a frame of this replica's may need (forged records
    /// can be longer than the real ones).
    fn extra_frame_bytes(&self) -> usize {
        0
    }
}

/// How far behind a stale-ack replica reports.
const STALE_LAG: u64 = 1000;

/// The [`Behavior`]s, each a fixed departure from the protocol from the start.
#[derive(Debug)]
struct Scripted {
    behavior: Behavior,
    /// The lying report, rebuilt for each frame.
    lie: AckReport,
}

impl Adversary for Scripted {
    fn skips_first_send(&mut self, _now: Time, _seq: u64) -> bool {
        self.behavior == Behavior::Silent
    }

    fn skips_resend(&mut self, _now: Time, _seq: u64) -> bool {
        self.behavior == Behavior::Silent
    }

    fn skips_rebroadcast(&mut self, _now: Time) -> bool {
        self.behavior == Behavior::NoRebroadcast
    }

    fn report<'a>(&'a mut self, _now: Time, truth: &'a AckReport, phi_bits: u32) -> &'a AckReport {
        let lie = &mut self.lie;
        lie.phi.clear();
        match self.behavior {
            Behavior::InflateAck => lie.next = truth.next.saturating_add(1_000_000_000),
            Behavior::ZeroAck => lie.next = 0,
            Behavior::StaleAck => lie.next = truth.next.saturating_sub(STALE_LAG),
            Behavior::LiePhi => {
                lie.next = truth.next;
                let words = (phi_bits / 64) as usize;
                lie.phi.extend((0..words).map(|i| !truth.phi.get(i).copied().unwrap_or(0)));
            }
            Behavior::Forge | Behavior::Silent | Behavior::NoRebroadcast => return truth,
        }
        &self.lie
    }

    fn forge(&mut self, _now: Time, seq: u64, payload: &[u8], proof: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        (self.behavior == Behavior::Forge).then(|| forged(payload, proof, seq))
    }

    fn extra_frame_bytes(&self) -> usize {
        // Forged copies can be a few bytes longer.
        if self.behavior == Behavior::Forge { 64 } else { 0 }
    }
}

/// What a forging replica sends instead of a message: the payload with its first byte flipped
/// and the proof reversed (or a made-up proof if there is none).
fn forged(payload: &[u8], proof: &[u8], seq: u64) -> (Vec<u8>, Vec<u8>) {
    let mut p = payload.to_vec();
    match p.first_mut() {
        Some(b) => *b ^= 0x5a,
        None => p.push(0x5a),
    }
    let mut q: Vec<u8> = proof.iter().rev().copied().collect();
    if q.is_empty() || q == proof {
        q = seq.to_le_bytes().iter().chain(b"forged proof").copied().collect();
    }
    (p, q)
}
