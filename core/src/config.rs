//! Configuration: the two RSMs, the protocol's tuning, and everything an [`Endpoint`] needs.
//!
//! Validation happens once, here, and produces errors that name the offending field, so that
//! neither the engine nor the bindings ever see an impossible configuration.
//!
//! [`Endpoint`]: crate::Endpoint

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(feature = "adversary")]
use crate::adversary::Byzantine;
use crate::ids::{ReplicaId, RsmId};
use crate::keys::LinkKeys;
use crate::proof::ProofVerifier;

/// Which failures an RSM tolerates, and so what its `f` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultModel {
    /// Crash faults: needs total stake ≥ 2f+1. Proofs are not checked.
    Cft,
    /// Byzantine faults: needs total stake ≥ 3f+1. Every message needs a valid proof.
    Bft,
}

/// Which dissemination strategy the endpoints follow. All five share the wire format, acks,
/// flow control and delivery; they differ in who sends which message to whom, and in recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Picsou: one apportioned sender→receiver pair per message, QUACKs, duplicate-QUACK resends.
    Picsou,
    /// One-shot: message k goes once from sender k mod n_s to receiver k mod n_r; no recovery.
    Ost,
    /// All-to-all: every sender replica sends every message to every receiver replica.
    Ata,
    /// Leader-to-leader: sender replica 0 sends to receiver replica 0, which broadcasts.
    Ll,
    /// One-to-f+1 (GeoBFT style): the sender leader sends to f_r+1 stake of receivers; if a
    /// message is not QUACKed in time, the next sender replica takes over.
    Otu,
}

impl Strategy {
    /// All strategies, Picsou first.
    pub const ALL: [Self; 5] = [Self::Picsou, Self::Ost, Self::Ata, Self::Ll, Self::Otu];

    /// The lowercase name used in configs and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Picsou => "picsou",
            Self::Ost => "ost",
            Self::Ata => "ata",
            Self::Ll => "ll",
            Self::Otu => "otu",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|st| st.name().eq_ignore_ascii_case(s)).ok_or_else(|| ConfigError::Invalid {
            field: "strategy".into(),
            reason: format!("unknown strategy {s:?}; expected one of picsou, ost, ata, ll, otu"),
        })
    }
}

/// Who spreads received messages inside the receiving RSM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dissemination {
    /// The library forwards first-hand messages to its RSM peers and repairs peers that lack
    /// messages; every correct replica delivers every message in order, exactly once.
    #[default]
    Library,
    /// The application disseminates (e.g. through its own consensus) and tells the endpoint
    /// with [`Endpoint::local_has`](crate::Endpoint::local_has); the endpoint hands over only
    /// messages it received first-hand.
    Application,
}

/// One replica of an RSM, as the protocol sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaSpec {
    /// Application-chosen identifier, unique within the RSM.
    pub id: u32,
    /// Stake (voting weight); at least 1.
    #[serde(default = "one")]
    pub stake: u64,
}

fn one() -> u64 {
    1
}

/// One RSM: its replicas, fault model and fault threshold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RsmSpec {
    /// Human-readable name, used in errors and reports.
    pub name: String,
    /// Replicas, in index order.
    pub replicas: Vec<ReplicaSpec>,
    /// Fault model.
    pub fault: FaultModel,
    /// Maximum faulty **stake** tolerated (equal to a replica count when every stake is 1).
    pub f: u64,
}

impl RsmSpec {
    /// An RSM of `n` replicas of stake 1 with ids 0..n.
    pub fn uniform(name: &str, n: usize, fault: FaultModel, f: u64) -> Self {
        Self::with_stakes(name, &vec![1; n], fault, f)
    }

    /// An RSM whose replica `i` has id `i` and stake `stakes[i]`.
    pub fn with_stakes(name: &str, stakes: &[u64], fault: FaultModel, f: u64) -> Self {
        Self {
            name: name.to_string(),
            replicas: stakes.iter().enumerate().map(|(i, &stake)| ReplicaSpec { id: i as u32, stake }).collect(),
            fault,
            f,
        }
    }

