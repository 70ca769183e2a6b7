//! The node thread: the loop that feeds frames, timeouts and submissions into the engine,
//! drains its frames into the transport and publishes deliveries (see the module
//! documentation of [`crate::node`]).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use picsou_core::{Endpoint, Event, ReplicaId, Time};

use super::log_limit::LogLimit;
use super::queues::{Command, DeliveryBatch, MAX_DELIVERY_BATCH, Shared};
use super::{Delivery, NodeError, NodeOptions, NodeStats};
use crate::transport::{SendStatus, Transport, TransportError, TransportEvent};

/// Starts the node thread of `local`, named after it; it runs until `shared.stop` or an error.
pub(super) fn spawn(
    local: ReplicaId,
    endpoint: Endpoint,
    transport: Box<dyn Transport>,
    shared: Arc<Shared>,
    options: NodeOptions,
    (start, epoch): (Instant, Time),
) -> std::io::Result<JoinHandle<Result<(), NodeError>>> {
    let mut driver = Driver {
        endpoint,
        transport,
        shared,
        options,
        start,
        epoch,
        pending: None,
        outbox: VecDeque::new(),
        outbox_len: 0,
        outbox_bytes: 0,
        receiving: true,
        state_transfer: None,
        down: Vec::new(),
        events: Vec::new(),
        stats: NodeStats { replica: local.to_string(), ..NodeStats::default() },
        last_stats: start,
        misbehavior_log: LogLimit::default(),
        rejection_log: LogLimit::default(),
    };
    if driver.transport.has_sessions() {
        // Nothing leaves for a peer before our connection's session with it (see
        // `Transport::has_sessions`): every peer is held as if down until its first `PeerUp`.
        for peer in driver.endpoint.linked_replicas() {
            driver.endpoint.set_blocked(peer, true);
            driver.down.push(peer);
        }
    }
    std::thread::Builder::new().name(format!("picsou-{local}")).spawn(move || {
        let shared = driver.shared.clone();
        // A panic must not leave the node looking alive: callers waiting on it would wait
        // forever. It is caught here, recorded as the node's failure, and returned as
        // `NodeError::Panicked` by `Node::shutdown`.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let result = driver.run();
            driver.publish_stats();
            result
        }))
        .unwrap_or_else(|panic| Err(NodeError::Panicked(panic_message(panic.as_ref()))));
        let cancelled = matches!(result, Err(NodeError::Transport(TransportError::Cancelled)));
        if let Err(e) = &result
            && !cancelled
        {
            *shared.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
        }
        shared.stopped.store(true, Ordering::SeqCst);
        shared.app.notify();
        match &result {
            Ok(()) => {}
            // The owner cancelled the transport on purpose (Ctrl-C in Python): not a failure.
            Err(_) if cancelled => tracing::debug!(replica = %local, "node cancelled"),
            Err(e) => tracing::error!(replica = %local, "node stopped: {e}"),
        }
        result
    })
}

/// The text of a caught panic's payload (`&str` or `String`), for the node thread and the
/// bindings' API boundaries.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_string())
}

/// The node thread's state.
struct Driver {
    endpoint: Endpoint,
    transport: Box<dyn Transport>,
    shared: Arc<Shared>,
    options: NodeOptions,
    /// When the node started, on the monotonic clock ...
    start: Instant,
    /// ... and the engine time it was then (Unix nanoseconds; see `Node::start`).
    epoch: Time,
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
    /// The engine signalled [`Event::StateTransferNeeded`]: `(next, peers_at)`, published to
    /// the application once the outbox before it is handed over.
    state_transfer: Option<(u64, u64)>,
    /// Peers whose outgoing link is down (`PeerDown` and no `PeerUp` since): blocked in the
    /// engine, so that what it has for them waits there instead of being dropped by the
    /// transport (see [`Driver::on_transport_event`]).
    down: Vec<ReplicaId>,
    events: Vec<TransportEvent>,
    stats: NodeStats,
    last_stats: Instant,
    /// Rate limits of the warnings about misbehaving peers and rejected connections.
    misbehavior_log: LogLimit,
    rejection_log: LogLimit,
}

