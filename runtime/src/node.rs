//! The node driver: one replica's engine running on a thread of its own.
//!
//! The node thread owns the [`Endpoint`] and the [`Transport`]. Each loop iteration it takes up
//! to `batch_messages` commands from the application, hands received frames and due timeouts
//! to the engine, drains the engine's frames into the transport (one batch per destination,
//! flushed once), and publishes deliveries. When nothing is left to do it sleeps in
//! [`Transport::poll`] until a frame, the next engine deadline, or a wake from the application.
//!
//! The application talks to the thread through two bounded lock-free queues (commands in,
//! deliveries out) carrying [`Bytes`], so payloads are never copied between them. Submissions
//! are checked on the caller's thread (order, size), so the only thing the node can still
//! refuse is space, which it handles by holding the queue head until the engine's
//! backpressure window opens: [`Node::submit`] blocks, [`Node::try_submit`] says
//! [`SubmitError::Full`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use picsou_core::{ConfigError, Endpoint, EndpointConfig, EndpointStats, Event, ReplicaId, StreamStart, Time};

use crate::transport::{SendStatus, Transport, TransportError, TransportEvent, TransportStats, Wake};

/// How the node thread batches work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeOptions {
    /// Most application commands taken per loop iteration (bounds latency of the other work).
    pub batch_messages: usize,
    /// After taking fewer than `batch_messages`, wait up to this long for more before building
    /// frames (fuller frames at a small latency cost). Zero: never wait.
    pub batch_linger: Duration,
    /// Capacity of the command and delivery queues, in messages (a [`Node::submit_batch`]
    /// takes one place in the command queue; its bytes count in full).
    pub queue_capacity: usize,
    /// Capacity of the command and delivery queues, in bytes: payloads and proofs plus each
    /// message's own bookkeeping ([`QUEUED_MESSAGE_BYTES`]; each queue always takes at least
    /// one message). Bounds a node's memory with large messages, where the message count
    /// would not, and with small ones, where payload bytes alone would let a queue hold
    /// hundreds of thousands of messages.
    pub queue_bytes: usize,
    /// How often the published statistics are refreshed.
    pub stats_interval: Duration,
    /// Where the streams continue, for a replica restarting from a checkpoint
    /// (see [`Endpoint::resuming`]); zero for a fresh replica.
    pub resume: StreamStart,
}

impl NodeOptions {
    /// The options of a deployment file's `[node]` table.
    pub fn from_tuning(t: &crate::deployment::NodeTuning) -> Self {
        Self {
            batch_messages: t.batch_messages,
            batch_linger: t.batch_linger,
            queue_capacity: t.queue_capacity,
            queue_bytes: t.queue_bytes,
            stats_interval: t.stats_interval,
            resume: StreamStart::default(),
        }
    }
}

impl Default for NodeOptions {
    /// The defaults of the deployment file's `[node]` table.
    fn default() -> Self {
        Self::from_tuning(&crate::deployment::NodeTuning::default())
    }
}

/// A message of the incoming stream, handed to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Position in the stream.
    pub seq: u64,
    /// The message.
    pub payload: Bytes,
    /// Application-managed dissemination only: the message's proof, to pass on inside the
    /// RSM. `None` under library-managed dissemination (every delivery is in order).
    pub proof: Option<Bytes>,
}

/// Why a submission was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// Messages are submitted as 0, 1, 2, … with no gap or repeat.
    #[error("out of order: expected seq {expected}, got {got}")]
    OutOfOrder {
        /// The seq expected next.
        expected: u64,
        /// The seq given.
        got: u64,
    },
    /// The payload is larger than `max_payload_bytes`.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The queue is full (only from [`Node::try_submit`]); retry later.
    #[error("submit queue full")]
    Full,
    /// The node has stopped.
    #[error("node stopped")]
    Stopped,
}

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The engine configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The node thread could not be spawned.
    #[error("cannot spawn the node thread: {0}")]
    Spawn(std::io::Error),
    /// The node thread panicked (a bug: please report it).
    #[error("node thread panicked: {0}")]
    Panicked(String),
}