    /// Number of replicas.
    pub fn n(&self) -> usize {
        self.replicas.len()
    }

    /// Sum of all stakes.
    pub fn total_stake(&self) -> u64 {
        self.replicas.iter().map(|r| r.stake).sum()
    }

    /// Stakes in index order.
    pub fn stakes(&self) -> Vec<u64> {
        self.replicas.iter().map(|r| r.stake).collect()
    }

    /// The largest f that the fault model allows for this total stake.
    pub fn max_f(&self) -> u64 {
        let s = self.total_stake();
        match self.fault {
            FaultModel::Cft => s.saturating_sub(1) / 2,
            FaultModel::Bft => s.saturating_sub(1) / 3,
        }
    }

    /// Checks this RSM on its own; `field` prefixes error field names (e.g. `rsm[0]`).
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let invalid = |f: &str, reason: String| ConfigError::Invalid { field: format!("{field}.{f}"), reason };
        if self.replicas.is_empty() {
            return Err(invalid("replicas", format!("RSM {:?} has zero replicas", self.name)));
        }
        if self.replicas.len() > usize::from(u16::MAX) {
            return Err(invalid("replicas", format!("at most {} replicas per RSM", u16::MAX)));
        }
        let mut ids = std::collections::HashSet::new();
        let mut total: u64 = 0;
        for (i, r) in self.replicas.iter().enumerate() {
            if !ids.insert(r.id) {
                return Err(invalid(&format!("replicas[{i}].id"), format!("duplicate replica id {}", r.id)));
            }
            if r.stake == 0 {
                return Err(invalid(&format!("replicas[{i}].stake"), "stake must be at least 1".into()));
            }
            total = total
                .checked_add(r.stake)
                .filter(|t| *t <= 1 << 48)
                .ok_or_else(|| invalid("replicas", "total stake must be at most 2^48".into()))?;
        }
        if self.f > self.max_f() {
            let need = match self.fault {
                FaultModel::Cft => "2f+1",
                FaultModel::Bft => "3f+1",
            };
            return Err(invalid(
                "f",
                format!(
                    "f = {} is too large: a {:?} RSM needs total stake >= {need}, and RSM {:?} has {total} (largest valid f: {})",
                    self.f,
                    self.fault,
                    self.name,
                    self.max_f()
                ),
            ));
        }
        Ok(())
    }
}

/// The two RSMs of a deployment. Index 0 and 1 are [`RsmId`]s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    /// RSM 0 and RSM 1.
    pub rsms: [RsmSpec; 2],
}

impl Membership {
    /// Builds and validates a membership.
    pub fn new(rsm0: RsmSpec, rsm1: RsmSpec) -> Result<Self, ConfigError> {
        let m = Self { rsms: [rsm0, rsm1] };
        m.validate()?;
        Ok(m)
    }

    /// Checks both RSMs, and that their fault models can talk safely.
    ///
    /// A crash-tolerant RSM's messages carry no proof of commitment, so inside a
    /// Byzantine-tolerant receiving RSM a faulty replica could forward a message the sender
    /// never committed, and its correct peers could not tell: a crash-tolerant RSM paired with
    /// a Byzantine-tolerant one is refused (both directions are streams).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.rsms[0].validate("rsm[0]")?;
        self.rsms[1].validate("rsm[1]")?;
        if let Some(cft) = self.rsms.iter().position(|r| r.fault == FaultModel::Cft)
            && self.rsms[1 - cft].fault == FaultModel::Bft
        {
            let bft = 1 - cft;
            return Err(ConfigError::Invalid {
                field: format!("rsm[{cft}].fault"),
                reason: format!(
                    "rsm[{cft}] ({}) is \"cft\" and rsm[{bft}] ({}) is \"bft\": messages of a crash-tolerant RSM \
                     carry no proof, so a Byzantine replica of {} could make its peers deliver messages {} never \
                     sent; declare both RSMs \"bft\" (with commit proofs), or both \"cft\"",
                    self.rsms[cft].name, self.rsms[bft].name, self.rsms[bft].name, self.rsms[cft].name
                ),
            });
        }
        Ok(())
    }

    /// The spec of one RSM.
    pub fn rsm(&self, id: RsmId) -> &RsmSpec {
        &self.rsms[usize::from(id.0 & 1)]
    }

    /// True if `r` names a replica of this membership.
    pub fn contains(&self, r: ReplicaId) -> bool {
        r.rsm.0 <= 1 && usize::from(r.index) < self.rsm(r.rsm).n()
    }
}

