//! # picsou-sim
//!
//! A deterministic discrete-event simulator of two RSMs running the engine, with a C3B checker.
//!
//! RSM 0 (replicas `s0`, `s1`, …) sends a stream of `messages` messages to RSM 1 (`r0`, `r1`,
//! …). Every replica runs a real [`Endpoint`] (faulty ones with a Byzantine
//! [`Behavior`](picsou_core::adversary::Behavior) switched on); the simulator plays the network, the
//! clocks and RSM 0's consensus, and checks every event against C3B.
//!
//! ```
//! use picsou_sim::{run, Scenario};
//! # fn main() -> Result<(), picsou_core::ConfigError> {
//! let scenario = Scenario { messages: 200, ..Scenario::default() };
//! let report = run(&scenario)?;
//! assert!(report.c3b_ok, "{:?}", report.violations);
//! assert_eq!(report.delivered, 200);
//! # Ok(()) }
//! ```
//!
//! Modules, one concept each:
//! - [`scenario`]: what to run (TOML-loadable, defaulted, validated into a plan);
//! - [`network`]: the NIC and link timing model;
//! - [`checker`]: the C3B properties, checked on every event;
//! - [`payload`]: deterministic message contents, shared across sender replicas;
//! - [`proofs`]: commit proofs and MAC keys, derived from the seed;
//! - [`rng`]: the seeded generator behind every random draw;
//! - [`report`]: what a run measured.
//!
//! The crate root is the runner: a priority queue of compact events ordered by
//! (virtual time, insertion counter), so ties resolve in a fixed order and the same seed always
//! gives the same run. After any input to an endpoint the runner drains its events into the
//! checker, feeds sender replicas new messages while `submit_capacity()` allows (backpressure),
//! polls frames while the replica's NIC backlog is below a socket-buffer-like limit (so acks
//! stay fresh instead of queueing behind megabytes of data), and re-arms its one timer.

pub mod checker;
pub mod network;
pub mod overrides;
pub mod payload;
pub mod proofs;
pub mod report;
pub mod rng;
pub mod scenario;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use picsou_core::config::{ConfigError, EndpointConfig, FaultModel, Strategy};
use picsou_core::endpoint::{Endpoint, Transmit};
use picsou_core::ids::ReplicaId;
use picsou_core::keys::LinkKeys;
use picsou_core::schedule::Schedule;
use picsou_core::time::Time;

use self::checker::{Checker, ResendBound};
use self::network::{Network, serialization_ns};
use self::payload::{PayloadSpec, PayloadWindow};
use self::proofs::{ProofIssuer, mac_secret};
use self::report::{NOT_DONE, auto_interval_ns, quantile_ms, recovery_ms, throughput, timeline};
use self::rng::SimRng;

pub use self::overrides::ScenarioOverrides;
pub use self::report::{EngineTotals, SimReport, Timeline};
pub use self::scenario::{Partition, Resolved, Scenario};

/// Runs a scenario to completion (every correct receiver delivered every message), to its
/// virtual time limit, or until it has made no progress for a long time (see [`stall_limit`]).
/// Fails only if the scenario is invalid; protocol failures are reported in
/// [`SimReport::violations`].
pub fn run(scenario: &Scenario) -> Result<SimReport, ConfigError> {
    let resolved = scenario.resolve()?;
    let mut sim = Sim::new(scenario, resolved)?;
    sim.run();
    Ok(sim.into_report())
}

/// How long a run may go without any delivery at a correct receiver (after the last scheduled
/// partition heal or crash) before it stops early: at least 30 s of virtual time, ten maximal
/// resend timeouts, and fifty times the slowest serialization of one message. Correct runs never
/// come close; a stuck run would otherwise spin on keep-alive acks up to the time limit.
pub fn stall_limit(scenario: &Scenario) -> u64 {
    let slowest = [Some(scenario.nic_mbps), scenario.cross_link_mbps]
        .into_iter()
        .flatten()
        .map(network::mbps_to_ps_per_byte)
        .max()
        .unwrap_or(0);
    let rto = u64::try_from(scenario.params.max_rto.as_nanos()).unwrap_or(u64::MAX);
    30_000_000_000u64.max(rto.saturating_mul(10)).max(serialization_ns(scenario.size, slowest).saturating_mul(50))
}

