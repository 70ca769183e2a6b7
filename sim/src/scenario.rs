//! What a simulation runs: the [`Scenario`] (a TOML-loadable description with a default for
//! every field) and its validation into a [`Resolved`] plan.
//!
//! Validation is strict and happens before anything runs, so that an impossible experiment
//! (more faulty stake than `f`, Byzantine replicas in a crash-fault model, a stake vector of
//! the wrong length, …) is reported as a configuration error naming the field, never as a
//! protocol failure in the report.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::network::{LinkClass, NetConfig, mbps_to_ps_per_byte, ms_to_ns};
use super::rng::probability_threshold;
use picsou_core::adversary::Byzantine;
use picsou_core::config::{ConfigError, Dissemination, FaultModel, Membership, ProtocolParams, RsmSpec, Strategy};
use picsou_core::ids::ReplicaId;

/// Largest RSM the simulator accepts (its link table is quadratic in the replica count).
pub const MAX_REPLICAS_PER_RSM: usize = 256;
/// Largest number of messages per run (the simulator keeps a few words per message).
pub const MAX_MESSAGES: u64 = 10_000_000;
/// Largest per-attempt loss probability: the model retransmits until a frame gets through.
pub const MAX_LOSS: f64 = 0.9;

/// A window during which every link between the two RSMs is cut.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Start, in milliseconds of virtual time.
    pub start_ms: f64,
    /// End (the heal), in milliseconds of virtual time.
    pub end_ms: f64,
}

impl FromStr for Partition {
    type Err = String;
    /// Parses `START_MS-END_MS`, e.g. `100-250.5`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) =
            s.split_once('-').ok_or_else(|| format!("partition {s:?} should be START_MS-END_MS, e.g. 100-250"))?;
        let num = |x: &str| {
            x.trim().parse::<f64>().map_err(|_| format!("partition {s:?}: {x:?} is not a number of milliseconds"))
        };
        Ok(Self { start_ms: num(a)?, end_ms: num(b)? })
    }
}

