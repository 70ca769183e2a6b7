//! The receiving side's guarded apply: delivered messages go into the local cluster in
//! transactions guarded on a progress key, so that each source revision is applied exactly
//! once and in order although every sidecar of the cluster delivers every message.
//!
//! The progress key `/picsou/applied/<source>` holds `"{next:020} {source_revision:020} {applier}"`:
//! the seq of the next message to apply, the source revision of the last one applied, and
//! which sidecar applied it. A transaction applying messages `first .. first + k` is
//!
//! ```text
//! if   value(progress) > "{first:020}"  and  value(progress) < "{first+1:020}"   (i.e. next == first)
//! then the messages' puts and deletes (coalesced per key), put(progress, next = first + k)
//! else get(progress)
//! ```
//!
//! etcd compares values as bytes; the fixed-width decimal makes byte order numeric order, and
//! the two comparisons pin the number while ignoring what follows it (a value always goes on
//! after the number, so it is greater than the bare number exactly when its number is at
//! least that: etcd has no ≥). Exactly once, in order:
//! the progress only ever moves from `first` to `first + k` in the same atomic transaction
//! that applies exactly those messages, so a message is applied iff the progress passed it,
//! never twice, and never before all lower seqs (each applier tries seqs in order and only
//! moves past a seq when it committed it or saw the progress beyond it). A loser's
//! transaction changes nothing and its `else` returns the current progress, from which it
//! skips what others applied.
//!
//! Several messages may share one transaction (one Raft proposal instead of k): their events
//! are coalesced per key (later wins), since etcd refuses a transaction that touches a key
//! twice. The standby then moves from one batch boundary to the next: every state it shows
//! is a state the primary had.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, KvClient, TxnOp, TxnOpResponse};
use thiserror::Error;

use crate::codec::{DecodeError, EventKind, RevisionMessage};

/// Where progress keys live. Mirrored prefixes must not overlap it.
pub const PROGRESS_ROOT: &str = "/picsou/applied/";

/// The progress key of the stream coming from `source` (the sending RSM's name).
pub fn progress_key(source: &str) -> Vec<u8> {
    format!("{PROGRESS_ROOT}{source}").into_bytes()
}

/// What the progress key says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Seq of the next message to apply (messages applied so far).
    pub next: u64,
    /// Source revision of the last message applied (0 before the first).
    pub source_revision: u64,
    /// Who applied it (`standby/2`), or `init`.
    pub applier: String,
}

/// The fixed-width decimal that makes byte order numeric order.
fn padded(n: u64) -> String {
    format!("{n:020}")
}

impl Progress {
    /// The key's value.
    pub fn encode(&self) -> String {
        format!("{} {} {}", padded(self.next), padded(self.source_revision), self.applier)
    }

    /// Parses a value written by [`Progress::encode`].
    pub fn parse(value: &[u8]) -> Result<Self, ProgressError> {
        let bad = || ProgressError(String::from_utf8_lossy(value).into_owned());
        let text = std::str::from_utf8(value).map_err(|_| bad())?;
        let mut it = text.splitn(3, ' ');
        let num = |s: Option<&str>| {
            s.filter(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit())).and_then(|s| s.parse::<u64>().ok())
        };
        let next = num(it.next()).ok_or_else(bad)?;
        let source_revision = num(it.next()).ok_or_else(bad)?;
        let applier = it.next().unwrap_or("").to_string();
        Ok(Self { next, source_revision, applier })
    }
}

/// A progress key whose value is not ours.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("the progress key holds {0:?}, not \"<next:20 digits> <revision:20 digits> <applier>\"")]
pub struct ProgressError(pub String);

/// Why messages could not be applied.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// etcd refused or could not be reached.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A delivered message is not of our format.
    #[error("message {seq}: {error}")]
    Decode {
        /// Its seq.
        seq: u64,
        /// What is wrong.
        error: DecodeError,
    },
    /// A message touches a key outside the prefix this cluster mirrors.
    #[error("message {seq} (source revision {revision}) touches {key:?}, outside the mirrored prefix {prefix:?}")]
    OutsidePrefix {
        /// Its seq.
        seq: u64,
        /// Its source revision.
        revision: u64,
        /// The key.
        key: String,
        /// The prefix expected.
        prefix: String,
    },
    /// One message alone exceeds the transaction limits.
    #[error(
        "message {seq} (source revision {revision}) needs {ops} operations and {bytes} bytes in one transaction, over the limits ({max_ops} operations, {max_bytes} bytes): raise --max-txn-ops / --max-request-bytes of this cluster's etcd and the sidecar's"
    )]
    TooLarge {
        /// Its seq.
        seq: u64,
        /// Its source revision.
        revision: u64,
        /// Operations it needs (with the progress put).
        ops: usize,
        /// Bytes it needs.
        bytes: usize,
        /// The operation limit.
        max_ops: usize,
        /// The byte limit.
        max_bytes: usize,
    },
    /// The progress key holds something else.
    #[error(transparent)]
    Progress(#[from] ProgressError),
    /// The transaction's answer lacks what it must have.
    #[error("unexpected transaction response: {0}")]
    Response(&'static str),
}

/// How large one transaction may be: etcd's `--max-txn-ops` (default 128) and, below
/// `--max-request-bytes` (default 1.5 MiB), a byte budget for keys and values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnLimits {
    /// Most operations, the progress put included.
    pub max_ops: usize,
    /// Most key and value bytes (plus 16 per operation).
    pub max_bytes: usize,
}