/// Tuning of the protocol. Every field has a default suited to a LAN; see each field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolParams {
    /// Size of the φ-list (selective-ack bitset) in bits; a multiple of 64, at most 4096.
    pub phi_bits: u32,
    /// Flow control: a sender sends message k only while k < QUACK + `send_window`.
    pub send_window: u64,
    /// Flow control in bytes: a sender also keeps at most this many payload bytes sent beyond
    /// the QUACK (at least one message is always allowed). With large messages this bounds
    /// queues (and so forwarding backlog at the receivers) where a message count would not.
    ///
    /// Throughput is at most `send_window_bytes` per QUACK round trip: the 32 MiB default
    /// covers about 2.7 Gbit/s at 100 ms. Over a WAN with a larger bandwidth-delay product,
    /// raise it, and `max_buffered_bytes` and `retention_bytes` with it (the defaults keep
    /// them at 2 and 4 times it).
    pub send_window_bytes: u64,
    /// Backpressure: `transmit` refuses messages more than this far beyond the QUACK.
    /// Must be at least `send_window`.
    pub max_buffered: u64,
    /// Backpressure in bytes: `transmit` refuses messages while this many payload bytes are
    /// buffered beyond the QUACK (at least one message is always accepted). Bounds a
    /// replica's memory with large messages, where `max_buffered` (a count) would not.
    /// Must be at least `send_window_bytes`.
    pub max_buffered_bytes: u64,
    /// Receivers accept messages at most this far beyond their cumulative ack (must be at
    /// least `send_window`, or first sends are dropped as out of window).
    pub recv_window: u64,
    /// Largest frame the engine builds, in bytes (a single larger message still gets a frame
    /// of its own). Peers reject frames above `max_frame_bytes_accepted`.
    pub max_frame_bytes: usize,
    /// Largest frame accepted from a peer, in bytes.
    pub max_frame_bytes_accepted: usize,
    /// Largest payload accepted from the application or a peer, in bytes.
    pub max_payload_bytes: usize,
    /// An ack-only frame goes to a peer when this long has passed since the last frame to it
    /// and the ack has news (changed, or a gap is outstanding).
    #[serde(with = "millis")]
    pub ack_interval: Duration,
    /// An ack-only frame goes to a peer at least this often, even with no news: tail losses
    /// are detected only through these repeated reports.
    #[serde(with = "millis")]
    pub ack_keepalive: Duration,
    /// How many reports of "k missing" from one receiver count as "repeatedly" (duplicate-QUACK).
    pub dup_threshold: u8,
    /// RTT assumed before the first sample (conservative, like TCP's initial RTO: a resend
    /// too early costs a copy, one too late only time at start-up).
    #[serde(with = "millis")]
    pub initial_rtt: Duration,
    /// Lower bound of the resend timeout.
    #[serde(with = "millis")]
    pub min_rto: Duration,
    /// Upper bound of the resend timeout.
    #[serde(with = "millis")]
    pub max_rto: Duration,
    /// Inside the receiving RSM: a replica that has had message k for this long and sees a
    /// peer still report k missing sends it to that peer.
    #[serde(with = "millis")]
    pub repair_delay: Duration,
    /// A replica of this RSM that has sent nothing for this long is suspected to have crashed:
    /// first-hand messages are no longer forwarded to it (it is repaired once it speaks again).
    /// Forwarding to dead peers would otherwise waste a receiver's egress bandwidth.
    /// A replica whose frames recently stopped for longer than this (a loaded machine) gets
    /// up to twice that gap, at most ten times this, before it is suspected again.
    #[serde(with = "millis")]
    pub suspect_after: Duration,
    /// How many delivered messages a receiver keeps to repair lagging or restarted peers.
    /// Senders pace to the slowest active receiver, so an active peer is never more than a
    /// send window behind; the default of 4 send windows also covers a peer that was left
    /// out of pacing for a while (stuck or silent on a loaded host) and then catches up.
    pub retention: u64,
    /// Bytes of delivered payloads a receiver keeps for repairs (default: 4 byte windows).
    pub retention_bytes: usize,
    /// OTU baseline: time after which the next sender replica resends an un-QUACKed message.
    #[serde(with = "millis")]
    pub otu_timeout: Duration,
    /// Who disseminates inside the receiving RSM.
    pub dissemination: Dissemination,
}

