//! `picsou-etcd sidecar`: one Picsou replica next to one etcd member.
//!
//! It runs a Picsou [`Node`] (the replica's engine and transport, configured by a deployment
//! file), the sending side ([`crate::source`]: its member's history under `--send-prefix`,
//! one message per revision) and the receiving side ([`crate::sink`]: the other cluster's
//! messages applied under `--receive-prefix` with guarded transactions).
//!
//! Start-up: the outgoing stream continues from the sidecar's checkpoint file (the anchor of
//! the last QUACK it saw, written every 50 ms and synced every second), the incoming stream
//! from the cluster's progress key. Both survive a SIGKILL: nothing needs a clean shutdown.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use picsou_core::StreamStart;
use picsou_runtime::deployment::DeploymentConfig;
use picsou_runtime::node::{Node, NodeOptions, SubmitError};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::apply::{Applier, TxnLimits};
use crate::etcd::{check_prefixes, connect_one};
use crate::sink::{SinkConfig, SinkStatus, run_sink};
use crate::source::{Anchor, Outgoing, SourceStatus, run_source};

/// Arguments of `picsou-etcd sidecar`.
#[derive(Debug, Clone, Args)]
pub struct SidecarArgs {
    /// The Picsou deployment file: the two RSMs (one replica per etcd member), transport, keys.
    #[arg(long, value_name = "FILE.toml")]
    pub deployment: PathBuf,
    /// This sidecar's RSM (its name in the deployment file, or 0 / 1).
    #[arg(long)]
    pub rsm: String,
    /// This sidecar's replica id (and its rank among the appliers).
    #[arg(long)]
    pub replica: u16,
    /// This replica's identity file (per-replica keys, from `picsou keygen`); default: the
    /// deployment's `keys.identity_file`.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// The client endpoint of this sidecar's own member (`host:port`); the sidecar talks to
    /// no other member.
    #[arg(long, value_name = "HOST:PORT")]
    pub etcd: String,
    /// Send this cluster's changes under this prefix to the other cluster.
    #[arg(long, value_name = "PREFIX")]
    pub send_prefix: Option<String>,
    /// Message 0 is the first revision at or after this one with changes under the prefix.
    #[arg(long, default_value_t = 1)]
    pub start_revision: u64,
    /// Apply the other cluster's changes, which must all be under this prefix.
    #[arg(long, value_name = "PREFIX")]
    pub receive_prefix: Option<String>,
    /// Directory for this sidecar's checkpoint file.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Milliseconds a delivered message waits, per rank, before this sidecar applies it for a
    /// silent higher-ranked one.
    #[arg(long, default_value_t = 500)]
    pub takeover_ms: u64,
    /// Most operations per transaction (the receiving etcd's --max-txn-ops).
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Most key and value bytes per transaction (below the receiving etcd's --max-request-bytes).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_txn_bytes: usize,
    /// Print a JSON status line this often (0: never).
    #[arg(long, default_value_t = 1000)]
    pub status_ms: u64,
    /// Stop when standard input closes (how `picsou-etcd demo` stops its sidecars).
    #[arg(long)]
    pub until_stdin_closes: bool,
}

/// A status line.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct SidecarStatus {
    /// `primary/1`.
    pub replica: String,
    /// The node is running.
    pub ready: bool,
    /// Messages read from the own member.
    pub read: u64,
    /// Last source revision read.
    pub read_revision: u64,
    /// Messages submitted to the node.
    pub submitted: u64,
    /// The outgoing stream's QUACK.
    pub quacked: u64,
    /// Watches established on the own member.
    pub watches: u64,
    /// Failed connection or watch attempts.
    pub source_errors: u64,
    /// Messages of the incoming stream delivered.
    pub delivered: u64,
    /// Messages this sidecar applied.
    pub applied: u64,
    /// Transactions it committed.
    pub txns: u64,
    /// Transactions refused by the guard.
    pub lost: u64,
    /// Takeovers.
    pub takeovers: u64,
    /// etcd errors while applying.
    pub apply_errors: u64,
    /// The receiving cluster's progress as last seen.
    pub known_next: u64,
    /// Where the node resumed (transmit, receive).
    pub resumed: [u64; 2],
    /// Fatal error of either side, if any.
    pub error: Option<String>,
}