/// What happens at a point of virtual time. Kept small: the queue holds one per frame in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    /// Frame `slot` reaches its destination's NIC.
    Arrive(u32),
    /// Frame `slot` has been received and is handed to its destination's endpoint.
    Handle(u32),
    /// Replica `r`'s timer (ignored unless it is the replica's pending timer).
    Timer(u32),
    /// Replica `r`'s NIC backlog has drained below the send-buffer limit.
    TxReady(u32),
}

/// A queued event; ordered by time, then by insertion order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    time: u64,
    order: u64,
    what: What,
}

/// A frame between `Arrive` and `Handle`.
#[derive(Debug)]
struct InFlight {
    from: u32,
    to: u32,
    frame: Bytes,
}

/// The state of one run.
struct Sim<'a> {
    scenario: &'a Scenario,
    resolved: Resolved,
    n_s: usize,
    ids: Vec<ReplicaId>,
    endpoints: Vec<Endpoint>,
    net: Network,
    now: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    order: u64,
    slots: Vec<Option<InFlight>>,
    free_slots: Vec<u32>,
    /// Per replica: time of its pending timer event, if any.
    timer_at: Vec<Option<u64>>,
    /// Per replica: whether a `TxReady` event is pending.
    tx_ready: Vec<bool>,
    /// Poll frames only while the NIC backlog is at most this long (ns).
    send_buffer_ns: u64,
    /// Per directed link (`from * n + to`): bytes in flight, the limit beyond which the
    /// sender is told the peer is blocked, and whether it is.
    link_inflight: Vec<u64>,
    link_limit: Vec<u64>,
    link_blocked: Vec<bool>,
    payloads: PayloadSpec,
    window: PayloadWindow,
    issuer: ProofIssuer,
    checker: Checker,
    correct_receivers: u16,
    /// Per message: first transmit by a correct sender (`NOT_DONE` = not yet).
    first_tx: Vec<u64>,
    /// Per message: deliveries at correct receivers so far.
    deliveries: Vec<u16>,
    /// Per message: when the last correct receiver delivered it.
    completion: Vec<u64>,
    completed: u64,
    last_progress: u64,
    /// No early stop before this time (last partition heal or crash).
    quiet_from: u64,
    stall_ns: u64,
    stalled: bool,
    stuck_timer_reported: Vec<bool>,
    frames: u64,
    wire_bytes: u64,
    cross_bytes: u64,
}