impl Default for ProtocolParams {
    fn default() -> Self {
        Self {
            phi_bits: 1024,
            send_window: 65_536,
            send_window_bytes: 32 << 20,
            max_buffered: 262_144,
            max_buffered_bytes: 64 << 20,
            recv_window: 262_144,
            max_frame_bytes: 256 * 1024,
            max_frame_bytes_accepted: 64 * 1024 * 1024,
            max_payload_bytes: 32 * 1024 * 1024,
            ack_interval: Duration::from_millis(1),
            ack_keepalive: Duration::from_millis(20),
            dup_threshold: 2,
            initial_rtt: Duration::from_millis(50),
            min_rto: Duration::from_micros(500),
            max_rto: Duration::from_secs(2),
            repair_delay: Duration::from_millis(20),
            suspect_after: Duration::from_millis(100),
            retention: 1 << 18,
            retention_bytes: 128 << 20,
            otu_timeout: Duration::from_millis(50),
            dissemination: Dissemination::Library,
        }
    }
}

impl ProtocolParams {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: &str| ConfigError::Invalid {
            field: format!("params.{field}"),
            reason: reason.to_string(),
        };
        if !self.phi_bits.is_multiple_of(64) || self.phi_bits > 4096 {
            return Err(invalid("phi_bits", "must be a multiple of 64 between 0 and 4096"));
        }
        if self.send_window == 0 || self.send_window > 1 << 24 {
            return Err(invalid("send_window", "must be between 1 and 2^24"));
        }
        if self.send_window_bytes == 0 {
            return Err(invalid("send_window_bytes", "must be positive"));
        }
        if self.max_buffered < self.send_window || self.max_buffered > 1 << 26 {
            return Err(invalid("max_buffered", "must be at least send_window and at most 2^26"));
        }
        if self.max_buffered_bytes < self.send_window_bytes {
            return Err(invalid("max_buffered_bytes", "must be at least send_window_bytes"));
        }
        if self.recv_window < self.send_window || self.recv_window > 1 << 26 {
            return Err(invalid("recv_window", "must be at least send_window and at most 2^26"));
        }
        if self.max_frame_bytes < 1024 || self.max_frame_bytes > self.max_frame_bytes_accepted {
            return Err(invalid("max_frame_bytes", "must be at least 1024 and at most max_frame_bytes_accepted"));
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes + 1024 > self.max_frame_bytes_accepted {
            return Err(invalid(
                "max_payload_bytes",
                "must be positive and leave room for a frame header within max_frame_bytes_accepted",
            ));
        }
        if self.max_frame_bytes_accepted > u32::MAX as usize {
            return Err(invalid("max_frame_bytes_accepted", "must fit in 32 bits"));
        }
        if self.dup_threshold == 0 {
            return Err(invalid("dup_threshold", "must be at least 1"));
        }
        if self.ack_interval.is_zero() || self.ack_keepalive < self.ack_interval {
            return Err(invalid(
                "ack_keepalive",
                "ack_interval must be positive and ack_keepalive at least ack_interval",
            ));
        }
        if self.min_rto.is_zero() || self.max_rto < self.min_rto {
            return Err(invalid("max_rto", "min_rto must be positive and max_rto at least min_rto"));
        }
        if self.retention == 0 {
            return Err(invalid("retention", "must be at least 1"));
        }
        if self.otu_timeout.is_zero() {
            return Err(invalid("otu_timeout", "must be positive"));
        }
        Ok(())
    }
}

