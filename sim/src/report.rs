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
    /// Messages completed (delivered by every correct receiver) per interval of virtual time.
    #[serde(default)]
    pub timeline: Timeline,
    /// Virtual time of the first fault (crash or Byzantine behaviour's onset), in ms; `None`
    /// for a fault-free run.
    #[serde(default)]
    pub fault_onset_ms: Option<f64>,
    /// From the first fault's onset until the throughput is back within 10% of its later steady
    /// state, in ms (see [`recovery_ms`]); `None` without a fault or with too short a run
    /// after it.
    #[serde(default)]
    pub recovery_ms: Option<f64>,
}

/// Throughput over time: `delivered[i]` messages completed in `[i·interval, (i+1)·interval)`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Width of each interval, in ms of virtual time.
    pub interval_ms: f64,
    /// Messages completed in each interval, from time 0 to the last completion.
    pub delivered: Vec<u64>,
}

/// Intervals a timeline aims at when its width is chosen automatically.
const TIMELINE_BINS: u64 = 50;

/// A round interval (1, 2 or 5 × 10^k ns, at least 1 µs) giving about [`TIMELINE_BINS`] bins
/// until `end_ns`.
pub fn auto_interval_ns(end_ns: u64) -> u64 {
    let target = (end_ns / TIMELINE_BINS).max(1_000);
    let mut unit = 1_000u64;
    loop {
        for m in [1, 2, 5] {
            if unit * m >= target {
                return unit * m;
            }
        }
        unit *= 10;
    }
}

/// The timeline of completion times (ns, [`NOT_DONE`] for incomplete messages) in intervals of
/// `interval_ns`.
pub fn timeline(completion_ns: &[u64], interval_ns: u64) -> Timeline {
    let interval = interval_ns.max(1);
    let last = completion_ns.iter().copied().filter(|&c| c != NOT_DONE).max();
    let mut delivered = vec![0u64; last.map_or(0, |l| (l / interval + 1) as usize)];
    for &c in completion_ns.iter().filter(|&&c| c != NOT_DONE) {
        delivered[(c / interval) as usize] += 1;
    }
    Timeline { interval_ms: interval as f64 / 1e6, delivered }
}

/// How long after `onset_ns` the throughput is back within 10% of its later steady state, in
/// ms. Only the intervals until 95% of the messages completed count: after that the stream runs
/// out and the rate falls for that reason alone. The steady state is the median of the second
/// half of the counted intervals after the onset's; recovery ends with the last counted interval
/// (from the onset's on) below 90% of it, 0 if there is none. `None` if fewer than four counted
/// intervals follow the onset's: too short a run to tell.
pub fn recovery_ms(t: &Timeline, onset_ns: u64) -> Option<f64> {
    let interval_ns = (t.interval_ms * 1e6).round().max(1.0) as u64;
    let total: u64 = t.delivered.iter().sum();
    let mut done = 0u64;
    let end = t.delivered.iter().position(|&c| {
        done += c;
        done * 20 >= total * 19
    })?;
    let onset = (onset_ns / interval_ns) as usize;
    if end < onset + 5 {
        return None;
    }
    let after = &t.delivered[onset + 1..end];
    let mut later: Vec<u64> = after[after.len() / 2..].to_vec();
    later.sort_unstable();
    let steady = later[later.len() / 2] as f64;
    let low = (onset..end).rev().find(|&i| (t.delivered[i] as f64) < 0.9 * steady);
    Some(match low {
        Some(i) => ((i as u64 + 1) * interval_ns).saturating_sub(onset_ns) as f64 / 1e6,
        None => 0.0,
    })
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
    fn timelines_and_recovery() {
        assert_eq!(auto_interval_ns(1_000_000_000), 20_000_000);
        assert_eq!(auto_interval_ns(10), 1_000);
        // 10 messages per ms, none from 5 to 7 ms (a fault at 4.5 ms), then 10 per ms again.
        let mut c = Vec::new();
        for ms in (0..5).chain(7..20) {
            c.extend((0..10).map(|i| ms * 1_000_000 + i * 1_000));
        }
        let t = timeline(&c, 1_000_000);
        assert_eq!(t.delivered.len(), 20);
        assert_eq!(t.delivered[5], 0);
        assert_eq!(t.delivered[7], 10);
        // Back at full rate from 7 ms on: 2.5 ms after the onset.
        assert_eq!(recovery_ms(&t, 4_500_000), Some(2.5));
        // No dip after an onset at 8 ms.
        assert_eq!(recovery_ms(&t, 8_000_000), Some(0.0));
        // Too late in the run to tell.
        assert_eq!(recovery_ms(&t, 17_000_000), None);
        let mut c2 = c.clone();
        c2.push(NOT_DONE);
        assert_eq!(timeline(&c2, 1_000_000), t);
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
