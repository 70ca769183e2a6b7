//! `picsou-etcd demo`: two 3-member etcd clusters on loopback, six sidecars (one process each,
//! the two RSMs of a Picsou deployment), a concurrent write load, and a report.
//!
//! Phases, in one run on the same clusters:
//! 1. **baseline**: the load writes under a prefix nobody mirrors, with no sidecar running;
//! 2. **mirrored**: the sidecars start (the stream begins at the current revision) and the
//!    same load writes under the mirrored prefix; `--kill`/`--restart` times count from the
//!    start of this phase;
//! 3. **half rate** (unless `--half-rate-puts 0`): the load at half the baseline rate, for
//!    the lag at a rate the cluster sustains.
//!
//! After each mirrored phase the demo writes a marker key and waits until the other cluster's
//! progress key reports the marker's revision applied. Lag of a write = the instant the
//! progress key (watched on the receiving cluster) first covers its revision − the instant
//! the write's response arrived. At the end it digests both clusters under every mirrored
//! prefix, and counts the source's revisions under the prefix with a watch of its own, to
//! check that every revision was applied once: the receiving progress must equal that count,
//! and its source revision the marker's.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use etcd_client::{Client, WatchOptions};
use picsou_core::Strategy;
use picsou_runtime::deployment::DeploymentConfig;
use serde::Serialize;

use crate::apply::{Progress, progress_key};
use crate::cluster::{Cluster, etcd_version, free_ports};
use crate::digest::{Digest, digest};
use crate::etcd::connect_all;
use crate::sidecar::SidecarStatus;

/// Mirroring mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Disaster recovery: the primary's prefix is mirrored to the standby.
    Dr,
    /// Reconciliation: each cluster owns a prefix and mirrors the other's.
    Reconcile,
}

/// Transports that connect separate processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DemoTransport {
    /// TCP with epoll.
    Tcp,
    /// TCP with io_uring (falls back to TCP where io_uring is unavailable).
    Uring,
}

/// Arguments of `picsou-etcd demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Dissemination strategy between the clusters: picsou, ost, ata, ll or otu.
    #[arg(long, default_value = "picsou")]
    pub strategy: Strategy,
    /// dr (primary to standby) or reconcile (both ways, each cluster its own prefix).
    #[arg(long, value_enum, default_value = "dr")]
    pub mode: Mode,
    /// Writes per phase (per cluster in reconcile mode).
    #[arg(long, default_value_t = 20_000)]
    pub puts: u64,
    /// Writes of the half-rate phase (0: skip it).
    #[arg(long)]
    pub half_rate_puts: Option<u64>,
    /// Value bytes per put.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Concurrent clients of the load (per cluster).
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Distinct keys per client (keys are overwritten beyond that).
    #[arg(long, default_value_t = 1000)]
    pub keys_per_client: u64,
    /// Every N-th write of a client deletes the key it wrote before (0: puts only).
    #[arg(long, default_value_t = 0)]
    pub delete_every: u64,
    /// SIGKILL a member and its sidecar: `primary/1@SECONDS` (from the start of the mirrored
    /// phase).
    #[arg(long, value_name = "CLUSTER/ID@SECONDS")]
    pub kill: Vec<String>,
    /// Restart a killed member and its sidecar: `primary/1@SECONDS`.
    #[arg(long, value_name = "CLUSTER/ID@SECONDS")]
    pub restart: Vec<String>,
    /// Picsou transport between the sidecars.
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: DemoTransport,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// First of the 18 consecutive loopback ports to use (default: random free ones).
    #[arg(long)]
    pub base_port: Option<u16>,
    /// Where to make the run's folder (data directories, logs, checkpoints), removed at the
    /// end unless --keep (default: the system's temporary folder; /dev/shm puts the members'
    /// data in memory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the temporary folder.
    #[arg(long)]
    pub keep: bool,
    /// The sidecars' --takeover-ms.
    #[arg(long, default_value_t = 500)]
    pub takeover_ms: u64,
    /// etcd's --max-txn-ops on both clusters, and the sidecars' limit.
    #[arg(long, default_value_t = 1024)]
    pub max_txn_ops: usize,
    /// Niceness of the sidecars and of the mirror-only cluster (the standby in dr mode): on
    /// one shared host this gives the primary's members first call on the CPU, as they would
    /// have on hosts of their own with the sidecar as a low-priority neighbour (0: off).
    #[arg(long, default_value_t = 10)]
    pub nice: u8,
    /// Seconds to wait for the mirror to catch up after a phase.
    #[arg(long, default_value_t = 120)]
    pub catch_up_s: u64,
}

/// Lag percentiles.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Lag {
    /// Writes measured.
    pub samples: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

/// One cluster's load in one phase.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// The cluster written to.
    pub cluster: String,
    /// Its prefix.
    pub prefix: String,
    /// Writes completed.
    pub writes: u64,
    /// Seconds from the first to the last.
    pub seconds: f64,
    /// Writes per second.
    pub writes_per_s: f64,
    /// Requests retried after an error.
    pub retries: u64,
    /// Lag to the other cluster, if this phase was mirrored.
    pub lag: Option<Lag>,
}

