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
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::Time;
use crate::wire::AckReport;

/// `slow-ack`'s default pace: its reported ack advances by at most this many messages per
/// second.
pub const DEFAULT_SLOW_ACK_PER_S: u32 = 100;
/// `drop-some`'s default share of first sends skipped, in percent.
pub const DEFAULT_DROP_PERCENT: u8 = 50;

/// A Byzantine behaviour, as configurations name it: `name` or `name:parameter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// `slow-ack:N`: reports an ack that advances by at most `per_s` messages per second from
    /// its onset, with an empty φ-list — alive, but throttling a sender that paces to it.
    SlowAck {
        /// Messages per second its reported ack advances by, at most.
        per_s: u32,
    },
    /// `drop-some:P`: skips `percent` % of its first sends (the paper's selective dropping),
    /// chosen by seq, and sends the rest correctly.
    DropSome {
        /// Share of first sends skipped, 0..=100.
        percent: u8,
    },
}

impl Behavior {
    /// All behaviours (parameterised ones with their defaults).
    pub const ALL: [Self; 9] = [
        Self::InflateAck,
        Self::ZeroAck,
        Self::StaleAck,
        Self::LiePhi,
        Self::Forge,
        Self::Silent,
        Self::NoRebroadcast,
        Self::SlowAck { per_s: DEFAULT_SLOW_ACK_PER_S },
        Self::DropSome { percent: DEFAULT_DROP_PERCENT },
    ];

    /// The kebab-case name used on the command line (without the parameter).
    pub const fn name(self) -> &'static str {
        match self {
            Self::InflateAck => "inflate-ack",
            Self::ZeroAck => "zero-ack",
            Self::StaleAck => "stale-ack",
            Self::LiePhi => "lie-phi",
            Self::Forge => "forge",
            Self::Silent => "silent",
            Self::NoRebroadcast => "no-rebroadcast",
            Self::SlowAck { .. } => "slow-ack",
            Self::DropSome { .. } => "drop-some",
        }
    }

    /// Whether the behaviour concerns the replica's sending duties (else its receiving side).
    pub const fn acts_as_sender(self) -> bool {
        matches!(self, Self::Forge | Self::Silent | Self::DropSome { .. })
    }
}

impl fmt::Display for Behavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SlowAck { per_s } => write!(f, "slow-ack:{per_s}"),
            Self::DropSome { percent } => write!(f, "drop-some:{percent}"),
            b => f.write_str(b.name()),
        }
    }
}

/// Why a behaviour (`name[:parameter][@onset]`) does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseBehaviorError {
    /// No behaviour has this name.
    #[error("unknown Byzantine behaviour {name:?}; expected one of {expected}")]
    Unknown {
        /// The name given.
        name: String,
        /// The names there are, comma-separated.
        expected: String,
    },
    /// The behaviour's parameter is not what it takes.
    #[error("{text}: {expected}")]
    BadParameter {
        /// `name:parameter` as given.
        text: String,
        /// What the parameter should be.
        expected: &'static str,
    },
    /// The onset after `@` is not a number of the expected unit.
    #[error("{text:?}: the onset after '@' is in {unit}")]
    BadOnset {
        /// The whole text given.
        text: String,
        /// The unit, with an example.
        unit: &'static str,
    },
}

impl FromStr for Behavior {
    type Err = ParseBehaviorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, param) = match s.split_once(':') {
            Some((n, p)) => (n.trim(), Some(p.trim())),
            None => (s.trim(), None),
        };
        let unknown = || {
            let names: Vec<&str> = Self::ALL.iter().map(|b| b.name()).collect();
            ParseBehaviorError::Unknown { name: name.to_string(), expected: names.join(", ") }
        };
        let bad = |expected| ParseBehaviorError::BadParameter { text: s.trim().to_string(), expected };
        let b = Self::ALL.into_iter().find(|b| b.name() == name).ok_or_else(unknown)?;
        match (b, param) {
            (b, None) => Ok(b),
            (Self::SlowAck { .. }, Some(p)) => match p.parse::<u32>() {
                Ok(per_s) if per_s > 0 => Ok(Self::SlowAck { per_s }),
                _ => Err(bad("the parameter is messages per second, a whole number ≥ 1")),
            },
            (Self::DropSome { .. }, Some(p)) => {
                let percent = match p.strip_suffix('%') {
                    Some(pc) => pc.trim().parse::<f64>().ok(),
                    None => p.parse::<f64>().ok().map(|x| if x <= 1.0 && p.contains('.') { x * 100.0 } else { x }),
                };
                match percent {
                    Some(x) if (0.0..=100.0).contains(&x) => Ok(Self::DropSome { percent: x.round() as u8 }),
                    _ => Err(bad("the parameter is a share of first sends: 30, 30% or 0.3")),
                }
            }
            (_, Some(_)) => Err(bad("this behaviour takes no parameter")),
        }
    }
}