/// Counters of a running node: the engine's, the transport's, and the node's own.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeStats {
    /// This replica, as `s0`/`r2`.
    pub replica: String,
    /// Engine counters.
    pub engine: EndpointStats,
    /// Transport counters.
    pub transport: TransportStats,
    /// Messages the application submitted and the engine took.
    pub transmitted: u64,
    /// Messages handed to the application.
    pub delivered: u64,
    /// Frames or connections the engine or transport refused as misbehaving.
    pub misbehaviors: u64,
    /// Peer down transitions seen.
    pub peer_downs: u64,
    /// Node loop iterations.
    pub loops: u64,
}

/// One application command.
enum Command {
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
fn queued_bytes(payload: usize, proof: usize) -> usize {
    payload + proof + QUEUED_MESSAGE_BYTES
}

impl Command {
    /// Bytes it holds, for the queue's byte budget.
    fn bytes(&self) -> usize {
        match self {
            Self::Submit { payload, proof, .. } => queued_bytes(payload.len(), proof.len()),
            Self::SubmitBatch { bytes, .. } => *bytes,
        }
    }
}

impl Delivery {
    /// Bytes it holds, for the queue's byte budget.
    fn bytes(&self) -> usize {
        queued_bytes(self.payload.len(), self.proof.as_ref().map_or(0, Bytes::len))
    }
}

/// Deliveries handed over at once, with their size for the queue's byte budget.
struct DeliveryBatch {
    items: Vec<Delivery>,
    bytes: usize,
}

/// Most deliveries in one batch.
const MAX_DELIVERY_BATCH: usize = 1024;

/// A budget (bytes or messages) shared by a queue's producer and consumer: the producer adds
/// before pushing and the consumer subtracts after popping, so the count can only
/// over-estimate what is queued. An empty queue always admits one item, however large.
#[derive(Default)]
struct Budget {
    used: AtomicUsize,
}

impl Budget {
    /// Whether `len` more fit under `limit`.
    fn admits(&self, len: usize, limit: usize) -> bool {
        let used = self.used.load(Ordering::Acquire);
        used == 0 || used.saturating_add(len) <= limit
    }

    fn add(&self, len: usize) {
        self.used.fetch_add(len, Ordering::AcqRel);
    }

    fn sub(&self, len: usize) {
        self.used.fetch_sub(len, Ordering::AcqRel);
    }

    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// A condition variable for the application's blocking calls: the node notifies it only when
/// somebody waits, so the fast path costs one atomic load.
#[derive(Default)]
struct AppSignal {
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

impl AppSignal {
    fn notify(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.cond.notify_all();
        }
    }