impl<'a> Sim<'a> {
    fn new(scenario: &'a Scenario, resolved: Resolved) -> Result<Self, ConfigError> {
        let membership = Arc::new(resolved.membership.clone());
        let n_s = resolved.sender_n();
        let n = resolved.replicas.len();
        let (issuer, verifier) = ProofIssuer::new(&resolved, scenario.real_signatures, scenario.seed);
        let secret = mac_secret(scenario.seed);
        let mut endpoints = Vec::with_capacity(n);
        for plan in &resolved.replicas {
            let cfg = EndpointConfig {
                membership: membership.clone(),
                local: plan.id,
                strategy: scenario.strategy,
                params: scenario.params.clone(),
                keys: LinkKeys::derived(plan.id, secret),
                verifier: verifier.clone(),
                behavior: plan.behavior,
            };
            endpoints.push(Endpoint::new(cfg, Time::ZERO)?);
        }
        let bound = if scenario.strategy == Strategy::Picsou {
            let (s, r) = (&resolved.membership.rsms[0], &resolved.membership.rsms[1]);
            let schedule = Schedule::new(&s.stakes(), s.f, &r.stakes(), r.f)
                .map_err(|e| ConfigError::Invalid { field: "sender_stake".into(), reason: e.to_string() })?;
            ResendBound::Schedule(schedule)
        } else {
            ResendBound::Unchecked
        };
        let payloads = PayloadSpec::new(scenario.size);
        let checker = Checker::new(resolved.replicas.clone(), scenario.messages, payloads.clone(), bound);
        let crash_at: Vec<u64> = resolved.replicas.iter().map(|p| p.crash_at.unwrap_or(u64::MAX)).collect();
        let sides = resolved.replicas.iter().map(|p| p.id.rsm.0).collect();
        let net = Network::new(resolved.net.clone(), sides, crash_at.clone(), SimRng::derive(scenario.seed, "network"));
        let buffer_bytes = 2 * scenario.params.max_frame_bytes.max(scenario.size.saturating_add(1024));
        let send_buffer_ns = net.nic_time(buffer_bytes);
        // A link's window: a send buffer plus twice its bandwidth-delay product.
        let n = resolved.replicas.len();
        let link_limit =
            (0..n * n).map(|l| (buffer_bytes as u64).saturating_add(2 * net.bdp_bytes(l / n, l % n))).collect();
        let quiet_from = resolved
            .net
            .partitions
            .iter()
            .map(|&(_, e)| e)
            .chain(crash_at.iter().copied().filter(|&c| c != u64::MAX))
            .max()
            .unwrap_or(0);
        let correct_receivers = resolved.replicas.iter().filter(|p| p.id.rsm.0 == 1 && p.is_correct()).count() as u16;
        let m = scenario.messages as usize;
        Ok(Self {
            scenario,
            ids: resolved.replicas.iter().map(|p| p.id).collect(),
            resolved,
            n_s,
            endpoints,
            net,
            now: 0,
            queue: BinaryHeap::new(),
            order: 0,
            slots: Vec::new(),
            free_slots: Vec::new(),
            timer_at: vec![None; n],
            tx_ready: vec![false; n],
            send_buffer_ns,
            link_inflight: vec![0; n * n],
            link_limit,
            link_blocked: vec![false; n * n],
            payloads,
            window: PayloadWindow::new(),
            issuer,
            checker,
            correct_receivers,
            first_tx: vec![NOT_DONE; m],
            deliveries: vec![0; m],
            completion: vec![NOT_DONE; m],
            completed: 0,
            last_progress: 0,
            quiet_from,
            stall_ns: stall_limit(scenario),
            stalled: false,
            stuck_timer_reported: vec![false; n],
            frames: 0,
            wire_bytes: 0,
            cross_bytes: 0,
        })
    }

    fn schedule(&mut self, time: u64, what: What) {
        self.order += 1;
        self.queue.push(Reverse(Scheduled { time, order: self.order, what }));
    }

    fn crashed(&self, r: usize) -> bool {
        self.net.is_crashed(r, self.now)
    }

    fn done(&self) -> bool {
        self.completed == self.scenario.messages
    }

    /// The event loop.
    fn run(&mut self) {
        for r in 0..self.endpoints.len() {
            self.service(r, false);
        }
        let limit = self.resolved.max_time_ns;
        while !self.done() {
            let Some(Reverse(ev)) = self.queue.pop() else {
                // Nothing can ever happen again.
                self.now = limit;
                break;
            };
            if ev.time > limit {
                self.now = limit;
                break;
            }
            let progress_clock = self.last_progress.max(self.quiet_from);
            if ev.time > progress_clock.saturating_add(self.stall_ns) {
                self.now = progress_clock.saturating_add(self.stall_ns);
                self.stalled = true;
                break;
            }
            self.now = ev.time;
            match ev.what {
                What::Arrive(slot) => self.arrive(slot),
                What::Handle(slot) => self.handle(slot),
                What::Timer(r) => self.timer(r as usize, ev.time),
                What::TxReady(r) => {
                    let r = r as usize;
                    self.tx_ready[r] = false;
                    self.service(r, false);
                }
            }
        }
    }

