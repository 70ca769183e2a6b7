//! `picsou sim`: build a scenario from a TOML file and flags, run the deterministic simulator,
//! print the report.
//!
//! Flags override the scenario file field by field; list flags (`--crash`, `--byzantine`,
//! `--partition`) replace the file's list when given. The report goes to stdout (a short
//! aligned summary, or one JSON object with `--json`); real elapsed time goes to stderr, so
//! stdout is identical for identical scenarios.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};
use picsou_core::adversary::Byzantine;
use picsou_core::{ConfigError, FaultModel, Strategy};
use picsou_sim::{Partition, Scenario, ScenarioOverrides, SimReport, run};

/// Fault model, as a command-line value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FaultArg {
    /// Crash faults (total stake ≥ 2f+1, no proofs).
    Cft,
    /// Byzantine faults (total stake ≥ 3f+1, every message carries a proof).
    Bft,
}

impl From<FaultArg> for FaultModel {
    fn from(f: FaultArg) -> Self {
        match f {
            FaultArg::Cft => Self::Cft,
            FaultArg::Bft => Self::Bft,
        }
    }
}

/// Parses `REPLICA=BEHAVIOUR`, e.g. `r1=inflate-ack`.
fn parse_byzantine(s: &str) -> Result<(String, Byzantine), String> {
    let (name, behavior) =
        s.split_once('=').ok_or_else(|| format!("{s:?} should be REPLICA=BEHAVIOUR, e.g. r1=inflate-ack"))?;
    Ok((
        name.trim().to_string(),
        behavior.trim().parse().map_err(|e: picsou_core::adversary::ParseBehaviorError| e.to_string())?,
    ))
}

/// Arguments of `picsou sim`.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Scenario file (TOML; every field optional). Flags override its fields.
    #[arg(long, value_name = "FILE.toml")]
    scenario: Option<PathBuf>,
    /// Dissemination strategy: picsou, ost, ata, ll or otu.
    #[arg(long)]
    strategy: Option<Strategy>,
    /// Replicas of both RSMs.
    #[arg(long)]
    n: Option<usize>,
    /// Replicas of the sending RSM (overrides --n).
    #[arg(long)]
    sender_n: Option<usize>,
    /// Replicas of the receiving RSM (overrides --n).
    #[arg(long)]
    receiver_n: Option<usize>,
    /// Faulty stake both RSMs tolerate (default: the largest valid).
    #[arg(long)]
    f: Option<u64>,
    /// Faulty stake the sending RSM tolerates (overrides --f).
    #[arg(long)]
    sender_f: Option<u64>,
    /// Faulty stake the receiving RSM tolerates (overrides --f).
    #[arg(long)]
    receiver_f: Option<u64>,
    /// Fault model of both RSMs.
    #[arg(long, value_enum)]
    fault: Option<FaultArg>,
    /// Stakes of both RSMs' replicas, e.g. 4,1,1,1 (sets n to their count unless n is given).
    #[arg(long, value_delimiter = ',', value_name = "STAKES")]
    stake: Option<Vec<u64>>,
    /// Stakes of the sending RSM's replicas (overrides --stake).
    #[arg(long, value_delimiter = ',', value_name = "STAKES")]
    sender_stake: Option<Vec<u64>>,
    /// Stakes of the receiving RSM's replicas (overrides --stake).
    #[arg(long, value_delimiter = ',', value_name = "STAKES")]
    receiver_stake: Option<Vec<u64>>,
    /// Bytes per message.
    #[arg(long)]
    size: Option<usize>,
    /// Messages RSM 0 sends.
    #[arg(long)]
    messages: Option<u64>,
    /// NIC speed of every replica (egress and ingress each), in Mbit/s.
    #[arg(long)]
    nic_mbps: Option<f64>,
    /// One-way latency inside an RSM, in ms.
    #[arg(long)]
    local_latency_ms: Option<f64>,
    /// One-way latency between the RSMs, in ms.
    #[arg(long)]
    cross_latency_ms: Option<f64>,
    /// Rate limit of each cross-RSM replica pair, in Mbit/s.
    #[arg(long)]
    cross_link_mbps: Option<f64>,
    /// Per-attempt loss probability between the RSMs (retransmitted by the link).
    #[arg(long)]
    loss: Option<f64>,
    /// Per-attempt loss probability inside an RSM (retransmitted by the link).
    #[arg(long)]
    local_loss: Option<f64>,
    /// Random extra delay per frame, up to this many ms (reorders frames across links).
    #[arg(long)]
    jitter_ms: Option<f64>,
    /// Cut the cross-RSM links from START_MS to END_MS (repeatable).
    #[arg(long, value_name = "START_MS-END_MS")]
    partition: Vec<Partition>,
    /// Crashed replicas, e.g. s0,r2 or s1@50 (crash at 50 ms).
    #[arg(long, value_delimiter = ',', value_name = "REPLICAS")]
    crash: Vec<String>,
    /// Byzantine replicas, e.g. r1=inflate-ack,s3=silent. Behaviours: inflate-ack, zero-ack,
    /// stale-ack, lie-phi, forge, silent, no-rebroadcast.
    #[arg(long, value_delimiter = ',', value_name = "REPLICA=BEHAVIOUR", value_parser = parse_byzantine)]
    byzantine: Vec<(String, Byzantine)>,
    /// Seed of every random choice.
    #[arg(long)]
    seed: Option<u64>,
    /// Size of the φ-list (selective ack) in bits, a multiple of 64.
    #[arg(long)]
    phi_bits: Option<u32>,
    /// Flow-control window in messages (raises max_buffered and recv_window if needed).
    #[arg(long)]
    send_window: Option<u64>,
    /// CPU time per frame handled, per replica, in µs.
    #[arg(long)]
    cpu_us_per_frame: Option<f64>,
    /// CPU time per byte of frame handled, per replica, in ns.
    #[arg(long)]
    cpu_ns_per_byte: Option<f64>,
    /// Fraction of messages left out of throughput and latency as warm-up.
    #[arg(long)]
    warmup_fraction: Option<f64>,
    /// Stop at this virtual time even if not everything was delivered.
    #[arg(long)]
    max_virtual_seconds: Option<f64>,
    /// Width of the report's throughput-timeline intervals, in ms of virtual time (default:
    /// about 50 intervals over the run).
    #[arg(long)]
    timeline_ms: Option<f64>,
    /// Real ed25519 quorum certificates instead of cheap oracle certificates (BFT).
    #[arg(long)]
    real_signatures: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Print the effective scenario as TOML and exit without running it.
    #[arg(long)]
    print_scenario: bool,
}