/// A Byzantine replica's behaviour and when it starts: `name[:parameter][@ms]` (onset in
/// milliseconds after the replica's engine starts; virtual time in the simulator). Before its
/// onset the replica follows the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Byzantine {
    /// What it does.
    pub behavior: Behavior,
    /// From when (after the engine's start).
    pub onset: Duration,
}

impl Byzantine {
    /// The adversary that exhibits this behaviour, for an engine started at `start`.
    pub fn adversary(self, start: Time) -> Box<dyn Adversary> {
        Box::new(Scripted { behavior: self.behavior, onset: start + self.onset, lie: AckReport::default(), slow: None })
    }
}

impl From<Behavior> for Byzantine {
    fn from(behavior: Behavior) -> Self {
        Self { behavior, onset: Duration::ZERO }
    }
}

impl fmt::Display for Byzantine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.behavior)?;
        if !self.onset.is_zero() {
            write!(f, "@{}", self.onset.as_millis())?;
        }
        Ok(())
    }
}

impl FromStr for Byzantine {
    type Err = ParseBehaviorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (b, onset) = match s.split_once('@') {
            Some((b, at)) => {
                let ms: u64 = at.trim().parse().map_err(|_| ParseBehaviorError::BadOnset {
                    text: s.to_string(),
                    unit: "whole milliseconds (e.g. zero-ack@500)",
                })?;
                (b, Duration::from_millis(ms))
            }
            None => (s, Duration::ZERO),
        };
        Ok(Self { behavior: b.parse()?, onset })
    }
}

impl Byzantine {
    /// Parses `name[:parameter][@SECONDS]`, the form real deployments take (`picsou node
    /// --byzantine`, `picsou local --byzantine`): the onset in seconds (fractions allowed) after
    /// the node starts.
    pub fn parse_with_seconds(s: &str) -> Result<Self, ParseBehaviorError> {
        let (b, onset) = match s.split_once('@') {
            Some((b, at)) => match at.trim().parse::<f64>() {
                Ok(secs) if secs.is_finite() && secs >= 0.0 => (b, Duration::from_secs_f64(secs)),
                _ => {
                    return Err(ParseBehaviorError::BadOnset {
                        text: s.to_string(),
                        unit: "seconds (e.g. zero-ack@1.5)",
                    });
                }
            },
            None => (s, Duration::ZERO),
        };
        Ok(Self { behavior: b.parse()?, onset })
    }
}

impl Serialize for Byzantine {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Byzantine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
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

/// The [`Behavior`]s, each a fixed departure from the protocol from its onset on.
#[derive(Debug)]
struct Scripted {
    behavior: Behavior,
    /// Correct before this time.
    onset: Time,
    /// The lying report, rebuilt for each frame.
    lie: AckReport,
    /// `slow-ack`: the true ack at the onset, and when that was.
    slow: Option<(u64, Time)>,
}

impl Scripted {
    fn active(&self, now: Time) -> bool {
        now >= self.onset
    }
}

impl Adversary for Scripted {
    fn skips_first_send(&mut self, now: Time, seq: u64) -> bool {
        if !self.active(now) {
            return false;
        }
        match self.behavior {
            Behavior::Silent => true,
            // Chosen by a hash of the seq, so the skipped ones are spread evenly.
            Behavior::DropSome { percent } => seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 100 < u64::from(percent),
            _ => false,
        }
    }

    fn skips_resend(&mut self, now: Time, _seq: u64) -> bool {
        self.active(now) && self.behavior == Behavior::Silent
    }

    fn skips_rebroadcast(&mut self, now: Time) -> bool {
        self.active(now) && self.behavior == Behavior::NoRebroadcast
    }

    fn report<'a>(&'a mut self, now: Time, truth: &'a AckReport, phi_bits: u32) -> &'a AckReport {
        if !self.active(now) {
            return truth;
        }
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
            Behavior::SlowAck { per_s } => {
                let (base, since) = *self.slow.get_or_insert((truth.next, now));
                let gained = now.saturating_since(since).as_secs_f64() * f64::from(per_s);
                lie.next = truth.next.min(base.saturating_add(gained as u64));
            }
            Behavior::Forge | Behavior::Silent | Behavior::NoRebroadcast | Behavior::DropSome { .. } => return truth,
        }
        &self.lie
    }

    fn forge(&mut self, now: Time, seq: u64, payload: &[u8], proof: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        (self.active(now) && self.behavior == Behavior::Forge).then(|| forged(payload, proof, seq))
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
