//! The result of a simulation run, and the arithmetic behind its figures.
//!
//! A report contains only values derived from virtual time and counters, never wall-clock time,
//! so the same scenario and seed always give an identical report (callers that want real time
//! measure it themselves).

use serde::{Deserialize, Serialize};

/// Everything a run measured. `picsou sim --json` prints this as one JSON object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// Strategy name (`picsou`, `ost`, `ata`, `ll`, `otu`).
    pub strategy: String,
    /// Replicas of the sending RSM.
    pub sender_n: usize,
    /// Replicas of the receiving RSM.
    pub receiver_n: usize,
    /// Faulty stake the sending RSM tolerates.
    pub sender_f: u64,
    /// Faulty stake the receiving RSM tolerates.
    pub receiver_f: u64,
    /// Fault model (`cft` or `bft`).
    pub fault: String,
    /// Bytes per message.
    pub size: usize,
    /// Messages RSM 0 sent.
    pub messages: u64,
    /// Seed of the run.
    pub seed: u64,
    /// True if the C3B checker found no violation.
    pub c3b_ok: bool,
    /// What went wrong, one sentence each (capped, with a count of the rest).
    pub violations: Vec<String>,
    /// Messages delivered by every correct receiver (the minimum over them).
    pub delivered: u64,
    /// Messages per second of virtual time after the warm-up (see [`throughput`]).
    pub throughput_msgs_per_s: f64,
    /// `throughput_msgs_per_s × size`, in MB/s (1 MB = 10^6 B).
    pub throughput_mb_per_s: f64,
    /// Bytes every replica sent (frames of both RSMs, headers included) per message.
    pub wire_bytes_per_message: f64,
    /// Bytes sent between the two RSMs per message.
    pub cross_bytes_per_message: f64,
    /// Resends by honest sender replicas, all messages together.
    pub resends: u64,
    /// Cross-RSM copies the strategy sends of every message, plus the most resends any message
    /// needed.
    pub max_sends_per_message: u64,
    /// Median latency, in ms: from the first transmit by a correct sender replica to delivery at
    /// the last correct receiver (messages after the warm-up).
    pub latency_p50_ms: f64,
    /// 99th percentile of the same latency, in ms.
    pub latency_p99_ms: f64,
    /// Virtual time at the end of the run, in seconds.
    pub virtual_seconds: f64,
    /// Frames sent by all replicas.
    pub frames: u64,
    /// Accusations of Byzantine replicas by honest replicas.
    pub misbehaviors_detected: u64,
    /// Engine counters summed over every replica (diagnostics: where the bytes went).
    pub engine: EngineTotals,
}

/// [`EndpointStats`](picsou_core::EndpointStats) counters summed over every replica of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineTotals {
    /// First sends of messages (cross-RSM).
    pub first_sends: u64,
    /// Resends of messages (cross-RSM).
    pub resends: u64,
    /// Forwards inside the receiving RSM.
    pub forwards: u64,
    /// Repairs inside the receiving RSM.
    pub repairs: u64,
    /// Copies of messages a replica already held.
    pub duplicates: u64,
    /// Frames that carried only an ack.
    pub ack_only_frames: u64,
    /// Frames or records dropped as misbehaviour.
    pub misbehaviors: u64,
}

impl EngineTotals {
    /// Adds one endpoint's counters.
    pub fn add(&mut self, s: &picsou_core::EndpointStats) {
        self.first_sends += s.first_sends;
        self.resends += s.resends;
        self.forwards += s.forwards;
        self.repairs += s.repairs;
        self.duplicates += s.duplicates;
        self.ack_only_frames += s.ack_only_frames;
        self.misbehaviors += s.misbehaviors;
    }
}

/// Completion time of a message not yet delivered by every correct receiver.
pub const NOT_DONE: u64 = u64::MAX;

/// Throughput in messages per second from completion times (ns, nondecreasing; [`NOT_DONE`]
/// for messages not yet delivered everywhere): the messages completed after the warm-up, which
/// is the first `warmup_fraction` of the time until the last completion, divided by the rest of
/// that time. A time-based warm-up (rather than "after the k-th message") stays meaningful when
/// completions cluster, e.g. large messages that all finish near the end of a short run.
pub fn throughput(completion_ns: &[u64], warmup_fraction: f64) -> f64 {
    let done = completion_ns.iter().take_while(|&&c| c != NOT_DONE).count();
    if done == 0 {
        return 0.0;
    }
    let last = completion_ns[done - 1];
    let warm = (last as f64 * warmup_fraction.clamp(0.0, 0.99)) as u64;
    let measured = completion_ns[..done].iter().filter(|&&c| c > warm).count();
    if last > warm { measured as f64 * 1e9 / (last - warm) as f64 } else { 0.0 }
}

/// The `q`-quantile (0..=1) of `values` in ms, by nearest rank; sorts `values`. 0 if empty.
pub fn quantile_ms(values: &mut [u64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable();
    let rank = (q * values.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, values.len()) - 1;
    values[idx] as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_after_a_time_based_warmup() {
        // 10 messages completing every ms from t = 1 ms; warm-up = 10% of 10 ms = 1 ms, so 9
        // messages in 9 ms.
        let c: Vec<u64> = (0..10).map(|i| (i + 1) * 1_000_000).collect();
        assert!((throughput(&c, 0.1) - 1_000.0).abs() < 1e-6);
        // Only the first 5 completed: warm-up 0.5 ms, 5 messages in 4.5 ms.
        let mut partial = c.clone();
        for x in &mut partial[5..] {
            *x = NOT_DONE;
        }
        assert!((throughput(&partial, 0.1) - 5.0 / 4.5e-3).abs() < 1e-6);
        // Everything completing at once after 10 ms: 4 messages in 9 ms, not infinity.
        let same = vec![10_000_000; 4];
        assert!((throughput(&same, 0.1) - 4.0 / 9e-3).abs() < 1e-6);
        assert_eq!(throughput(&[NOT_DONE, NOT_DONE], 0.1), 0.0);
        assert!((throughput(&[500_000_000], 0.0) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().map(|i| i * 1_000_000).collect();
        assert_eq!(quantile_ms(&mut v, 0.5), 50.0);
        assert_eq!(quantile_ms(&mut v, 0.99), 99.0);
        assert_eq!(quantile_ms(&mut v, 1.0), 100.0);
        assert_eq!(quantile_ms(&mut [7_000_000], 0.99), 7.0);
        assert_eq!(quantile_ms(&mut [], 0.5), 0.0);
    }
}