/// A simulated experiment. Every field has a default, so `Scenario::default()` (or an empty
/// TOML file) is a valid run: Picsou between two BFT RSMs of 4 replicas, 10,000 messages of
/// 100 B on a 10 Gbit/s LAN-like network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Dissemination strategy: Picsou or a baseline.
    pub strategy: Strategy,
    /// Replicas of the sending RSM (RSM 0, replicas `s0`, `s1`, …).
    pub sender_n: usize,
    /// Replicas of the receiving RSM (RSM 1, replicas `r0`, `r1`, …).
    pub receiver_n: usize,
    /// Faulty stake the sending RSM tolerates; default: the largest valid for its stake.
    pub sender_f: Option<u64>,
    /// Faulty stake the receiving RSM tolerates; default: the largest valid for its stake.
    pub receiver_f: Option<u64>,
    /// Fault model of both RSMs.
    pub fault: FaultModel,
    /// Stake of each sender replica (length `sender_n`); default: all 1.
    pub sender_stake: Option<Vec<u64>>,
    /// Stake of each receiver replica (length `receiver_n`); default: all 1.
    pub receiver_stake: Option<Vec<u64>>,
    /// Bytes per message.
    pub size: usize,
    /// Messages RSM 0 sends.
    pub messages: u64,
    /// NIC speed of every replica, egress and ingress each, in Mbit/s.
    pub nic_mbps: f64,
    /// One-way latency between replicas of the same RSM, in ms.
    pub local_latency_ms: f64,
    /// Per-attempt loss probability inside an RSM (modelled as transport retransmission).
    pub local_loss: f64,
    /// One-way latency between the two RSMs, in ms.
    pub cross_latency_ms: f64,
    /// Rate limit of each cross-RSM replica pair (a WAN slice), in Mbit/s; `None` = NIC only.
    pub cross_link_mbps: Option<f64>,
    /// Per-attempt loss probability between the RSMs (modelled as transport retransmission).
    pub loss: f64,
    /// Each frame gets a uniform random extra delay up to this, in ms (reorders across links).
    pub jitter_ms: f64,
    /// Windows during which the cross-RSM links are cut; frames are held until the heal.
    pub partitions: Vec<Partition>,
    /// Crashed replicas: `"s0"` (crashed from the start) or `"r2@50"` (crashes at 50 ms).
    pub crash: Vec<String>,
    /// Byzantine replicas: name → behaviour, e.g. `r1 = "inflate-ack"`.
    pub byzantine: BTreeMap<String, Byzantine>,
    /// Seed of every random choice (loss, jitter, keys): same seed, same report.
    pub seed: u64,
    /// Engine tuning.
    pub params: ProtocolParams,
    /// CPU time per frame handled (sent or received), per replica, in µs.
    pub cpu_us_per_frame: f64,
    /// CPU time per byte of frame handled, per replica, in ns.
    pub cpu_ns_per_byte: f64,
    /// Fraction of the run's time (until the last completion) treated as warm-up: messages
    /// completed in it are left out of throughput and latency.
    pub warmup_fraction: f64,
    /// The run stops at this virtual time even if not everything was delivered.
    pub max_virtual_seconds: f64,
    /// Width of the report's throughput timeline intervals, in ms of virtual time; `None`: about
    /// 50 intervals over the run.
    pub timeline_ms: Option<f64>,
    /// BFT only: real ed25519 quorum certificates instead of the cheap oracle certificates.
    pub real_signatures: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            strategy: Strategy::Picsou,
            sender_n: 4,
            receiver_n: 4,
            sender_f: None,
            receiver_f: None,
            fault: FaultModel::Bft,
            sender_stake: None,
            receiver_stake: None,
            size: 100,
            messages: 10_000,
            nic_mbps: 10_000.0,
            local_latency_ms: 0.1,
            local_loss: 0.0,
            cross_latency_ms: 1.0,
            cross_link_mbps: None,
            loss: 0.0,
            jitter_ms: 0.0,
            partitions: Vec::new(),
            crash: Vec::new(),
            byzantine: BTreeMap::new(),
            seed: 1,
            params: ProtocolParams::default(),
            cpu_us_per_frame: 0.0,
            cpu_ns_per_byte: 0.0,
            warmup_fraction: 0.1,
            max_virtual_seconds: 300.0,
            timeline_ms: None,
            real_signatures: false,
        }
    }
}

/// What happens to one replica during the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaPlan {
    /// The replica.
    pub id: ReplicaId,
    /// Its stake.
    pub stake: u64,
    /// When it crashes, in ns of virtual time.
    pub crash_at: Option<u64>,
    /// Its Byzantine behaviour, if any.
    pub behavior: Option<Byzantine>,
}

impl ReplicaPlan {
    /// Neither crashes nor lies: the replicas C3B makes promises about.
    pub fn is_correct(&self) -> bool {
        self.crash_at.is_none() && self.behavior.is_none()
    }

    /// Follows the protocol for as long as it runs (correct, or crash-faulty).
    pub fn is_honest(&self) -> bool {
        self.behavior.is_none()
    }
}

/// A validated scenario, ready to run.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The two RSMs (RSM 0 sends to RSM 1).
    pub membership: Membership,
    /// Every replica, senders first (`s0…`, then `r0…`): the simulator's global index order.
    pub replicas: Vec<ReplicaPlan>,
    /// The network model's parameters.
    pub net: NetConfig,
    /// Virtual time limit, in ns.
    pub max_time_ns: u64,
}

impl Resolved {
    /// Number of sender replicas.
    pub fn sender_n(&self) -> usize {
        self.membership.rsms[0].n()
    }

    /// Global index (position in [`Self::replicas`]) of a replica.
    pub fn global(&self, id: ReplicaId) -> usize {
        if id.rsm.0 == 0 { usize::from(id.index) } else { self.sender_n() + usize::from(id.index) }
    }
}

