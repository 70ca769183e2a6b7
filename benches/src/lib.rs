//! An in-process deployment that drives endpoints back to back with no network in between, so
//! that what is measured is the engine's own cost: encoding, MACs, decoding, acks, QUACKs,
//! loss detection, forwarding and delivery.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use picsou_core::keys::LinkKeys;
use picsou_core::proof::NoProof;
use picsou_core::{
    Endpoint, EndpointConfig, Event, FaultModel, Membership, ProtocolParams, ReplicaId, RsmSpec, Strategy, Time,
};

/// A whole two-RSM deployment in one thread; RSM 0 sends to RSM 1.
pub struct Deployment {
    eps: Vec<Endpoint>,
    n0: usize,
    crashed: Vec<bool>,
    now: Time,
    next_seq: u64,
    payload: Bytes,
    frames: Vec<(usize, usize, Bytes)>,
    /// Messages delivered, summed over the receiving replicas.
    pub delivered: u64,
    /// Resends, summed over the sending replicas.
    pub resends: u64,
}

impl Deployment {
    /// `n` replicas per RSM tolerating `f` crashes each; receivers in `crashed_receivers` drop
    /// everything (a crashed replica: every first copy sent to it is lost and must be resent).
    pub fn new(n: usize, f: u64, size: usize, crashed_receivers: &[usize]) -> Self {
        let m = Arc::new(
            Membership::new(RsmSpec::uniform("s", n, FaultModel::Cft, f), RsmSpec::uniform("r", n, FaultModel::Cft, f))
                .expect("valid membership"),
        );
        let params = ProtocolParams::default();
        let eps = (0..2 * n)
            .map(|i| {
                let local = if i < n { ReplicaId::new(0, i as u16) } else { ReplicaId::new(1, (i - n) as u16) };
                let cfg = EndpointConfig::new(
                    m.clone(),
                    local,
                    Strategy::Picsou,
                    params.clone(),
                    LinkKeys::derived(local, [3; 32]),
                    Arc::new(NoProof),
                );
                Endpoint::new(cfg, Time::ZERO).expect("valid config")
            })
            .collect();
        let mut crashed = vec![false; 2 * n];
        for &r in crashed_receivers {
            crashed[n + r] = true;
        }
        Self {
            eps,
            n0: n,
            crashed,
            now: Time::ZERO,
            next_seq: 0,
            payload: Bytes::from(vec![0x42; size]),
            frames: Vec::new(),
            delivered: 0,
            resends: 0,
        }
    }

    fn index(&self, r: ReplicaId) -> usize {
        if r.rsm.0 == 0 { usize::from(r.index) } else { self.n0 + usize::from(r.index) }
    }

    /// Transmits up to `batch` new messages at every sender, then moves frames until the
    /// deployment is quiet, and advances virtual time by `tick` (which lets acks and loss
    /// detection timers fire). Returns the number of new messages transmitted.
    pub fn round(&mut self, batch: u64, tick: Duration) -> u64 {
        let target = self.next_seq + batch;
        let mut sent = 0;
        for i in 0..self.n0 {
            let ep = &mut self.eps[i];
            while ep.next_submit() < target && ep.submit_capacity() > 0 {
                let seq = ep.next_submit();
                ep.submit(self.now, seq, self.payload.clone(), Bytes::new()).expect("in order");
            }
            sent = sent.max(ep.next_submit() - self.next_seq);
        }
        self.next_seq += sent;
        loop {
            for i in 0..self.eps.len() {
                if self.crashed[i] {
                    continue;
                }
                while let Some(t) = self.eps[i].poll_transmit(self.now) {
                    let to = self.index(t.to);
                    self.frames.push((i, to, t.frame.into_bytes()));
                }
                while let Some(e) = self.eps[i].poll_event() {
                    match e {
                        Event::Deliver { .. } => self.delivered += 1,
                        Event::Resent { .. } => self.resends += 1,
                        _ => {}
                    }
                }
            }
            if self.frames.is_empty() {
                break;
            }
            for (from, to, frame) in std::mem::take(&mut self.frames) {
                if !self.crashed[to] {
                    let from = self.eps[from].local();
                    self.eps[to].handle_frame(self.now, from, frame);
                }
            }
        }
        self.now = self.now + tick;
        for i in 0..self.eps.len() {
            if !self.crashed[i] && self.eps[i].poll_timeout().is_some_and(|t| t <= self.now) {
                self.eps[i].handle_timeout(self.now);
            }
        }
        sent
    }

    /// Runs rounds until every live receiver delivered `messages` more messages; returns the
    /// number of rounds. Panics if the deployment stops making progress (a bug).
    pub fn deliver(&mut self, messages: u64, batch: u64, tick: Duration) -> u64 {
        let live = (self.n0..self.eps.len()).filter(|&i| !self.crashed[i]).count() as u64;
        let goal = self.delivered + messages * live;
        let mut rounds = 0;
        let mut idle = 0;
        while self.delivered < goal {
            let before = self.delivered;
            self.round(batch, tick);
            rounds += 1;
            idle = if self.delivered == before { idle + 1 } else { 0 };
            assert!(idle < 100_000, "no progress in 100000 rounds");
        }
        rounds
    }

    /// The lowest QUACK among the live senders.
    pub fn min_quack(&self) -> u64 {
        (0..self.n0).map(|i| self.eps[i].quacked()).min().unwrap_or(0)
    }
}

impl Deployment {
    /// Counters of replica `i` (RSM 0 first).
    pub fn stats(&self, i: usize) -> picsou_core::EndpointStats {
        self.eps[i].stats()
    }
}
