//! Synthetic, verifiable message streams: what `picsou node`, `picsou local` and
//! `picsou bench` send and check.
//!
//! Message `k` of an RSM's stream has deterministic contents (`k` in its first bytes, then a
//! fixed filler, see [`PayloadSpec`]), so a receiver checks every delivered byte without
//! anybody remembering the stream. Under BFT each message carries an ed25519 quorum
//! certificate signed by enough replicas of the sending RSM (a stand-in for the RSM's own
//! commit certificate; every replica derives the signing keys from the deployment's seed).
//!
//! [`run_replica`] drives one [`Node`]: a thread submits the replica's stream (every replica of
//! a sending RSM submits the whole stream: the engine decides who actually sends what), the
//! calling thread checks deliveries, and the run ends when the replica has delivered the whole
//! incoming stream in order and its own stream is QUACKed (or at the timeout). Times are Unix
//! nanoseconds so that reports of several processes on one machine can be combined into
//! receiver-confirmed throughput: messages / (last delivery at the slowest correct receiver −
//! first submission).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use picsou_core::payload::PayloadSpec;
use picsou_core::proof::{CommitSigner, QuorumCertificate, StreamId};
use picsou_core::{ReplicaId, StreamStart};
use serde::Serialize;

use crate::deployment::{DeploymentConfig, DeploymentError};
use crate::node::{Node, NodeStats, SubmitError};

/// Deliveries taken from the node at a time (one lock for the lot).
const DELIVERY_BATCH: usize = 1024;

mod maker;
pub use maker::PayloadMaker;

/// Nanoseconds since the Unix epoch.
pub fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// Builds the messages (and proofs) of one RSM's stream.
#[derive(Clone, Debug)]
pub struct StreamSource {
    spec: PayloadSpec,
    stream: StreamId,
    signers: Vec<CommitSigner>,
}

impl StreamSource {
    /// The stream that `from`'s RSM sends under `config`, to check deliveries against (no
    /// certificates: see [`signed`](Self::signed)).
    pub fn new(config: &DeploymentConfig, from: picsou_core::RsmId) -> Self {
        Self {
            spec: PayloadSpec::new(config.load.size),
            stream: StreamId { from, to: from.other() },
            signers: Vec::new(),
        }
    }

    /// The stream that `from`'s RSM sends, with commit certificates under BFT: signed by
    /// [`DeploymentConfig::certificate_signers`] (replicas in index order until they hold
    /// f + 1 stake). Fails when this process cannot hold enough identities for that.
    pub fn signed(config: &DeploymentConfig, from: picsou_core::RsmId) -> Result<Self, DeploymentError> {
        Ok(Self { signers: config.certificate_signers(from)?, ..Self::new(config, from) })
    }

    /// Message `seq` and its proof.
    pub fn message(&self, seq: u64) -> (Bytes, Bytes) {
        self.message_with(seq, None)
    }

    /// A maker of this stream's payloads that allocates far less than [`StreamSource::message`].
    pub fn maker(&self) -> PayloadMaker {
        PayloadMaker::new(self.spec.clone())
    }

    /// Message `seq` and its proof, the payload built by `maker` if given.
    pub fn message_with(&self, seq: u64, maker: Option<&mut PayloadMaker>) -> (Bytes, Bytes) {
        let payload = match maker {
            Some(m) => m.make(seq),
            None => self.spec.make(seq),
        };
        let proof = if self.signers.is_empty() {
            Bytes::new()
        } else {
            let shares = self.signers.iter().map(|s| s.sign_share(self.stream, seq, &payload));
            Bytes::from(QuorumCertificate::assemble(shares).encode())
        };
        (payload, proof)
    }

    /// True if `payload` is exactly message `seq`.
    pub fn matches(&self, seq: u64, payload: &[u8]) -> bool {
        self.spec.matches(seq, payload)
    }
}