/// Parses a replica name: `s3` is replica 3 of the sending RSM, `r0` replica 0 of the receiver.
pub(crate) fn parse_replica(name: &str, sender_n: usize, receiver_n: usize) -> Result<ReplicaId, String> {
    let bad = || {
        format!(
            "unknown replica {name:?}: expected s0..s{} or r0..r{}",
            sender_n.saturating_sub(1),
            receiver_n.saturating_sub(1)
        )
    };
    let (rsm, n, digits) = match name.as_bytes().first() {
        Some(b's') => (0u8, sender_n, &name[1..]),
        Some(b'r') => (1u8, receiver_n, &name[1..]),
        _ => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let index: usize = digits.parse().map_err(|_| bad())?;
    if index >= n {
        return Err(bad());
    }
    Ok(ReplicaId::new(rsm, index as u16))
}

/// Parses a crash entry: `s0` (at time 0) or `s0@50` (at 50 ms). Returns the replica and the
/// crash time in ns.
pub(crate) fn parse_crash(entry: &str, sender_n: usize, receiver_n: usize) -> Result<(ReplicaId, u64), String> {
    let (name, at) = match entry.split_once('@') {
        Some((name, ms)) => {
            let ms: f64 = ms
                .trim()
                .parse()
                .ok()
                .filter(|m: &f64| m.is_finite() && *m >= 0.0)
                .ok_or_else(|| format!("crash {entry:?}: {ms:?} is not a time in milliseconds"))?;
            (name, ms_to_ns(ms))
        }
        None => (entry, 0),
    };
    Ok((parse_replica(name.trim(), sender_n, receiver_n)?, at))
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.to_string(), reason: reason.into() }
}

/// Checks that `x` is finite and within `lo..=hi`.
fn check_range(field: &str, x: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
    if x.is_finite() && x >= lo && x <= hi {
        Ok(())
    } else {
        Err(invalid(field, format!("{x} is out of range: must be between {lo} and {hi}")))
    }
}