    fn arrive(&mut self, slot: u32) {
        let f = self.slots[slot as usize].as_ref().expect("frame in flight");
        let (from, to, len) = (f.from as usize, f.to as usize, f.frame.len());
        match self.net.receive(self.now, from, to, len) {
            Some(at) => self.schedule(at, What::Handle(slot)),
            None => self.free(slot),
        }
    }

    fn handle(&mut self, slot: u32) {
        let f = self.slots[slot as usize].take().expect("frame in flight");
        self.free_slots.push(slot);
        self.landed(f.from as usize, f.to as usize, f.frame.len());
        let to = f.to as usize;
        if self.crashed(to) {
            return;
        }
        let from = self.ids[f.from as usize];
        self.endpoints[to].handle_frame(Time(self.now), from, f.frame);
        self.service(to, false);
    }

    fn timer(&mut self, r: usize, at: u64) {
        if self.timer_at[r] != Some(at) {
            return; // superseded by an earlier timer
        }
        self.timer_at[r] = None;
        if self.crashed(r) {
            return;
        }
        let now = Time(self.now);
        let due = self.endpoints[r].poll_timeout().is_some_and(|t| t <= now);
        if due {
            self.endpoints[r].handle_timeout(now);
        }
        self.service(r, due);
    }

    fn free(&mut self, slot: u32) {
        if let Some(f) = self.slots[slot as usize].take() {
            self.landed(f.from as usize, f.to as usize, f.frame.len());
        }
        self.free_slots.push(slot);
    }

    /// A frame left the link `from → to` (handled or dropped): unblock the link once at most
    /// half its limit is in flight.
    fn landed(&mut self, from: usize, to: usize, len: usize) {
        let link = from * self.ids.len() + to;
        self.link_inflight[link] -= len as u64;
        if self.link_blocked[link] && self.link_inflight[link] <= self.link_limit[link] / 2 {
            self.link_blocked[link] = false;
            if !self.crashed(from) {
                self.endpoints[from].set_blocked(self.ids[to], false);
                self.service(from, false);
            }
        }
    }

    /// After any input to replica `r`: drain events, feed messages, send frames, re-arm timer.
    /// `after_timeout` is set when the input was `handle_timeout`.
    fn service(&mut self, r: usize, after_timeout: bool) {
        if self.crashed(r) {
            return;
        }
        self.drain_events(r);
        if r < self.n_s {
            self.feed(r);
        }
        self.pump(r);
        self.drain_events(r);
        if r >= self.n_s {
            let received = self.endpoints[r].received();
            self.checker.observe_received(r, received);
        }
        self.rearm(r, after_timeout);
    }

    fn drain_events(&mut self, r: usize) {
        while let Some(ev) = self.endpoints[r].poll_event() {
            if let Some(seq) = self.checker.on_event(r, &ev) {
                self.delivered(seq);
            }
        }
    }

    /// A correct receiver delivered `seq` (validly, in order).
    fn delivered(&mut self, seq: u64) {
        self.last_progress = self.now;
        let i = seq as usize;
        self.deliveries[i] += 1;
        if self.deliveries[i] == self.correct_receivers {
            self.completion[i] = self.now;
            self.completed += 1;
        }
    }