/// Everything one [`Endpoint`](crate::Endpoint) needs: who it is, who the two RSMs are, how to
/// authenticate frames and verify proofs, and the protocol tuning.
#[derive(Clone)]
pub struct EndpointConfig {
    /// The two RSMs.
    pub membership: Arc<Membership>,
    /// This replica.
    pub local: ReplicaId,
    /// Dissemination strategy (Picsou or a baseline).
    pub strategy: Strategy,
    /// Protocol tuning.
    pub params: ProtocolParams,
    /// MAC keys for the links of this replica.
    pub keys: LinkKeys,
    /// Checks that the remote RSM committed each message it sends (BFT); unused under CFT.
    pub verifier: Arc<dyn ProofVerifier>,
    /// Byzantine behaviour to exhibit, and from when (simulator, tests and the `byzantine`
    /// options only); `None` for a correct replica.
    #[cfg(feature = "adversary")]
    pub behavior: Option<Byzantine>,
}

impl EndpointConfig {
    /// The configuration of a correct replica (with the `adversary` feature, set `behavior`
    /// afterwards to make it Byzantine).
    pub fn new(
        membership: Arc<Membership>,
        local: ReplicaId,
        strategy: Strategy,
        params: ProtocolParams,
        keys: LinkKeys,
        verifier: Arc<dyn ProofVerifier>,
    ) -> Self {
        Self {
            membership,
            local,
            strategy,
            params,
            keys,
            verifier,
            #[cfg(feature = "adversary")]
            behavior: None,
        }
    }

    /// Checks the whole configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.membership.validate()?;
        self.params.validate()?;
        if !self.membership.contains(self.local) {
            return Err(ConfigError::Invalid {
                field: "local".into(),
                reason: format!("replica {} is not in the membership", self.local),
            });
        }
        Ok(())
    }
}

/// A configuration that cannot work, naming the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has an impossible value.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `rsm[1].f`.
        field: String,
        /// What is wrong and what would be valid.
        reason: String,
    },
    /// A configuration file or text could not be parsed.
    #[error("{source_name}: {message}")]
    Parse {
        /// File name or `<text>`.
        source_name: String,
        /// The parser's message (with line and column where known).
        message: String,
    },
}

