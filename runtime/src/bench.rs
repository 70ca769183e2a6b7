//! Benchmark grids over real deployments: strategies × message sizes × RSM sizes ×
//! transports, every point a whole two-RSM deployment on loopback, measured receiver-confirmed
//! (see [`crate::local`]), so every strategy is counted the same way.
//!
//! This module builds the grid, derives each point's deployment from a base configuration,
//! runs the points through a caller-supplied runner (threads of this process, or one process
//! per replica — the CLI and the Python bindings choose), and collects a serialisable
//! [`BenchReport`]. Plots are drawn by the CLI from the report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use picsou_core::{FaultModel, Strategy};
use serde::{Deserialize, Serialize};

use crate::deployment::{DeploymentConfig, DeploymentError, KeyMaterial, ReplicaConfig};
use crate::local::DeploymentReport;
use crate::transport::TransportKind;

/// The grid and the size of each run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchSpec {
    /// Strategies to compare.
    pub strategies: Vec<Strategy>,
    /// Payload sizes, bytes.
    pub sizes: Vec<usize>,
    /// Replicas per RSM (both RSMs the same size).
    pub ns: Vec<usize>,
    /// Transports (`mem`, `tcp`, `uring`, `rdma`).
    pub transports: Vec<TransportKind>,
    /// Fault model of both RSMs; f is the largest the RSM size allows.
    pub fault: FaultModel,
    /// Payload bytes each sending RSM streams per run; the message count is this divided by
    /// the size, clamped to `min_messages..=max_messages`.
    pub bytes_per_run: u64,
    /// Fewest messages per run.
    pub min_messages: u64,
    /// Most messages per run.
    pub max_messages: u64,
    /// Give up on a point after this long.
    pub timeout: Duration,
    /// Replicas of point `k` listen on 127.0.0.1 ports from `base_port + k·stride` on, so a
    /// point never reuses the previous point's ports. Keep the range below the system's
    /// ephemeral ports (Linux: `net.ipv4.ip_local_port_range`, 32768–60999 by default): an
    /// outgoing connection of one point can otherwise hold a port a later point listens on.
    pub base_port: u16,
}

impl Default for BenchSpec {
    /// All five strategies, 100 B and 1 MB messages, 4 replicas per RSM, TCP, CFT,
    /// 16 MB per run.
    fn default() -> Self {
        Self {
            strategies: Strategy::ALL.to_vec(),
            sizes: vec![100, 1_000_000],
            ns: vec![4],
            transports: vec![TransportKind::Tcp],
            fault: FaultModel::Cft,
            bytes_per_run: 16_000_000,
            min_messages: 100,
            max_messages: 100_000,
            timeout: Duration::from_secs(60),
            base_port: 24_000,
        }
    }
}

/// One point of the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchPoint {
    /// Strategy.
    pub strategy: Strategy,
    /// Transport.
    pub transport: TransportKind,
    /// Replicas per RSM.
    pub n: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages each sending RSM streams.
    pub messages: u64,
}

impl BenchPoint {
    /// `picsou/tcp/n=4/100B`.
    pub fn label(&self) -> String {
        format!("{}/{}/n={}/{}B", self.strategy.name(), self.transport.name(), self.n, self.size)
    }
}

/// The measurement of one point.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// What was measured.
    pub point: BenchPoint,
    /// Every replica delivered every message in order, exactly once, before the timeout.
    pub ok: bool,
    /// Receiver-confirmed messages per second, mean over the directions that carried a stream.
    pub msgs_per_s: f64,
    /// Receiver-confirmed payload MB (10^6 B) per second, mean over the directions.
    pub mb_per_s: f64,
    /// Cross-RSM resends, summed over every replica.
    pub resends: u64,
    /// Peak RSS (KiB) of the largest replica process (in-process runs: the whole process).
    pub max_peak_rss_kib: u64,
    /// Wall-clock seconds the point took, set-up included.
    pub wall_seconds: f64,
    /// Why the point could not run or did not complete, if so.
    pub error: Option<String>,
    /// The full deployment report, when the point ran.
    pub report: Option<DeploymentReport>,
}

/// Results of a whole grid.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The grid.
    pub spec: BenchSpec,
    /// How the replicas ran (`in-process` or `processes`).
    pub runner: String,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// One result per point, in grid order.
    pub results: Vec<BenchResult>,
}

