//! The sending side: a sidecar reads its own member's committed history under the mirrored
//! prefix and turns it into the RSM's outgoing stream.
//!
//! **Numbering.** Message *k* is the *k*-th revision at or after the start revision that has
//! events under the prefix (revisions that touch only other keys get no message). Every
//! member applies the same Raft log, so every member's MVCC history has the same revisions
//! with the same events; a watch on the prefix from the same revision therefore yields the
//! same sequence of (revision, events) on every member, and every sidecar numbers it the
//! same way: the stream is dense (no empty messages, no gaps) and identical, as C3B needs.
//! A watch reports a revision's events together in one response (etcd splits a revision
//! only when the watcher asks for fragments, which we do not), and we check that revisions
//! only increase.
//!
//! **Own member only.** The client is given the one endpoint of the sidecar's member, so it
//! never fails over to another member: what the sidecar submits is what its member applied,
//! i.e. committed entries. A lagging member's sidecar lags; a partitioned one stops; both are
//! a slow or crashed sender to Picsou, whose other senders carry the stream.
//!
//! **Restart.** Where to continue is an [`Anchor`]: the seq of the next message and the
//! revision of the last one before it. The sidecar checkpoints the anchor of its QUACK (every
//! message below it is held by a correct replica of the other cluster), and a restarted
//! sidecar watches from the anchor's revision + 1 and numbers from its seq.
//!
//! **Member down.** The watch fails; the sidecar keeps its Picsou node running (it still
//! receives, acks and forwards) and redials its member with backoff, then watches again from
//! the revision after the last message it submitted: no gap, no repeat.
//!
//! **Compaction.** If the member compacted past the anchor (a sidecar down longer than the
//! cluster's compaction retention), the revisions it must submit next are gone from its
//! member: the sidecar stops sending with [`SourceError::Compacted`] (its node keeps running;
//! Picsou treats it as a failed sender and its peers carry the stream). It can rejoin from a
//! peer sidecar's checkpoint file, whose anchor is past the compaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{Client, EventType, WatchOptions};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::codec::{EncodeError, KvEvent, RevisionMessage};
use crate::etcd::connect_one;

/// Where the outgoing stream continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// Seq of the next message.
    pub next_seq: u64,
    /// The next message is the first revision after this one with events under the prefix.
    pub after_revision: u64,
}

impl Anchor {
    /// A fresh stream: message 0 is the first revision at or after `start_revision`.
    pub fn fresh(start_revision: u64) -> Self {
        Self { next_seq: 0, after_revision: start_revision.saturating_sub(1) }
    }
}

/// A message for the Picsou node.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Its seq.
    pub seq: u64,
    /// The source revision.
    pub revision: u64,
    /// The encoded [`RevisionMessage`].
    pub payload: Bytes,
}

/// Why the sending side stopped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The member compacted the revisions this sidecar must submit next.
    #[error(
        "the member compacted its history up to revision {compacted}, but this sidecar must continue after revision {after} (seq {next_seq}); it stops sending (its peers carry the stream): restart it from a peer sidecar's checkpoint"
    )]
    Compacted {
        /// The member's compaction revision.
        compacted: u64,
        /// The anchor's revision.
        after: u64,
        /// The anchor's seq.
        next_seq: u64,
    },
    /// A revision arrived out of order (a watch split a revision): the stream could differ
    /// between members, so this sidecar stops sending.
    #[error("watch reported revision {got} after revision {after}")]
    Order {
        /// The revision received.
        got: u64,
        /// The last revision submitted.
        after: u64,
    },
    /// An event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The node stopped taking messages.
    #[error("the node stopped")]
    Stopped,
}

/// Counters of the sending side.
#[derive(Debug, Default)]
pub struct SourceStatus {
    /// The watch is established.
    pub connected: AtomicBool,
    /// Messages read from the member.
    pub read: AtomicU64,
    /// Last revision read.
    pub last_revision: AtomicU64,
    /// Times the watch was (re)established.
    pub watches: AtomicU64,
    /// Failed connection or watch attempts.
    pub errors: AtomicU64,
}