    /// Hands sender replica `r` every message it has room for.
    fn feed(&mut self, r: usize) {
        let Self { endpoints, window, payloads, issuer, checker, first_tx, resolved, scenario, now, .. } = self;
        let ep = &mut endpoints[r];
        let start = ep.next_submit();
        let end = scenario.messages.min(start.saturating_add(ep.submit_capacity()));
        if start >= end {
            return;
        }
        let correct = resolved.replicas[r].is_correct();
        for seq in start..end {
            // Byte backpressure can close the window within the batch.
            if seq > start && ep.submit_capacity() == 0 {
                break;
            }
            let (payload, proof) = window.get(seq, |s| {
                let p = payloads.make(s);
                let proof = issuer.issue(s, &p);
                (p, proof)
            });
            if let Err(e) = ep.submit(Time(*now), seq, payload, proof) {
                if resolved.replicas[r].is_honest() {
                    checker.report_violation(format!(
                        "{} refused seq {seq} although submit_capacity allowed it: {e}",
                        resolved.replicas[r].id
                    ));
                }
                break;
            }
            if correct && first_tx[seq as usize] == NOT_DONE {
                first_tx[seq as usize] = *now;
            }
        }
        // Forget payloads every live sender replica has taken.
        let now = *now;
        let slowest = (0..self.n_s)
            .filter(|&s| !self.net.is_crashed(s, now))
            .map(|s| self.endpoints[s].next_submit())
            .min()
            .unwrap_or(u64::MAX);
        self.window.release_below(slowest);
    }

    /// Sends replica `r`'s frames while its NIC backlog allows.
    fn pump(&mut self, r: usize) {
        loop {
            let busy = self.net.busy_until(r);
            if busy > self.now.saturating_add(self.send_buffer_ns) {
                if !self.tx_ready[r] {
                    self.tx_ready[r] = true;
                    self.schedule(busy - self.send_buffer_ns, What::TxReady(r as u32));
                }
                return;
            }
            match self.endpoints[r].poll_transmit(Time(self.now)) {
                Some(t) => self.send(r, t),
                None => return,
            }
        }
    }

