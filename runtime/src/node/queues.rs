//! What the application handle and the node thread share: the bounded command and delivery
//! queues with their message and byte budgets, the signal the application's blocking calls
//! wait on, and the published state (QUACK, received, statistics).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use picsou_core::{ReplicaId, StreamStart};

use super::{Delivery, NodeStats, SubmitError};

/// One application command.
pub(super) enum Command {
    Submit {
        seq: u64,
        payload: Bytes,
        proof: Bytes,
    },
    /// Consecutive messages from `seq` on ([`Node::submit_batch`]).
    SubmitBatch {
        seq: u64,
        items: std::vec::IntoIter<(Bytes, Bytes)>,
        bytes: usize,
    },
}

/// What a queued message costs besides its payload and proof bytes, for the queues' byte
/// budgets: a payload and a proof handle (a submitted pair, or a delivery's payload and
/// optional proof), plus a sequence number.
pub const QUEUED_MESSAGE_BYTES: usize = size_of::<Delivery>();

/// Bytes a queued message of `payload` and `proof` bytes counts for in a queue's byte budget.
pub(super) fn queued_bytes(payload: usize, proof: usize) -> usize {
    payload + proof + QUEUED_MESSAGE_BYTES
}

impl Command {
    /// Bytes it holds, for the queue's byte budget.
    pub(super) fn bytes(&self) -> usize {
        match self {
            Self::Submit { payload, proof, .. } => queued_bytes(payload.len(), proof.len()),
            Self::SubmitBatch { bytes, .. } => *bytes,
        }
    }
}

impl Delivery {
    /// Bytes it holds, for the queue's byte budget.
    pub(super) fn bytes(&self) -> usize {
        queued_bytes(self.payload.len(), self.proof.as_ref().map_or(0, Bytes::len))
    }
}

/// Deliveries handed over at once, with their size for the queue's byte budget.
pub(super) struct DeliveryBatch {
    pub(super) items: Vec<Delivery>,
    pub(super) bytes: usize,
}

/// Most deliveries in one batch.
pub(super) const MAX_DELIVERY_BATCH: usize = 1024;

/// A budget (bytes or messages) shared by a queue's producer and consumer: the producer adds
/// before pushing and the consumer subtracts after popping, so the count can only
/// over-estimate what is queued. An empty queue always admits one item, however large.
#[derive(Default)]
pub(super) struct Budget {
    used: AtomicUsize,
}

impl Budget {
    /// Whether `len` more fit under `limit`.
    pub(super) fn admits(&self, len: usize, limit: usize) -> bool {
        let used = self.used.load(Ordering::Acquire);
        used == 0 || used.saturating_add(len) <= limit
    }

    pub(super) fn add(&self, len: usize) {
        self.used.fetch_add(len, Ordering::AcqRel);
    }

    pub(super) fn sub(&self, len: usize) {
        self.used.fetch_sub(len, Ordering::AcqRel);
    }

    pub(super) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// A condition variable for the application's blocking calls: the node notifies it only when
/// somebody waits, so the fast path costs one atomic load.
#[derive(Default)]
pub(super) struct AppSignal {
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

impl AppSignal {
    pub(super) fn notify(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.cond.notify_all();
        }
    }

    /// Waits until `ready()` or the deadline; returns `ready()`'s final value.
    pub(super) fn wait_until(&self, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
        if ready() {
            return true;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let mut g: MutexGuard<'_, ()> = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let ok = loop {
            if ready() {
                break true;
            }
            // Wake periodically even without a notification: a node that stops notifies, but a
            // short timed wait also bounds any missed-wakeup window to a few milliseconds.
            let slice = Duration::from_millis(5);
            let wait = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break ready();
                    }
                    (d - now).min(slice)
                }
                None => slice,
            };
            g = self.cond.wait_timeout(g, wait).unwrap_or_else(PoisonError::into_inner).0;
        };
        drop(g);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        ok
    }
}

/// State shared by the application handle and the node thread.
pub(super) struct Shared {
    pub(super) commands: ArrayQueue<Command>,
    /// `Node::local_has` seqs (application-managed dissemination). A queue of their own, taken
    /// every iteration: behind submissions they would wait for the send window, which waits
    /// for the other RSM's acks, which may wait the same way — two RSMs stuck on each other.
    pub(super) local_acks: ArrayQueue<u64>,
    /// Deliveries travel in batches (one per node loop iteration, at most
    /// `MAX_DELIVERY_BATCH`): a queue operation and two counter updates per message, and the
    /// payloads' reference counts bouncing between the two threads per message, cost a tenth
    /// of all CPU at 100 B.
    pub(super) deliveries: ArrayQueue<DeliveryBatch>,
    pub(super) command_bytes: Budget,
    pub(super) delivery_bytes: Budget,
    /// Messages in `deliveries` (its capacity is counted in messages, not batches).
    pub(super) delivery_msgs: Budget,
    /// Message capacity of each queue.
    pub(super) queue_capacity: usize,
    /// Byte capacity of each queue.
    pub(super) queue_bytes: usize,
    pub(super) stop: AtomicBool,
    pub(super) stopped: AtomicBool,
    /// The node thread is (about to be) asleep in `poll`: submitters must wake it.
    pub(super) sleeping: AtomicBool,
    pub(super) quack: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) app: AppSignal,
    pub(super) stats: Mutex<NodeStats>,
    /// Set once the engine said this replica needs a state transfer and every delivery before
    /// that point was handed to the delivery queue: `(next, peers_at)`.
    pub(super) state_transfer: Mutex<Option<(u64, u64)>>,
    /// `state_transfer` is set (read without the lock on the delivery path).
    pub(super) state_transfer_set: AtomicBool,
    /// Why the node thread stopped, if it stopped with an error or panicked (set before
    /// `stopped`): blocking calls then return [`SubmitError::NodeFailed`].
    pub(super) failure: Mutex<Option<String>>,
}

impl Shared {
    /// The error for a call that found the node stopped: [`SubmitError::NodeFailed`] if its
    /// thread failed, [`SubmitError::Stopped`] if it was shut down.
    pub(super) fn stopped_error(&self) -> SubmitError {
        match self.failure.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            Some(reason) => SubmitError::NodeFailed { reason: reason.clone() },
            None => SubmitError::Stopped,
        }
    }

    /// Empty queues of `capacity` messages and `bytes` bytes each, for `local` resuming at
    /// `resume`.
    pub(super) fn new(local: ReplicaId, capacity: usize, bytes: usize, resume: StreamStart) -> Self {
        Self {
            commands: ArrayQueue::new(capacity),
            local_acks: ArrayQueue::new(capacity),
            deliveries: ArrayQueue::new(capacity),
            command_bytes: Budget::default(),
            delivery_bytes: Budget::default(),
            delivery_msgs: Budget::default(),
            queue_capacity: capacity,
            queue_bytes: bytes,
            stop: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            failure: Mutex::new(None),
            sleeping: AtomicBool::new(false),
            quack: AtomicU64::new(resume.transmit),
            received: AtomicU64::new(resume.receive),
            app: AppSignal::default(),
            stats: Mutex::new(NodeStats { replica: local.to_string(), ..NodeStats::default() }),
            state_transfer: Mutex::new(None),
            state_transfer_set: AtomicBool::new(false),
        }
    }
}
