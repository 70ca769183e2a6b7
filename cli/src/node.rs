//! `picsou node`: run one replica of a deployment (one process per replica, on any host).
//!
//! The replica drives the deployment's synthetic `[load]`: it submits its RSM's stream (if its
//! RSM sends), checks every message of the other RSM's stream for order and contents, and
//! prints a report when it has delivered everything and its own stream is QUACKed. It then
//! keeps serving its peers (forwards, repairs, acks) until `--linger-ms` passes or, with
//! `--until-stdin-closes`, until its standard input closes (how `picsou local` stops it).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use picsou_runtime::load::{ReplicaReport, RunOptions, read_checkpoint, run_replica};
use picsou_runtime::node::{Node, NodeOptions};

use crate::deploy_args::DeployArgs;

/// Arguments of `picsou node`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    #[command(flatten)]
    deploy: DeployArgs,
    /// The replica's RSM: its name in the file, or 0 / 1.
    #[arg(long)]
    rsm: String,
    /// The replica's id in its RSM.
    #[arg(long)]
    replica: u16,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Start submitting at this Unix time in milliseconds (so that every replica of a
    /// deployment starts together).
    #[arg(long, value_name = "UNIX_MS")]
    start_at_unix_ms: Option<u64>,
    /// Progress file: written every 50 ms; if it exists at start, the replica resumes from it
    /// (a restarted replica rejoins where it left off).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// After finishing, keep serving peers this long.
    #[arg(long, default_value_t = 2000)]
    linger_ms: u64,
    /// After finishing, keep serving peers until standard input closes.
    #[arg(long)]
    until_stdin_closes: bool,
}

pub(crate) fn main(args: &NodeArgs) -> ExitCode {
    let config = match args.deploy.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("picsou node: {e}");
            return ExitCode::from(2);
        }
    };
    let local = match config.replica(&args.rsm, args.replica) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("picsou node: {e}");
            return ExitCode::from(2);
        }
    };
    let resume = match args.checkpoint.as_deref().map(read_checkpoint).transpose() {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            eprintln!("picsou node: checkpoint: {e}");
            return ExitCode::from(2);
        }
    };
    let transport = match picsou_transports::open(&config, local, None) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("picsou node: {e}");
            return ExitCode::from(2);
        }
    };
    let mut options = NodeOptions::from_tuning(&config.node);
    options.resume = resume;
    let node = match Node::start(config.endpoint_config(local), options, transport) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("picsou node: {e}");
            return ExitCode::from(2);
        }
    };
    let run = RunOptions {
        start_at_unix_ns: args.start_at_unix_ms.unwrap_or(0).saturating_mul(1_000_000),
        timeout: config.load.timeout,
        resume,
        checkpoint: args.checkpoint.clone(),
    };
    let report = run_replica(&config, local, &node, &run);
    if args.json {
        match serde_json::to_string(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("picsou node: cannot serialise the report: {e}"),
        }
    } else {
        print!("{}", human(&report));
    }
    if args.until_stdin_closes {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
    } else {
        std::thread::sleep(Duration::from_millis(args.linger_ms));
    }
    if let Err(e) = node.shutdown() {
        eprintln!("picsou node: {e}");
        return ExitCode::FAILURE;
    }
    if report.complete && report.in_order_exact { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn human(r: &ReplicaReport) -> String {
    let secs = r.last_delivery_unix_ns.saturating_sub(r.start_unix_ns) as f64 / 1e9;
    let status = if r.complete && r.in_order_exact { "ok" } else { "FAILED" };
    let mut s = format!(
        "{} over {}: {status}; submitted {}, delivered {}/{} in {secs:.3} s, peak RSS {} KiB\n",
        r.replica, r.transport, r.submitted, r.delivered, r.expected, r.peak_rss_kib
    );
    if let Some(v) = &r.violation {
        s.push_str(&format!("  violation: {v}\n"));
    }
    s
}