impl BenchSpec {
    /// Messages per run for payloads of `size` bytes.
    pub fn messages_for(&self, size: usize) -> u64 {
        (self.bytes_per_run / size.max(1) as u64).clamp(self.min_messages, self.max_messages.max(self.min_messages))
    }

    /// Every point, transports outermost, then sizes, RSM sizes and strategies (so
    /// strategies are compared on neighbouring runs).
    pub fn points(&self) -> Vec<BenchPoint> {
        let mut out = Vec::new();
        for &transport in &self.transports {
            for &size in &self.sizes {
                for &n in &self.ns {
                    for &strategy in &self.strategies {
                        out.push(BenchPoint { strategy, transport, n, size, messages: self.messages_for(size) });
                    }
                }
            }
        }
        out
    }

    /// Checks the grid before anything runs.
    pub fn validate(&self) -> Result<(), BenchError> {
        let empty = [
            ("strategies", self.strategies.is_empty()),
            ("sizes", self.sizes.is_empty()),
            ("ns", self.ns.is_empty()),
            ("transports", self.transports.is_empty()),
        ];
        if let Some(&(axis, _)) = empty.iter().find(|(_, e)| *e) {
            return Err(BenchError::EmptyAxis { axis });
        }
        let min_n = match self.fault {
            FaultModel::Cft => 1,
            FaultModel::Bft => 4,
        };
        if let Some(&n) = self.ns.iter().find(|&&n| n < min_n || n > 64) {
            return Err(BenchError::ReplicasOutOfRange { n, min: min_n, fault: self.fault });
        }
        if self.sizes.contains(&0) {
            return Err(BenchError::ZeroSize);
        }
        if self.min_messages == 0 {
            return Err(BenchError::ZeroMinMessages);
        }
        let stride = self.port_stride();
        let last = u64::from(self.base_port) + stride * self.points().len() as u64;
        if self.base_port < 1024 || last > 65_535 {
            return Err(BenchError::PortsOutOfRange { first: self.base_port, last });
        }
        if let Some((lo, hi)) = ephemeral_ports()
            && u64::from(self.base_port) <= hi
            && last > lo
        {
            return Err(BenchError::EphemeralPorts {
                first: self.base_port,
                last,
                ephemeral: (lo, hi),
                below: lo.saturating_sub(last - u64::from(self.base_port)),
            });
        }
        Ok(())
    }

    /// Ports used per point.
    fn port_stride(&self) -> u64 {
        2 * self.ns.iter().copied().max().unwrap_or(1) as u64
    }
}

/// The system's ephemeral port range, where known.
fn ephemeral_ports() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

/// Largest tolerable f for `n` replicas of stake 1.
pub fn max_f(fault: FaultModel, n: usize) -> u64 {
    let n = n as u64;
    match fault {
        FaultModel::Cft => n.saturating_sub(1) / 2,
        FaultModel::Bft => n.saturating_sub(1) / 3,
    }
}

/// A fixed, public signing seed for benchmark deployments of BFT RSMs whose base has none.
const BENCH_SIGNING_SEED: [u8; 32] = *b"picsou bench signing seed: publ.";
/// MAC secret of bench points whose base deployment has per-replica keys.
const BENCH_SECRET: [u8; 32] = *b"picsou bench link secret: publ.!";

/// The deployment of `point` number `index`: `base` with the point's strategy, transport,
/// RSM size (stake 1 each, largest f), load, and its own loopback ports. Checked like a
/// file (it round-trips through the TOML parser).
pub fn point_config(
    base: &DeploymentConfig,
    spec: &BenchSpec,
    point: &BenchPoint,
    index: usize,
) -> Result<DeploymentConfig, DeploymentError> {
    let mut c = base.clone();
    c.strategy = point.strategy;
    c.transport.kind = point.transport;
    for rsm in &mut c.rsms {
        rsm.fault = spec.fault;
        rsm.f = max_f(spec.fault, point.n);
        rsm.replicas = (0..point.n)
            .map(|id| ReplicaConfig {
                id: id as u16,
                address: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                stake: 1,
                public_key: None,
            })
            .collect();
    }
    let port = u64::from(spec.base_port) + spec.port_stride() * index as u64;
    let port = u16::try_from(port)
        .map_err(|_| DeploymentError::unlocated("bench", "base_port", format!("port {port} is above 65535")))?;
    c = c.with_loopback_ports(port);
    c.load.size = point.size;
    c.load.messages = point.messages;
    c.load.timeout = spec.timeout;
    // Bench points are loopback deployments with one shared secret (the replicas' numbers
    // change from point to point, so per-replica keys of the base file would not fit).
    let (secret, signing_seed) = match &c.keys {
        KeyMaterial::Shared { secret, signing_seed } => (*secret, *signing_seed),
        KeyMaterial::PerReplica { .. } => (BENCH_SECRET, None),
    };
    let signing_seed = signing_seed.or((spec.fault == FaultModel::Bft).then_some(BENCH_SIGNING_SEED));
    c.keys = KeyMaterial::Shared { secret, signing_seed };
    if c.tuning.max_payload_bytes < point.size {
        c.tuning.max_payload_bytes = point.size;
    }
    DeploymentConfig::from_toml_str(&c.to_toml_string(), &format!("<bench point {}>", point.label()))
}