impl Default for TxnLimits {
    fn default() -> Self {
        Self { max_ops: 128, max_bytes: 1 << 20 }
    }
}

/// Per-operation allowance for the request's framing.
const OP_OVERHEAD: usize = 16;

/// Consecutive messages to apply in one transaction, their events coalesced per key.
#[derive(Clone, Debug)]
pub struct Batch {
    first: u64,
    count: u64,
    last_revision: u64,
    ops: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    bytes: usize,
}

impl Batch {
    /// An empty batch starting at seq `first`.
    pub fn new(first: u64) -> Self {
        Self { first, count: 0, last_revision: 0, ops: BTreeMap::new(), bytes: 0 }
    }

    /// Seq of its first message.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Messages in it.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True if it holds no message.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Key operations after coalescing.
    pub fn ops(&self) -> usize {
        self.ops.len()
    }

    /// Source revision of its last message.
    pub fn last_revision(&self) -> u64 {
        self.last_revision
    }

    /// Adds message `first + len()` if the batch stays within `limits`: `Ok(false)` (and the
    /// batch unchanged) if it would not fit, an error if it could never fit or touches a key
    /// outside `prefix`.
    pub fn try_add(&mut self, msg: &RevisionMessage, prefix: &[u8], limits: TxnLimits) -> Result<bool, ApplyError> {
        let seq = self.first + self.count;
        let mut ops = self.ops.len();
        let mut bytes = self.bytes;
        let mut fresh: BTreeMap<&[u8], usize> = BTreeMap::new();
        for e in &msg.events {
            if !e.key.starts_with(prefix) {
                return Err(ApplyError::OutsidePrefix {
                    seq,
                    revision: msg.revision,
                    key: String::from_utf8_lossy(&e.key).into_owned(),
                    prefix: String::from_utf8_lossy(prefix).into_owned(),
                });
            }
            let size = e.key.len() + e.value.len() + OP_OVERHEAD;
            let prev = match fresh.get(e.key.as_slice()) {
                Some(&p) => Some(p),
                None => self.ops.get(&e.key).map(|old| e.key.len() + old.as_ref().map_or(0, Vec::len) + OP_OVERHEAD),
            };
            match prev {
                Some(p) => bytes = bytes - p + size,
                None => {
                    ops += 1;
                    bytes += size;
                }
            }
            fresh.insert(&e.key, size);
        }
        // The progress put.
        let (total_ops, total_bytes) = (ops + 1, bytes + 64 + OP_OVERHEAD);
        if total_ops > limits.max_ops || total_bytes > limits.max_bytes {
            if self.count == 0 {
                return Err(ApplyError::TooLarge {
                    seq,
                    revision: msg.revision,
                    ops: total_ops,
                    bytes: total_bytes,
                    max_ops: limits.max_ops,
                    max_bytes: limits.max_bytes,
                });
            }
            return Ok(false);
        }
        for e in &msg.events {
            let value = match e.kind {
                EventKind::Put => Some(e.value.clone()),
                EventKind::Delete => None,
            };
            self.ops.insert(e.key.clone(), value);
        }
        self.bytes = bytes;
        self.count += 1;
        self.last_revision = msg.revision;
        Ok(true)
    }
}

/// What a guarded transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The batch is applied; the progress is now this.
    Done(Progress),
    /// The guard failed: the progress was not at the batch's first seq. This is it.
    Lost(Progress),
}

/// Applies batches to one cluster through one client (a sidecar's own member).
#[derive(Clone)]
pub struct Applier {
    kv: KvClient,
    key: Vec<u8>,
    who: String,
}

impl Applier {
    /// An applier of the stream from `source`, signing its progress updates as `who`.
    pub fn new(kv: KvClient, source: &str, who: &str) -> Self {
        Self { kv, key: progress_key(source), who: who.to_string() }
    }

    /// The progress key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The current progress, creating the key (nothing applied) if it does not exist yet.
    pub async fn init(&mut self) -> Result<Progress, ApplyError> {
        let initial = Progress { next: 0, source_revision: 0, applier: "init".into() };
        let txn = etcd_client::Txn::new()
            .when([Compare::version(self.key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(self.key.clone(), initial.encode(), None)])
            .or_else([TxnOp::get(self.key.clone(), None)]);
        let resp = self.kv.txn(txn).await?;
        if resp.succeeded() {
            return Ok(initial);
        }
        Self::progress_of(&resp)
    }

    /// The current progress (linearizable read).
    pub async fn read(&mut self) -> Result<Option<Progress>, ApplyError> {
        let resp = self.kv.get(self.key.clone(), None).await?;
        resp.kvs().first().map(|kv| Progress::parse(kv.value()).map_err(ApplyError::from)).transpose()
    }

    fn progress_of(resp: &etcd_client::TxnResponse) -> Result<Progress, ApplyError> {
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(g) = op {
                let kv = g.kvs().first().ok_or(ApplyError::Response("the progress key is missing"))?;
                return Ok(Progress::parse(kv.value())?);
            }
        }
        Err(ApplyError::Response("no get in the else branch"))
    }

