//! A whole deployment on one machine: combining the replicas' reports into receiver-confirmed
//! results, and running every replica in this process (threads) when no separate processes
//! are wanted (the in-memory transport, the Python bindings, tests).
//!
//! Throughput of a direction *A → B* counts a message only once **every live replica of B
//! delivered it**: messages / (the last delivery at the slowest live B replica − the first
//! submission at any A replica). Every strategy is measured this way, so a strategy that
//! hands messages off quickly but disseminates slowly is not flattered.

use std::time::Duration;

use picsou_core::ReplicaId;
use picsou_core::keys::LinkKeys;
use serde::Serialize;

use crate::deployment::DeploymentConfig;
use crate::load::{ReplicaReport, RunOptions, run_replica, unix_nanos};
use crate::node::{Node, NodeError, NodeOptions};
use crate::transport::{Transport, TransportError};

/// Receiver-confirmed results of one direction of a deployment.
#[derive(Clone, Debug, Serialize)]
pub struct DirectionReport {
    /// Sending RSM.
    pub from: String,
    /// Receiving RSM.
    pub to: String,
    /// Messages in the stream.
    pub messages: u64,
    /// Payload bytes per message.
    pub size: usize,
    /// Every live receiver delivered every message, in order, with the right bytes.
    pub complete: bool,
    /// Seconds from the first submission to the last delivery at the slowest live receiver.
    pub seconds: f64,
    /// Messages per second, receiver-confirmed.
    pub msgs_per_s: f64,
    /// Payload megabytes (10^6 bytes) per second, receiver-confirmed.
    pub mb_per_s: f64,
}

/// Results of a deployment run.
#[derive(Clone, Debug, Serialize)]
pub struct DeploymentReport {
    /// Strategy.
    pub strategy: String,
    /// Transport kind.
    pub transport: String,
    /// Replicas per RSM.
    pub n: [usize; 2],
    /// Every live replica completed, in order and exact.
    pub ok: bool,
    /// One entry per direction that carried a stream.
    pub directions: Vec<DirectionReport>,
    /// Largest peak RSS of a replica process, KiB (in-process runs: of the whole process).
    pub max_peak_rss_kib: u64,
    /// Replicas killed during the run (excluded from completion).
    pub killed: Vec<String>,
    /// Replicas run as Byzantine ones, as `beta/1=zero-ack` (excluded from completion).
    pub byzantine: Vec<String>,
    /// Every replica's report.
    pub replicas: Vec<ReplicaReport>,
}

/// Combines the reports of a run. `killed` replicas (crashed on purpose) are excluded from the
/// receivers a message must reach; their reports may be missing.
pub fn aggregate(config: &DeploymentConfig, reports: Vec<ReplicaReport>, killed: &[ReplicaId]) -> DeploymentReport {
    let mut directions = Vec::new();
    let name = |r: &ReplicaId| format!("{}/{}", config.rsms[usize::from(r.rsm.0)].name, r.index);
    let killed_names: Vec<String> = killed.iter().map(name).collect();
    for from in [picsou_core::RsmId(0), picsou_core::RsmId(1)] {
        if !config.load.senders.sends(from) {
            continue;
        }
        let to = from.other();
        let (from_name, to_name) = (&config.rsms[usize::from(from.0)].name, &config.rsms[usize::from(to.0)].name);
        let senders: Vec<&ReplicaReport> =
            reports.iter().filter(|r| &r.rsm == from_name && !killed_names.contains(&r.replica)).collect();
        let live_receivers: Vec<ReplicaId> =
            config.replicas().into_iter().filter(|r| r.rsm == to && !killed.contains(r)).collect();
        let receivers: Vec<&ReplicaReport> =
            reports.iter().filter(|r| &r.rsm == to_name && !killed_names.contains(&r.replica)).collect();
        let complete = receivers.len() == live_receivers.len()
            && receivers.iter().all(|r| r.in_order_exact && r.delivered >= config.load.messages);
        let start = senders.iter().map(|r| r.start_unix_ns).filter(|&t| t > 0).min().unwrap_or(0);
        let end = receivers.iter().map(|r| r.last_delivery_unix_ns).max().unwrap_or(0);
        let seconds = if complete && end > start { (end - start) as f64 / 1e9 } else { 0.0 };
        let messages = config.load.messages;
        let rate = if seconds > 0.0 { messages as f64 / seconds } else { 0.0 };
        directions.push(DirectionReport {
            from: from_name.clone(),
            to: to_name.clone(),
            messages,
            size: config.load.size,
            complete,
            seconds,
            msgs_per_s: rate,
            mb_per_s: rate * config.load.size as f64 / 1e6,
        });
    }
    let ok = directions.iter().all(|d| d.complete)
        && reports.iter().filter(|r| !killed_names.contains(&r.replica)).all(|r| r.complete && r.in_order_exact);
    DeploymentReport {
        strategy: config.strategy.name().to_string(),
        transport: config.transport.kind.name().to_string(),
        n: [config.rsms[0].replicas.len(), config.rsms[1].replicas.len()],
        ok,
        directions,
        max_peak_rss_kib: reports.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
        killed: killed_names,
        byzantine: Vec::new(),
        replicas: reports,
    }
}

/// Opens the transport of one replica of a deployment, with its link keys.
pub type OpenTransport<'a> =
    dyn Fn(&DeploymentConfig, ReplicaId, LinkKeys) -> Result<Box<dyn Transport>, TransportError> + Sync + 'a;

/// Runs every replica of `config` as threads of this process, drives the load and returns the
/// combined report. Nodes keep running until every replica finished, so late replicas still
/// get forwards and repairs from early ones.
pub fn run_in_process(config: &DeploymentConfig, open: &OpenTransport<'_>) -> Result<DeploymentReport, NodeError> {
    let replicas = config.replicas();
    // Every transport first, so that no node sends to a replica not yet on the network.
    let mut transports = Vec::with_capacity(replicas.len());
    let mut endpoints = Vec::with_capacity(replicas.len());
    for &r in &replicas {
        let keys = config.replica_keys(r)?;
        transports.push(open(config, r, keys.links.clone())?);
        endpoints.push(config.endpoint_config_with(r, keys));
    }
    let mut nodes = Vec::with_capacity(replicas.len());
    for (endpoint, transport) in endpoints.into_iter().zip(transports) {
        nodes.push(Node::start(endpoint, NodeOptions::from_tuning(&config.node), transport)?);
    }
    let options = RunOptions {
        start_at_unix_ns: unix_nanos() + 50_000_000,
        timeout: config.load.timeout,
        resume: picsou_core::StreamStart::default(),
        checkpoint: None,
        checkpoint_fsync: false,
    };
    let options = &options;
    let reports: Vec<ReplicaReport> = std::thread::scope(|s| {
        let handles: Vec<_> =
            replicas.iter().zip(&nodes).map(|(&r, n)| s.spawn(move || run_replica(config, r, n, options))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    // Give stragglers' last acks a moment before tearing down.
    std::thread::sleep(Duration::from_millis(10));
    for n in nodes {
        n.shutdown()?;
    }
    Ok(aggregate(config, reports, &[]))
}
