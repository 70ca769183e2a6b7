//! `picsou local`: a whole two-RSM deployment on this machine, one `picsou node` process per
//! replica on loopback (or threads of this process for `kind = "mem"` / `--in-process`),
//! driving the deployment's load and reporting receiver-confirmed throughput.
//!
//! With no arguments it runs the embedded default: two RSMs of 4 replicas, TCP on loopback,
//! 100,000 messages of 100 bytes in each direction.
//!
//! Fault injection: `--kill alpha/2@0.5` sends SIGKILL to that replica's process 0.5 s after
//! the load starts; `--restart alpha/2@1.0` starts it again at 1.0 s from its checkpoint
//! (it rejoins where it left off). A killed replica that is not restarted is excluded from
//! the receivers a message must reach; the run succeeds if every other replica delivers the
//! whole stream in order, exactly once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use picsou_core::ReplicaId;
use picsou_runtime::deployment::DeploymentConfig;
use picsou_runtime::load::{ReplicaReport, unix_nanos};
use picsou_runtime::local::{DeploymentReport, aggregate, run_in_process};
use picsou_runtime::transport::TransportKind;
use picsou_runtime::transport::mem::MemNetwork;

use crate::deploy_args::DeployArgs;
use crate::netns::{self, LinkReport, NetnsArgs, Testbed};