/// Why a grid cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// One of the grid's axes lists nothing.
    #[error("bench grid: {axis} is empty")]
    EmptyAxis {
        /// `strategies`, `sizes`, `ns` or `transports`.
        axis: &'static str,
    },
    /// An RSM size the fault model cannot run (BFT needs 4) or above 64.
    #[error("bench grid: n = {n} is out of range ({min}..=64 replicas per RSM for {fault:?})")]
    ReplicasOutOfRange {
        /// The size given.
        n: usize,
        /// The smallest the fault model allows.
        min: usize,
        /// The fault model.
        fault: FaultModel,
    },
    /// A message size of 0.
    #[error("bench grid: message size 0")]
    ZeroSize,
    /// `min_messages` of 0.
    #[error("bench grid: min_messages must be at least 1")]
    ZeroMinMessages,
    /// The grid's ports leave 1024..=65535.
    #[error("bench grid: ports {first}..{last} do not fit in 1024..=65535 (fewer points or a lower base_port)")]
    PortsOutOfRange {
        /// The first port.
        first: u16,
        /// One past the last port.
        last: u64,
    },
    /// The grid's ports overlap the system's ephemeral port range.
    #[error(
        "bench grid: ports {first}..{last} overlap this system's ephemeral ports {}..={} \
         (net.ipv4.ip_local_port_range), where outgoing connections take their local ports: \
         choose a base_port below {below}", ephemeral.0, ephemeral.1
    )]
    EphemeralPorts {
        /// The first port.
        first: u16,
        /// One past the last port.
        last: u64,
        /// The system's ephemeral range.
        ephemeral: (u64, u64),
        /// A base port that would fit below it.
        below: u64,
    },
}

/// Why a runner could not run a point: recorded as text in that point's result, and the
/// grid goes on.
pub type RunnerError = Box<dyn std::error::Error + Send + Sync>;

/// Runs one deployment and returns its report, or why it could not run.
pub type Runner<'a> = dyn FnMut(&DeploymentConfig) -> Result<DeploymentReport, RunnerError> + 'a;