impl SimArgs {
    /// The scenario: the file (or the defaults), then the flags.
    fn scenario(&self) -> Result<Scenario, ConfigError> {
        let mut s = match &self.scenario {
            Some(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Parse {
                    source_name: name.clone(),
                    message: format!("cannot read scenario file: {e}"),
                })?;
                Scenario::from_toml(&text, &name)?
            }
            None => Scenario::default(),
        };
        let overrides = ScenarioOverrides {
            strategy: self.strategy,
            fault: self.fault.map(Into::into),
            n: self.n,
            sender_n: self.sender_n,
            receiver_n: self.receiver_n,
            f: self.f,
            sender_f: self.sender_f,
            receiver_f: self.receiver_f,
            stake: self.stake.clone(),
            sender_stake: self.sender_stake.clone(),
            receiver_stake: self.receiver_stake.clone(),
            size: self.size,
            messages: self.messages,
            nic_mbps: self.nic_mbps,
            local_latency_ms: self.local_latency_ms,
            cross_latency_ms: self.cross_latency_ms,
            cross_link_mbps: self.cross_link_mbps,
            loss: self.loss,
            local_loss: self.local_loss,
            jitter_ms: self.jitter_ms,
            partitions: (!self.partition.is_empty()).then(|| self.partition.clone()),
            crash: (!self.crash.is_empty()).then(|| self.crash.clone()),
            byzantine: (!self.byzantine.is_empty()).then(|| self.byzantine.clone()),
            seed: self.seed,
            phi_bits: self.phi_bits,
            send_window: self.send_window,
            cpu_us_per_frame: self.cpu_us_per_frame,
            cpu_ns_per_byte: self.cpu_ns_per_byte,
            warmup_fraction: self.warmup_fraction,
            max_virtual_seconds: self.max_virtual_seconds,
            timeline_ms: self.timeline_ms,
            real_signatures: self.real_signatures.then_some(true),
        };
        overrides.apply(&mut s)?;
        Ok(s)
    }
}