/// Arguments of `picsou local`.
#[derive(Debug, Args)]
pub(crate) struct LocalArgs {
    #[command(flatten)]
    pub(crate) deploy: DeployArgs,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Run every replica as a thread of this process instead of one process each (always so
    /// for `kind = "mem"`).
    #[arg(long)]
    pub(crate) in_process: bool,
    /// SIGKILL a replica's process at a time after the start: `RSM/ID@SECONDS`.
    #[arg(long, value_name = "RSM/ID@SECONDS")]
    pub(crate) kill: Vec<String>,
    /// Restart a killed replica at a time after the start: `RSM/ID@SECONDS`. It resumes from
    /// its checkpoint; if it was down longer than its peers retain, it performs a state
    /// transfer from a peer's checkpoint.
    #[arg(long, value_name = "RSM/ID@SECONDS")]
    pub(crate) restart: Vec<String>,
    #[command(flatten)]
    pub(crate) netns: NetnsArgs,
    /// Run a replica as a Byzantine one: `RSM/ID=BEHAVIOUR[@SECONDS]` (inflate-ack, zero-ack,
    /// stale-ack, lie-phi, forge, silent, no-rebroadcast, slow-ack[:N], drop-some[:P]), from
    /// SECONDS after the start on. It is excluded from the receivers a message must reach and
    /// from the verdict, like a killed replica.
    #[arg(long, value_name = "RSM/ID=BEHAVIOUR[@SECONDS]")]
    pub(crate) byzantine: Vec<String>,
    /// Write checkpoints durably (fdatasync per checkpoint).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub(crate) checkpoint_fsync: bool,
}

/// A replica run as a Byzantine one.
#[derive(Clone, Debug)]
pub(crate) struct Byzantine {
    replica: ReplicaId,
    behavior: String,
}

fn parse_byzantine(c: &DeploymentConfig, s: &str) -> Result<Byzantine, String> {
    let (who, behavior) =
        s.split_once('=').ok_or_else(|| format!("{s:?}: expected RSM/ID=BEHAVIOUR, e.g. beta/1=zero-ack"))?;
    let (rsm, id) =
        who.split_once('/').ok_or_else(|| format!("{s:?}: expected RSM/ID=BEHAVIOUR, e.g. beta/1=zero-ack"))?;
    let id: u16 = id.parse().map_err(|_| format!("{s:?}: replica id {id:?} is not a number"))?;
    let replica = c.replica(rsm, id).map_err(|e| e.to_string())?;
    picsou_core::adversary::Byzantine::parse_with_seconds(behavior).map_err(|e| format!("{s:?}: {e}"))?;
    let spec = &c.rsms[usize::from(replica.rsm.0)];
    if spec.fault != picsou_core::FaultModel::Bft {
        return Err(format!(
            "{s:?}: RSM {} tolerates crashes only (fault = \"cft\"): a Byzantine replica needs fault = \"bft\" (see examples/bft-4x4-tcp.toml)",
            spec.name
        ));
    }
    Ok(Byzantine { replica, behavior: behavior.to_string() })
}

/// A scheduled kill or restart.
#[derive(Clone, Debug)]
pub(crate) struct Action {
    at: Duration,
    replica: ReplicaId,
    restart: bool,
}

fn parse_action(c: &DeploymentConfig, s: &str, restart: bool) -> Result<Action, String> {
    let (who, at) = s.split_once('@').ok_or_else(|| format!("{s:?}: expected RSM/ID@SECONDS, e.g. alpha/2@0.5"))?;
    let (rsm, id) = who.split_once('/').ok_or_else(|| format!("{s:?}: expected RSM/ID@SECONDS, e.g. alpha/2@0.5"))?;
    let id: u16 = id.parse().map_err(|_| format!("{s:?}: replica id {id:?} is not a number"))?;
    let replica = c.replica(rsm, id).map_err(|e| e.to_string())?;
    let at: f64 = at.parse().map_err(|_| format!("{s:?}: time {at:?} is not a number of seconds"))?;
    if !(0.0..=3600.0).contains(&at) {
        return Err(format!("{s:?}: time must be between 0 and 3600 seconds"));
    }
    Ok(Action { at: Duration::from_secs_f64(at), replica, restart })
}

pub(crate) fn main(args: &LocalArgs) -> ExitCode {
    let config = match args.deploy.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("picsou local: {e}");
            return ExitCode::from(2);
        }
    };
    let mut actions = Vec::new();
    for (list, restart) in [(&args.kill, false), (&args.restart, true)] {
        for s in list {
            match parse_action(&config, s, restart) {
                Ok(a) => actions.push(a),
                Err(e) => {
                    eprintln!("picsou local: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    let mut byzantine = Vec::new();
    for s in &args.byzantine {
        match parse_byzantine(&config, s) {
            Ok(b) if byzantine.iter().any(|x: &Byzantine| x.replica == b.replica) => {
                eprintln!("picsou local: {s:?}: that replica is already Byzantine");
                return ExitCode::from(2);
            }
            Ok(b) => byzantine.push(b),
            Err(e) => {
                eprintln!("picsou local: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let in_process = args.in_process || config.transport.kind == TransportKind::Mem;
    if in_process && !byzantine.is_empty() {
        eprintln!("picsou local: --byzantine needs one process per replica (not --in-process or kind = \"mem\")");
        return ExitCode::from(2);
    }
    if in_process && !actions.is_empty() {
        eprintln!(
            "picsou local: --kill and --restart need one process per replica (not --in-process or kind = \"mem\")"
        );
        return ExitCode::from(2);
    }
    if args.netns.netns {
        return main_netns(args, &config, &actions, &byzantine, in_process);
    }
    let report = if in_process {
        let net = MemNetwork::new();
        match run_in_process(&config, &|c, r, k| picsou_transports::open(c, r, k, Some(&net))) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("picsou local: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        let opts = ProcOptions { byzantine: &byzantine, checkpoint_fsync: args.checkpoint_fsync, netns: None };
        match run_processes(&config, &actions, &opts) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("picsou local: {e}");
                return ExitCode::from(2);
            }
        }
    };
    if args.json {
        match serde_json::to_string(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("picsou local: cannot serialise the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", human(&report));
    }
    if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `picsou local --netns`: the deployment moved into a shaped-link testbed.
fn main_netns(
    args: &LocalArgs,
    config: &DeploymentConfig,
    actions: &[Action],
    byzantine: &[Byzantine],
    in_process: bool,
) -> ExitCode {
    if in_process {
        eprintln!("picsou local: --netns needs one process per replica (not --in-process or kind = \"mem\")");
        return ExitCode::from(2);
    }
    let shaping = match args.netns.shaping() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("picsou local: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = netns::prepare("picsou local") {
        eprintln!("picsou local: {e}");
        return ExitCode::from(2);
    }
    let (report, counters) = match netns::with_testbed(config, shaping, |c, tb| {
        let opts = ProcOptions { byzantine, checkpoint_fsync: args.checkpoint_fsync, netns: Some(tb) };
        run_processes(c, actions, &opts)
    }) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("picsou local: {e}");
            return ExitCode::from(2);
        }
    };
    let link = LinkReport::new(shaping, counters, &report);
    if args.json {
        let mut v = match serde_json::to_value(&report) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("picsou local: cannot serialise the report: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let (Some(o), Ok(l)) = (v.as_object_mut(), serde_json::to_value(&link)) {
            o.insert("netns".into(), l);
        }
        println!("{v}");
    } else {
        print!("{}", human(&report));
        print!("{}", human_link(&link));
    }
    if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The link lines of `picsou local --netns`.
fn human_link(l: &LinkReport) -> String {
    let cap = |v: Option<f64>| v.map_or("uncapped".to_string(), |m| format!("{m} Mbit/s"));
    format!(
        "  testbed: network namespaces, cross-RSM egress {} per replica, intra-RSM {}{}\n  \
         cross-RSM link: {} bytes in {} packets for {} messages = {:.1} B/message ({:.3}x one copy plus headers, {:.1} B)\n",
        cap(l.shaping.wan_mbps),
        cap(l.shaping.lan_mbps),
        l.shaping.wan_delay_ms.map_or(String::new(), |d| format!(", +{d} ms one way")),
        l.cross_rsm.bytes,
        l.cross_rsm.packets,
        l.messages_crossed,
        l.cross_rsm_bytes_per_message,
        l.copies,
        l.one_copy_bytes
    )
}

/// One replica's process.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
}

/// How `run_processes` starts the replicas.
pub(crate) struct ProcOptions<'a> {
    /// Replicas run as Byzantine ones.
    pub(crate) byzantine: &'a [Byzantine],
    /// Checkpoints are written durably.
    pub(crate) checkpoint_fsync: bool,
    /// Each replica in its namespace of this testbed (`config` must carry the testbed's
    /// addresses).
    pub(crate) netns: Option<&'a Testbed>,
}

/// Runs one `picsou node` process per replica and combines their reports.
pub(crate) fn run_processes(
    config: &DeploymentConfig,
    actions: &[Action],
    opts: &ProcOptions<'_>,
) -> Result<DeploymentReport, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the picsou executable: {e}"))?;
    let dir = tempfile::Builder::new()
        .prefix("picsou-local-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let file = dir.path().join("deployment.toml");
    std::fs::write(&file, config.to_toml_string()).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    // Processes take a moment to start and connect: the load starts at a common instant.
    let start_at_ms = unix_nanos() / 1_000_000 + 300 + 20 * config.replicas().len() as u64;
    let (tx, rx) = mpsc::channel::<(ReplicaId, u32, ReplicaReport)>();
    let mut procs: HashMap<ReplicaId, Proc> = HashMap::new();
    let mut generation: HashMap<ReplicaId, u32> = HashMap::new();
    for r in config.replicas() {
        let p = spawn(&exe, &file, dir.path(), config, r, start_at_ms, 0, opts, tx.clone())?;
        procs.insert(r, p);
        generation.insert(r, 0);
    }
    let t0 = Instant::now() + Duration::from_millis((start_at_ms * 1_000_000).saturating_sub(unix_nanos()) / 1_000_000);
    let mut pending: Vec<Action> = actions.to_vec();
    pending.sort_by_key(|a| a.at);
    let mut killed: Vec<ReplicaId> = Vec::new();
    let mut reports: HashMap<ReplicaId, ReplicaReport> = HashMap::new();
    let deadline = t0 + config.load.timeout + Duration::from_secs(10);
    let all_done = |reports: &HashMap<ReplicaId, ReplicaReport>, killed: &[ReplicaId], pending: &[Action]| {
        pending.is_empty()
            && config.replicas().iter().all(|r| {
                killed.contains(r) || reports.contains_key(r) || opts.byzantine.iter().any(|b| b.replica == *r)
            })
    };
    while !all_done(&reports, &killed, &pending) && Instant::now() < deadline {
        while let Some(a) = pending.first().cloned() {
            if Instant::now() < t0 + a.at {
                break;
            }
            pending.remove(0);
            if a.restart {
                if procs.contains_key(&a.replica) {
                    continue;
                }
                let g = generation.entry(a.replica).or_default();
                *g += 1;
                // The deployment's start, not 0: the restarted replica's load schedule counts
                // from it (it submits what its RSM committed meanwhile at once).
                let p = spawn(&exe, &file, dir.path(), config, a.replica, start_at_ms, *g, opts, tx.clone())?;
                procs.insert(a.replica, p);
                killed.retain(|r| *r != a.replica);
                eprintln!("picsou local: restarted {}", name(config, a.replica));
            } else if let Some(mut p) = procs.remove(&a.replica) {
                let _ = p.child.kill();
                let _ = p.child.wait();
                reports.remove(&a.replica);
                killed.push(a.replica);
                eprintln!("picsou local: killed {} (SIGKILL)", name(config, a.replica));
            }
        }
        if let Ok((r, g, rep)) = rx.recv_timeout(Duration::from_millis(20))
            && generation.get(&r) == Some(&g)
            && procs.contains_key(&r)
        {
            reports.insert(r, rep);
        }
    }
    // Everyone finished (or time is up): let the nodes go.
    for p in procs.values_mut() {
        p.stdin.take();
    }
    let stop_by = Instant::now() + Duration::from_secs(10);
    for p in procs.values_mut() {
        while Instant::now() < stop_by {
            if matches!(p.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !matches!(p.child.try_wait(), Ok(Some(_))) {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
    let mut ordered: Vec<ReplicaReport> = Vec::new();
    for r in config.replicas() {
        match reports.remove(&r) {
            Some(rep) => ordered.push(rep),
            None if !killed.contains(&r) && !opts.byzantine.iter().any(|b| b.replica == r) => {
                eprintln!("picsou local: {} did not report before the timeout", name(config, r));
            }
            None => {}
        }
    }
    // Byzantine replicas promise nothing: they are left out like killed ones.
    let mut excluded = killed.clone();
    excluded.extend(opts.byzantine.iter().map(|b| b.replica));
    let mut report = aggregate(config, ordered, &excluded);
    report.killed = killed.iter().map(|r| name(config, *r)).collect();
    report.byzantine = opts.byzantine.iter().map(|b| format!("{}={}", name(config, b.replica), b.behavior)).collect();
    // A replica that never reported is a failure even if the directions look complete.
    if config
        .replicas()
        .iter()
        .any(|r| !excluded.contains(r) && !report.replicas.iter().any(|x| x.replica == name(config, *r)))
    {
        report.ok = false;
    }
    Ok(report)
}

fn name(c: &DeploymentConfig, r: ReplicaId) -> String {
    format!("{}/{}", c.rsms[usize::from(r.rsm.0)].name, r.index)
}

/// Starts `picsou node` for `r`; a thread forwards its JSON report line to `tx`.
#[allow(clippy::too_many_arguments)]
fn spawn(
    exe: &Path,
    file: &Path,
    dir: &Path,
    config: &DeploymentConfig,
    r: ReplicaId,
    start_at_ms: u64,
    generation: u32,
    opts: &ProcOptions<'_>,
    tx: mpsc::Sender<(ReplicaId, u32, ReplicaReport)>,
) -> Result<Proc, String> {
    let checkpoint_of = |q: ReplicaId| -> PathBuf { dir.join(format!("checkpoint-{}-{}", q.rsm.0, q.index)) };
    let checkpoint = checkpoint_of(r);
    let mut cmd = match opts.netns {
        None => Command::new(exe),
        Some(tb) => {
            let ns = tb.namespace(r).ok_or_else(|| format!("{} has no network namespace", name(config, r)))?;
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(exe);
            c
        }
    };
    cmd.arg("node")
        .arg("--config")
        .arg(file)
        .args(["--rsm", &r.rsm.0.to_string(), "--replica", &r.index.to_string(), "--json", "--until-stdin-closes"])
        .arg("--checkpoint")
        .arg(&checkpoint)
        .args(["--checkpoint-fsync", if opts.checkpoint_fsync { "true" } else { "false" }])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if start_at_ms > 0 {
        cmd.args(["--start-at-unix-ms", &start_at_ms.to_string()]);
    }
    // A replica beyond its peers' retention performs a state transfer from its peers'
    // checkpoints (correct peers only: a Byzantine one's state is not to be trusted).
    for q in config.replicas().into_iter().filter(|q| q.rsm == r.rsm && *q != r) {
        if !opts.byzantine.iter().any(|b| b.replica == q) {
            cmd.arg("--peer-checkpoint").arg(checkpoint_of(q));
        }
    }
    if let Some(b) = opts.byzantine.iter().find(|b| b.replica == r) {
        cmd.args(["--byzantine", &b.behavior]);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {} for {}: {e}", exe.display(), name(config, r)))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(rep) = serde_json::from_str::<ReplicaReport>(&line) {
                let _ = tx.send((r, generation, rep));
            }
        }
    });
    Ok(Proc { child, stdin })
}

/// A short human summary.
pub(crate) fn human(r: &DeploymentReport) -> String {
    let mut s = format!(
        "picsou local: {} over {}, {}+{} replicas: {}\n",
        r.strategy,
        r.transport,
        r.n[0],
        r.n[1],
        if r.ok { "every live replica delivered every message in order, exactly once" } else { "FAILED" }
    );
    for d in &r.directions {
        s.push_str(&format!(
            "  {} -> {}: {} x {} B in {:.3} s = {:.0} msgs/s, {:.1} MB/s (receiver-confirmed){}\n",
            d.from,
            d.to,
            d.messages,
            d.size,
            d.seconds,
            d.msgs_per_s,
            d.mb_per_s,
            if d.complete { "" } else { "  INCOMPLETE" }
        ));
    }
    if !r.killed.is_empty() {
        s.push_str(&format!("  killed: {}\n", r.killed.join(", ")));
    }
    if !r.byzantine.is_empty() {
        s.push_str(&format!("  Byzantine: {}\n", r.byzantine.join(", ")));
    }
    for rep in r.replicas.iter().filter(|x| x.state_transfers > 0) {
        s.push_str(&format!(
            "  {}: {} state transfer(s), {} messages installed from a peer's checkpoint\n",
            rep.replica, rep.state_transfers, rep.transferred
        ));
    }
    for rep in r.replicas.iter().filter(|x| !x.complete || !x.in_order_exact) {
        s.push_str(&format!(
            "  {}: delivered {}/{}{}\n",
            rep.replica,
            rep.delivered,
            rep.expected,
            rep.violation.as_ref().map(|v| format!(", {v}")).unwrap_or_default()
        ));
    }
    s.push_str(&format!("  peak RSS per replica: {} KiB\n", r.max_peak_rss_kib));
    s
}