/// What one replica saw during a run.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct ReplicaReport {
    /// Replica as `alpha/2`.
    pub replica: String,
    /// RSM name.
    pub rsm: String,
    /// Index in its RSM.
    pub index: u16,
    /// Transport kind in use.
    pub transport: String,
    /// Messages this replica submitted.
    pub submitted: u64,
    /// Messages of the incoming stream expected.
    pub expected: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Every delivery was the next seq with exactly the right bytes.
    pub in_order_exact: bool,
    /// First problem seen in the delivered stream, if any.
    pub violation: Option<String>,
    /// The run completed (all delivered, own stream QUACKed) before the timeout.
    pub complete: bool,
    /// Unix ns of the first submission (or of the start, if this replica sends nothing).
    pub start_unix_ns: u64,
    /// Unix ns of the last delivery.
    pub last_delivery_unix_ns: u64,
    /// Unix ns when the own stream was QUACKed in full.
    pub quacked_unix_ns: u64,
    /// Peak resident set size of the process in KiB (`VmHWM`), where available.
    pub peak_rss_kib: u64,
    /// The node said this replica fell beyond its peers' retention and needs a state
    /// transfer: `(next, peers_at)` (see [`SubmitError::StateTransferNeeded`]); the run
    /// stopped there.
    #[serde(default)]
    pub needs_state_transfer: Option<(u64, u64)>,
    /// State transfers this replica performed (a restart from a peer's checkpoint).
    #[serde(default)]
    pub state_transfers: u64,
    /// Messages of the incoming stream installed by state transfer instead of delivered
    /// (counted in `delivered`, which is the position in the stream).
    #[serde(default)]
    pub transferred: u64,
    /// `(Unix ms, position in the incoming stream)` about every 100 ms: how delivery went
    /// over time (recovery after a fault is read from it).
    #[serde(default)]
    pub timeline: Vec<(u64, u64)>,
    /// Counters.
    pub stats: NodeStats,
}

/// How [`run_replica`] runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Do not submit before this Unix time (ns): lets every process of a deployment start
    /// its load at once. 0: start now.
    pub start_at_unix_ns: u64,
    /// Give up after this long.
    pub timeout: Duration,
    /// Where this replica's streams resume (a restarted replica, see
    /// [`picsou_core::Endpoint::resuming`]); the node must have been started with the same.
    pub resume: StreamStart,
    /// If set, the replica's progress (QUACK of its own stream, deliveries of the incoming
    /// one) is written to this file every 50 ms, for a restarted process to resume from.
    pub checkpoint: Option<PathBuf>,
    /// Make each checkpoint durable (`fdatasync`) before going on, so that it survives a
    /// power loss and not only a killed process (see [`Checkpointer::with_fsync`]).
    pub checkpoint_fsync: bool,
}

/// Reads a checkpoint written by [`run_replica`]; a missing or empty file (a replica killed
/// before its first checkpoint) is a fresh start.
pub fn read_checkpoint(path: &Path) -> std::io::Result<StreamStart> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(StreamStart::default()),
        Ok(text) => {
            let mut it = text.split_whitespace().map(str::parse::<u64>);
            match (it.next(), it.next()) {
                (Some(Ok(transmit)), Some(Ok(receive))) => Ok(StreamStart { transmit, receive }),
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("bad checkpoint in {}", path.display()),
                )),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StreamStart::default()),
        Err(e) => Err(e),
    }
}

/// Writes a replica's checkpoint: two fixed-width numbers overwritten in place by one
/// positioned write (one system call; a temporary file and a rename cost four, and filesystem
/// metadata work, 20 times a second per replica). A write of 42 bytes at offset 0 lands whole
/// or not at all when the process is killed, which is what a restart reads after.
pub struct Checkpointer {
    path: PathBuf,
    file: Option<std::fs::File>,
    durable: bool,
}

/// Length of a checkpoint record: "{transmit:020} {receive:020}\n".
const CHECKPOINT_LEN: u64 = 42;

impl Checkpointer {
    /// Opens (or creates) the checkpoint at `path`, keeping what it holds until the first
    /// [`write`](Self::write). Errors are logged: a replica runs on without checkpoints.
    pub fn new(path: &Path) -> Self {
        Self::with_fsync(path, false)
    }