/// One phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    /// baseline, mirrored or half-rate.
    pub name: String,
    /// Sidecars running.
    pub mirrored: bool,
    /// Target rate per cluster (0: as fast as possible).
    pub rate: f64,
    /// Per cluster under load.
    pub loads: Vec<LoadReport>,
    /// Seconds of wall time the phase's load took.
    pub seconds: f64,
    /// CPU used per process group, in cores (CPU seconds / wall seconds).
    pub cpu_cores: BTreeMap<String, f64>,
    /// Write-ahead-log fsyncs per cluster (from the members' metrics): on one host the six
    /// members share one disk.
    pub wal_fsync: BTreeMap<String, WalFsync>,
}

/// A cluster's WAL fsyncs during a phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WalFsync {
    /// fsyncs per second, all members together.
    pub per_s: f64,
    /// Mean duration of one, ms.
    pub mean_ms: f64,
    /// Fraction of the phase a member spent in fsync, averaged over members.
    pub busy: f64,
}

/// (count, seconds) of WAL fsyncs of the member whose client port is `port`, from its
/// `/metrics` (zeros if it does not answer).
fn wal_fsync_counters(port: u16) -> (f64, f64) {
    use std::io::Read;
    let fetch = || -> std::io::Result<String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    };
    let Ok(text) = fetch() else { return (0.0, 0.0) };
    let get = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok())).unwrap_or(0.0)
    };
    (get("etcd_disk_wal_fsync_duration_seconds_count "), get("etcd_disk_wal_fsync_duration_seconds_sum "))
}

/// Every member's WAL fsync counters, per cluster.
fn wal_sample(ports: &[Vec<u16>; 2]) -> [Vec<(f64, f64)>; 2] {
    [
        ports[0].iter().map(|&p| wal_fsync_counters(p)).collect(),
        ports[1].iter().map(|&p| wal_fsync_counters(p)).collect(),
    ]
}

fn wal_report(a: &[Vec<(f64, f64)>; 2], b: &[Vec<(f64, f64)>; 2], secs: f64) -> BTreeMap<String, WalFsync> {
    let mut out = BTreeMap::new();
    for c in 0..2 {
        let (mut n, mut t) = (0.0, 0.0);
        for (x, y) in a[c].iter().zip(&b[c]) {
            // A restarted member's counters start again from zero.
            let d = |p: f64, q: f64| if q >= p { q - p } else { q };
            n += d(x.0, y.0);
            t += d(x.1, y.1);
        }
        let members = a[c].len().max(1) as f64;
        out.insert(
            CLUSTERS[c].to_string(),
            WalFsync { per_s: n / secs, mean_ms: if n > 0.0 { 1000.0 * t / n } else { 0.0 }, busy: t / secs / members },
        );
    }
    out
}

/// One mirrored direction at the end.
#[derive(Clone, Debug, Serialize)]
pub struct DirectionReport {
    /// Source cluster.
    pub from: String,
    /// Mirror cluster.
    pub to: String,
    /// The prefix.
    pub prefix: String,
    /// Revisions under the prefix at the source since the stream's start (its own watch).
    pub source_revisions: u64,
    /// Last of them.
    pub source_last_revision: u64,
    /// Messages applied at the mirror (its progress key's `next`).
    pub revisions_mirrored: u64,
    /// Source revision of the last applied (progress key).
    pub applied_source_revision: u64,
    /// Digest at the source.
    pub source: Digest,
    /// Digest at the mirror.
    pub mirror: Digest,
    /// Same keys and values, every revision applied once, up to the last.
    pub identical: bool,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    /// Every direction identical and every sidecar free of fatal errors.
    pub ok: bool,
    /// The git commit measured, if known.
    pub commit: Option<String>,
    /// etcd's version line.
    pub etcd: String,
    /// dr or reconcile.
    pub mode: Mode,
    /// Picsou strategy.
    pub strategy: String,
    /// Transport kind.
    pub transport: String,
    /// Members (= sidecars) per cluster.
    pub members: usize,
    /// Clients per cluster.
    pub clients: usize,
    /// Niceness of the sidecars (and of the standby's members in dr mode).
    pub nice: u8,
    /// Value bytes.
    pub value_size: usize,
    /// Writes per phase.
    pub puts: u64,
    /// Host cores.
    pub cores: usize,
    /// 1-minute load average at the start.
    pub load_average_start: f64,
    /// Phases.
    pub phases: Vec<PhaseReport>,
    /// Primary write throughput lost to mirroring: 1 − mirrored / baseline (percent).
    pub mirroring_cost_pct: f64,
    /// The primary's etcd CPU per write, mirrored vs baseline (percent more).
    pub primary_etcd_cpu_per_write_cost_pct: f64,
    /// Mirroring cost if the load generator's CPU is given back to the clusters: throughput
    /// scaled by the cores the rest had (2 − load generator) in each phase.
    pub mirroring_cost_without_load_generator_pct: f64,
    /// Directions.
    pub directions: Vec<DirectionReport>,
    /// Kills and restarts done.
    pub actions: Vec<String>,
    /// Every sidecar's last status.
    pub sidecars: Vec<SidecarStatus>,
    /// Problems seen.
    pub problems: Vec<String>,
}

const MEMBERS: usize = 3;
const CLUSTERS: [&str; 2] = ["primary", "standby"];