    /// Waits until `ready()` or the deadline; returns `ready()`'s final value.
    fn wait_until(&self, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
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
struct Shared {
    commands: ArrayQueue<Command>,
    /// `Node::local_has` seqs (application-managed dissemination). A queue of their own, taken
    /// every iteration: behind submissions they would wait for the send window, which waits
    /// for the other RSM's acks, which may wait the same way — two RSMs stuck on each other.
    local_acks: ArrayQueue<u64>,
    /// Deliveries travel in batches (one per node loop iteration, at most
    /// `MAX_DELIVERY_BATCH`): a queue operation and two counter updates per message, and the
    /// payloads' reference counts bouncing between the two threads per message, cost a tenth
    /// of all CPU at 100 B.
    deliveries: ArrayQueue<DeliveryBatch>,
    command_bytes: Budget,
    delivery_bytes: Budget,
    /// Messages in `deliveries` (its capacity is counted in messages, not batches).
    delivery_msgs: Budget,
    /// Message capacity of each queue.
    queue_capacity: usize,
    /// Byte capacity of each queue.
    queue_bytes: usize,
    stop: AtomicBool,
    stopped: AtomicBool,
    /// The node thread is (about to be) asleep in `poll`: submitters must wake it.
    sleeping: AtomicBool,
    quack: AtomicU64,
    received: AtomicU64,
    app: AppSignal,
    stats: Mutex<NodeStats>,
}

/// A running replica. Dropping it stops the node thread (use [`Node::shutdown`] to get its
/// final statistics and error).
pub struct Node {
    local: ReplicaId,
    shared: Arc<Shared>,
    waker: Arc<dyn Wake>,
    thread: Option<JoinHandle<Result<(), NodeError>>>,
    /// Submit-side checks run on the caller's thread, serialized by this lock.
    next_seq: Mutex<u64>,
    max_payload: usize,
    /// The rest of the delivery batch being handed out.
    inbox: Mutex<std::vec::IntoIter<Delivery>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("local", &self.local).finish_non_exhaustive()
    }
}

impl Node {
    /// Starts a replica: builds its engine from `config` and runs it over `transport` on a new
    /// thread named after the replica.
    pub fn start(
        config: EndpointConfig,
        options: NodeOptions,
        transport: Box<dyn Transport>,
    ) -> Result<Self, NodeError> {
        let local = config.local;
        let max_payload = config.params.max_payload_bytes;
        let start = Instant::now();
        let endpoint = Endpoint::resuming(config, Time::ZERO, options.resume)?;
        let capacity = options.queue_capacity.max(1);
        let resume = options.resume;
        let shared = Arc::new(Shared {
            commands: ArrayQueue::new(capacity),
            local_acks: ArrayQueue::new(capacity),
            deliveries: ArrayQueue::new(capacity),
            command_bytes: Budget::default(),
            delivery_bytes: Budget::default(),
            delivery_msgs: Budget::default(),
            queue_capacity: capacity,
            queue_bytes: options.queue_bytes.max(1),
            stop: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            quack: AtomicU64::new(resume.transmit),
            received: AtomicU64::new(resume.receive),
            app: AppSignal::default(),
            stats: Mutex::new(NodeStats { replica: local.to_string(), ..NodeStats::default() }),
        });
        let waker = transport.waker();
        let mut driver = Driver {
            endpoint,
            transport,
            shared: shared.clone(),
            options,
            start,
            pending: None,
            outbox: VecDeque::new(),
            outbox_len: 0,
            outbox_bytes: 0,
            receiving: true,
            events: Vec::new(),
            stats: NodeStats { replica: local.to_string(), ..NodeStats::default() },
            last_stats: start,
            next_timeout_check: start,
        };
        let thread = std::thread::Builder::new()
            .name(format!("picsou-{local}"))
            .spawn(move || {
                let result = driver.run();
                driver.publish_stats();
                driver.shared.stopped.store(true, Ordering::SeqCst);
                driver.shared.app.notify();
                if let Err(e) = &result {
                    tracing::error!(replica = %local, "node stopped: {e}");
                }
                result
            })
            .map_err(NodeError::Spawn)?;
        let next_seq = Mutex::new(resume.transmit);
        Ok(Self {
            local,
            shared,
            waker,
            thread: Some(thread),
            next_seq,
            max_payload,
            inbox: Mutex::new(Vec::new().into_iter()),
        })
    }

    /// This replica.
    pub fn local(&self) -> ReplicaId {
        self.local
    }

    /// Submits message `seq` of this RSM's committed stream (0, 1, 2, …) with its commit
    /// proof (empty under crash fault tolerance). Blocks while the node is backlogged.
    pub fn submit(&self, seq: u64, payload: Bytes, proof: Bytes) -> Result<(), SubmitError> {
        self.submit_inner(seq, payload, proof, None)
    }

    /// Like [`Node::submit`], but gives up after `timeout` with [`SubmitError::Full`].
    pub fn submit_timeout(&self, seq: u64, payload: Bytes, proof: Bytes, timeout: Duration) -> Result<(), SubmitError> {
        self.submit_inner(seq, payload, proof, Some(timeout))
    }

    /// Like [`Node::submit`], but never blocks: [`SubmitError::Full`] when the queue is full.
    pub fn try_submit(&self, seq: u64, payload: Bytes, proof: Bytes) -> Result<(), SubmitError> {
        self.submit_inner(seq, payload, proof, Some(Duration::ZERO))
    }

    fn submit_inner(
        &self,
        seq: u64,
        payload: Bytes,
        proof: Bytes,
        timeout: Option<Duration>,
    ) -> Result<(), SubmitError> {
        let mut next = self.next_seq.lock().unwrap_or_else(PoisonError::into_inner);
        if seq != *next {
            return Err(SubmitError::OutOfOrder { expected: *next, got: seq });
        }
        if payload.len() > self.max_payload {
            return Err(SubmitError::PayloadTooLarge { len: payload.len(), max: self.max_payload });
        }
        self.push_command(Command::Submit { seq, payload, proof }, timeout).map_err(|(e, _)| e)?;
        *next += 1;
        drop(next);
        self.wake_node();
        Ok(())
    }