impl Scenario {
    /// Parses a scenario from TOML text; `source_name` (a file name) labels errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        toml::from_str(text)
            .map_err(|e| ConfigError::Parse { source_name: source_name.to_string(), message: e.to_string() })
    }

    /// The scenario as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// One RSM's spec, with `f` defaulted and checked. `side` is `"sender"` or `"receiver"`.
    fn rsm(&self, side: &str, n: usize, stake: &Option<Vec<u64>>, f: Option<u64>) -> Result<RsmSpec, ConfigError> {
        if n == 0 || n > MAX_REPLICAS_PER_RSM {
            return Err(invalid(
                &format!("{side}_n"),
                format!("{n} replicas: the simulator supports 1 to {MAX_REPLICAS_PER_RSM} per RSM"),
            ));
        }
        let stakes = match stake {
            Some(s) if s.len() != n => {
                return Err(invalid(&format!("{side}_stake"), format!("has {} entries but {side}_n is {n}", s.len())));
            }
            Some(s) if s.contains(&0) => {
                return Err(invalid(&format!("{side}_stake"), "every stake must be at least 1"));
            }
            Some(s) if s.iter().try_fold(0u64, |a, &b| a.checked_add(b)).is_none_or(|t| t > 1 << 48) => {
                return Err(invalid(&format!("{side}_stake"), "total stake must be at most 2^48"));
            }
            Some(s) => s.clone(),
            None => vec![1; n],
        };
        let mut spec = RsmSpec::with_stakes(side, &stakes, self.fault, 0);
        let max_f = spec.max_f();
        spec.f = match f {
            None => max_f,
            Some(f) if f <= max_f => f,
            Some(f) => {
                let (need, k) = match self.fault {
                    FaultModel::Cft => ("2f+1", 2 * f + 1),
                    FaultModel::Bft => ("3f+1", 3 * f + 1),
                };
                return Err(invalid(
                    &format!("{side}_f"),
                    format!(
                        "f = {f} is too large: a {} RSM needs total stake >= {need} = {k}, and the {side} RSM has {} (largest valid f: {max_f})",
                        match self.fault {
                            FaultModel::Cft => "CFT",
                            FaultModel::Bft => "BFT",
                        },
                        spec.total_stake()
                    ),
                ));
            }
        };
        spec.validate(side)?;
        Ok(spec)
    }

    /// Checks every field and produces the plan the simulator runs.
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let s = self.rsm("sender", self.sender_n, &self.sender_stake, self.sender_f)?;
        let r = self.rsm("receiver", self.receiver_n, &self.receiver_stake, self.receiver_f)?;
        let membership = Membership::new(s, r)?;

        self.params.validate()?;
        if self.params.dissemination != Dissemination::Library {
            return Err(invalid("params.dissemination", "the simulator models library-managed dissemination only"));
        }
        if self.size == 0 || self.size > self.params.max_payload_bytes {
            return Err(invalid(
                "size",
                format!(
                    "{} bytes: must be between 1 and params.max_payload_bytes ({})",
                    self.size, self.params.max_payload_bytes
                ),
            ));
        }
        if self.messages == 0 || self.messages > MAX_MESSAGES {
            return Err(invalid("messages", format!("{}: must be between 1 and {MAX_MESSAGES}", self.messages)));
        }
        check_range("nic_mbps", self.nic_mbps, 1e-3, 1e9)?;
        check_range("local_latency_ms", self.local_latency_ms, 0.0, 3.6e6)?;
        check_range("cross_latency_ms", self.cross_latency_ms, 0.0, 3.6e6)?;
        check_range("jitter_ms", self.jitter_ms, 0.0, 3.6e6)?;
        check_range("local_loss", self.local_loss, 0.0, MAX_LOSS)?;
        check_range("loss", self.loss, 0.0, MAX_LOSS)?;
        if let Some(l) = self.cross_link_mbps {
            check_range("cross_link_mbps", l, 1e-3, 1e9)?;
        }
        check_range("cpu_us_per_frame", self.cpu_us_per_frame, 0.0, 1e6)?;
        check_range("cpu_ns_per_byte", self.cpu_ns_per_byte, 0.0, 1e6)?;
        if !(self.warmup_fraction.is_finite() && (0.0..1.0).contains(&self.warmup_fraction)) {
            return Err(invalid(
                "warmup_fraction",
                format!("{}: must be at least 0 and below 1", self.warmup_fraction),
            ));
        }
        check_range("max_virtual_seconds", self.max_virtual_seconds, 1e-6, 1e6)?;
        if self.real_signatures && self.fault != FaultModel::Bft {
            return Err(invalid("real_signatures", "quorum certificates are only used with fault = bft"));
        }
        let mut partitions = Vec::with_capacity(self.partitions.len());
        for (i, p) in self.partitions.iter().enumerate() {
            let field = format!("partitions[{i}]");
            check_range(&format!("{field}.start_ms"), p.start_ms, 0.0, 3.6e9)?;
            check_range(&format!("{field}.end_ms"), p.end_ms, 0.0, 3.6e9)?;
            if p.end_ms <= p.start_ms {
                return Err(invalid(&field, format!("ends ({} ms) before it starts ({} ms)", p.end_ms, p.start_ms)));
            }
            partitions.push((ms_to_ns(p.start_ms), ms_to_ns(p.end_ms)));
        }

        // Faults.
        let (ns, nr) = (self.sender_n, self.receiver_n);
        let mut replicas: Vec<ReplicaPlan> = membership
            .rsms
            .iter()
            .enumerate()
            .flat_map(|(rsm, spec)| {
                spec.replicas.iter().enumerate().map(move |(i, r)| ReplicaPlan {
                    id: ReplicaId::new(rsm as u8, i as u16),
                    stake: r.stake,
                    crash_at: None,
                    behavior: None,
                })
            })
            .collect();
        let global = |id: ReplicaId| if id.rsm.0 == 0 { usize::from(id.index) } else { ns + usize::from(id.index) };
        for entry in &self.crash {
            let (id, at) = parse_crash(entry, ns, nr).map_err(|e| invalid("crash", e))?;
            let plan = &mut replicas[global(id)];
            if plan.crash_at.is_some() {
                return Err(invalid("crash", format!("{id} is listed twice")));
            }
            plan.crash_at = Some(at);
        }
        if !self.byzantine.is_empty() && self.fault != FaultModel::Bft {
            return Err(invalid(
                "byzantine",
                "Byzantine replicas need fault = bft (a CFT RSM assumes replicas only crash)",
            ));
        }
        for (name, &b) in &self.byzantine {
            let id = parse_replica(name, ns, nr).map_err(|e| invalid("byzantine", e))?;
            replicas[global(id)].behavior = Some(b);
        }
        for (rsm, side) in [(0u8, "sender"), (1u8, "receiver")] {
            let spec = &membership.rsms[usize::from(rsm)];
            let faulty: Vec<&ReplicaPlan> = replicas.iter().filter(|p| p.id.rsm.0 == rsm && !p.is_correct()).collect();
            let stake: u64 = faulty.iter().map(|p| p.stake).sum();
            if stake > spec.f {
                let names: Vec<String> = faulty.iter().map(|p| p.id.to_string()).collect();
                let field = if faulty.iter().any(|p| p.crash_at.is_some()) { "crash" } else { "byzantine" };
                return Err(invalid(
                    field,
                    format!(
                        "the {side} RSM has faulty stake {stake} ({}) but tolerates only {side}_f = {}",
                        names.join(", "),
                        spec.f
                    ),
                ));
            }
        }

        let net = NetConfig {
            nic_ps_per_byte: mbps_to_ps_per_byte(self.nic_mbps),
            local: LinkClass {
                latency_ns: ms_to_ns(self.local_latency_ms),
                loss_threshold: probability_threshold(self.local_loss),
                ps_per_byte: None,
            },
            cross: LinkClass {
                latency_ns: ms_to_ns(self.cross_latency_ms),
                loss_threshold: probability_threshold(self.loss),
                ps_per_byte: self.cross_link_mbps.map(mbps_to_ps_per_byte),
            },
            jitter_ns: ms_to_ns(self.jitter_ms),
            partitions,
            // µs → ns and ns → ps: both a factor of 1000, validated finite and non-negative.
            cpu_ns_per_frame: (self.cpu_us_per_frame * 1e3).round() as u64,
            cpu_ps_per_byte: (self.cpu_ns_per_byte * 1e3).round() as u64,
        };
        Ok(Resolved { membership, replicas, net, max_time_ns: ms_to_ns(self.max_virtual_seconds * 1e3) })
    }
}