    /// Applies `batch` iff the progress is at its first seq.
    pub async fn apply(&mut self, batch: &Batch) -> Result<Applied, ApplyError> {
        let next = Progress {
            next: batch.first + batch.count,
            source_revision: batch.last_revision,
            applier: self.who.clone(),
        };
        let mut ops: Vec<TxnOp> = Vec::with_capacity(batch.ops.len() + 1);
        for (key, value) in &batch.ops {
            ops.push(match value {
                Some(v) => TxnOp::put(key.clone(), v.clone(), None),
                None => TxnOp::delete(key.clone(), None),
            });
        }
        ops.push(TxnOp::put(self.key.clone(), next.encode(), None));
        let txn = etcd_client::Txn::new()
            .when([
                // Values always go on after the number (" revision applier"), so "greater than
                // the bare number" is "at least that number" (etcd has no >= comparison).
                Compare::value(self.key.clone(), CompareOp::Greater, padded(batch.first)),
                Compare::value(self.key.clone(), CompareOp::Less, padded(batch.first.saturating_add(1))),
            ])
            .and_then(ops)
            .or_else([TxnOp::get(self.key.clone(), None)]);
        let resp = self.kv.txn(txn).await?;
        if resp.succeeded() { Ok(Applied::Done(next)) } else { Ok(Applied::Lost(Self::progress_of(&resp)?)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::KvEvent;

    #[test]
    fn progress_round_trip_and_order() {
        let p = Progress { next: 12, source_revision: 99, applier: "standby/1".into() };
        assert_eq!(Progress::parse(p.encode().as_bytes()).unwrap(), p);
        assert!(Progress::parse(b"12 99 x").is_err());
        assert!(Progress::parse(b"").is_err());
        assert!(Progress::parse(&[0xff, 0xfe]).is_err());
        // Byte order is numeric order, and the guard's two bounds pin the number.
        let v = Progress { next: 41, source_revision: 7, applier: "a".into() }.encode();
        assert!(v.as_str() >= padded(41).as_str() && v.as_str() < padded(42).as_str());
        assert!(v.as_str() < padded(100).as_str() && v.as_str() > padded(40).as_str());
    }

    #[test]
    fn batch_coalesces_and_respects_limits() {
        let limits = TxnLimits { max_ops: 4, max_bytes: 1 << 20 };
        let mut b = Batch::new(10);
        let m = |rev, events| RevisionMessage { revision: rev, events };
        assert!(b.try_add(&m(5, vec![KvEvent::put("/p/a", "1"), KvEvent::put("/p/b", "2")]), b"/p/", limits).unwrap());
        // Same keys again: coalesced, still 2 ops.
        assert!(b.try_add(&m(6, vec![KvEvent::delete("/p/a"), KvEvent::put("/p/b", "3")]), b"/p/", limits).unwrap());
        assert_eq!((b.ops(), b.len(), b.last_revision()), (2, 2, 6));
        assert!(b.try_add(&m(7, vec![KvEvent::put("/p/c", "4")]), b"/p/", limits).unwrap());
        // A fourth key would make 4 + the progress put = 5 > 4.
        assert!(!b.try_add(&m(8, vec![KvEvent::put("/p/d", "5")]), b"/p/", limits).unwrap());
        assert_eq!(b.len(), 3);
        assert_eq!(b.ops.get(b"/p/a".as_slice()), Some(&None));
        assert_eq!(b.ops.get(b"/p/b".as_slice()), Some(&Some(b"3".to_vec())));
        let mut e = Batch::new(0);
        let big = m(1, (0..4).map(|i| KvEvent::put(format!("/p/{i}"), "x")).collect());
        assert!(matches!(e.try_add(&big, b"/p/", limits), Err(ApplyError::TooLarge { ops: 5, .. })));
        assert!(matches!(
            e.try_add(&m(1, vec![KvEvent::put("/q/x", "1")]), b"/p/", limits),
            Err(ApplyError::OutsidePrefix { .. })
        ));
    }

    #[test]
    fn batch_byte_limit() {
        let limits = TxnLimits { max_ops: 1000, max_bytes: 400 };
        let mut b = Batch::new(0);
        let m = |k: &str| RevisionMessage { revision: 1, events: vec![KvEvent::put(k, vec![0u8; 100])] };
        assert!(b.try_add(&m("/p/a"), b"/p/", limits).unwrap());
        assert!(b.try_add(&m("/p/b"), b"/p/", limits).unwrap());
        // Overwriting a key costs no more bytes.
        assert!(b.try_add(&m("/p/a"), b"/p/", limits).unwrap());
        assert!(!b.try_add(&m("/p/c"), b"/p/", limits).unwrap());
    }
}