/// The sender's checkpoint: the anchor of a QUACK, and the start revision it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendCheckpoint {
    /// The anchor.
    pub anchor: Anchor,
    /// `--start-revision` of the stream.
    pub start_revision: u64,
}

const CHECKPOINT_LEN: usize = 63;

impl SendCheckpoint {
    /// Reads `path`; a missing or empty file is `None`.
    pub fn read(path: &Path) -> Result<Option<Self>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        if text.trim().is_empty() {
            return Ok(None);
        }
        let nums: Vec<u64> = text.split_whitespace().filter_map(|s| s.parse().ok()).collect();
        match nums[..] {
            [next_seq, after_revision, start_revision] => {
                Ok(Some(Self { anchor: Anchor { next_seq, after_revision }, start_revision }))
            }
            _ => Err(format!("{}: not a sidecar checkpoint: {text:?}", path.display())),
        }
    }

    fn record(&self) -> String {
        format!("{:020} {:020} {:020}\n", self.anchor.next_seq, self.anchor.after_revision, self.start_revision)
    }
}

/// Writes checkpoints in place (one positioned write of fixed length).
struct CheckpointFile {
    file: std::fs::File,
}

impl CheckpointFile {
    fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self { file: std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)? })
    }

    /// Writes `c`; with `sync`, also to the disk. Any older anchor is a valid place to resume
    /// from (the sidecar only re-sends more), so a crash of the host may lose the last
    /// unsynced writes but never makes the file wrong; a killed process loses nothing.
    fn write(&self, c: &SendCheckpoint, sync: bool) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let r = c.record();
        debug_assert_eq!(r.len(), CHECKPOINT_LEN);
        self.file.write_all_at(r.as_bytes(), 0)?;
        if sync { self.file.sync_data() } else { Ok(()) }
    }
}