    /// Submits `messages` (payload and proof pairs) as seqs `first, first + 1, …` with one
    /// queue operation: for an RSM that commits messages in batches, far cheaper per message
    /// than [`Node::submit`]. Waits for room up to `timeout` (`None`: as long as it takes);
    /// a batch larger than the queue's byte capacity is taken once the queue is empty.
    ///
    /// On success `messages` is left empty. On any error nothing was submitted and
    /// `messages` is left as it was: a wrong `first`, a payload over the limit, a full queue
    /// at the timeout, or a stopped node.
    pub fn submit_batch(
        &self,
        first: u64,
        messages: &mut Vec<(Bytes, Bytes)>,
        timeout: Option<Duration>,
    ) -> Result<(), SubmitError> {
        let mut next = self.next_seq.lock().unwrap_or_else(PoisonError::into_inner);
        if first != *next {
            return Err(SubmitError::OutOfOrder { expected: *next, got: first });
        }
        if let Some((p, _)) = messages.iter().find(|(p, _)| p.len() > self.max_payload) {
            return Err(SubmitError::PayloadTooLarge { len: p.len(), max: self.max_payload });
        }
        if messages.is_empty() {
            return Ok(());
        }
        let count = messages.len() as u64;
        let bytes = messages.iter().map(|(p, q)| queued_bytes(p.len(), q.len())).sum();
        let items = std::mem::take(messages).into_iter();
        if let Err((e, cmd)) = self.push_command(Command::SubmitBatch { seq: first, items, bytes }, timeout) {
            if let Command::SubmitBatch { items, .. } = cmd {
                *messages = items.collect();
            }
            return Err(e);
        }
        *next += count;
        drop(next);
        self.wake_node();
        Ok(())
    }

    /// Application-managed dissemination: the local RSM now holds `seq` of the incoming stream
    /// (it arrived through the application's own channels), so this replica acks it.
    /// Never waits for the send window (only, briefly, for the node to take earlier ones).
    pub fn local_has(&self, seq: u64) -> Result<(), SubmitError> {
        let shared = &self.shared;
        loop {
            if shared.stopped.load(Ordering::SeqCst) {
                return Err(SubmitError::Stopped);
            }
            if shared.local_acks.push(seq).is_ok() {
                self.wake_node();
                return Ok(());
            }
            self.wake_node();
            shared.app.wait_until(None, || !shared.local_acks.is_full() || shared.stopped.load(Ordering::SeqCst));
        }
    }

    /// Queues a command for the node thread, waiting for room up to `timeout` (`None`: as
    /// long as it takes); [`SubmitError::Full`] then, with the command given back. The clock
    /// is read only once the queue is found full (the fast path reads no clock).
    fn push_command(&self, mut cmd: Command, timeout: Option<Duration>) -> Result<(), (SubmitError, Command)> {
        let mut deadline = None;
        let len = cmd.bytes();
        let shared = &self.shared;
        loop {
            if shared.stopped.load(Ordering::SeqCst) {
                return Err((SubmitError::Stopped, cmd));
            }
            if shared.command_bytes.admits(len, shared.queue_bytes) {
                // Counted before the push so that the node, which subtracts after popping,
                // never sees the count go below zero.
                shared.command_bytes.add(len);
                match shared.commands.push(cmd) {
                    Ok(()) => return Ok(()),
                    Err(back) => {
                        shared.command_bytes.sub(len);
                        cmd = back;
                    }
                }
            }
            self.wake_node();
            let deadline = *deadline.get_or_insert_with(|| timeout.map(|t| Instant::now() + t));
            let room = shared.app.wait_until(deadline, || {
                (!shared.commands.is_full() && shared.command_bytes.admits(len, shared.queue_bytes))
                    || shared.stopped.load(Ordering::SeqCst)
            });
            if !room {
                return Err((SubmitError::Full, cmd));
            }
        }
    }