    fn send(&mut self, r: usize, t: Transmit) {
        let len = t.frame.len();
        self.frames += 1;
        self.wire_bytes += len as u64;
        let me = self.ids[r];
        if !self.resolved.membership.contains(t.to) || t.to == me {
            if self.resolved.replicas[r].is_honest() {
                self.checker.report_violation(format!("{me} sent a frame to {}, which is not a peer", t.to));
            }
            return;
        }
        if t.to.rsm != me.rsm {
            self.cross_bytes += len as u64;
        }
        let to = self.resolved.global(t.to);
        let Some(flight) = self.net.send(self.now, r, to, len) else {
            return;
        };
        // Each directed link behaves like a TCP connection with a bounded window: once more
        // than its limit is in flight (queued on the link, propagating, or waiting at the
        // receiver's NIC), the sender's endpoint is told the peer is blocked, until frames are
        // handled. Without this, forwarding (which no QUACK window bounds) could queue without
        // limit at an oversubscribed receiver.
        let link = r * self.ids.len() + to;
        self.link_inflight[link] += len as u64;
        if self.link_inflight[link] > self.link_limit[link] && !self.link_blocked[link] {
            self.link_blocked[link] = true;
            self.endpoints[r].set_blocked(t.to, true);
        }
        let frame = InFlight { from: r as u32, to: to as u32, frame: t.frame.into_bytes() };
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(frame);
                s
            }
            None => {
                self.slots.push(Some(frame));
                (self.slots.len() - 1) as u32
            }
        };
        self.schedule(flight.arrival, What::Arrive(slot));
    }

    /// Keeps one pending timer event per replica, at the endpoint's earliest deadline.
    fn rearm(&mut self, r: usize, after_timeout: bool) {
        let Some(t) = self.endpoints[r].poll_timeout() else {
            return;
        };
        let mut t = t.0.max(self.now);
        if after_timeout && t <= self.now {
            // The engine still wants a timeout right after handling one: a bug that would spin
            // the simulation at one instant. Report it once and step time forward.
            if !self.stuck_timer_reported[r] {
                self.stuck_timer_reported[r] = true;
                self.checker.report_violation(format!(
                    "{}: poll_timeout is still due right after handle_timeout at {} ns",
                    self.ids[r], self.now
                ));
            }
            t = self.now + 1_000;
        }
        if self.timer_at[r].is_none_or(|p| t < p) {
            self.timer_at[r] = Some(t);
            self.schedule(t, What::Timer(r as u32));
        }
    }

    /// Cross-RSM copies of each message the strategy sends in the good case.
    fn first_copies(&self) -> u64 {
        let (s, r) = (&self.resolved.membership.rsms[0], &self.resolved.membership.rsms[1]);
        match self.scenario.strategy {
            Strategy::Picsou | Strategy::Ost | Strategy::Ll => 1,
            Strategy::Ata => (s.n() * r.n()) as u64,
            Strategy::Otu => {
                // The smallest prefix of receivers holding more than f_r stake.
                let mut stake = 0;
                let mut count = 0;
                for st in r.stakes() {
                    count += 1;
                    stake += st;
                    if stake > r.f {
                        break;
                    }
                }
                count
            }
        }
    }

    fn into_report(mut self) -> SimReport {
        let end = self.now;
        self.checker.finish(end);
        if self.stalled {
            self.checker.report_violation(format!(
                "no delivery for {} s of virtual time: the run stopped early at {:.3} s",
                Duration::from_nanos(self.stall_ns).as_secs_f64(),
                end as f64 / 1e9
            ));
        }
        let sc = self.scenario;
        let msgs_per_s = throughput(&self.completion, sc.warmup_fraction);
        let last = self.completion.iter().take_while(|&&c| c != NOT_DONE).last().copied().unwrap_or(0);
        let warm = (last as f64 * sc.warmup_fraction) as u64;
        let mut latencies: Vec<u64> = self
            .completion
            .iter()
            .zip(&self.first_tx)
            .filter(|&(&c, &t)| c != NOT_DONE && t != NOT_DONE && c > warm)
            .map(|(&c, &t)| c.saturating_sub(t))
            .collect();
        let m = sc.messages as f64;
        let (s, r) = (&self.resolved.membership.rsms[0], &self.resolved.membership.rsms[1]);
        let interval_ns = match sc.timeline_ms {
            Some(ms) if ms > 0.0 => (ms * 1e6).round().max(1.0) as u64,
            _ => auto_interval_ns(last),
        };
        let timeline = timeline(&self.completion, interval_ns);
        let onset = self
            .resolved
            .replicas
            .iter()
            .flat_map(|p| [p.crash_at, p.behavior.map(|b| u64::try_from(b.onset.as_nanos()).unwrap_or(u64::MAX))])
            .flatten()
            .min();
        SimReport {
            strategy: sc.strategy.name().to_string(),
            sender_n: s.n(),
            receiver_n: r.n(),
            sender_f: s.f,
            receiver_f: r.f,
            fault: match sc.fault {
                FaultModel::Cft => "cft",
                FaultModel::Bft => "bft",
            }
            .to_string(),
            size: sc.size,
            messages: sc.messages,
            seed: sc.seed,
            c3b_ok: self.checker.ok(),
            violations: self.checker.violations(),
            delivered: self.checker.delivered_min(),
            throughput_msgs_per_s: msgs_per_s,
            throughput_mb_per_s: msgs_per_s * sc.size as f64 / 1e6,
            wire_bytes_per_message: self.wire_bytes as f64 / m,
            cross_bytes_per_message: self.cross_bytes as f64 / m,
            resends: self.checker.total_resends(),
            max_sends_per_message: self.first_copies() + u64::from(self.checker.max_resends()),
            latency_p50_ms: quantile_ms(&mut latencies, 0.5),
            latency_p99_ms: quantile_ms(&mut latencies, 0.99),
            virtual_seconds: end as f64 / 1e9,
            frames: self.frames,
            misbehaviors_detected: self.checker.misbehaviors_detected(),
            engine: self.endpoints.iter().fold(EngineTotals::default(), |mut t, ep| {
                t.add(&ep.stats());
                t
            }),
            recovery_ms: onset.and_then(|o| recovery_ms(&timeline, o)),
            fault_onset_ms: onset.map(|o| o as f64 / 1e6),
            timeline,
        }
    }
}
