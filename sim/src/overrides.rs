//! Overrides of a [`Scenario`]: what `picsou sim`'s flags and the Python package's
//! `simulate(**keywords)` change on top of a scenario file or the defaults.
//!
//! One definition, so that a flag and its keyword mean the same thing (the Python tests check
//! that both produce identical reports), including the rules that tie fields together: a stake
//! list sets its side's size unless a size is given, per-side values win over both-sides ones,
//! and a larger send window raises the buffers it needs.

use std::collections::BTreeMap;

use super::scenario::{Partition, Scenario};
use picsou_core::adversary::Byzantine;
use picsou_core::config::{ConfigError, FaultModel, Strategy};

/// Changes to a [`Scenario`]; `None` (or an empty list where noted) keeps its value.
#[derive(Clone, Debug, Default)]
pub struct ScenarioOverrides {
    /// Strategy.
    pub strategy: Option<Strategy>,
    /// Fault model of both RSMs.
    pub fault: Option<FaultModel>,
    /// Replicas per RSM (both sides unless `sender_n` / `receiver_n` say otherwise).
    pub n: Option<usize>,
    /// Replicas of the sending RSM.
    pub sender_n: Option<usize>,
    /// Replicas of the receiving RSM.
    pub receiver_n: Option<usize>,
    /// Faults tolerated per RSM (both sides unless per-side values are given).
    pub f: Option<u64>,
    /// Faults tolerated in the sending RSM.
    pub sender_f: Option<u64>,
    /// Faults tolerated in the receiving RSM.
    pub receiver_f: Option<u64>,
    /// Stakes per replica (both sides unless per-side values are given); the list's length
    /// sets the side's size unless a size is given too.
    pub stake: Option<Vec<u64>>,
    /// Stakes of the sending RSM.
    pub sender_stake: Option<Vec<u64>>,
    /// Stakes of the receiving RSM.
    pub receiver_stake: Option<Vec<u64>>,
    /// Payload bytes per message.
    pub size: Option<usize>,
    /// Messages to stream.
    pub messages: Option<u64>,
    /// NIC bandwidth per replica, Mb/s.
    pub nic_mbps: Option<f64>,
    /// One-way latency inside an RSM, ms.
    pub local_latency_ms: Option<f64>,
    /// One-way latency between the RSMs, ms.
    pub cross_latency_ms: Option<f64>,
    /// Bandwidth of each cross-RSM link, Mb/s.
    pub cross_link_mbps: Option<f64>,
    /// Per-attempt loss probability between the RSMs.
    pub loss: Option<f64>,
    /// Per-attempt loss probability inside an RSM.
    pub local_loss: Option<f64>,
    /// Random extra delay per frame, up to this many ms.
    pub jitter_ms: Option<f64>,
    /// Cuts of the cross-RSM links.
    pub partitions: Option<Vec<Partition>>,
    /// Crashed replicas (`s0`, `r2@50`, …).
    pub crash: Option<Vec<String>>,
    /// Byzantine replicas by name; a name listed twice is an error.
    pub byzantine: Option<Vec<(String, Byzantine)>>,
    /// Seed of every random choice.
    pub seed: Option<u64>,
    /// φ-list size in bits.
    pub phi_bits: Option<u32>,
    /// Flow-control window in messages; raises `max_buffered` and `recv_window` if needed.
    pub send_window: Option<u64>,
    /// CPU time per frame handled, µs.
    pub cpu_us_per_frame: Option<f64>,
    /// CPU time per byte of frame handled, ns.
    pub cpu_ns_per_byte: Option<f64>,
    /// Share of the run left out as warm-up.
    pub warmup_fraction: Option<f64>,
    /// Stop at this virtual time.
    pub max_virtual_seconds: Option<f64>,
    /// Width of the timeline's intervals, ms.
    pub timeline_ms: Option<f64>,
    /// Real ed25519 certificates (BFT).
    pub real_signatures: Option<bool>,
}