/// Runs `picsou sim`; returns the process exit code.
pub(crate) fn main(args: &SimArgs) -> ExitCode {
    let scenario = match args.scenario() {
        Ok(s) => s,
        Err(e) => return config_error(&e),
    };
    if args.print_scenario {
        // Validate first, so a printed scenario is one that runs.
        if let Err(e) = scenario.resolve() {
            return config_error(&e);
        }
        print!("{}", scenario.to_toml());
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    let report = match run(&scenario) {
        Ok(r) => r,
        Err(e) => return config_error(&e),
    };
    let elapsed = started.elapsed();
    if args.json {
        match serde_json::to_string(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("picsou sim: cannot serialise the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", human(&report));
    }
    eprintln!(
        "picsou sim: {:.3} s of virtual time in {:.3} s of real time",
        report.virtual_seconds,
        elapsed.as_secs_f64()
    );
    if report.c3b_ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("picsou sim: {e}");
    ExitCode::from(2)
}

/// The human-readable summary.
fn human(r: &SimReport) -> String {
    let mut out = format!(
        "picsou sim: {} from {} to {} replicas, {} (f = {} / {}), {} messages of {} B, seed {}\n",
        r.strategy,
        r.sender_n,
        r.receiver_n,
        r.fault.to_uppercase(),
        r.sender_f,
        r.receiver_f,
        r.messages,
        r.size,
        r.seed
    );
    let rows = [
        ("C3B", if r.c3b_ok { "ok".to_string() } else { format!("VIOLATED ({} violations)", r.violations.len()) }),
        ("delivered", format!("{} of {}", r.delivered, r.messages)),
        ("throughput", format!("{:.0} msg/s ({:.2} MB/s)", r.throughput_msgs_per_s, r.throughput_mb_per_s)),
        ("latency", format!("p50 {:.3} ms, p99 {:.3} ms", r.latency_p50_ms, r.latency_p99_ms)),
        (
            "bytes/message",
            format!("{:.1} on the wire, {:.1} across RSMs", r.wire_bytes_per_message, r.cross_bytes_per_message),
        ),
        ("resends", format!("{} (at most {} sends of one message)", r.resends, r.max_sends_per_message)),
        ("frames", r.frames.to_string()),
        ("misbehaviours", format!("{} detected", r.misbehaviors_detected)),
        ("virtual time", format!("{:.6} s", r.virtual_seconds)),
    ];
    let mut rows = rows.to_vec();
    if let Some(onset) = r.fault_onset_ms {
        let recovery = r.recovery_ms.map_or("run too short after it to tell".to_string(), |ms| format!("{ms:.1} ms"));
        rows.push(("recovery", format!("{recovery} (first fault at {onset:.1} ms)")));
    }
    for (k, v) in rows {
        out.push_str(&format!("  {k:<15} {v}\n"));
    }
    if !r.violations.is_empty() {
        out.push_str("violations:\n");
        for v in &r.violations {
            out.push_str(&format!("  - {v}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use picsou_core::adversary::Behavior;

    use super::*;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: SimArgs,
    }

    fn scenario(args: &[&str]) -> Result<Scenario, ConfigError> {
        let mut v = vec!["t"];
        v.extend_from_slice(args);
        T::try_parse_from(v).expect("flags parse").a.scenario()
    }

    #[test]
    fn flags_override_defaults() {
        let s = scenario(&[
            "--strategy",
            "ata",
            "--n",
            "7",
            "--receiver-n",
            "4",
            "--f",
            "1",
            "--fault",
            "cft",
            "--crash",
            "s0,r1@5",
            "--byzantine",
            "r2=inflate-ack,s3=silent",
            "--partition",
            "10-20",
            "--partition",
            "30-40",
            "--send-window",
            "100000",
            "--cross-link-mbps",
            "100",
        ])
        .unwrap();
        assert_eq!(s.strategy, Strategy::Ata);
        assert_eq!((s.sender_n, s.receiver_n), (7, 4));
        assert_eq!((s.sender_f, s.receiver_f), (Some(1), Some(1)));
        assert_eq!(s.fault, FaultModel::Cft);
        assert_eq!(s.crash, vec!["s0", "r1@5"]);
        assert_eq!(s.byzantine["r2"], Behavior::InflateAck.into());
        assert_eq!(s.byzantine["s3"], Behavior::Silent.into());
        assert_eq!(s.partitions.len(), 2);
        assert_eq!(s.params.send_window, 100_000);
        assert!(s.params.max_buffered >= 100_000 && s.params.recv_window >= 100_000);
        assert_eq!(s.cross_link_mbps, Some(100.0));
    }

    #[test]
    fn stake_sets_n_unless_n_is_given() {
        let s = scenario(&["--stake", "4,1,1,1,1"]).unwrap();
        assert_eq!((s.sender_n, s.receiver_n), (5, 5));
        assert_eq!(s.sender_stake, Some(vec![4, 1, 1, 1, 1]));
        let s = scenario(&["--stake", "4,1,1,1", "--receiver-stake", "1,1,1,1,1,1,1"]).unwrap();
        assert_eq!((s.sender_n, s.receiver_n), (4, 7));
        let s = scenario(&["--n", "5", "--stake", "4,1,1,1"]).unwrap();
        assert_eq!(s.sender_n, 5);
        assert!(s.resolve().is_err());
    }

    #[test]
    fn bad_byzantine_values_are_usage_errors() {
        assert!(T::try_parse_from(["t", "--byzantine", "r1"]).is_err());
        assert!(T::try_parse_from(["t", "--byzantine", "r1=evil"]).is_err());
        assert!(T::try_parse_from(["t", "--strategy", "nope"]).is_err());
        assert!(T::try_parse_from(["t", "--partition", "5"]).is_err());
        let e = scenario(&["--byzantine", "r1=silent,r1=forge"]).unwrap_err();
        assert!(e.to_string().contains("twice"));
        assert!(T::try_parse_from(["t", "--byzantine", "r1=zero-ack@soon"]).is_err());
        assert!(T::try_parse_from(["t", "--byzantine", "s1=drop-some:150"]).is_err());
        assert!(T::try_parse_from(["t", "--byzantine", "r1=zero-ack:3"]).is_err());
    }

    #[test]
    fn byzantine_parameters_and_onsets() {
        let s =
            scenario(&["--byzantine", "r1=zero-ack@500,s1=drop-some:30,r2=slow-ack:50@100,s2=drop-some:0.25"]).unwrap();
        assert_eq!(s.byzantine["r1"].behavior, Behavior::ZeroAck);
        assert_eq!(s.byzantine["r1"].onset, std::time::Duration::from_millis(500));
        assert_eq!(s.byzantine["s1"].behavior, Behavior::DropSome { percent: 30 });
        assert_eq!(s.byzantine["s2"].behavior, Behavior::DropSome { percent: 25 });
        assert_eq!(s.byzantine["r2"].behavior, Behavior::SlowAck { per_s: 50 });
        assert_eq!(s.byzantine["r2"].to_string(), "slow-ack:50@100");
    }

    #[test]
    fn human_summary_lists_violations() {
        let r = SimReport {
            strategy: "picsou".into(),
            sender_n: 4,
            receiver_n: 4,
            sender_f: 1,
            receiver_f: 1,
            fault: "bft".into(),
            size: 100,
            messages: 10,
            seed: 1,
            c3b_ok: false,
            violations: vec!["r2 delivered 8 of 10 by 300 s".into()],
            delivered: 8,
            throughput_msgs_per_s: 1000.0,
            throughput_mb_per_s: 0.1,
            wire_bytes_per_message: 500.0,
            cross_bytes_per_message: 150.0,
            resends: 0,
            max_sends_per_message: 1,
            latency_p50_ms: 1.0,
            latency_p99_ms: 2.0,
            virtual_seconds: 300.0,
            frames: 10,
            misbehaviors_detected: 0,
            engine: Default::default(),
            timeline: Default::default(),
            fault_onset_ms: Some(100.0),
            recovery_ms: Some(42.0),
        };
        let h = human(&r);
        assert!(h.contains("42.0 ms (first fault at 100.0 ms)"), "{h}");
        assert!(h.contains("VIOLATED"));
        assert!(h.contains("  - r2 delivered 8 of 10 by 300 s"));
        assert!(h.contains("  delivered       8 of 10"));
    }
}
