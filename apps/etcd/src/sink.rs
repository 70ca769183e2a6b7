//! The receiving side: a sidecar applies delivered messages to its own member's cluster with
//! the guarded transactions of [`crate::apply`].
//!
//! Every sidecar of the receiving cluster delivers every message, but one transaction per
//! batch is enough: the others would only be refused by the guard after travelling through
//! Raft (a refused transaction is still proposed and logged, so three appliers cost the
//! standby three times the Raft traffic). So the sidecars rank themselves by replica index:
//! rank 0 applies at once; rank *k* applies only what has waited `k × takeover` without the
//! progress passing it (it learns the progress from a watch on the progress key on its own
//! member), and keeps applying until a refused transaction shows that somebody else is at
//! work again. Ranks only decide who *tries*; the guard alone makes it exactly once, so any
//! timing, including every sidecar applying at once, is safe (the tests do that).
//!
//! A restarted sidecar resumes its incoming stream at the progress key's `next`: what the
//! cluster applied is never delivered to it again, and what it lacks comes from its peers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, WatchOptions};
use tokio::sync::{Notify, mpsc};

use crate::apply::{Applied, Applier, ApplyError, Batch, Progress, TxnLimits};
use crate::codec::RevisionMessage;
use crate::etcd::connect_one;

/// How the receiving side runs.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// The own member.
    pub endpoint: String,
    /// The mirrored prefix: every key of every message must be under it.
    pub prefix: Vec<u8>,
    /// This sidecar's rank (its replica index).
    pub rank: u32,
    /// How long a message waits per rank before a lower-ranked sidecar applies it.
    pub takeover: Duration,
    /// Transaction size limits.
    pub limits: TxnLimits,
}

/// Counters of the receiving side.
#[derive(Debug, Default)]
pub struct SinkStatus {
    /// Messages delivered by the node.
    pub delivered: AtomicU64,
    /// Messages this sidecar applied.
    pub applied: AtomicU64,
    /// Transactions it committed.
    pub txns: AtomicU64,
    /// Transactions the guard refused (somebody else had applied).
    pub lost: AtomicU64,
    /// Times it started applying for a silent higher-ranked sidecar.
    pub takeovers: AtomicU64,
    /// etcd errors (member down, timeouts).
    pub errors: AtomicU64,
    /// The cluster's progress as last seen.
    pub known_next: AtomicU64,
    /// Source revision of the last message applied by anyone, as last seen.
    pub source_revision: AtomicU64,
}

impl SinkStatus {
    fn saw(&self, p: &Progress) {
        if self.known_next.fetch_max(p.next, Ordering::AcqRel) < p.next {
            self.source_revision.store(p.source_revision, Ordering::Release);
        }
    }
}

struct Pending {
    seq: u64,
    msg: RevisionMessage,
    arrived: Instant,
}

/// Applies the batches of deliveries arriving on `rx` (seq, payload), in order, forever.
/// Returns only on an error that makes applying unsafe (a message that is not ours, or
/// could never be applied, or a progress key that went backwards).
pub async fn run_sink(
    config: SinkConfig,
    mut applier: Applier,
    mut rx: mpsc::Receiver<Vec<(u64, bytes::Bytes)>>,
    status: Arc<SinkStatus>,
) -> Result<(), ApplyError> {
    let notify = Arc::new(Notify::new());
    let watcher =
        tokio::spawn(watch_progress(config.endpoint.clone(), applier.key().to_vec(), status.clone(), notify.clone()));
    let result = apply_loop(&config, &mut applier, &mut rx, &status, &notify).await;
    watcher.abort();
    result
}