/// Runs every point of `spec` over deployments derived from `base`, one after the other,
/// calling `progress(done, total, result)` after each.
pub fn run(
    spec: &BenchSpec,
    base: &DeploymentConfig,
    runner_name: &str,
    runner: &mut Runner<'_>,
    progress: &mut dyn FnMut(usize, usize, &BenchResult),
) -> Result<BenchReport, BenchError> {
    spec.validate()?;
    let points = spec.points();
    let total = points.len();
    let mut results = Vec::with_capacity(total);
    for (i, point) in points.iter().enumerate() {
        let started = Instant::now();
        let result = match point_config(base, spec, point, i) {
            Err(e) => failed(*point, started, e.to_string()),
            Ok(config) => match runner(&config) {
                Err(e) => failed(*point, started, e.to_string()),
                Ok(report) => measured(*point, started, report),
            },
        };
        progress(i + 1, total, &result);
        results.push(result);
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    Ok(BenchReport { spec: spec.clone(), runner: runner_name.to_string(), cpus, results })
}

fn failed(point: BenchPoint, started: Instant, error: String) -> BenchResult {
    BenchResult {
        point,
        ok: false,
        msgs_per_s: 0.0,
        mb_per_s: 0.0,
        resends: 0,
        max_peak_rss_kib: 0,
        wall_seconds: started.elapsed().as_secs_f64(),
        error: Some(error),
        report: None,
    }
}

fn measured(point: BenchPoint, started: Instant, report: DeploymentReport) -> BenchResult {
    let dirs = &report.directions;
    let mean = |f: fn(&crate::local::DirectionReport) -> f64| {
        if dirs.is_empty() { 0.0 } else { dirs.iter().map(f).sum::<f64>() / dirs.len() as f64 }
    };
    let error = (!report.ok).then(|| {
        let incomplete: Vec<&str> =
            report.replicas.iter().filter(|r| !r.complete).map(|r| r.replica.as_str()).collect();
        format!("incomplete at {}", incomplete.join(", "))
    });
    BenchResult {
        point,
        ok: report.ok,
        // A point that did not complete has no meaningful rate.
        msgs_per_s: if report.ok { mean(|d| d.msgs_per_s) } else { 0.0 },
        mb_per_s: if report.ok { mean(|d| d.mb_per_s) } else { 0.0 },
        resends: report.replicas.iter().map(|r| r.stats.engine.resends).sum(),
        max_peak_rss_kib: report.max_peak_rss_kib,
        wall_seconds: started.elapsed().as_secs_f64(),
        error,
        report: Some(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_order_and_message_counts() {
        let spec = BenchSpec {
            strategies: vec![Strategy::Picsou, Strategy::Ata],
            sizes: vec![100, 1_000_000],
            ns: vec![4, 7],
            transports: vec![TransportKind::Mem],
            bytes_per_run: 10_000_000,
            min_messages: 50,
            max_messages: 20_000,
            ..BenchSpec::default()
        };
        let points = spec.points();
        assert_eq!(points.len(), 8);
        assert_eq!(points[0].strategy, Strategy::Picsou);
        assert_eq!(points[1].strategy, Strategy::Ata);
        assert_eq!(points[2].n, 7);
        assert_eq!(points[0].messages, 20_000, "100 B: 100,000 clamped to max");
        assert_eq!(points[4].messages, 50, "1 MB: 10 raised to min");
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn point_configs_are_valid_and_disjoint() {
        let spec = BenchSpec { ns: vec![4, 7], fault: FaultModel::Bft, ..BenchSpec::default() };
        let base = DeploymentConfig::embedded_default();
        let points = spec.points();
        let a = point_config(&base, &spec, &points[0], 0).expect("valid");
        let b = point_config(&base, &spec, &points[points.len() - 1], points.len() - 1).expect("valid");
        assert_eq!(a.rsms[0].f, 1);
        assert_eq!(b.rsms[1].n(), 7);
        assert_eq!(b.rsms[1].f, 2);
        assert!(matches!(a.keys, KeyMaterial::Shared { signing_seed: Some(_), .. }), "BFT points get a signing seed");
        let ports = |c: &DeploymentConfig| c.replicas().into_iter().map(|r| c.address(r).port()).collect::<Vec<_>>();
        let (pa, pb) = (ports(&a), ports(&b));
        assert!(pa.iter().all(|p| !pb.contains(p)), "points use disjoint ports: {pa:?} {pb:?}");
        assert_eq!(a.load.size, 100);
    }

    #[test]
    fn bad_grids_are_refused() {
        let bad = [
            BenchSpec { strategies: vec![], ..BenchSpec::default() },
            BenchSpec { ns: vec![3], fault: FaultModel::Bft, ..BenchSpec::default() },
            BenchSpec { sizes: vec![0], ..BenchSpec::default() },
            BenchSpec { base_port: 65_000, ns: vec![64], ..BenchSpec::default() },
            BenchSpec { base_port: 1000, ..BenchSpec::default() },
        ];
        for spec in bad {
            assert!(spec.validate().is_err(), "{spec:?}");
        }
    }

    #[test]
    fn a_failing_runner_is_recorded_not_fatal() {
        let spec = BenchSpec {
            strategies: vec![Strategy::Picsou],
            sizes: vec![100],
            transports: vec![TransportKind::Mem],
            ..BenchSpec::default()
        };
        let base = DeploymentConfig::embedded_default();
        let mut seen = 0;
        let report = run(&spec, &base, "test", &mut |_c| Err("no".into()), &mut |done, total, r| {
            seen = done;
            assert_eq!(total, 1);
            assert!(!r.ok);
        })
        .expect("grid is valid");
        assert_eq!(seen, 1);
        assert_eq!(report.results[0].error.as_deref(), Some("no"));
    }
}