impl Driver {
    fn now(&self) -> Time {
        self.time_at(Instant::now())
    }

    fn time_at(&self, instant: Instant) -> Time {
        let since = u64::try_from(instant.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        Time::from_nanos(self.epoch.as_nanos().saturating_add(since))
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
            // Sleep only when the previous iteration found nothing to do. The engine's deadline
            // is O(1) to ask for (a timer table), so it is asked every iteration.
            let timeout =
                if idle { self.sleep_timeout(instant, self.endpoint.poll_timeout()) } else { Some(Duration::ZERO) };
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
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
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
            TransportEvent::Session { peer, direction, session } => {
                tracing::debug!(replica = %self.endpoint.local(), %peer, ?direction, "session");
                self.endpoint.set_session(peer, direction, &session);
            }
            // A link that is down drops what it is given, while the engine takes it as sent: a
            // restarted peer that talks to us before our redial lands lost every repair sent
            // meanwhile, and each repair waits twice as long as the previous before it is
            // sent again, so the peer stalled until its peers trimmed what it lacked (and the
            // senders, pacing to it, stalled with it). Blocked instead, the engine keeps the
            // peer's records (bounded per peer) and builds its frames once the link is back.
            TransportEvent::PeerUp(peer) => {
                tracing::debug!(replica = %self.endpoint.local(), %peer, "peer up");
                self.down.retain(|p| *p != peer);
                self.endpoint.set_blocked(peer, false);
            }
            TransportEvent::PeerDown { peer, reason } => {
                self.stats.peer_downs += 1;
                tracing::info!(replica = %self.endpoint.local(), %peer, "peer down: {reason}");
                if !self.down.contains(&peer) {
                    self.down.push(peer);
                }
                self.endpoint.set_blocked(peer, true);
            }
            TransportEvent::Writable(peer) => {
                if !self.down.contains(&peer) {
                    self.endpoint.set_blocked(peer, false);
                }
            }
            TransportEvent::Rejected { source, claimed, reason } => {
                self.stats.misbehaviors += 1;
                if let Some(left_out) = self.rejection_log.allow(Instant::now()) {
                    let claimed = claimed.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
                    tracing::warn!(
                        replica = %self.endpoint.local(), %source, %claimed, left_out,
                        "connection rejected: {reason} (at most one such warning per second; left out since the last: {left_out})"
                    );
                }
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
                Event::StateTransferNeeded { next, peers_at } => {
                    tracing::warn!(
                        replica = %self.endpoint.local(),
                        "fell beyond the peers' retention (lacks seq {next}, peers at {peers_at}): needs a state transfer"
                    );
                    self.state_transfer = Some((next, peers_at));
                }
                Event::PeerMisbehaved { peer, reason } => {
                    self.stats.misbehaviors += 1;
                    if reason.proves_fault()
                        && let Some(d) = self.endpoint.quarantined_for(peer)
                    {
                        self.transport.disconnect(peer, d);
                    }
                    if let Some(left_out) = self.misbehavior_log.allow(Instant::now()) {
                        tracing::warn!(
                            replica = %self.endpoint.local(), %peer, left_out,
                            "peer misbehaved: {reason} (at most one such warning per second; left out since the last: {left_out})"
                        );
                    }
                }
            }
        }
        any |= self.publish();
        if self.outbox.is_empty()
            && let Some(st) = self.state_transfer.take()
        {
            // Every delivery before the gap is in the application's queue: the application
            // sees them first, then the error.
            *self.shared.state_transfer.lock().unwrap_or_else(PoisonError::into_inner) = Some(st);
            self.shared.state_transfer_set.store(true, Ordering::SeqCst);
            any = true;
        }
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