/// A scheduled kill or restart.
#[derive(Clone, Debug)]
struct Action {
    at: Duration,
    cluster: usize,
    member: usize,
    restart: bool,
}

fn parse_action(s: &str, restart: bool) -> Result<Action, String> {
    let bad = || format!("{s:?}: expected CLUSTER/ID@SECONDS, e.g. primary/1@2.5");
    let (who, at) = s.split_once('@').ok_or_else(bad)?;
    let (c, id) = who.split_once('/').ok_or_else(bad)?;
    let cluster =
        CLUSTERS.iter().position(|n| *n == c).ok_or_else(|| format!("{s:?}: the clusters are primary and standby"))?;
    let member: usize = id.parse().map_err(|_| bad())?;
    if member >= MEMBERS {
        return Err(format!("{s:?}: members are 0 to {}", MEMBERS - 1));
    }
    let at: f64 = at.parse().map_err(|_| bad())?;
    if !(0.0..=3600.0).contains(&at) {
        return Err(format!("{s:?}: the time must be between 0 and 3600 seconds"));
    }
    Ok(Action { at: Duration::from_secs_f64(at), cluster, member, restart })
}

/// One sidecar process.
struct SidecarProc {
    child: Child,
    stdin: Option<ChildStdin>,
}

/// Everything the demo runs.
struct World {
    clusters: [Cluster; 2],
    sidecars: [Vec<Option<SidecarProc>>; 2],
    sidecar_args: [Vec<Vec<String>>; 2],
    status: Arc<Mutex<HashMap<String, SidecarStatus>>>,
    dir: PathBuf,
    nice: u8,
}