/// Serde helper: a [`Duration`] written as (fractional) milliseconds.
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes milliseconds as a float.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1e3)
    }

    /// Reads milliseconds as a float; rejects negative and non-finite values.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        if !ms.is_finite() || !(0.0..=1e9).contains(&ms) {
            return Err(serde::de::Error::custom("milliseconds must be a finite number between 0 and 1e9"));
        }
        Ok(Duration::from_secs_f64(ms / 1e3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn valid_memberships_pass() {
        let m = Membership::new(
            RsmSpec::uniform("a", 3, FaultModel::Cft, 1),
            RsmSpec::with_stakes("b", &[4, 1, 1, 1], FaultModel::Cft, 3),
        )
        .unwrap();
        assert_eq!(m.rsm(RsmId(1)).total_stake(), 7);
        assert!(m.contains(ReplicaId::new(1, 3)));
        assert!(!m.contains(ReplicaId::new(1, 4)));
        assert!(!m.contains(ReplicaId::new(2, 0)));
    }

    #[test]
    fn a_crash_tolerant_rsm_paired_with_a_byzantine_tolerant_one_is_refused() {
        let cft = RsmSpec::uniform("raft", 3, FaultModel::Cft, 1);
        let bft = RsmSpec::uniform("chain", 4, FaultModel::Bft, 1);
        for (a, b, field) in [(cft.clone(), bft.clone(), "rsm[0].fault"), (bft, cft, "rsm[1].fault")] {
            let e = Membership::new(a, b).unwrap_err();
            assert!(matches!(&e, ConfigError::Invalid { field: f, .. } if f == field), "{e}");
            assert!(e.to_string().contains("a Byzantine replica of chain could make its peers deliver"), "{e}");
        }
    }

    #[test]
    fn impossible_memberships_name_the_field() {
        let ok = RsmSpec::uniform("a", 4, FaultModel::Bft, 1);
        let e = Membership::new(ok.clone(), RsmSpec::uniform("b", 4, FaultModel::Bft, 2)).unwrap_err();
        assert_eq!(field_of(e.clone()), "rsm[1].f");
        assert!(e.to_string().contains("3f+1"), "{e}");
        let e = Membership::new(RsmSpec::uniform("a", 0, FaultModel::Cft, 0), ok.clone()).unwrap_err();
        assert_eq!(field_of(e), "rsm[0].replicas");
        let mut dup = RsmSpec::uniform("b", 4, FaultModel::Bft, 1);
        dup.replicas[2].id = 0;
        assert_eq!(field_of(Membership::new(ok.clone(), dup).unwrap_err()), "rsm[1].replicas[2].id");
        let zero = RsmSpec::with_stakes("b", &[1, 0, 1, 1], FaultModel::Bft, 0);
        assert_eq!(field_of(Membership::new(ok.clone(), zero).unwrap_err()), "rsm[1].replicas[1].stake");
        let huge = RsmSpec::with_stakes("b", &[1 << 47, 1 << 47, 1 << 47], FaultModel::Cft, 0);
        assert_eq!(field_of(Membership::new(ok, huge).unwrap_err()), "rsm[1].replicas");
        // CFT allows up to (S-1)/2, BFT up to (S-1)/3.
        assert_eq!(RsmSpec::uniform("c", 5, FaultModel::Cft, 0).max_f(), 2);
        assert_eq!(RsmSpec::uniform("c", 7, FaultModel::Bft, 0).max_f(), 2);
    }

    #[test]
    fn params_are_checked() {
        assert!(ProtocolParams::default().validate().is_ok());
        let bad = |p: ProtocolParams| field_of(p.validate().unwrap_err());
        let d = ProtocolParams::default;
        assert_eq!(bad(ProtocolParams { phi_bits: 100, ..d() }), "params.phi_bits");
        assert_eq!(bad(ProtocolParams { send_window: 0, ..d() }), "params.send_window");
        assert_eq!(bad(ProtocolParams { send_window_bytes: 0, ..d() }), "params.send_window_bytes");
        assert_eq!(bad(ProtocolParams { max_buffered_bytes: 1, ..d() }), "params.max_buffered_bytes");
        assert_eq!(bad(ProtocolParams { max_buffered: 1, ..d() }), "params.max_buffered");
        assert_eq!(bad(ProtocolParams { recv_window: 1, ..d() }), "params.recv_window");
        assert_eq!(bad(ProtocolParams { max_frame_bytes: 10, ..d() }), "params.max_frame_bytes");
        assert_eq!(bad(ProtocolParams { dup_threshold: 0, ..d() }), "params.dup_threshold");
        assert_eq!(bad(ProtocolParams { retention: 0, ..d() }), "params.retention");
        assert_eq!(bad(ProtocolParams { max_rto: Duration::ZERO, ..d() }), "params.max_rto");
    }

    #[test]
    fn params_round_trip_through_toml_and_reject_unknown_keys() {
        let p = ProtocolParams { phi_bits: 512, ack_interval: Duration::from_micros(250), ..ProtocolParams::default() };
        let text = toml::to_string(&p).unwrap();
        let back: ProtocolParams = toml::from_str(&text).unwrap();
        assert_eq!(back, p);
        let partial: ProtocolParams = toml::from_str("phi_bits = 128\nack_interval = 2.5").unwrap();
        assert_eq!(partial.phi_bits, 128);
        assert_eq!(partial.ack_interval, Duration::from_micros(2500));
        let e = toml::from_str::<ProtocolParams>("phi_bitz = 1").unwrap_err();
        assert!(e.to_string().contains("phi_bitz"), "{e}");
        let e = toml::from_str::<ProtocolParams>("ack_interval = -1.0").unwrap_err();
        assert!(e.to_string().contains("milliseconds"), "{e}");
        assert_eq!("OTU".parse::<Strategy>().unwrap(), Strategy::Otu);
        assert!("tcp".parse::<Strategy>().is_err());
    }
}