/// Watches `prefix` on the member at `endpoint` from `anchor` and sends one [`Outgoing`] per
/// revision, forever (or until an error that makes sending unsafe).
pub async fn run_source(
    endpoint: String,
    prefix: Vec<u8>,
    mut anchor: Anchor,
    tx: mpsc::Sender<Outgoing>,
    status: Arc<SourceStatus>,
) -> Result<(), SourceError> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let before = anchor.next_seq;
        let end = watch_once(&endpoint, &prefix, &mut anchor, &tx, &status).await;
        status.connected.store(false, Ordering::Relaxed);
        if anchor.next_seq > before {
            backoff = Duration::from_millis(50);
        }
        match end {
            WatchEnd::Fatal(e) => return Err(e),
            WatchEnd::Retry(msg) => {
                status.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("watch on {endpoint}: {msg}; retrying in {backoff:?}");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

enum WatchEnd {
    Retry(String),
    Fatal(SourceError),
}

/// One watch, until it ends (the anchor follows what it submitted).
async fn watch_once(
    endpoint: &str,
    prefix: &[u8],
    anchor: &mut Anchor,
    tx: &mpsc::Sender<Outgoing>,
    status: &SourceStatus,
) -> WatchEnd {
    match watch_inner(endpoint, prefix, anchor, tx, status).await {
        Ok(never) => match never {},
        Err(end) => end,
    }
}

async fn watch_inner(
    endpoint: &str,
    prefix: &[u8],
    anchor: &mut Anchor,
    tx: &mpsc::Sender<Outgoing>,
    status: &SourceStatus,
) -> Result<std::convert::Infallible, WatchEnd> {
    let client: Client = connect_one(endpoint).await.map_err(|e| WatchEnd::Retry(e.to_string()))?;
    let options = WatchOptions::new().with_prefix().with_start_revision(to_i64(anchor.after_revision + 1));
    let mut stream = client
        .watch_client()
        .max_decoding_message_size(256 << 20)
        .watch(prefix.to_vec(), Some(options))
        .await
        .map_err(|e| WatchEnd::Retry(e.to_string()))?;
    status.connected.store(true, Ordering::Relaxed);
    status.watches.fetch_add(1, Ordering::Relaxed);
    loop {
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(WatchEnd::Retry("watch stream ended".into())),
            Err(e) => return Err(WatchEnd::Retry(e.to_string())),
        };
        if resp.compact_revision() > 0 {
            return Err(WatchEnd::Fatal(SourceError::Compacted {
                compacted: resp.compact_revision() as u64,
                after: anchor.after_revision,
                next_seq: anchor.next_seq,
            }));
        }
        if resp.canceled() {
            return Err(WatchEnd::Retry(format!("watch canceled: {}", resp.cancel_reason())));
        }
        let mut current: Option<RevisionMessage> = None;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let rev = kv.mod_revision() as u64;
            let event = match ev.event_type() {
                EventType::Put => KvEvent::put(kv.key(), kv.value()),
                EventType::Delete => KvEvent::delete(kv.key()),
            };
            match &mut current {
                Some(m) if m.revision == rev => m.events.push(event),
                _ => {
                    if let Some(m) = current.take() {
                        emit(m, anchor, tx, status).await?;
                    }
                    if rev <= anchor.after_revision {
                        return Err(WatchEnd::Fatal(SourceError::Order { got: rev, after: anchor.after_revision }));
                    }
                    current = Some(RevisionMessage { revision: rev, events: vec![event] });
                }
            }
        }
        if let Some(m) = current.take() {
            emit(m, anchor, tx, status).await?;
        }
    }
}

async fn emit(
    m: RevisionMessage,
    anchor: &mut Anchor,
    tx: &mpsc::Sender<Outgoing>,
    status: &SourceStatus,
) -> Result<(), WatchEnd> {
    let payload = Bytes::from(m.encode().map_err(|e| WatchEnd::Fatal(e.into()))?);
    let out = Outgoing { seq: anchor.next_seq, revision: m.revision, payload };
    tx.send(out).await.map_err(|_| WatchEnd::Fatal(SourceError::Stopped))?;
    anchor.next_seq += 1;
    anchor.after_revision = m.revision;
    status.read.fetch_add(1, Ordering::Relaxed);
    status.last_revision.store(m.revision, Ordering::Relaxed);
    Ok(())
}

/// etcd's revisions are i64 on the wire.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