#[cfg(test)]
mod tests {
    use picsou_core::adversary::Behavior;

    use super::*;

    fn err_field(s: &Scenario) -> String {
        match s.resolve() {
            Err(ConfigError::Invalid { field, .. }) => field,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn defaults_resolve() {
        let r = Scenario::default().resolve().unwrap();
        assert_eq!(r.membership.rsms[0].f, 1);
        assert_eq!(r.membership.rsms[1].f, 1);
        assert_eq!(r.replicas.len(), 8);
        assert!(r.replicas.iter().all(ReplicaPlan::is_correct));
        assert_eq!(r.net.nic_ps_per_byte, 800);
        assert_eq!(r.net.cross.latency_ns, 1_000_000);
        assert_eq!(r.net.local.latency_ns, 100_000);
        assert_eq!(r.max_time_ns, 300_000_000_000);
        assert_eq!(r.global(ReplicaId::new(1, 2)), 6);
    }

    #[test]
    fn default_f_follows_fault_model_and_stake() {
        let s = Scenario {
            fault: FaultModel::Cft,
            sender_n: 5,
            receiver_stake: Some(vec![4, 1, 1, 1]),
            ..Scenario::default()
        };
        let r = s.resolve().unwrap();
        assert_eq!(r.membership.rsms[0].f, 2);
        assert_eq!(r.membership.rsms[1].f, 3);
        let s = Scenario { sender_n: 19, receiver_stake: Some(vec![4, 1, 1, 1]), ..Scenario::default() };
        let r = s.resolve().unwrap();
        assert_eq!(r.membership.rsms[0].f, 6);
        assert_eq!(r.membership.rsms[1].f, 2);
    }

    #[test]
    fn too_large_f_names_the_field() {
        let s = Scenario { sender_f: Some(2), ..Scenario::default() };
        let e = s.resolve().unwrap_err().to_string();
        assert!(e.contains("sender_f") && e.contains("f = 2"), "{e}");
        let s = Scenario { receiver_f: Some(2), ..Scenario::default() };
        assert_eq!(err_field(&s), "receiver_f");
    }

    #[test]
    fn invalid_fields_are_named() {
        let d = Scenario::default;
        let cases: Vec<(Scenario, &str)> = vec![
            (Scenario { sender_n: 0, ..d() }, "sender_n"),
            (Scenario { receiver_n: 10_000, ..d() }, "receiver_n"),
            (Scenario { sender_stake: Some(vec![1, 1]), ..d() }, "sender_stake"),
            (Scenario { receiver_stake: Some(vec![1, 0, 1, 1]), ..d() }, "receiver_stake"),
            (Scenario { size: 0, ..d() }, "size"),
            (Scenario { messages: 0, ..d() }, "messages"),
            (Scenario { nic_mbps: 0.0, ..d() }, "nic_mbps"),
            (Scenario { loss: 1.0, ..d() }, "loss"),
            (Scenario { local_loss: -0.1, ..d() }, "local_loss"),
            (Scenario { jitter_ms: f64::NAN, ..d() }, "jitter_ms"),
            (Scenario { cross_link_mbps: Some(0.0), ..d() }, "cross_link_mbps"),
            (Scenario { warmup_fraction: 1.0, ..d() }, "warmup_fraction"),
            (Scenario { max_virtual_seconds: 0.0, ..d() }, "max_virtual_seconds"),
            (Scenario { partitions: vec![Partition { start_ms: 5.0, end_ms: 5.0 }], ..d() }, "partitions[0]"),
            (Scenario { crash: vec!["x1".into()], ..d() }, "crash"),
            (Scenario { crash: vec!["s4".into()], ..d() }, "crash"),
            (Scenario { crash: vec!["s1".into(), "s1@3".into()], ..d() }, "crash"),
            (Scenario { crash: vec!["s1@-3".into()], ..d() }, "crash"),
            (Scenario { crash: vec!["s0".into(), "s1".into()], ..d() }, "crash"),
            (Scenario { byzantine: BTreeMap::from([("r9".into(), Behavior::Forge.into())]), ..d() }, "byzantine"),
            (
                Scenario {
                    byzantine: BTreeMap::from([
                        ("r0".into(), Behavior::Silent.into()),
                        ("r1".into(), Behavior::Forge.into()),
                    ]),
                    ..d()
                },
                "byzantine",
            ),
            (
                Scenario {
                    fault: FaultModel::Cft,
                    byzantine: BTreeMap::from([("r0".into(), Behavior::Silent.into())]),
                    ..d()
                },
                "byzantine",
            ),
            (Scenario { fault: FaultModel::Cft, real_signatures: true, ..d() }, "real_signatures"),
            (
                Scenario { params: ProtocolParams { phi_bits: 65, ..ProtocolParams::default() }, ..d() },
                "params.phi_bits",
            ),
            (
                Scenario {
                    params: ProtocolParams { dissemination: Dissemination::Application, ..ProtocolParams::default() },
                    ..d()
                },
                "params.dissemination",
            ),
        ];
        for (s, field) in cases {
            assert_eq!(err_field(&s), field, "{s:?}");
        }
    }

    #[test]
    fn crash_and_byzantine_count_together_against_f() {
        let s = Scenario {
            sender_n: 7,
            crash: vec!["s1".into()],
            byzantine: BTreeMap::from([("s2".into(), Behavior::Silent.into())]),
            ..Scenario::default()
        };
        let r = s.resolve().unwrap();
        assert_eq!(r.replicas[1].crash_at, Some(0));
        assert_eq!(r.replicas[2].behavior, Some(Behavior::Silent.into()));
        assert!(r.replicas[1].is_honest() && !r.replicas[1].is_correct());
        let s = Scenario {
            crash: vec!["s1".into()],
            byzantine: BTreeMap::from([("s2".into(), Behavior::Silent.into())]),
            ..Scenario::default()
        };
        let e = s.resolve().unwrap_err().to_string();
        assert!(e.contains("faulty stake 2") && e.contains("s1, s2"), "{e}");
        // Stake counts, not replicas.
        let s = Scenario { sender_stake: Some(vec![4, 1, 1, 1]), crash: vec!["s0".into()], ..Scenario::default() };
        assert_eq!(err_field(&s), "crash");
        // The same replica crashing and lying counts once.
        let s = Scenario {
            crash: vec!["r3@20".into()],
            byzantine: BTreeMap::from([("r3".into(), Behavior::ZeroAck.into())]),
            ..Scenario::default()
        };
        let r = s.resolve().unwrap();
        assert_eq!(r.replicas[7].crash_at, Some(20_000_000));
    }

    #[test]
    fn toml_round_trip_and_unknown_fields() {
        let text = r#"
            strategy = "ata"
            sender_n = 7
            receiver_stake = [4, 1, 1, 1]
            crash = ["s0", "r1@12.5"]
            partitions = [{ start_ms = 10, end_ms = 20 }]
            [byzantine]
            s3 = "forge"
            [params]
            phi_bits = 128
        "#;
        let s = Scenario::from_toml(text, "x.toml").unwrap();
        assert_eq!(s.strategy, Strategy::Ata);
        assert_eq!(s.sender_n, 7);
        assert_eq!(s.byzantine["s3"], Behavior::Forge.into());
        assert_eq!(s.params.phi_bits, 128);
        assert_eq!(s.params.send_window, ProtocolParams::default().send_window);
        assert_eq!(s.partitions[0], Partition { start_ms: 10.0, end_ms: 20.0 });
        let back = Scenario::from_toml(&s.to_toml(), "back").unwrap();
        assert_eq!(back, s);
        match Scenario::from_toml("sendr_n = 3", "typo.toml") {
            Err(ConfigError::Parse { source_name, message }) => {
                assert_eq!(source_name, "typo.toml");
                assert!(message.contains("sendr_n"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Scenario::from_toml("", "empty").unwrap(), Scenario::default());
    }

    #[test]
    fn names_and_partitions_parse() {
        assert_eq!(parse_replica("s3", 4, 4), Ok(ReplicaId::new(0, 3)));
        assert_eq!(parse_replica("r0", 4, 1), Ok(ReplicaId::new(1, 0)));
        for bad in ["", "s", "s-1", "x0", "s4", "r1", "s01x", "s+1"] {
            assert!(parse_replica(bad, 4, 1).is_err(), "{bad}");
        }
        assert_eq!(parse_crash("r0@1.5", 4, 4), Ok((ReplicaId::new(1, 0), 1_500_000)));
        assert_eq!("10-20.5".parse::<Partition>(), Ok(Partition { start_ms: 10.0, end_ms: 20.5 }));
        assert!("10".parse::<Partition>().is_err());
        assert!("a-b".parse::<Partition>().is_err());
    }
}
