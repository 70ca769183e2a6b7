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
use picsou_core::StreamStart;
use picsou_core::adversary::Byzantine;
use picsou_runtime::load::{Checkpointer, ReplicaReport, RunOptions, read_checkpoint, run_replica};
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
    /// The replica's identity file (per-replica keys, from `picsou keygen`); default: the
    /// deployment's `keys.identity_file`.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
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
    /// Write each checkpoint durably (fdatasync) before going on.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    checkpoint_fsync: bool,
    /// Checkpoint of a peer of this replica's RSM (repeatable): if this replica falls further
    /// behind than its peers retain, it performs a state transfer from the most advanced of
    /// these (installs the peer's state and resumes after it). Without any, such a replica
    /// stops with an error saying it needs a state transfer.
    #[arg(long, value_name = "FILE")]
    peer_checkpoint: Vec<PathBuf>,
    /// Run this replica as a Byzantine one: `BEHAVIOUR[@SECONDS]` (one of the simulator's:
    /// inflate-ack, zero-ack, stale-ack, lie-phi, forge, silent, no-rebroadcast, slow-ack[:N],
    /// drop-some[:P]), from SECONDS after the start on. For tests and measurements of fault
    /// tolerance only.
    #[arg(long, value_name = "BEHAVIOUR[@SECONDS]")]
    byzantine: Option<String>,
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
    let config = match &args.key_file {
        None => config,
        Some(path) => match config.with_identity_file(local, path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("picsou node: --key-file: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let keys = match config.replica_keys(local) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("picsou node: {e}");
            return ExitCode::from(2);
        }
    };
    // A BFT RSM's synthetic stream needs commit certificates: fail now, not after the start.
    if config.load.senders.sends(local.rsm)
        && let Err(e) = config.certificate_signers(local.rsm)
    {
        eprintln!("picsou node: {e}");
        return ExitCode::from(2);
    }
    let mut resume = match args.checkpoint.as_deref().map(read_checkpoint).transpose() {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            eprintln!("picsou node: checkpoint: {e}");
            return ExitCode::from(2);
        }
    };
    let behavior = match args.byzantine.as_deref().map(Byzantine::parse_with_seconds).transpose() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("picsou node: --byzantine: {e}");
            return ExitCode::from(2);
        }
    };
    let mut earlier: Option<ReplicaReport> = None;
    let (report, node) = loop {
        let transport = match picsou_transports::open(&config, local, keys.links.clone(), None) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("picsou node: {e}");
                return ExitCode::from(2);
            }
        };
        let mut options = NodeOptions::from_tuning(&config.node);
        options.resume = resume;
        let mut endpoint = config.endpoint_config_with(local, keys.clone());
        endpoint.behavior = behavior;
        let node = match Node::start(endpoint, options, transport) {
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
            checkpoint_fsync: args.checkpoint_fsync,
        };
        let mut report = run_replica(&config, local, &node, &run);
        if let Some(before) = earlier.take() {
            report = merged(before, report);
        }
        let Some((next, peers_at)) = report.needs_state_transfer else { break (report, node) };
        // State transfer: install the most advanced peer's checkpointed state and resume
        // after it, with a new node (the same path as a restart from a checkpoint).
        // Peers checkpoint periodically: one at or past `next` may take a moment to appear.
        let wait_until = std::time::Instant::now() + Duration::from_secs(10);
        let snapshot = loop {
            match best_peer_checkpoint(&args.peer_checkpoint, next) {
                Some(s) => break Some(s),
                None if std::time::Instant::now() < wait_until && !args.peer_checkpoint.is_empty() => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                None => break None,
            }
        };
        let Some(snapshot) = snapshot else {
            eprintln!(
                "picsou node: {}: state transfer needed (lacks seq {next}, peers at {peers_at}) but no peer checkpoint (--peer-checkpoint) is at or past seq {next}",
                report.replica
            );
            break (report, node);
        };
        eprintln!(
            "picsou node: {}: state transfer: lacks seq {next} beyond its peers' retention (peers at {peers_at}); installing a peer's state at seq {} and resuming",
            report.replica, snapshot.receive
        );
        let transmit = node.quacked().max(resume.transmit);
        if let Err(e) = node.shutdown() {
            eprintln!("picsou node: {e}");
            return ExitCode::FAILURE;
        }
        resume = StreamStart { transmit, receive: snapshot.receive };
        if let Some(path) = &args.checkpoint {
            // Durably first: a crash from here on resumes after the installed state.
            Checkpointer::with_fsync(path, args.checkpoint_fsync).write(resume);
        }
        report.transferred += snapshot.receive - report.delivered;
        report.state_transfers += 1;
        report.needs_state_transfer = None;
        earlier = Some(report);
    };
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

/// The peer checkpoint with the furthest incoming stream, if it is at or past `next`
/// (unreadable ones are skipped: a peer may be writing or gone).
fn best_peer_checkpoint(paths: &[PathBuf], next: u64) -> Option<StreamStart> {
    paths.iter().filter_map(|p| read_checkpoint(p).ok()).filter(|c| c.receive >= next).max_by_key(|c| c.receive)
}

/// The report of a run that resumed after a state transfer, with what the earlier runs of
/// this process saw.
fn merged(before: ReplicaReport, mut after: ReplicaReport) -> ReplicaReport {
    after.submitted = after.submitted.max(before.submitted);
    after.start_unix_ns = before.start_unix_ns;
    if !before.in_order_exact {
        after.in_order_exact = false;
        after.violation = before.violation.or(after.violation);
    }
    after.state_transfers += before.state_transfers;
    let mut timeline = before.timeline;
    timeline.append(&mut after.timeline);
    after.timeline = timeline;
    after.transferred += before.transferred;
    after
}

fn human(r: &ReplicaReport) -> String {
    let secs = r.last_delivery_unix_ns.saturating_sub(r.start_unix_ns) as f64 / 1e9;
    let status = if r.complete && r.in_order_exact { "ok" } else { "FAILED" };
    let mut s = format!(
        "{} over {}: {status}; submitted {}, delivered {}/{} in {secs:.3} s, peak RSS {} KiB\n",
        r.replica, r.transport, r.submitted, r.delivered, r.expected, r.peak_rss_kib
    );
    if r.state_transfers > 0 {
        s.push_str(&format!(
            "  state transfers: {} ({} messages installed from a peer's state)\n",
            r.state_transfers, r.transferred
        ));
    }
    if let Some((next, at)) = r.needs_state_transfer {
        s.push_str(&format!("  needs a state transfer: lacks seq {next}, peers at {at}\n"));
    }
    if let Some(v) = &r.violation {
        s.push_str(&format!("  violation: {v}\n"));
    }
    s
}