impl ScenarioOverrides {
    /// Applies the overrides to `s`. Values are checked later, by the scenario's own
    /// validation; only what cannot be represented in a scenario (a duplicate name) fails here.
    pub fn apply(self, s: &mut Scenario) -> Result<(), ConfigError> {
        if let Some(v) = self.strategy {
            s.strategy = v;
        }
        if let Some(v) = self.fault {
            s.fault = v;
        }
        for (side_n, side_stake, side_f, n, stake, f) in [
            (
                &mut s.sender_n,
                &mut s.sender_stake,
                &mut s.sender_f,
                self.sender_n.or(self.n),
                self.sender_stake.as_ref().or(self.stake.as_ref()),
                self.sender_f.or(self.f),
            ),
            (
                &mut s.receiver_n,
                &mut s.receiver_stake,
                &mut s.receiver_f,
                self.receiver_n.or(self.n),
                self.receiver_stake.as_ref().or(self.stake.as_ref()),
                self.receiver_f.or(self.f),
            ),
        ] {
            if let Some(stake) = stake {
                *side_stake = Some(stake.clone());
                *side_n = stake.len();
            }
            if let Some(n) = n {
                *side_n = n;
            }
            if f.is_some() {
                *side_f = f;
            }
        }
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = self.$field {
                    s.$field = v;
                }
            )*};
        }
        set!(
            size,
            messages,
            nic_mbps,
            local_latency_ms,
            cross_latency_ms,
            loss,
            local_loss,
            jitter_ms,
            partitions,
            crash,
            seed,
            cpu_us_per_frame,
            cpu_ns_per_byte,
            warmup_fraction,
            max_virtual_seconds,
            real_signatures
        );
        if self.cross_link_mbps.is_some() {
            s.cross_link_mbps = self.cross_link_mbps;
        }
        if self.timeline_ms.is_some() {
            s.timeline_ms = self.timeline_ms;
        }
        if let Some(list) = self.byzantine {
            s.byzantine = BTreeMap::new();
            for (name, b) in list {
                if s.byzantine.contains_key(&name) {
                    return Err(ConfigError::Invalid {
                        field: "byzantine".into(),
                        reason: format!("{name} is listed twice"),
                    });
                }
                s.byzantine.insert(name, b);
            }
        }
        if let Some(v) = self.phi_bits {
            s.params.phi_bits = v;
        }
        if let Some(v) = self.send_window {
            s.params.send_window = v;
            s.params.max_buffered = s.params.max_buffered.max(v);
            s.params.recv_window = s.params.recv_window.max(v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use picsou_core::adversary::Behavior;

    use super::*;

    #[test]
    fn stake_sets_the_size_unless_a_size_is_given_and_per_side_values_win() {
        let mut s = Scenario::default();
        let o = ScenarioOverrides {
            stake: Some(vec![4, 1, 1]),
            receiver_n: Some(5),
            f: Some(1),
            sender_f: Some(0),
            ..ScenarioOverrides::default()
        };
        o.apply(&mut s).unwrap();
        assert_eq!((s.sender_n, s.receiver_n), (3, 5));
        assert_eq!(s.sender_stake.as_deref(), Some(&[4, 1, 1][..]));
        assert_eq!((s.sender_f, s.receiver_f), (Some(0), Some(1)));
    }

    #[test]
    fn send_window_raises_the_buffers_and_duplicate_byzantine_names_fail() {
        let mut s = Scenario::default();
        let big = s.params.max_buffered.max(s.params.recv_window) + 1;
        ScenarioOverrides { send_window: Some(big), ..ScenarioOverrides::default() }.apply(&mut s).unwrap();
        assert_eq!((s.params.send_window, s.params.max_buffered, s.params.recv_window), (big, big, big));
        let twice = vec![("r1".to_string(), Behavior::Silent.into()), ("r1".to_string(), Behavior::ZeroAck.into())];
        let err = ScenarioOverrides { byzantine: Some(twice), ..ScenarioOverrides::default() }.apply(&mut s);
        assert!(err.unwrap_err().to_string().contains("r1 is listed twice"));
    }

    #[test]
    fn nothing_given_changes_nothing() {
        let mut s = Scenario::default();
        ScenarioOverrides::default().apply(&mut s).unwrap();
        assert_eq!(toml::to_string(&s).unwrap(), toml::to_string(&Scenario::default()).unwrap());
    }
}