    /// The next message of the incoming stream, waiting at most `timeout` (`None`: until one
    /// arrives or the node stops). `Ok(None)` on timeout; `Err(Stopped)` once the node has
    /// stopped and every delivery was taken.
    pub fn next_delivery(&self, timeout: Option<Duration>) -> Result<Option<Delivery>, SubmitError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let shared = &self.shared;
        let mut got = None;
        shared.app.wait_until(deadline, || {
            got = self.pop_delivery();
            got.is_some() || shared.stopped.load(Ordering::SeqCst)
        });
        if got.is_some() {
            self.wake_node_if_overflowing();
            return Ok(got);
        }
        match self.pop_delivery() {
            Some(d) => Ok(Some(d)),
            None if shared.stopped.load(Ordering::SeqCst) => Err(SubmitError::Stopped),
            None => Ok(None),
        }
    }

    /// Appends up to `max` ready deliveries to `out`, in order, without waiting; returns how
    /// many. Cheaper per message than [`Node::try_next_delivery`] in a loop (one lock for the
    /// lot).
    pub fn take_deliveries(&self, max: usize, out: &mut Vec<Delivery>) -> usize {
        let mut taken = 0;
        {
            let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
            while taken < max {
                if let Some(d) = inbox.next() {
                    out.push(d);
                    taken += 1;
                    continue;
                }
                if !self.refill_inbox(&mut inbox) {
                    break;
                }
            }
        }
        if taken > 0 {
            self.wake_node_if_overflowing();
        }
        taken
    }

    /// The next message of the incoming stream if one is ready.
    pub fn try_next_delivery(&self) -> Option<Delivery> {
        let d = self.pop_delivery();
        if d.is_some() {
            self.wake_node_if_overflowing();
        }
        d
    }

    fn pop_delivery(&self) -> Option<Delivery> {
        let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(d) = inbox.next() {
            return Some(d);
        }
        if !self.refill_inbox(&mut inbox) {
            return None;
        }
        inbox.next()
    }

    /// Moves the next delivery batch from the queue into the (empty) `inbox`; false if the
    /// queue is empty.
    fn refill_inbox(&self, inbox: &mut std::vec::IntoIter<Delivery>) -> bool {
        let Some(batch) = self.shared.deliveries.pop() else { return false };
        self.shared.delivery_msgs.sub(batch.items.len());
        self.shared.delivery_bytes.sub(batch.bytes);
        *inbox = batch.items.into_iter();
        true
    }

    /// The QUACK of this RSM's outgoing stream: every seq below it is held by at least one
    /// correct replica of the other RSM.
    pub fn quacked(&self) -> u64 {
        self.shared.quack.load(Ordering::SeqCst)
    }

    /// The cumulative ack of the incoming stream at this replica.
    pub fn received(&self) -> u64 {
        self.shared.received.load(Ordering::SeqCst)
    }

    /// The latest published statistics (refreshed every `stats_interval`).
    pub fn stats(&self) -> NodeStats {
        self.shared.stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// True once the node thread has stopped (after [`Node::shutdown`], or an error).
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Stops the node thread and returns its final statistics, or the error that stopped it.
    pub fn shutdown(mut self) -> Result<NodeStats, NodeError> {
        self.stop_and_join()?;
        Ok(self.stats())
    }

    fn stop_and_join(&mut self) -> Result<(), NodeError> {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        match self.thread.take() {
            Some(t) => match t.join() {
                Ok(r) => r,
                Err(p) => {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(NodeError::Panicked(msg))
                }
            },
            None => Ok(()),
        }
    }

    fn wake_node(&self) {
        // The fence orders the caller's push before the load (the node stores `sleeping` and
        // then re-checks the queues: one of the two sides sees the other). Loading first keeps
        // the flag's cache line shared while the node is awake: a swap per submission moved
        // it between cores on every message.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.shared.sleeping.load(Ordering::SeqCst) && self.shared.sleeping.swap(false, Ordering::SeqCst) {
            self.waker.wake();
        }
    }