/// Runs a sidecar until standard input closes (with `--until-stdin-closes`) or forever.
pub fn main(args: &SidecarArgs) -> Result<(), String> {
    let config = DeploymentConfig::from_path(&args.deployment).map_err(|e| e.to_string())?;
    let local = config.replica(&args.rsm, args.replica).map_err(|e| e.to_string())?;
    let config = match &args.key_file {
        None => config,
        Some(path) => config.with_identity_file(local, path).map_err(|e| e.to_string())?,
    };
    let me = format!("{}/{}", config.rsm(local.rsm).name, local.index);
    let source_name = config.rsm(local.rsm.other()).name.clone();
    check_prefixes(args.send_prefix.as_deref(), args.receive_prefix.as_deref())?;
    std::fs::create_dir_all(&args.state_dir).map_err(|e| format!("{}: {e}", args.state_dir.display()))?;
    let cp_path = args.state_dir.join(format!("send-{}-{}.checkpoint", config.rsm(local.rsm).name, local.index));
    let anchor = match SendCheckpoint::read(&cp_path)? {
        Some(c) if c.start_revision == args.start_revision => c.anchor,
        Some(c) => {
            return Err(format!(
                "{} belongs to a stream starting at revision {}, not {}: remove it to start a new stream",
                cp_path.display(),
                c.start_revision,
                args.start_revision
            ));
        }
        None => Anchor::fresh(args.start_revision),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let source_status = Arc::new(SourceStatus::default());
    let sink_status = Arc::new(SinkStatus::default());
    let fatal: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));

    // The incoming stream resumes at the cluster's progress (waiting for the member if it
    // is not up yet).
    let mut applier = None;
    let mut receive = 0;
    if args.receive_prefix.is_some() {
        let (a, p) = rt.block_on(async {
            let mut warned = false;
            loop {
                let attempt = async {
                    let client = connect_one(&args.etcd).await.map_err(|e| e.to_string())?;
                    let mut a = Applier::new(client.kv_client(), &source_name, &me);
                    let p = a.init().await.map_err(|e| e.to_string())?;
                    Ok::<_, String>((a, p))
                };
                match attempt.await {
                    Ok(x) => break x,
                    Err(e) if !warned => {
                        tracing::warn!("waiting for etcd at {}: {e}", args.etcd);
                        warned = true;
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        receive = p.next;
        sink_status.known_next.store(p.next, Ordering::Release);
        sink_status.source_revision.store(p.source_revision, Ordering::Release);
        applier = Some(a);
    }

    let keys = config.replica_keys(local).map_err(|e| e.to_string())?;
    let transport = picsou_transports::open(&config, local, keys.links.clone(), None).map_err(|e| e.to_string())?;
    let mut options = NodeOptions::from_tuning(&config.node);
    options.resume = StreamStart { transmit: anchor.next_seq, receive };
    let endpoint = config.endpoint_config_with(local, keys);
    let node = Arc::new(Node::start(endpoint, options, transport).map_err(|e| e.to_string())?);
    let stop = Arc::new(AtomicBool::new(false));
    // (seq, revision) of submitted messages not yet below the QUACK, for checkpoints.
    let inflight: Arc<Mutex<std::collections::VecDeque<(u64, u64)>>> = Arc::default();
    let mut threads = Vec::new();

    if let Some(prefix) = &args.send_prefix {
        let (tx, rx) = mpsc::channel::<Outgoing>(4096);
        let (node2, inflight2) = (node.clone(), inflight.clone());
        threads.push(
            std::thread::Builder::new()
                .name("submit".into())
                .spawn(move || submit_loop(&node2, rx, &inflight2))
                .map_err(|e| e.to_string())?,
        );
        let (endpoint, prefix, status, fatal) =
            (args.etcd.clone(), prefix.clone().into_bytes(), source_status.clone(), fatal.clone());
        rt.spawn(async move {
            if let Err(e) = run_source(endpoint, prefix, anchor, tx, status).await {
                tracing::error!("sending side stopped: {e}");
                *fatal.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(format!("send: {e}"));
            }
        });
        let checkpoint = CheckpointFile::open(&cp_path).map_err(|e| format!("{}: {e}", cp_path.display()))?;
        let (node2, inflight2, stop2, start_revision) =
            (node.clone(), inflight.clone(), stop.clone(), args.start_revision);
        let checkpoint_loop = move || {
            let mut last = anchor;
            // Written every 50 ms, synced once a second: the etcd members' WAL fsyncs share
            // the disk.
            let mut synced = std::time::Instant::now();
            while !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let q = node2.quacked();
                if q <= last.next_seq {
                    continue;
                }
                let rev = {
                    let mut f = inflight2.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    while f.get(1).is_some_and(|&(s, _)| s < q) {
                        f.pop_front();
                    }
                    f.front().filter(|&&(s, _)| s == q - 1).map(|&(_, r)| r)
                };
                let Some(rev) = rev else { continue };
                last = Anchor { next_seq: q, after_revision: rev };
                let sync = synced.elapsed() >= Duration::from_secs(1);
                if sync {
                    synced = std::time::Instant::now();
                }
                if let Err(e) = checkpoint.write(&SendCheckpoint { anchor: last, start_revision }, sync) {
                    tracing::warn!("checkpoint: {e}");
                }
            }
        };
        threads.push(
            std::thread::Builder::new().name("checkpoint".into()).spawn(checkpoint_loop).map_err(|e| e.to_string())?,
        );
    }

    if let Some(prefix) = &args.receive_prefix {
        let (tx, rx) = mpsc::channel::<Vec<(u64, Bytes)>>(64);
        let (node2, stop2) = (node.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name("deliver".into())
                .spawn(move || deliver_loop(&node2, &tx, &stop2))
                .map_err(|e| e.to_string())?,
        );
        let sink = SinkConfig {
            endpoint: args.etcd.clone(),
            prefix: prefix.clone().into_bytes(),
            rank: u32::from(local.index),
            takeover: Duration::from_millis(args.takeover_ms),
            limits: TxnLimits { max_ops: args.max_txn_ops, max_bytes: args.max_txn_bytes },
        };
        let (status, fatal) = (sink_status.clone(), fatal.clone());
        let applier = applier.take().ok_or("no applier")?;
        rt.spawn(async move {
            if let Err(e) = run_sink(sink, applier, rx, status).await {
                tracing::error!("receiving side stopped: {e}");
                *fatal.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(format!("receive: {e}"));
            }
        });
    } else {
        // Nothing should arrive; take it anyway so that the node never backs up.
        let (node2, stop2) = (node.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name("discard".into())
                .spawn(move || {
                    let mut warned = false;
                    while !stop2.load(Ordering::Relaxed) {
                        if let Ok(Some(d)) = node2.next_delivery(Some(Duration::from_millis(100)))
                            && !warned
                        {
                            tracing::warn!(
                                "message {} arrived but this sidecar has no --receive-prefix: dropped",
                                d.seq
                            );
                            warned = true;
                        }
                    }
                })
                .map_err(|e| e.to_string())?,
        );
    }

    let stdin_closed = Arc::new(AtomicBool::new(false));
    if args.until_stdin_closes {
        let closed = stdin_closed.clone();
        std::thread::spawn(move || {
            let mut sink = [0u8; 64];
            while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
            closed.store(true, Ordering::SeqCst);
        });
    }
    let status = |ready: bool| SidecarStatus {
        replica: me.clone(),
        ready,
        read: source_status.read.load(Ordering::Relaxed),
        read_revision: source_status.last_revision.load(Ordering::Relaxed),
        submitted: inflight.lock().map(|f| f.back().map_or(anchor.next_seq, |&(s, _)| s + 1)).unwrap_or(0),
        quacked: node.quacked(),
        watches: source_status.watches.load(Ordering::Relaxed),
        source_errors: source_status.errors.load(Ordering::Relaxed),
        delivered: sink_status.delivered.load(Ordering::Relaxed),
        applied: sink_status.applied.load(Ordering::Relaxed),
        txns: sink_status.txns.load(Ordering::Relaxed),
        lost: sink_status.lost.load(Ordering::Relaxed),
        takeovers: sink_status.takeovers.load(Ordering::Relaxed),
        apply_errors: sink_status.errors.load(Ordering::Relaxed),
        known_next: sink_status.known_next.load(Ordering::Relaxed),
        resumed: [anchor.next_seq, receive],
        error: fatal.lock().ok().and_then(|f| f.clone()),
    };
    print_status(&status(true));
    rt.block_on(async {
        let interval = Duration::from_millis(if args.status_ms == 0 { 100 } else { args.status_ms });
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if stdin_closed.load(Ordering::SeqCst) {
                break;
            }
            if args.status_ms > 0 && last.elapsed() >= interval {
                last = tokio::time::Instant::now();
                print_status(&status(true));
            }
        }
    });
    print_status(&status(false));
    stop.store(true, Ordering::SeqCst);
    drop(rt);
    let node = Arc::try_unwrap(node).ok();
    if let Some(node) = node {
        let _ = node.shutdown();
    }
    Ok(())
}

fn print_status(s: &SidecarStatus) {
    use std::io::Write;
    if let Ok(line) = serde_json::to_string(s) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Hands the source's messages to the node in runs of consecutive seqs.
fn submit_loop(
    node: &Node,
    mut rx: mpsc::Receiver<Outgoing>,
    inflight: &Mutex<std::collections::VecDeque<(u64, u64)>>,
) {
    let mut items: Vec<(Bytes, Bytes)> = Vec::with_capacity(256);
    while let Some(first) = rx.blocking_recv() {
        let seq = first.seq;
        let mut run = vec![first];
        while run.len() < 256 {
            match rx.try_recv() {
                Ok(m) => run.push(m),
                Err(_) => break,
            }
        }
        {
            let mut f = inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f.extend(run.iter().map(|m| (m.seq, m.revision)));
        }
        items.extend(run.into_iter().map(|m| (m.payload, Bytes::new())));
        match node.submit_batch(seq, &mut items, None) {
            Ok(()) => {}
            Err(SubmitError::Stopped) => return,
            Err(e) => {
                tracing::error!("submitting from seq {seq}: {e}");
                return;
            }
        }
    }
}

/// Moves the node's deliveries to the applier in batches.
fn deliver_loop(node: &Node, tx: &mpsc::Sender<Vec<(u64, Bytes)>>, stop: &AtomicBool) {
    let mut ready = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match node.next_delivery(Some(Duration::from_millis(100))) {
            Ok(Some(d)) => {
                ready.push(d);
                node.take_deliveries(4096, &mut ready);
                let batch: Vec<(u64, Bytes)> = ready.drain(..).map(|d| (d.seq, d.payload)).collect();
                if tx.blocking_send(batch).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
}