    /// Like [`Checkpointer::new`]; with `durable`, every [`write`](Self::write) also waits
    /// for the record to reach stable storage (`fdatasync`), so a checkpoint survives a power
    /// loss, not only a killed process. The file is created durably too (its directory is
    /// synced once).
    pub fn with_fsync(path: &Path, durable: bool) -> Self {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path);
        let file = match file {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!("cannot open checkpoint {}: {e}", path.display());
                None
            }
        };
        if durable
            && file.is_some()
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all())
        {
            tracing::warn!("cannot sync the directory of checkpoint {}: {e}", path.display());
        }
        Self { path: path.to_path_buf(), file, durable }
    }

    /// Records `start` (what [`read_checkpoint`] returns after a restart).
    pub fn write(&self, start: StreamStart) {
        use std::os::unix::fs::FileExt;
        let Some(file) = &self.file else { return };
        let record = format!("{:020} {:020}\n", start.transmit, start.receive);
        debug_assert_eq!(record.len() as u64, CHECKPOINT_LEN);
        // Written before the file is cut to length, so that it never holds less than a record
        // once it held one (a longer file is one written by another version).
        let ok = file
            .write_all_at(record.as_bytes(), 0)
            .and_then(|()| if file.metadata()?.len() > CHECKPOINT_LEN { file.set_len(CHECKPOINT_LEN) } else { Ok(()) })
            .and_then(|()| if self.durable { file.sync_data() } else { Ok(()) });
        if let Err(e) = ok {
            tracing::warn!("cannot write checkpoint {}: {e}", self.path.display());
        }
    }
}