impl World {
    fn spawn_sidecar(&mut self, c: usize, i: usize) -> Result<(), String> {
        let args = self.sidecar_args[c][i].clone();
        let log = self.dir.join(format!("sidecar-{}-{i}.log", CLUSTERS[c]));
        let logf = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("nice");
        cmd.arg("-n").arg(self.nice.to_string()).arg(exe);
        let mut child = cmd
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("cannot start a sidecar: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let status = self.status.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(s) = serde_json::from_str::<SidecarStatus>(&line) {
                    status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(s.replica.clone(), s);
                }
            }
        });
        self.sidecars[c][i] = Some(SidecarProc { child, stdin });
        Ok(())
    }

    /// SIGKILLs sidecar `i` of cluster `c`; with `forget`, drops its last status too (a killed
    /// sidecar's restart reports afresh).
    fn kill_sidecar(&mut self, c: usize, i: usize, forget: bool) {
        if let Some(mut p) = self.sidecars[c][i].take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
            if forget {
                let mut status = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                status.remove(&format!("{}/{i}", CLUSTERS[c]));
            }
        }
    }

    fn pids(&self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for (c, cl) in self.clusters.iter().enumerate() {
            for m in &cl.members {
                if let Some(p) = m.pid() {
                    out.push((format!("etcd {}", CLUSTERS[c]), p));
                }
            }
            for p in self.sidecars[c].iter().flatten() {
                out.push((format!("sidecars {}", CLUSTERS[c]), p.child.id()));
            }
        }
        out.push(("load generator (demo process)".into(), std::process::id()));
        out
    }

    fn stop_sidecars(&mut self) {
        for c in 0..2 {
            for p in self.sidecars[c].iter_mut().flatten() {
                p.stdin.take();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in 0..2 {
            for i in 0..MEMBERS {
                if let Some(p) = &mut self.sidecars[c][i] {
                    while Instant::now() < deadline && !matches!(p.child.try_wait(), Ok(Some(_))) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                self.kill_sidecar(c, i, false);
            }
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for c in 0..2 {
            for i in 0..MEMBERS {
                self.kill_sidecar(c, i, false);
            }
        }
    }
}

/// CPU time per process (ticks), sampled so that killed processes keep their last value.
#[derive(Default)]
struct CpuMeter {
    last: Mutex<HashMap<u32, (String, u64)>>,
}

impl CpuMeter {
    fn ticks(pid: u32) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }

    fn sample(&self, pids: &[(String, u32)]) {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (group, pid) in pids {
            if let Some(t) = Self::ticks(*pid) {
                last.insert(*pid, (group.clone(), t));
            }
        }
    }

    /// CPU seconds per group so far.
    fn totals(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (group, t) in self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values() {
            *out.entry(group.clone()).or_insert(0.0) += *t as f64 / 100.0;
        }
        out
    }
}

/// Runs the demo; the report says whether the mirrors matched.
pub fn main(args: &DemoArgs) -> Result<DemoReport, String> {
    let etcd = etcd_version()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("picsou-etcd-demo-")
        .tempdir_in(&parent)
        .map_err(|e| format!("cannot create a folder in {}: {e}", parent.display()))?;
    let dir = tmp.path().to_path_buf();
    let result = rt.block_on(run(args, &dir, etcd));
    if args.keep {
        let kept = tmp.keep();
        eprintln!("picsou-etcd demo: kept {}", kept.display());
    }
    result
}

fn prefixes(mode: Mode) -> [Option<String>; 2] {
    match mode {
        Mode::Dr => [Some("/app/".into()), None],
        Mode::Reconcile => [Some("/app/primary/".into()), Some("/app/standby/".into())],
    }
}

async fn run(args: &DemoArgs, dir: &Path, etcd: String) -> Result<DemoReport, String> {
    let load_average_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    let mut actions = Vec::new();
    for (list, restart) in [(&args.kill, false), (&args.restart, true)] {
        for s in list {
            actions.push(parse_action(s, restart)?);
        }
    }
    actions.sort_by_key(|a| a.at);
    let base = free_ports(4 * MEMBERS as u16 + 2 * MEMBERS as u16, args.base_port)?;
    let extra = vec![format!("--max-txn-ops={}", args.max_txn_ops)];
    let mut clusters = [
        Cluster::new(CLUSTERS[0], MEMBERS, base, dir, &extra),
        Cluster::new(CLUSTERS[1], MEMBERS, base + 2 * MEMBERS as u16, dir, &extra),
    ];
    if args.mode == Mode::Dr {
        clusters[1].nice = args.nice;
    }
    for c in &mut clusters {
        c.start_all()?;
    }
    for c in &clusters {
        c.wait_ready(Duration::from_secs(30)).await?;
    }
    let endpoints = [clusters[0].endpoints(), clusters[1].endpoints()];
    let mut clients = Vec::new();
    for e in &endpoints {
        clients.push(connect_all(e).await.map_err(|e| format!("etcd: {e}"))?);
    }
    let loaded: Vec<usize> = match args.mode {
        Mode::Dr => vec![0],
        Mode::Reconcile => vec![0, 1],
    };
    let mirrored = prefixes(args.mode);
    let cpu = Arc::new(CpuMeter::default());

    // The Picsou deployment: one replica per member.
    let picsou_base = base + 4 * MEMBERS as u16;
    let deployment = deployment_toml(args, picsou_base)?;
    let dfile = dir.join("deployment.toml");
    std::fs::write(&dfile, &deployment).map_err(|e| e.to_string())?;
    DeploymentConfig::from_path(&dfile).map_err(|e| e.to_string())?;

    let mut world = World {
        clusters,
        sidecars: [(0..MEMBERS).map(|_| None).collect(), (0..MEMBERS).map(|_| None).collect()],
        sidecar_args: [Vec::new(), Vec::new()],
        status: Arc::default(),
        dir: dir.to_path_buf(),
        nice: args.nice,
    };
    let sampling = Arc::new(AtomicBool::new(true));
    let world_pids: Arc<Mutex<Vec<(String, u32)>>> = Arc::new(Mutex::new(world.pids()));
    {
        let (cpu, pids, on) = (cpu.clone(), world_pids.clone(), sampling.clone());
        std::thread::spawn(move || {
            while on.load(Ordering::Relaxed) {
                let p = pids.lock().map(|p| p.clone()).unwrap_or_default();
                cpu.sample(&p);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
    }
    let mut phases = Vec::new();
    let mut problems = Vec::new();

    // Phase 1: no mirroring.
    let ports: [Vec<u16>; 2] = [
        world.clusters[0].members.iter().map(|m| m.client_port).collect(),
        world.clusters[1].members.iter().map(|m| m.client_port).collect(),
    ];
    let t = Instant::now();
    let c0 = counters(&cpu, &world_pids, &ports);
    let mut loads = Vec::new();
    let futs: Vec<_> = loaded
        .iter()
        .map(|&c| {
            let prefix = format!("/picsou-demo/baseline/{}/", CLUSTERS[c]);
            run_load(clients[c].clone(), CLUSTERS[c], prefix, args.clone(), args.puts, None)
        })
        .collect();
    for r in futures_join(futs).await {
        loads.push(r?.0);
    }
    let wall = t.elapsed();
    let c1 = counters(&cpu, &world_pids, &ports);
    phases.push(phase("baseline", false, 0.0, loads, wall, &c0, &c1));
    let baseline_rate = phases[0].loads[0].writes_per_s;

    // The sidecars: each stream starts after the cluster's current revision.
    let mut start_rev = [0u64; 2];
    for c in 0..2 {
        let r = clients[c].clone().status().await.map_err(|e| e.to_string())?;
        start_rev[c] = r.header().map_or(0, |h| h.revision()) as u64 + 1;
    }
    for c in 0..2 {
        for i in 0..MEMBERS {
            let mut a: Vec<String> = vec![
                "sidecar".into(),
                format!("--deployment={}", dfile.display()),
                format!("--rsm={}", CLUSTERS[c]),
                format!("--replica={i}"),
                format!("--etcd={}", world.clusters[c].members[i].endpoint()),
                format!("--start-revision={}", start_rev[c]),
                format!("--state-dir={}", dir.join("state").display()),
                format!("--takeover-ms={}", args.takeover_ms),
                format!("--max-txn-ops={}", args.max_txn_ops),
                "--status-ms=500".into(),
                "--until-stdin-closes".into(),
            ];
            if let Some(p) = &mirrored[c] {
                a.push(format!("--send-prefix={p}"));
            }
            if let Some(p) = &mirrored[1 - c] {
                a.push(format!("--receive-prefix={p}"));
            }
            world.sidecar_args[c].push(a);
        }
    }
    for c in 0..2 {
        for i in 0..MEMBERS {
            world.spawn_sidecar(c, i)?;
        }
    }
    *world_pids.lock().map_err(|e| e.to_string())? = world.pids();
    wait_ready(&world.status, 2 * MEMBERS, Duration::from_secs(30)).await?;

    // Lag monitors: the receiving cluster's progress key, watched.
    let mut monitors: Vec<Option<Arc<Monitor>>> = vec![None, None];
    for c in 0..2 {
        if mirrored[c].is_some() {
            let m = Arc::new(Monitor::default());
            tokio::spawn(monitor(clients[1 - c].clone(), progress_key(CLUSTERS[c]), m.clone()));
            monitors[c] = Some(m);
        }
    }

    // Phase 2 (and 3): mirrored.
    let world = Arc::new(tokio::sync::Mutex::new(world));
    let done_actions: Arc<Mutex<Vec<String>>> = Arc::default();
    let half = args.half_rate_puts.unwrap_or(args.puts / 2);
    let mut plan = vec![("mirrored", args.puts, None)];
    if half > 0 && baseline_rate > 0.0 {
        plan.push(("half-rate", half, Some(baseline_rate / 2.0)));
    }
    let mut end_rev = [0u64; 2];
    for (k, (name, puts, rate)) in plan.into_iter().enumerate() {
        let t = Instant::now();
        let scheduler = (k == 0 && !actions.is_empty()).then(|| {
            tokio::spawn(run_actions(actions.clone(), world.clone(), world_pids.clone(), done_actions.clone()))
        });
        let c0 = counters(&cpu, &world_pids, &ports);
        let futs: Vec<_> = loaded
            .iter()
            .map(|&c| {
                run_load(
                    clients[c].clone(),
                    CLUSTERS[c],
                    mirrored[c].clone().unwrap_or_default(),
                    args.clone(),
                    puts,
                    rate,
                )
            })
            .collect();
        let mut results = Vec::new();
        for r in futures_join(futs).await {
            results.push(r?);
        }
        let wall = t.elapsed();
        let c1 = counters(&cpu, &world_pids, &ports);
        if let Some(s) = scheduler {
            // Kills and restarts all happen, even after a short load.
            let _ = s.await;
        }
        // Marker writes, then wait until they are mirrored.
        let mut loads = Vec::new();
        for (&c, (mut load, ops)) in loaded.iter().zip(results) {
            let prefix = mirrored[c].clone().unwrap_or_default();
            let marker = put_retry(&clients[c], format!("{prefix}marker"), name.to_string()).await?;
            end_rev[c] = marker;
            let mon = monitors[c].as_ref().ok_or("no monitor")?;
            let caught = mon.wait_for(marker, Duration::from_secs(args.catch_up_s)).await;
            if !caught {
                problems.push(format!(
                    "{name}: {} -> {} did not catch up with revision {marker} within {} s",
                    CLUSTERS[c],
                    CLUSTERS[1 - c],
                    args.catch_up_s
                ));
            }
            load.lag = Some(mon.lag(&ops));
            loads.push(load);
        }
        phases.push(phase(name, true, rate.unwrap_or(0.0), loads, wall, &c0, &c1));
    }

    // Every direction: digests and revision counts.
    let mut directions = Vec::new();
    for c in 0..2 {
        let Some(prefix) = &mirrored[c] else { continue };
        let (count, last) = count_revisions(&clients[c], prefix, start_rev[c], end_rev[c]).await?;
        // A member restarted moments ago may still refuse connections: the client's balancer
        // can route a read to it, so reads are retried for a while.
        let source = retry_read(|| {
            let mut src = clients[c].clone();
            let prefix = prefix.clone();
            async move { digest(&mut src, prefix.as_bytes()).await }
        })
        .await?;
        let mirror = retry_read(|| {
            let mut dst = clients[1 - c].clone();
            let prefix = prefix.clone();
            async move { digest(&mut dst, prefix.as_bytes()).await }
        })
        .await?;
        let progress = retry_read(|| {
            let mut dst = clients[1 - c].clone();
            async move { dst.get(progress_key(CLUSTERS[c]), None).await }
        })
        .await?;
        let p = progress.kvs().first().and_then(|kv| Progress::parse(kv.value()).ok()).unwrap_or(Progress {
            next: 0,
            source_revision: 0,
            applier: String::new(),
        });
        let identical = source.hash == mirror.hash
            && source.keys == mirror.keys
            && p.next == count
            && p.source_revision == last
            && last == end_rev[c];
        directions.push(DirectionReport {
            from: CLUSTERS[c].into(),
            to: CLUSTERS[1 - c].into(),
            prefix: prefix.clone(),
            source_revisions: count,
            source_last_revision: last,
            revisions_mirrored: p.next,
            applied_source_revision: p.source_revision,
            source,
            mirror,
            identical,
        });
    }
    sampling.store(false, Ordering::Relaxed);
    let mut world = Arc::try_unwrap(world).map_err(|_| "world still shared")?.into_inner();
    // Final statuses (printed as the sidecars stop).
    world.stop_sidecars();
    // Their readers take the last status lines.
    std::thread::sleep(Duration::from_millis(200));
    let mut sidecars: Vec<SidecarStatus> =
        world.status.lock().map(|s| s.values().cloned().collect()).unwrap_or_default();
    sidecars.sort_by(|a, b| a.replica.cmp(&b.replica));
    for s in &sidecars {
        if let Some(e) = &s.error {
            problems.push(format!("{}: {e}", s.replica));
        }
    }
    drop(world);

    let base = &phases[0];
    let mir = &phases[1];
    let rate = |p: &PhaseReport| p.loads.first().map_or(0.0, |l| l.writes_per_s);
    let cost = 100.0 * (1.0 - rate(mir) / rate(base).max(1e-9));
    let etcd_per_write = |p: &PhaseReport| {
        let cores = p.cpu_cores.get("etcd primary").copied().unwrap_or(0.0);
        cores / rate(p).max(1e-9)
    };
    let cpu_cost = 100.0 * (etcd_per_write(mir) / etcd_per_write(base).max(1e-12) - 1.0);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let without_load = |p: &PhaseReport| {
        let load = p.cpu_cores.get("load generator (demo process)").copied().unwrap_or(0.0);
        rate(p) * cores as f64 / (cores as f64 - load).max(0.1)
    };
    let cost_wo = 100.0 * (1.0 - without_load(mir) / without_load(base).max(1e-9));
    let ok = problems.is_empty() && !directions.is_empty() && directions.iter().all(|d| d.identical);
    let actions = done_actions.lock().map(|a| a.clone()).unwrap_or_default();
    Ok(DemoReport {
        ok,
        commit: commit(),
        etcd,
        mode: args.mode,
        strategy: args.strategy.name().into(),
        transport: format!("{:?}", args.transport).to_lowercase(),
        members: MEMBERS,
        clients: args.clients,
        nice: args.nice,
        value_size: args.value_size,
        puts: args.puts,
        cores,
        load_average_start,
        phases,
        mirroring_cost_pct: cost,
        primary_etcd_cpu_per_write_cost_pct: cpu_cost,
        mirroring_cost_without_load_generator_pct: cost_wo,
        directions,
        actions,
        sidecars,
        problems,
    })
}

/// Counters at a phase's start or end: CPU seconds per group, WAL fsyncs per member.
struct Counters {
    cpu: BTreeMap<String, f64>,
    wal: [Vec<(f64, f64)>; 2],
}

fn counters(cpu: &CpuMeter, pids: &Mutex<Vec<(String, u32)>>, ports: &[Vec<u16>; 2]) -> Counters {
    cpu.sample(&pids.lock().map(|p| p.clone()).unwrap_or_default());
    Counters { cpu: cpu.totals(), wal: wal_sample(ports) }
}

fn phase(
    name: &str,
    mirrored: bool,
    rate: f64,
    loads: Vec<LoadReport>,
    wall: Duration,
    a: &Counters,
    b: &Counters,
) -> PhaseReport {
    let secs = wall.as_secs_f64().max(1e-9);
    let cpu_cores = b.cpu.iter().map(|(g, v)| (g.clone(), (v - a.cpu.get(g).copied().unwrap_or(0.0)) / secs)).collect();
    let wal_fsync = wal_report(&a.wal, &b.wal, secs);
    PhaseReport { name: name.into(), mirrored, rate, loads, seconds: secs, cpu_cores, wal_fsync }
}

fn commit() -> Option<String> {
    if let Ok(c) = std::env::var("PICSOU_COMMIT") {
        return Some(c);
    }
    let out = Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn deployment_toml(args: &DemoArgs, base: u16) -> Result<String, String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| e.to_string())?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut s = format!(
        "# Written by picsou-etcd demo: one Picsou replica per etcd member.\nstrategy = \"{}\"\n",
        args.strategy.name()
    );
    for (c, name) in CLUSTERS.iter().enumerate() {
        s.push_str(&format!("\n[[rsm]]\nname = \"{name}\"\nfault = \"cft\"\nf = 1\nreplicas = [\n"));
        for i in 0..MEMBERS {
            s.push_str(&format!("  {{ id = {i}, address = \"127.0.0.1:{}\" }},\n", base + (c * MEMBERS + i) as u16));
        }
        s.push_str("]\n");
    }
    let kind = match args.transport {
        DemoTransport::Tcp => "tcp",
        DemoTransport::Uring => "uring",
    };
    s.push_str(&format!("\n[transport]\nkind = \"{kind}\"\n\n[keys]\nsecret = \"{hex}\"\n"));
    Ok(s)
}

async fn wait_ready(status: &Mutex<HashMap<String, SidecarStatus>>, n: usize, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let ready = status.lock().map(|s| s.values().filter(|s| s.ready).count()).unwrap_or(0);
        if ready >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {ready} of {n} sidecars started within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn futures_join<T: Send + 'static>(futs: Vec<impl Future<Output = T> + Send + 'static>) -> Vec<T> {
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

async fn run_actions(
    actions: Vec<Action>,
    world: Arc<tokio::sync::Mutex<World>>,
    pids: Arc<Mutex<Vec<(String, u32)>>>,
    done: Arc<Mutex<Vec<String>>>,
) {
    let t0 = Instant::now();
    for a in actions {
        tokio::time::sleep_until((t0 + a.at).into()).await;
        let mut w = world.lock().await;
        let who = format!("{}/{}", CLUSTERS[a.cluster], a.member);
        let what = if a.restart {
            let r1 = w.clusters[a.cluster].start(a.member);
            let r2 = w.spawn_sidecar(a.cluster, a.member);
            match (r1, r2) {
                (Ok(()), Ok(())) => {
                    format!("restarted {who} (member and sidecar) at {:.2} s", t0.elapsed().as_secs_f64())
                }
                (r1, r2) => format!("restart of {who} failed: {r1:?} {r2:?}"),
            }
        } else {
            w.clusters[a.cluster].kill(a.member);
            w.kill_sidecar(a.cluster, a.member, true);
            format!("killed {who} (member and sidecar, SIGKILL) at {:.2} s", t0.elapsed().as_secs_f64())
        };
        eprintln!("picsou-etcd demo: {what}");
        if let Ok(mut p) = pids.lock() {
            *p = w.pids();
        }
        if let Ok(mut d) = done.lock() {
            d.push(what);
        }
    }
}

/// A completed write: its revision and when its response arrived.
type Op = (u64, Instant);

/// The load of one cluster: `puts` writes from `args.clients` concurrent clients.
async fn run_load(
    client: Client,
    cluster: &'static str,
    prefix: String,
    args: DemoArgs,
    puts: u64,
    rate: Option<f64>,
) -> Result<(LoadReport, Vec<Op>), String> {
    let n = args.clients.max(1) as u64;
    let retries = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for c in 0..n {
        let count = puts / n + u64::from(c < puts % n);
        let (kv, prefix, retries) = (client.kv_client(), prefix.clone(), retries.clone());
        let (value_size, keys, delete_every) = (args.value_size, args.keys_per_client.max(1), args.delete_every);
        let interval = rate.map(|r| Duration::from_secs_f64(n as f64 / r.max(1e-3)));
        handles.push(tokio::spawn(async move {
            let mut kv = kv;
            let mut ops: Vec<Op> = Vec::with_capacity(count as usize);
            for j in 0..count {
                if let Some(iv) = interval {
                    // Clients start staggered across one interval.
                    let due = start + iv.mul_f64(j as f64 + c as f64 / n as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let delete = delete_every > 0 && j % delete_every == delete_every - 1;
                let key_of = |j: u64| format!("{prefix}c{c:03}/k{:06}", j % keys);
                let mut tries = 0u32;
                loop {
                    let r = if delete {
                        kv.delete(key_of(j - 1), None).await.map(|r| r.header().map_or(0, |h| h.revision()))
                    } else {
                        let mut value = format!("{cluster}:{c}:{j}:").into_bytes();
                        value.resize(value_size.max(value.len()), b'a' + (j % 26) as u8);
                        kv.put(key_of(j), value, None).await.map(|r| r.header().map_or(0, |h| h.revision()))
                    };
                    match r {
                        Ok(rev) => {
                            ops.push((rev as u64, Instant::now()));
                            break;
                        }
                        Err(e) => {
                            tries += 1;
                            retries.fetch_add(1, Ordering::Relaxed);
                            if tries > 600 {
                                return Err(format!("{cluster}: write failed 600 times: {e}"));
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
            Ok(ops)
        }));
    }
    let mut ops = Vec::with_capacity(puts as usize);
    for h in handles {
        ops.extend(h.await.map_err(|e| e.to_string())??);
    }
    let seconds = start.elapsed().as_secs_f64();
    let writes = ops.len() as u64;
    Ok((
        LoadReport {
            cluster: cluster.into(),
            prefix,
            writes,
            seconds,
            writes_per_s: writes as f64 / seconds.max(1e-9),
            retries: retries.load(Ordering::Relaxed),
            lag: None,
        },
        ops,
    ))
}

/// Runs a read until it succeeds, for up to 30 s (members restarting refuse connections).
async fn retry_read<T, F, Fut>(mut read: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match read().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn put_retry(client: &Client, key: String, value: String) -> Result<u64, String> {
    let mut kv = client.kv_client();
    for _ in 0..600 {
        match kv.put(key.clone(), value.clone(), None).await {
            Ok(r) => return Ok(r.header().map_or(0, |h| h.revision()) as u64),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    Err(format!("cannot write {key}"))
}

/// What a watch on a receiving cluster's progress key saw: (source revision, when).
#[derive(Default)]
struct Monitor {
    seen: Mutex<Vec<(u64, Instant)>>,
    latest: AtomicU64,
}

impl Monitor {
    async fn wait_for(&self, revision: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.latest.load(Ordering::Acquire) < revision {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Lag of each op: the first sighting of a source revision at or above its revision.
    fn lag(&self, ops: &[Op]) -> Lag {
        let seen = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        let mut ops: Vec<Op> = ops.to_vec();
        ops.sort_by_key(|o| o.0);
        let mut lags = Vec::with_capacity(ops.len());
        let mut i = 0;
        for (rev, done) in ops {
            while i < seen.len() && seen[i].0 < rev {
                i += 1;
            }
            if let Some(&(_, at)) = seen.get(i) {
                lags.push(at.saturating_duration_since(done).as_secs_f64() * 1000.0);
            }
        }
        lags.sort_by(f64::total_cmp);
        let pct = |q: f64| {
            if lags.is_empty() { 0.0 } else { lags[((lags.len() as f64 * q).ceil() as usize).clamp(1, lags.len()) - 1] }
        };
        Lag { samples: lags.len(), p50_ms: pct(0.5), p99_ms: pct(0.99), max_ms: lags.last().copied().unwrap_or(0.0) }
    }
}

/// Watches `key` (a progress key) through `client`, re-watching after errors.
async fn monitor(client: Client, key: Vec<u8>, m: Arc<Monitor>) {
    let mut from: i64 = 0;
    loop {
        let mut w = client.watch_client();
        let mut opts = WatchOptions::new();
        if from > 0 {
            opts = opts.with_start_revision(from);
        }
        if let Ok(mut stream) = w.watch(key.clone(), Some(opts)).await {
            while let Ok(Some(resp)) = stream.message().await {
                let now = Instant::now();
                for ev in resp.events() {
                    if let Some(kv) = ev.kv() {
                        from = kv.mod_revision() + 1;
                        if let Ok(p) = Progress::parse(kv.value()) {
                            if let Ok(mut s) = m.seen.lock() {
                                s.push((p.source_revision, now));
                            }
                            m.latest.fetch_max(p.source_revision, Ordering::AcqRel);
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Revisions with changes under `prefix` in `from ..= to` at the source, by a watch of its own
/// (the marker at `to` ends it): how many, and the last.
async fn count_revisions(client: &Client, prefix: &str, from: u64, to: u64) -> Result<(u64, u64), String> {
    let mut count = 0;
    let mut last = from.saturating_sub(1);
    let deadline = Instant::now() + Duration::from_secs(120);
    while last < to {
        if Instant::now() > deadline {
            return Err(format!("counting the revisions under {prefix}: stuck at {last}"));
        }
        let opts = WatchOptions::new().with_prefix().with_start_revision(last as i64 + 1);
        let Ok(mut stream) = client.watch_client().max_decoding_message_size(256 << 20).watch(prefix, Some(opts)).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while let Ok(Some(resp)) = stream.message().await {
            for ev in resp.events() {
                if let Some(kv) = ev.kv() {
                    let r = kv.mod_revision() as u64;
                    if r > last && r <= to {
                        count += 1;
                        last = r;
                    }
                }
            }
            if last >= to {
                break;
            }
        }
    }
    Ok((count, last))
}

/// A human summary.
pub fn human(r: &DemoReport) -> String {
    let mode = match r.mode {
        Mode::Dr => "disaster recovery",
        Mode::Reconcile => "reconciliation",
    };
    let verdict = if r.ok { "mirrors identical" } else { "FAILED" };
    let mut s = format!(
        "picsou-etcd demo: {mode} mode, strategy {}, {} transport, two clusters of {} etcd members ({}), {} clients, {} B values, sidecars at nice {}: {verdict}\n",
        r.strategy, r.transport, r.members, r.etcd, r.clients, r.value_size, r.nice
    );
    for p in &r.phases {
        for l in &p.loads {
            let retries = if l.retries > 0 { format!(" ({} retries)", l.retries) } else { String::new() };
            let lag = l.lag.as_ref().map_or_else(String::new, |g| {
                format!(", mirror lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", g.p50_ms, g.p99_ms, g.max_ms)
            });
            let (name, cluster, writes, secs, rate) = (&p.name, &l.cluster, l.writes, l.seconds, l.writes_per_s);
            s.push_str(&format!(
                "  {name:<10} {cluster:<8} {writes:>7} writes in {secs:6.2} s = {rate:>8.0} writes/s{retries}{lag}\n"
            ));
        }
        let cpu: Vec<String> = p.cpu_cores.iter().map(|(g, c)| format!("{g} {c:.2}")).collect();
        s.push_str(&format!("             CPU cores: {}\n", cpu.join(", ")));
        let wal: Vec<String> = p
            .wal_fsync
            .iter()
            .map(|(c, w)| format!("{c} {:.0}/s of {:.1} ms (disk busy {:.0}%)", w.per_s, w.mean_ms, 100.0 * w.busy))
            .collect();
        s.push_str(&format!("             WAL fsyncs: {}\n", wal.join(", ")));
    }
    s.push_str(&format!(
        "  mirroring cost to the primary: {:.1}% of its write throughput; {:.1}% without the load generator's CPU share; primary etcd CPU per write {:+.1}%\n",
        r.mirroring_cost_pct, r.mirroring_cost_without_load_generator_pct, r.primary_etcd_cpu_per_write_cost_pct
    ));
    for d in &r.directions {
        let same = if d.source.hash == d.mirror.hash { "==" } else { "!=" };
        let verdict = if d.identical { "identical" } else { "DIFFERENT" };
        let (a, b) = (&d.source.hash[..16], &d.mirror.hash[..16]);
        s.push_str(&format!(
            "  {} -> {} ({}): {} revisions mirrored of {}, applied up to source revision {} of {}; {} keys, digest {a} {same} {b}: {verdict}\n",
            d.from, d.to, d.prefix, d.revisions_mirrored, d.source_revisions, d.applied_source_revision, d.source_last_revision, d.mirror.keys
        ));
    }
    for line in r.actions.iter().chain(r.problems.iter().map(|p| p as &String)) {
        s.push_str(&format!("  {line}\n"));
    }
    s
}

/// Writes `report` as JSON to `path`.
pub fn write_json(report: &DemoReport, path: &Path) -> Result<(), String> {
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    let mut f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).and_then(|()| f.write_all(b"\n")).map_err(|e| e.to_string())
}