    fn wake_node_if_overflowing(&self) {
        // The node keeps deliveries in its outbox while the queue is full; taking some makes
        // room for them.
        let shared = &self.shared;
        if shared.delivery_msgs.used() < shared.queue_capacity / 2
            && shared.delivery_bytes.used() < shared.queue_bytes / 2
        {
            self.wake_node();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// The node thread's state.
struct Driver {
    endpoint: Endpoint,
    transport: Box<dyn Transport>,
    shared: Arc<Shared>,
    options: NodeOptions,
    start: Instant,
    /// A submission the engine refused for backpressure, retried first.
    pending: Option<Command>,
    /// Deliveries not handed to the application yet, already in the batches they cross in
    /// (at most `MAX_DELIVERY_BATCH` each, the last one filling), so that publishing moves
    /// whole batches, not messages; while a queue's worth waits here the transport stops
    /// reading, so a slow application pushes back on its peers instead of growing memory.
    outbox: VecDeque<DeliveryBatch>,
    /// Deliveries and bytes held in `outbox`.
    outbox_len: usize,
    outbox_bytes: usize,
    receiving: bool,
    events: Vec<TransportEvent>,
    stats: NodeStats,
    last_stats: Instant,
    /// When a busy loop next asks the engine for its deadline.
    next_timeout_check: Instant,
}

/// How often a busy node loop checks the engine's deadline.
const TIMEOUT_CHECK_INTERVAL: Duration = Duration::from_micros(50);

impl Driver {
    fn now(&self) -> Time {
        self.time_at(Instant::now())
    }

    fn time_at(&self, instant: Instant) -> Time {
        Time::from_nanos(u64::try_from(instant.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX))
    }

    /// The node loop. The clock is read once per iteration, after polling the transport
    /// (with many small iterations, clock reads and deadline scans showed in profiles).
    fn run(&mut self) -> Result<(), NodeError> {
        let mut idle = false;
        let mut instant = Instant::now();
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            self.stats.loops += 1;
            // Sleep only when the previous iteration found nothing to do.
            // The engine's deadline is a scan over its peers, so it is computed once per sleep
            // (and reused when the sleep ends) and at most every TIMEOUT_CHECK_INTERVAL while
            // busy (its timers are milliseconds).
            let mut deadline = None;
            let timeout = if idle {
                deadline = self.endpoint.poll_timeout();
                self.sleep_timeout(instant, deadline)
            } else {
                Some(Duration::ZERO)
            };
            if timeout != Some(Duration::ZERO) {
                self.shared.sleeping.store(true, Ordering::SeqCst);
                // Re-check after announcing sleep: a submission that raced with the flag has
                // either been seen here or will wake the transport. Submissions waiting behind a
                // held-back one (`pending`: the engine's window is full) are not such a race:
                // only frames (acks) or the engine's timers can open the window, and both end
                // the sleep — polling for them instead would spin.
                if (!self.shared.commands.is_empty() && self.pending.is_none())
                    || !self.shared.local_acks.is_empty()
                    || self.shared.stop.load(Ordering::SeqCst)
                {
                    self.shared.sleeping.store(false, Ordering::SeqCst);
                    self.events.clear();
                    self.transport.poll(Some(Duration::ZERO), &mut self.events)?;
                } else {
                    self.events.clear();
                    self.transport.poll(timeout, &mut self.events)?;
                    self.shared.sleeping.store(false, Ordering::SeqCst);
                }
            } else {
                self.events.clear();
                self.transport.poll(Some(Duration::ZERO), &mut self.events)?;
            }
            instant = Instant::now();
            let now = self.time_at(instant);
            let mut work = !self.events.is_empty();
            let mut events = std::mem::take(&mut self.events);
            for ev in events.drain(..) {
                self.on_transport_event(now, ev);
            }
            self.events = events;
            work |= self.take_local_acks(now);
            work |= self.take_commands(now);
            if !idle && instant >= self.next_timeout_check {
                self.next_timeout_check = instant + TIMEOUT_CHECK_INTERVAL;
                deadline = self.endpoint.poll_timeout();
            }
            if deadline.is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
                work = true;
            }
            work |= self.drain_transmits(now);
            work |= self.drain_events();
            self.update_receiving();
            if instant.saturating_duration_since(self.last_stats) >= self.options.stats_interval {
                self.publish_stats();
            }
            idle = !work;
        }
    }

    /// How long the idle node may sleep: until the engine's next deadline (`instant`: the
    /// time of the iteration that found nothing to do).
    fn sleep_timeout(&self, instant: Instant, deadline: Option<Time>) -> Option<Duration> {
        let stats_due = self.options.stats_interval.saturating_sub(instant.saturating_duration_since(self.last_stats));
        let engine = deadline.map(|t| {
            let now = self.time_at(instant);
            if t <= now { Duration::ZERO } else { Duration::from_nanos(t.as_nanos() - now.as_nanos()) }
        });
        Some(engine.map_or(stats_due, |e| e.min(stats_due)))
    }

    fn on_transport_event(&mut self, now: Time, ev: TransportEvent) {
        match ev {
            TransportEvent::Frame { from, frame } => {
                self.endpoint.handle_frame(now, from, frame);
            }
            TransportEvent::PeerUp(peer) => {
                tracing::debug!(replica = %self.endpoint.local(), %peer, "peer up");
            }
            TransportEvent::PeerDown { peer, reason } => {
                self.stats.peer_downs += 1;
                tracing::info!(replica = %self.endpoint.local(), %peer, "peer down: {reason}");
            }
            TransportEvent::Writable(peer) => self.endpoint.set_blocked(peer, false),
            TransportEvent::Rejected { source, claimed, reason } => {
                self.stats.misbehaviors += 1;
                let claimed = claimed.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
                tracing::warn!(replica = %self.endpoint.local(), %source, %claimed, "connection rejected: {reason}");
            }
        }
    }

    /// Feeds `Node::local_has` acks to the engine; true if any was taken.
    fn take_local_acks(&mut self, now: Time) -> bool {
        let mut any = false;
        while let Some(seq) = self.shared.local_acks.pop() {
            any = true;
            if let Err(e) = self.endpoint.local_has(now, seq) {
                tracing::warn!(replica = %self.endpoint.local(), "local_has({seq}) refused: {e}");
            }
        }
        if any {
            self.shared.app.notify();
        }
        any
    }

    /// Feeds application commands to the engine; true if any was taken.
    fn take_commands(&mut self, mut now: Time) -> bool {
        let mut taken = 0usize;
        let budget = self.options.batch_messages.max(1);
        let linger_until = (!self.options.batch_linger.is_zero()).then(|| Instant::now() + self.options.batch_linger);
        loop {
            while taken < budget {
                let Some(cmd) = self.pending.take().or_else(|| self.pop_command()) else { break };
                match cmd {
                    Command::Submit { seq, payload, proof } => {
                        if self.endpoint.submit_capacity() == 0 {
                            self.pending = Some(Command::Submit { seq, payload, proof });
                            break;
                        }
                        self.transmit(now, seq, payload, proof);
                    }
                    Command::SubmitBatch { mut seq, mut items, bytes } => {
                        while taken < budget && self.endpoint.submit_capacity() > 0 {
                            let Some((payload, proof)) = items.next() else { break };
                            self.transmit(now, seq, payload, proof);
                            seq += 1;
                            taken += 1;
                        }
                        if items.len() > 0 {
                            // The rest waits for the engine's window or the next iteration.
                            self.pending = Some(Command::SubmitBatch { seq, items, bytes });
                            break;
                        }
                        continue;
                    }
                }
                taken += 1;
            }
            let Some(until) = linger_until else { break };
            if taken >= budget || self.pending.is_some() || Instant::now() >= until {
                break;
            }
            std::thread::yield_now();
            now = self.now();
        }
        if taken > 0 {
            self.shared.app.notify();
        }
        taken > 0
    }

    /// Hands one submitted message to the engine, which has room for it.
    fn transmit(&mut self, now: Time, seq: u64, payload: Bytes, proof: Bytes) {
        match self.endpoint.submit(now, seq, payload, proof) {
            Ok(()) => self.stats.transmitted += 1,
            // Order and size were checked on submit; anything else is a bug in the checks:
            // report it rather than lose the message silently.
            Err(e) => tracing::error!(replica = %self.endpoint.local(), "transmit refused: {e}"),
        }
    }

    fn pop_command(&self) -> Option<Command> {
        let cmd = self.shared.commands.pop()?;
        self.shared.command_bytes.sub(cmd.bytes());
        Some(cmd)
    }

    /// Moves the engine's frames to the transport; true if any.
    fn drain_transmits(&mut self, now: Time) -> bool {
        let mut any = false;
        while let Some(t) = self.endpoint.poll_transmit(now) {
            any = true;
            if self.transport.send(t.to, t.frame) == SendStatus::Full {
                self.endpoint.set_blocked(t.to, true);
            }
        }
        if any {
            self.transport.flush();
        }
        any
    }

    /// Publishes the engine's events; true if any.
    fn drain_events(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.endpoint.poll_event() {
            any = true;
            match ev {
                Event::Deliver { seq, payload } => self.deliver(Delivery { seq, payload, proof: None }),
                Event::Received { seq, payload, proof } => self.deliver(Delivery { seq, payload, proof: Some(proof) }),
                Event::Quacked { up_to } => self.shared.quack.store(up_to, Ordering::SeqCst),
                Event::Resent { .. } => {}
                Event::PeerMisbehaved { peer, reason } => {
                    self.stats.misbehaviors += 1;
                    tracing::warn!(replica = %self.endpoint.local(), %peer, "peer misbehaved: {reason}");
                }
            }
        }
        any |= self.publish();
        self.shared.received.store(self.endpoint.received(), Ordering::SeqCst);
        if any {
            self.shared.app.notify();
        }
        any
    }

    fn deliver(&mut self, d: Delivery) {
        self.stats.delivered += 1;
        let len = d.bytes();
        if self.outbox.back().is_none_or(|b| b.items.len() >= MAX_DELIVERY_BATCH) {
            // Grown as filled: a batch published with few deliveries must not hold room for
            // a thousand while it waits in the queue.
            self.outbox.push_back(DeliveryBatch { items: Vec::new(), bytes: 0 });
        }
        if let Some(batch) = self.outbox.back_mut() {
            batch.items.push(d);
            batch.bytes += len;
        }
        self.outbox_len += 1;
        self.outbox_bytes += len;
    }

    /// Hands the waiting deliveries to the application's queue in batches, as far as it has
    /// room (messages and bytes; an empty queue always takes one); true if any.
    fn publish(&mut self) -> bool {
        let shared = &self.shared;
        let mut any = false;
        while let Some(front) = self.outbox.front_mut() {
            let used_msgs = shared.delivery_msgs.used();
            let used_bytes = shared.delivery_bytes.used();
            let room_msgs = shared.queue_capacity.saturating_sub(used_msgs);
            let room_bytes = shared.queue_bytes.saturating_sub(used_bytes);
            let batch = if front.items.len() <= room_msgs && front.bytes <= room_bytes {
                // The usual case: the whole batch, as it is.
                std::mem::replace(front, DeliveryBatch { items: Vec::new(), bytes: 0 })
            } else {
                let mut take = 0;
                let mut bytes = 0;
                for d in &front.items {
                    let len = d.bytes();
                    // An empty queue takes one delivery, however large.
                    let fits = bytes + len <= room_bytes || (take == 0 && used_msgs == 0);
                    if take == room_msgs || !fits {
                        break;
                    }
                    take += 1;
                    bytes += len;
                }
                if take == 0 {
                    break;
                }
                let rest = front.items.split_off(take);
                front.bytes -= bytes;
                DeliveryBatch { items: std::mem::replace(&mut front.items, rest), bytes }
            };
            let (n, bytes) = (batch.items.len(), batch.bytes);
            if front.items.is_empty() {
                self.outbox.pop_front();
            }
            shared.delivery_msgs.add(n);
            shared.delivery_bytes.add(bytes);
            if let Err(batch) = shared.deliveries.push(batch) {
                shared.delivery_msgs.sub(n);
                shared.delivery_bytes.sub(bytes);
                self.outbox.push_front(batch);
                break;
            }
            self.outbox_len -= n;
            self.outbox_bytes -= bytes;
            any = true;
        }
        any
    }

    /// Pauses reading while a queue's worth of deliveries waits in the outbox (by count or
    /// bytes).
    fn update_receiving(&mut self) {
        let want =
            self.outbox_len < self.options.queue_capacity.max(1) && self.outbox_bytes < self.options.queue_bytes.max(1);
        if want != self.receiving {
            self.receiving = want;
            self.transport.set_receiving(want);
        }
    }

    fn publish_stats(&mut self) {
        self.last_stats = Instant::now();
        self.stats.engine = self.endpoint.stats();
        self.stats.transport = self.transport.stats();
        *self.shared.stats.lock().unwrap_or_else(PoisonError::into_inner) = self.stats.clone();
    }
}