/// Drives `node` with the deployment's load and checks what it delivers.
pub fn run_replica(config: &DeploymentConfig, local: ReplicaId, node: &Node, options: &RunOptions) -> ReplicaReport {
    let own = config.load.senders.sends(local.rsm);
    let incoming = config.load.senders.sends(local.rsm.other());
    let messages = config.load.messages;
    let expected = if incoming { messages } else { 0 };
    let rsm = &config.rsms[usize::from(local.rsm.0)];
    let mut report = ReplicaReport {
        replica: format!("{}/{}", rsm.name, local.index),
        rsm: rsm.name.clone(),
        index: local.index,
        transport: config.transport.kind.name().to_string(),
        expected,
        delivered: options.resume.receive.min(expected),
        in_order_exact: true,
        ..ReplicaReport::default()
    };
    while unix_nanos() < options.start_at_unix_ns {
        let left = options.start_at_unix_ns - unix_nanos();
        std::thread::sleep(Duration::from_nanos(left.min(10_000_000)));
    }
    let start = Instant::now();
    report.start_unix_ns = unix_nanos();
    // The stream's schedule (with a rate) counts from the deployment's start, so that a
    // restarted replica submits what its RSM committed while it was down at once, as a
    // recovering RSM replica would, instead of lagging its peers by its downtime for good.
    let origin = start
        .checked_sub(Duration::from_nanos(report.start_unix_ns.saturating_sub(options.start_at_unix_ns)))
        .filter(|_| options.start_at_unix_ns > 0)
        .unwrap_or(start);
    let deadline = start + options.timeout;
    let stop = Arc::new(AtomicBool::new(false));
    let submitted = Arc::new(AtomicU64::new(0));
    let checker = StreamSource::new(config, local.rsm.other());
    std::thread::scope(|scope| {
        if own {
            let source = match StreamSource::signed(config, local.rsm) {
                Ok(source) => source,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    report.violation = Some(format!("cannot sign this RSM's stream: {e}"));
                    return;
                }
            };
            let rate = config.load.rate;
            let (stop, submitted) = (stop.clone(), submitted.clone());
            let first = options.resume.transmit;
            scope.spawn(move || submit_stream(node, &source, first..messages, rate, &stop, &submitted, origin));
        }
        let mut quacked_at = None;
        let mut last_checkpoint = Instant::now();
        let mut last_sample = Instant::now();
        report.timeline.push((report.start_unix_ns / 1_000_000, report.delivered));
        let checkpointer = options.checkpoint.as_deref().map(|p| Checkpointer::with_fsync(p, options.checkpoint_fsync));
        let mut ready = Vec::with_capacity(DELIVERY_BATCH);
        loop {
            let now = Instant::now();
            if let Some(checkpointer) = &checkpointer
                && now.duration_since(last_checkpoint) >= Duration::from_millis(50)
            {
                last_checkpoint = now;
                checkpointer.write(StreamStart { transmit: node.quacked(), receive: report.delivered });
            }
            if now.duration_since(last_sample) >= Duration::from_millis(100) {
                last_sample = now;
                report.timeline.push((unix_nanos() / 1_000_000, report.delivered));
            }
            if now >= deadline {
                break;
            }
            if own && quacked_at.is_none() && node.quacked() >= messages {
                quacked_at = Some(unix_nanos());
            }
            let own_done = !own || quacked_at.is_some();
            if report.delivered >= expected && own_done {
                report.complete = true;
                break;
            }
            let wait = (deadline - now).min(Duration::from_millis(20));
            match node.next_delivery(Some(wait)) {
                Ok(Some(d)) => {
                    ready.push(d);
                    while !ready.is_empty() {
                        for d in ready.drain(..) {
                            if report.in_order_exact {
                                if d.seq != report.delivered {
                                    report.in_order_exact = false;
                                    report.violation =
                                        Some(format!("delivered seq {} where {} was next", d.seq, report.delivered));
                                } else if !checker.matches(d.seq, &d.payload) {
                                    report.in_order_exact = false;
                                    report.violation = Some(format!("seq {} has wrong contents", d.seq));
                                }
                            }
                            report.delivered += 1;
                        }
                        node.take_deliveries(DELIVERY_BATCH, &mut ready);
                    }
                    // Once per drained batch: the time the last of it was checked.
                    report.last_delivery_unix_ns = unix_nanos();
                }
                Ok(None) => {}
                Err(SubmitError::StateTransferNeeded { next, peers_at }) => {
                    report.needs_state_transfer = Some((next, peers_at));
                    break;
                }
                Err(_) => break,
            }
        }
        if let Some(checkpointer) = &checkpointer {
            checkpointer.write(StreamStart { transmit: node.quacked(), receive: report.delivered });
        }
        report.timeline.push((unix_nanos() / 1_000_000, report.delivered));
        report.quacked_unix_ns = quacked_at.unwrap_or(0);
        stop.store(true, Ordering::SeqCst);
    });
    report.submitted = submitted.load(Ordering::SeqCst);
    report.peak_rss_kib = peak_rss_kib();
    report.stats = node.stats();
    report
}

/// Submits the messages `seqs`, message `k` not before `origin + k / rate` (`rate` 0: as fast
/// as the node takes them, in batches through [`Node::submit_batch`], as an RSM committing
/// batches would).
fn submit_stream(
    node: &Node,
    source: &StreamSource,
    seqs: std::ops::Range<u64>,
    rate: u64,
    stop: &AtomicBool,
    submitted: &AtomicU64,
    origin: Instant,
) {
    let mut maker = source.maker();
    // Batches of at most 256 messages or about 256 KiB.
    let per_batch = if rate > 0 { 1 } else { (256 * 1024 / source.spec.size().max(1)).clamp(1, 256) as u64 };
    let mut batch = Vec::with_capacity(per_batch as usize);
    let mut seq = seqs.start;
    while seq < seqs.end {
        if rate > 0 {
            let due = origin + Duration::from_secs_f64(seq as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let n = per_batch.min(seqs.end - seq);
        batch.extend((seq..seq + n).map(|s| source.message_with(s, Some(&mut maker))));
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match node.submit_batch(seq, &mut batch, Some(Duration::from_millis(50))) {
                Ok(()) => break,
                Err(SubmitError::Full) => {}
                Err(e) => {
                    tracing::error!("submitting seqs {seq}..{}: {e}", seq + n);
                    return;
                }
            }
        }
        seq += n;
        submitted.store(seq, Ordering::SeqCst);
    }
}

/// Peak resident set size of this process in KiB, from `/proc/self/status` (0 elsewhere).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}