async fn apply_loop(
    config: &SinkConfig,
    applier: &mut Applier,
    rx: &mut mpsc::Receiver<Vec<(u64, bytes::Bytes)>>,
    status: &SinkStatus,
    notify: &Notify,
) -> Result<(), ApplyError> {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut active = config.rank == 0;
    let mut backoff = Duration::from_millis(20);
    let wait_for = config.takeover * config.rank;
    loop {
        let known = status.known_next.load(Ordering::Acquire);
        while pending.front().is_some_and(|p| p.seq < known) {
            pending.pop_front();
        }
        // Take what has arrived without waiting.
        while let Ok(batch) = rx.try_recv() {
            accept(&mut pending, batch, known, status)?;
        }
        let Some(front) = pending.front() else {
            tokio::select! {
                b = rx.recv() => match b {
                    Some(batch) => accept(&mut pending, batch, status.known_next.load(Ordering::Acquire), status)?,
                    None => return Ok(()),
                },
                () = notify.notified() => {}
            }
            continue;
        };
        if !active {
            let due = front.arrived + wait_for;
            if Instant::now() < due {
                tokio::select! {
                    b = rx.recv() => match b {
                        Some(batch) => accept(&mut pending, batch, status.known_next.load(Ordering::Acquire), status)?,
                        None => return Ok(()),
                    },
                    () = notify.notified() => {}
                    () = tokio::time::sleep_until(due.into()) => {}
                }
                continue;
            }
            active = true;
            status.takeovers.fetch_add(1, Ordering::Relaxed);
            tracing::info!("taking over applying at seq {} (rank {})", front.seq, config.rank);
        }
        if front.seq > known {
            // Cannot happen while deliveries start at the progress read at start-up and the
            // progress only grows.
            return Err(ApplyError::Response("the progress key is behind the messages this sidecar was delivered"));
        }
        let mut batch = Batch::new(front.seq);
        for p in &pending {
            if !batch.try_add(&p.msg, &config.prefix, config.limits)? {
                break;
            }
        }
        match applier.apply(&batch).await {
            Ok(Applied::Done(progress)) => {
                status.applied.fetch_add(batch.len(), Ordering::Relaxed);
                status.txns.fetch_add(1, Ordering::Relaxed);
                status.saw(&progress);
                backoff = Duration::from_millis(20);
            }
            Ok(Applied::Lost(progress)) => {
                status.lost.fetch_add(1, Ordering::Relaxed);
                if progress.next < batch.first() {
                    return Err(ApplyError::Response("the progress key went backwards"));
                }
                status.saw(&progress);
                // Step back only for an applier that is at least as far as this whole batch
                // (a restarted rank 0 still catching up on deliveries must not make the others
                // wait a takeover period per batch it wins).
                if config.rank > 0 && progress.next >= batch.first() + batch.len() {
                    active = false;
                }
            }
            Err(ApplyError::Etcd(e)) => {
                status.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("applying seq {}..: {e}; retrying in {backoff:?}", batch.first());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

fn accept(
    pending: &mut VecDeque<Pending>,
    batch: Vec<(u64, bytes::Bytes)>,
    known: u64,
    status: &SinkStatus,
) -> Result<(), ApplyError> {
    let now = Instant::now();
    status.delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
    for (seq, payload) in batch {
        if seq < known {
            continue;
        }
        let msg = RevisionMessage::decode(&payload).map_err(|error| ApplyError::Decode { seq, error })?;
        pending.push_back(Pending { seq, msg, arrived: now });
    }
    Ok(())
}

/// Follows the progress key on the own member, so that a sidecar that is not applying drops
/// what others applied (and knows when nobody does).
async fn watch_progress(endpoint: String, key: Vec<u8>, status: Arc<SinkStatus>, notify: Arc<Notify>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        if let Err(e) = watch_progress_once(&endpoint, &key, &status, &notify).await {
            tracing::debug!("progress watch on {endpoint}: {e}");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

async fn watch_progress_once(
    endpoint: &str,
    key: &[u8],
    status: &SinkStatus,
    notify: &Notify,
) -> Result<(), etcd_client::Error> {
    let mut client: Client = connect_one(endpoint).await?;
    let resp = client.get(key.to_vec(), None).await?;
    if let Some(kv) = resp.kvs().first()
        && let Ok(p) = Progress::parse(kv.value())
    {
        status.saw(&p);
        notify.notify_one();
    }
    let from = resp.header().map_or(0, |h| h.revision()) + 1;
    let mut stream = client.watch(key.to_vec(), Some(WatchOptions::new().with_start_revision(from))).await?;
    while let Some(resp) = stream.message().await? {
        for ev in resp.events() {
            if let Some(kv) = ev.kv()
                && let Ok(p) = Progress::parse(kv.value())
            {
                status.saw(&p);
            }
        }
        notify.notify_one();
        if resp.canceled() {
            break;
        }
    }
    Ok(())
}
