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
//!
//! Three parts: this module (the application's handle and its types), [`queues`] (what the
//! handle and the node thread share) and [`driver`] (the node thread's loop).

mod driver;
mod log_limit;
mod queues;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use picsou_core::{ConfigError, Endpoint, EndpointConfig, EndpointStats, ReplicaId, StreamStart, Time};

pub use self::driver::panic_message;
pub use self::queues::QUEUED_MESSAGE_BYTES;
use self::queues::{Command, Shared, queued_bytes};
use crate::transport::{Transport, TransportError, TransportStats, Wake};

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
    /// The node has stopped (it was shut down).
    #[error("node stopped")]
    Stopped,
    /// The node's thread failed: its transport failed, or it panicked (a bug). Every call
    /// that would wait for the node returns this instead of waiting forever;
    /// [`Node::shutdown`] returns the full error.
    #[error("node failed: {reason}")]
    NodeFailed {
        /// What stopped it.
        reason: String,
    },
    /// This replica fell further behind than its peers retain: repairs can no longer bring it
    /// back, and no message from `next` on will be delivered. Every delivery before `next` was
    /// handed out first. Install a snapshot of the RSM's state taken at some seq `s >= next`
    /// (a peer's checkpoint) and start a new node resuming at `receive = s`
    /// ([`NodeOptions::resume`]).
    #[error(
        "state transfer needed: this replica lacks seq {next} and its peers (at {peers_at}) no longer retain it; \
         install a peer's snapshot and resume after it"
    )]
    StateTransferNeeded {
        /// The first seq this replica lacks.
        next: u64,
        /// The lowest cumulative ack among the peers that are too far ahead.
        peers_at: u64,
    },
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
    /// The replica's keys cannot be loaded (identity file missing, unreadable, not private, or
    /// not the identity the deployment lists).
    #[error(transparent)]
    Keys(#[from] crate::deployment::DeploymentError),
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
        // The engine's clock counts from the Unix epoch, not from this start: the timestamps a
        // replica puts in its frames must keep growing across a restart, or its peers (which
        // echo only the newest timestamp they saw) would keep echoing the previous
        // incarnation's, and the restarted replica would get no round-trip samples — and a
        // resend timeout stuck at its initial guess — until its new clock overtook the old one.
        let epoch = Time::from_nanos(crate::load::unix_nanos());
        let endpoint = Endpoint::resuming(config, epoch, options.resume)?;
        let capacity = options.queue_capacity.max(1);
        let resume = options.resume;
        let shared = Arc::new(Shared::new(local, capacity, options.queue_bytes.max(1), resume));
        let waker = transport.waker();
        let thread = driver::spawn(local, endpoint, transport, shared.clone(), options, (start, epoch))
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
                return Err(shared.stopped_error());
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
                return Err((shared.stopped_error(), cmd));
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
            got.is_some() || shared.stopped.load(Ordering::SeqCst) || shared.state_transfer_set.load(Ordering::SeqCst)
        });
        if got.is_some() {
            self.wake_node_if_overflowing();
            return Ok(got);
        }
        match self.pop_delivery() {
            Some(d) => Ok(Some(d)),
            None => match self.state_transfer_needed() {
                Some(e) => Err(e),
                None if shared.stopped.load(Ordering::SeqCst) => Err(shared.stopped_error()),
                None => Ok(None),
            },
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

    /// [`SubmitError::StateTransferNeeded`] once this replica fell beyond its peers'
    /// retention (every delivery before the gap was queued first; [`Node::next_delivery`]
    /// returns it once they are taken); `None` otherwise.
    pub fn state_transfer_needed(&self) -> Option<SubmitError> {
        if !self.shared.state_transfer_set.load(Ordering::SeqCst) {
            return None;
        }
        let st = *self.shared.state_transfer.lock().unwrap_or_else(PoisonError::into_inner);
        st.map(|(next, peers_at)| SubmitError::StateTransferNeeded { next, peers_at })
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
                Err(p) => Err(NodeError::Panicked(panic_message(p.as_ref()))),
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
