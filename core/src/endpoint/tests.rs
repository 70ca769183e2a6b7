//! Engine tests on a small deterministic in-memory network (a `Pair`-style harness: fixed
//! latency, a virtual clock, optional crashed replicas and frame tampering).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::incoming::Held;
use super::outgoing::OutMsg;
use super::*;
use crate::config::{Membership, RsmSpec, Strategy};
use crate::keys::LinkKeys;
use crate::proof::NoProof;
use crate::wire::AckReport;

/// A frame in flight: delivery time, tie-break, source, destination, bytes.
type Flight = Reverse<(Time, u64, usize, usize, Bytes)>;

struct Net {
    eps: Vec<Endpoint>,
    n0: usize,
    now: Time,
    seq: u64,
    queue: BinaryHeap<Flight>,
    crashed: HashSet<usize>,
    /// Frames from RSM 0 to RSM 1 sent before this time are lost (a transport dropping
    /// frames to a peer that is down or not yet connected).
    drop_cross_until: Time,
    latency: Duration,
    /// Latency of the links inside the receiving RSM, if different (slow forwarding).
    internal_latency: Option<Duration>,
    delivered: Vec<Vec<u64>>,
    quacks: Vec<u64>,
    resends: u64,
    misbehaviors: Vec<(usize, Misbehavior)>,
    /// `Event::StateTransferNeeded` events: (replica, next, peers_at).
    transfers: Vec<(usize, u64, u64)>,
    /// Frames inside an RSM that forward a received record section as it is.
    shared_sections: u64,
    /// Records in frames inside an RSM that were built record by record.
    internal_records: u64,
}

fn rid(n0: usize, i: usize) -> ReplicaId {
    if i < n0 { ReplicaId::new(0, i as u16) } else { ReplicaId::new(1, (i - n0) as u16) }
}

impl Net {
    fn new(strategy: Strategy, m: Membership, params: ProtocolParams) -> Self {
        Self::with_byzantine(strategy, m, params, &[])
    }

    /// Like `new`, with replica `i` (global index) exhibiting behaviour `b` for each `(i, b)`.
    fn with_byzantine(
        strategy: Strategy,
        m: Membership,
        params: ProtocolParams,
        byzantine: &[(usize, crate::adversary::Behavior)],
    ) -> Self {
        let m = Arc::new(m);
        let (n0, n1) = (m.rsms[0].n(), m.rsms[1].n());
        let eps = (0..n0 + n1)
            .map(|i| {
                let local = rid(n0, i);
                let mut cfg = EndpointConfig::new(
                    m.clone(),
                    local,
                    strategy,
                    params.clone(),
                    LinkKeys::derived(local, [9; 32]),
                    Arc::new(NoProof),
                );
                cfg.behavior = byzantine.iter().find(|(j, _)| *j == i).map(|(_, b)| (*b).into());
                Endpoint::new(cfg, Time::ZERO).unwrap()
            })
            .collect();
        Self {
            eps,
            n0,
            now: Time::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            crashed: HashSet::new(),
            drop_cross_until: Time::ZERO,
            latency: Duration::from_micros(100),
            internal_latency: None,
            delivered: vec![Vec::new(); n0 + n1],
            quacks: vec![0; n0 + n1],
            resends: 0,
            misbehaviors: Vec::new(),
            transfers: Vec::new(),
            shared_sections: 0,
            internal_records: 0,
        }
    }

    fn idx(&self, r: ReplicaId) -> usize {
        if r.rsm.0 == 0 { usize::from(r.index) } else { self.n0 + usize::from(r.index) }
    }

    fn drain(&mut self, i: usize) {
        assert_timer_table_exact(&self.eps[i]);
        while let Some(t) = self.eps[i].poll_transmit(self.now) {
            assert_timer_table_exact(&self.eps[i]);
            let to = self.idx(t.to);
            if i < self.n0 && to >= self.n0 && self.now < self.drop_cross_until {
                continue;
            }
            if (i < self.n0) == (to < self.n0) {
                if t.frame.shared.is_empty() {
                    let head = &t.frame.head;
                    let words = usize::from(u16::from_le_bytes([head[14], head[15]]));
                    let at = crate::wire::head_len(words);
                    self.internal_records += u64::from(u32::from_le_bytes(head[at..at + 4].try_into().unwrap()));
                } else {
                    self.shared_sections += 1;
                }
            }
            self.seq += 1;
            let latency = match self.internal_latency {
                Some(l) if i >= self.n0 && to >= self.n0 => l,
                _ => self.latency,
            };
            self.queue.push(Reverse((self.now + latency, self.seq, i, to, t.frame.into_bytes())));
        }
        let mut spread = Vec::new();
        while let Some(e) = self.eps[i].poll_event() {
            match e {
                Event::Deliver { seq, .. } => self.delivered[i].push(seq),
                Event::Received { seq, .. } => {
                    self.delivered[i].push(seq);
                    spread.push(seq);
                }
                Event::Quacked { up_to } => self.quacks[i] = up_to,
                Event::Resent { .. } => self.resends += 1,
                Event::PeerMisbehaved { reason, .. } => self.misbehaviors.push((i, reason)),
                Event::StateTransferNeeded { next, peers_at } => self.transfers.push((i, next, peers_at)),
            }
        }
        // Application-managed dissemination: the application spreads what it received
        // inside its RSM (instantly, here) and tells the other replicas' endpoints.
        let rsm = if i < self.n0 { 0..self.n0 } else { self.n0..self.eps.len() };
        for seq in spread {
            for j in rsm.clone().filter(|&j| j != i && !self.crashed.contains(&j)) {
                self.eps[j].local_has(self.now, seq).unwrap();
            }
        }
    }

    /// Feeds `messages` to every live replica of RSM 0 and runs until every live receiver
    /// delivered them all, or for `limit`.
    fn run(&mut self, messages: u64, limit: Duration) {
        self.run_inner(messages, limit, true);
    }

    /// Like `run`, but keeps going for the whole `limit`.
    fn run_for(&mut self, messages: u64, limit: Duration) {
        self.run_inner(messages, limit, false);
    }

    fn run_inner(&mut self, messages: u64, limit: Duration, stop_when_delivered: bool) {
        let end = self.now + limit;
        loop {
            for i in 0..self.eps.len() {
                if self.crashed.contains(&i) {
                    continue;
                }
                if i < self.n0 {
                    while self.eps[i].next_submit() < messages && self.eps[i].submit_capacity() > 0 {
                        let s = self.eps[i].next_submit();
                        let payload = Bytes::from(format!("message {s}"));
                        self.eps[i].submit(self.now, s, payload, Bytes::new()).unwrap();
                    }
                }
                self.drain(i);
            }
            let done = (self.n0..self.eps.len())
                .filter(|i| !self.crashed.contains(i))
                .all(|i| self.delivered[i].len() as u64 == messages);
            if (done && stop_when_delivered) || self.now >= end {
                return;
            }
            let next_frame = self.queue.peek().map(|Reverse(e)| e.0);
            let next_timer = (0..self.eps.len())
                .filter(|i| !self.crashed.contains(i))
                .filter_map(|i| self.eps[i].poll_timeout())
                .min();
            let Some(t) = [next_frame, next_timer].into_iter().flatten().min() else { return };
            self.now = self.now.max(t);
            while let Some(Reverse(e)) = self.queue.peek() {
                if e.0 > self.now {
                    break;
                }
                let Reverse((_, _, from, to, frame)) = self.queue.pop().unwrap();
                if !self.crashed.contains(&to) {
                    let from = rid(self.n0, from);
                    self.eps[to].handle_frame(self.now, from, frame);
                    assert_timer_table_exact(&self.eps[to]);
                }
            }
            for i in 0..self.eps.len() {
                if !self.crashed.contains(&i) && self.eps[i].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.eps[i].handle_timeout(self.now);
                    assert_timer_table_exact(&self.eps[i]);
                }
            }
        }
    }

    fn assert_all_delivered(&self, messages: u64) {
        for i in self.n0..self.eps.len() {
            if self.crashed.contains(&i) {
                continue;
            }
            let want: Vec<u64> = (0..messages).collect();
            assert_eq!(self.delivered[i], want, "receiver {i} delivered out of order or incompletely");
        }
    }
}

/// Replaces replica `i` (global index) with a new incarnation that resumes its incoming stream
/// at `receive`, as a process restarted from its checkpoint does.
fn restart(net: &mut Net, m: &Membership, params: &ProtocolParams, i: usize, receive: u64) {
    let local = rid(net.n0, i);
    let cfg = EndpointConfig::new(
        Arc::new(m.clone()),
        local,
        Strategy::Picsou,
        params.clone(),
        LinkKeys::derived(local, [9; 32]),
        Arc::new(NoProof),
    );
    net.eps[i] = Endpoint::resuming(cfg, net.now, StreamStart { transmit: 0, receive }).unwrap();
    net.crashed.remove(&i);
    net.delivered[i] = (0..receive).collect();
}

#[test]
fn a_restarted_receiver_is_repaired_from_everything_its_report_proves_missing() {
    // r1 is down while 20,000 messages go by, then restarts from a checkpoint at 0: it holds
    // nothing past its ack, so its φ-list is empty. Repaired only up to where the φ-list
    // stops (one message per report) it needed minutes of virtual time; repaired from the
    // whole range the report proves missing, a few hundred milliseconds.
    let params = ProtocolParams::default();
    let m = uniform(4, 1);
    let mut net = Net::new(Strategy::Picsou, m.clone(), params.clone());
    net.crashed.insert(4 + 1);
    net.run(20_000, Duration::from_secs(20));
    restart(&mut net, &m, &params, 4 + 1, 0);
    let restarted_at = net.now;
    net.run(20_000, Duration::from_secs(2));
    net.assert_all_delivered(20_000);
    assert!(net.transfers.is_empty(), "{:?}", net.transfers);
    assert!(net.now.saturating_since(restarted_at) < Duration::from_secs(2));
}

#[test]
fn a_receiver_beyond_its_peers_retention_is_told_it_needs_a_state_transfer() {
    let params = ProtocolParams { retention: 500, ..ProtocolParams::default() };
    let m = uniform(4, 1);
    let mut net = Net::new(Strategy::Picsou, m.clone(), params.clone());
    net.crashed.insert(4 + 1);
    net.run(3000, Duration::from_secs(20));
    // Restarted from a checkpoint at 0, 3,000 behind peers that keep 500: signalled once.
    restart(&mut net, &m, &params, 4 + 1, 0);
    net.run_for(3000, Duration::from_millis(200));
    assert_eq!(net.transfers, vec![(4 + 1, 0, 3000)]);
    assert_eq!(net.delivered[4 + 1].len(), 0, "nothing past the gap is delivered");
    // The application installs a peer's state at 3,000 and resumes after it: the rest of
    // the stream arrives in order.
    restart(&mut net, &m, &params, 4 + 1, 3000);
    net.run(6000, Duration::from_secs(20));
    net.assert_all_delivered(6000);
    assert_eq!(net.transfers.len(), 1);
}

#[test]
fn fewer_than_f_plus_one_peers_far_ahead_do_not_signal_a_state_transfer() {
    // Peers report through frames; a lying peer (f = 1) alone claiming to be far ahead is
    // not enough. Here only r0 gets far ahead (the others are down), so no signal.
    let params = ProtocolParams { retention: 500, ..ProtocolParams::default() };
    let m = uniform(4, 1);
    let mut net = Net::new(Strategy::Picsou, m.clone(), params.clone());
    for r in [1, 2, 3] {
        net.crashed.insert(4 + r);
    }
    net.run(3000, Duration::from_secs(20));
    restart(&mut net, &m, &params, 4 + 1, 0);
    net.run_for(3000, Duration::from_millis(200));
    assert!(net.transfers.is_empty(), "{:?}", net.transfers);
}

fn uniform(n: usize, f: u64) -> Membership {
    Membership::new(RsmSpec::uniform("a", n, FaultModel::Cft, f), RsmSpec::uniform("b", n, FaultModel::Cft, f)).unwrap()
}

#[test]
fn picsou_delivers_in_order_without_resends() {
    let mut net = Net::new(Strategy::Picsou, uniform(4, 1), ProtocolParams::default());
    net.run(2000, Duration::from_secs(5));
    net.assert_all_delivered(2000);
    assert_eq!(net.resends, 0);
    assert!(net.misbehaviors.is_empty(), "{:?}", net.misbehaviors);
    // Senders learn that everything arrived (QUACK) through ack-only frames.
    net.run_for(2000, Duration::from_millis(50));
    for i in 0..4 {
        assert_eq!(net.quacks[i], 2000, "sender {i}");
    }
}

#[test]
fn every_baseline_delivers_without_faults() {
    for s in Strategy::ALL {
        let mut net = Net::new(s, uniform(4, 1), ProtocolParams::default());
        net.run(500, Duration::from_secs(5));
        net.assert_all_delivered(500);
        assert!(net.misbehaviors.is_empty(), "{s:?}: {:?}", net.misbehaviors);
    }
}

#[test]
fn picsou_recovers_from_crashed_sender_and_receiver() {
    let mut net = Net::new(Strategy::Picsou, uniform(4, 1), ProtocolParams::default());
    net.crashed.insert(1); // s1
    net.crashed.insert(4 + 2); // r2
    net.run(1000, Duration::from_secs(20));
    net.assert_all_delivered(1000);
    assert!(net.resends > 0);
    // At most f_s + f_r = 2 resends per message.
    assert!(net.resends <= 2 * 1000);
    // Resent copies are forwarded one by one (only to peers that lack them).
    assert!(net.internal_records > 0);
}

#[test]
fn first_hand_frames_are_forwarded_as_shared_sections() {
    let mut net = Net::new(Strategy::Picsou, uniform(4, 1), ProtocolParams::default());
    net.run(2000, Duration::from_secs(5));
    net.assert_all_delivered(2000);
    assert!(net.shared_sections > 0);
    assert_eq!(net.internal_records, 0, "no record was copied into a forward");
    let forwards: u64 = (4..8).map(|i| net.eps[i].stats().forwards).sum();
    assert_eq!(forwards, 2000 * 3, "each first-hand receiver forwards to its 3 peers");
}

#[test]
fn resends_go_around_the_rotation_when_a_transport_lost_every_copy() {
    // With f = 0 on both sides a message's rotation is one pair; with f = 1 it is three. Until
    // `drop_cross_until` every cross-RSM frame is lost, first copies and resends alike, so
    // every pair of the rotation fails; the stream must still complete once links recover.
    for (n, f) in [(1, 0), (2, 0), (4, 1)] {
        let mut net = Net::new(Strategy::Picsou, uniform(n, f), ProtocolParams::default());
        net.drop_cross_until = Time::ZERO + Duration::from_secs(3);
        net.run(200, Duration::from_secs(120));
        net.assert_all_delivered(200);
        assert!(net.resends > 0, "n={n}");
        assert!(net.misbehaviors.is_empty(), "n={n}: {:?}", net.misbehaviors);
    }
}

#[test]
fn slow_forwarding_does_not_set_off_a_repair_storm() {
    // Forwards inside the receiving RSM take 100 ms (large messages behind a loaded link),
    // far longer than `repair_delay`, while peers keep reporting what they lack. A copy that
    // is on its way must not be repaired on every report: that used to send each message
    // many times over the slow links (13 repairs per forward here).
    let mut net = Net::new(Strategy::Picsou, uniform(4, 1), ProtocolParams::default());
    net.internal_latency = Some(Duration::from_millis(100));
    let counts =
        |net: &Net| (4..8).map(|i| net.eps[i].stats()).fold((0, 0), |(f, r), s| (f + s.forwards, r + s.repairs));
    // Warm up: the links' round-trip times are learnt (before that, reports sent while the
    // first forwards crossed look like losses, at most one repair per message and peer).
    net.run_for(200, Duration::from_secs(2));
    net.assert_all_delivered(200);
    let (f0, r0) = counts(&net);
    // Past the last delivery: reports sent while the forwards crossed arrive later still.
    net.run_for(1200, Duration::from_secs(4));
    net.assert_all_delivered(1200);
    let (f1, r1) = counts(&net);
    let (forwards, repairs) = (f1 - f0, r1 - r0);
    assert!(forwards >= 1000 * 3, "each first-hand receiver forwards to its 3 peers: {forwards}");
    assert!(repairs <= 100, "{repairs} repairs for 1000 messages forwarded over slow links");
}

#[test]
fn byzantine_behaviours_plug_in_through_the_adversary_hooks() {
    use crate::adversary::Behavior;
    // A silent sender skips its first sends (and resends); the others' rotations cover them.
    let mut net =
        Net::with_byzantine(Strategy::Picsou, uniform(4, 1), ProtocolParams::default(), &[(1, Behavior::Silent)]);
    net.run(400, Duration::from_secs(20));
    net.assert_all_delivered(400);
    assert_eq!(net.eps[1].stats().first_sends, 0);
    assert!(net.resends > 0);
    // A receiver that never forwards nor repairs: the others still deliver everything.
    let mut net = Net::with_byzantine(
        Strategy::Picsou,
        uniform(4, 1),
        ProtocolParams::default(),
        &[(4, Behavior::NoRebroadcast)],
    );
    net.run(400, Duration::from_secs(20));
    net.assert_all_delivered(400);
    let s = net.eps[4].stats();
    assert_eq!((s.forwards, s.repairs), (0, 0));
}

#[test]
fn resend_numbers_name_cycle_positions() {
    use super::plan::{decode_number, encode_number};
    // Position 0 (the first pair, reached again past a lap) is sent as the cycle length.
    assert_eq!(encode_number(0, 16), Some(16));
    assert_eq!(encode_number(5, 16), Some(5));
    for p in 0..16 {
        assert_eq!(decode_number(encode_number(p, 16).unwrap(), 16), p);
    }
    // Numbers that do not fit the wire are refused, never wrapped onto another pair.
    assert_eq!(encode_number(70_000, 80_000), None);
    assert_eq!(encode_number(0, 70_000), None);
    // A peer's number beyond the cycle names position number mod cycle.
    assert_eq!(decode_number(33, 16), 1);
}

#[test]
fn application_managed_dissemination_hands_over_first_hand_messages() {
    let params = ProtocolParams { dissemination: Dissemination::Application, ..ProtocolParams::default() };
    let mut net = Net::new(Strategy::Picsou, uniform(4, 1), params);
    net.run_for(200, Duration::from_millis(200));
    // Each message is received first-hand by exactly one receiver in the good case, and the
    // application's own dissemination (local_has) lets the QUACK advance without resends.
    let total: usize = (4..8).map(|i| net.delivered[i].len()).sum();
    assert_eq!(total, 200);
    assert_eq!(net.resends, 0);
    assert!((0..4).all(|i| net.quacks[i] == 200), "{:?}", net.quacks);
    assert_eq!(
        net.eps[4].local_has(net.now, 100_000_000),
        Err(LocalHasError::BeyondWindow { seq: 100_000_000, next: net.eps[4].received() })
    );
    let mut lib = Net::new(Strategy::Picsou, uniform(4, 1), ProtocolParams::default());
    assert_eq!(lib.eps[4].local_has(Time::ZERO, 0), Err(LocalHasError::LibraryManaged));
    lib.run(1, Duration::from_millis(10));
}

#[test]
fn submit_rejects_misuse() {
    let params = ProtocolParams { send_window: 4, max_buffered: 8, max_payload_bytes: 16, ..ProtocolParams::default() };
    let mut net = Net::new(Strategy::Picsou, uniform(4, 1), params);
    let ep = &mut net.eps[0];
    assert_eq!(
        ep.submit(Time::ZERO, 1, Bytes::new(), Bytes::new()),
        Err(SubmitError::OutOfOrder { expected: 0, got: 1 })
    );
    assert_eq!(
        ep.submit(Time::ZERO, 0, Bytes::from(vec![0; 17]), Bytes::new()),
        Err(SubmitError::PayloadTooLarge { len: 17, max: 16 })
    );
    for s in 0..8 {
        ep.submit(Time::ZERO, s, Bytes::new(), Bytes::new()).unwrap();
    }
    assert_eq!(ep.submit_capacity(), 0);
    assert!(matches!(ep.submit(Time::ZERO, 8, Bytes::new(), Bytes::new()), Err(SubmitError::Backpressure { .. })));
}

#[test]
fn large_messages_are_backpressured_by_bytes() {
    // 1 KiB messages, at most 4 KiB buffered beyond the QUACK and 2 KiB in flight: the
    // message-count limits (64) never bind, the byte limits do.
    let params = ProtocolParams {
        send_window: 64,
        max_buffered: 64,
        send_window_bytes: 2048,
        max_buffered_bytes: 4096,
        ..ProtocolParams::default()
    };
    let mut net = Net::new(Strategy::Picsou, uniform(4, 1), params);
    let payload = Bytes::from(vec![7u8; 1024]);
    let ep = &mut net.eps[0];
    for s in 0..4 {
        assert!(ep.submit_capacity() > 0);
        ep.submit(Time::ZERO, s, payload.clone(), Bytes::new()).unwrap();
    }
    assert_eq!(ep.submit_capacity(), 0, "4 KiB buffered");
    assert!(matches!(ep.submit(Time::ZERO, 4, payload.clone(), Bytes::new()), Err(SubmitError::Backpressure { .. })));
}

#[test]
fn garbage_and_forged_frames_are_reported_not_fatal() {
    let mut net = Net::new(Strategy::Picsou, uniform(4, 1), ProtocolParams::default());
    let from = ReplicaId::new(0, 1);
    let ep = &mut net.eps[4];
    ep.handle_frame(Time::ZERO, from, Bytes::from_static(b"garbage"));
    ep.handle_frame(Time::ZERO, ReplicaId::new(7, 1), Bytes::from_static(b"x"));
    ep.handle_frame(Time::ZERO, ReplicaId::new(1, 0), Bytes::from_static(b"x"));
    // A valid frame from s1 carrying a First record that the schedule gives to another pair.
    let key = crate::keys::derive_link_key(&[9; 32], from, ReplicaId::new(1, 0));
    let mut b = crate::wire::FrameBuilder::new(
        crate::wire::FrameKind::Cross,
        from,
        ReplicaId::new(1, 0),
        &AckReport::default(),
    );
    let wrong = (0..64).find(|&s| !net.eps[4].plan.allows_incoming(s, RecordKind::First, 1)).unwrap();
    b.push(RecordKind::First, wrong, b"evil", b"");
    let frame = b.finish(&key);
    let ep = &mut net.eps[4];
    ep.handle_frame(Time::ZERO, from, frame.clone());
    // The same bytes claimed by another replica fail authentication.
    ep.handle_frame(Time::ZERO, ReplicaId::new(0, 2), frame);
    let reasons: Vec<Misbehavior> = std::iter::from_fn(|| ep.poll_event())
        .filter_map(|e| match e {
            Event::PeerMisbehaved { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(matches!(reasons[0], Misbehavior::BadFrame(_)));
    assert!(matches!(reasons[1], Misbehavior::UnknownPeer));
    assert!(matches!(reasons[2], Misbehavior::UnknownPeer));
    assert!(matches!(reasons[3], Misbehavior::Unscheduled { .. }));
    assert!(matches!(reasons[4], Misbehavior::WrongSource { .. } | Misbehavior::BadFrame(_)));
    assert_eq!(ep.received(), 0);
}

mod fuzz {
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};

    use super::*;

    fn target() -> Endpoint {
        let m = Arc::new(uniform(4, 1));
        let local = ReplicaId::new(1, 0);
        let cfg = EndpointConfig::new(
            m,
            local,
            Strategy::Picsou,
            ProtocolParams::default(),
            LinkKeys::derived(local, [9; 32]),
            Arc::new(NoProof),
        );
        Endpoint::new(cfg, Time::ZERO).unwrap()
    }

    /// A valid, authentic frame from s1 to r0 with arbitrary content.
    fn authentic(next: u64, phi: Vec<u64>, records: Vec<(u8, u16, u64, Vec<u8>)>) -> Bytes {
        let from = ReplicaId::new(0, 1);
        let to = ReplicaId::new(1, 0);
        let key = crate::keys::derive_link_key(&[9; 32], from, to);
        let mut b = crate::wire::FrameBuilder::new(crate::wire::FrameKind::Cross, from, to, &AckReport { next, phi });
        for (kind, number, seq, payload) in records {
            let kind = match kind % 4 {
                0 => RecordKind::First,
                1 => RecordKind::Resend { number: number.max(1) },
                2 => RecordKind::Forward,
                _ => RecordKind::Repair,
            };
            b.push(kind, seq, &payload, b"");
        }
        b.finish(&key)
    }

    /// Any u64, with values near 0 and near `u64::MAX` drawn often.
    fn edge_u64() -> impl proptest::strategy::Strategy<Value = u64> {
        proptest::prop_oneof![any::<u64>(), 0u64..256, (u64::MAX - 4096)..=u64::MAX]
    }

    /// Seqs the engine can deliver (near 0) and seqs near `u64::MAX`.
    fn edge_seq() -> impl proptest::strategy::Strategy<Value = u64> {
        proptest::prop_oneof![3 => 0u64..64, 1 => (u64::MAX - 4096)..=u64::MAX]
    }

    proptest! {
        /// Arbitrary bytes from a peer never panic the engine and are reported.
        #[test]
        fn arbitrary_bytes_are_reported(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut ep = target();
            ep.handle_frame(Time::ZERO, ReplicaId::new(0, 1), Bytes::from(bytes));
            ep.handle_timeout(Time::from_nanos(1_000_000_000));
            while ep.poll_transmit(Time::from_nanos(1_000_000_000)).is_some() {}
            let events: Vec<Event> = std::iter::from_fn(|| ep.poll_event()).collect();
            let all_reported = events.iter().all(|e| matches!(e, Event::PeerMisbehaved { .. }));
            prop_assert!(all_reported);
            prop_assert_eq!(ep.received(), 0);
        }

        /// Authentic frames with arbitrary acks and records (a Byzantine peer's power) never
        /// panic the engine, and whatever it delivers is in order and exactly once. Acks and
        /// seqs are drawn near 0 and near `u64::MAX` too, where peer-chosen arithmetic overflows
        /// (test builds check overflow).
        #[test]
        fn authentic_garbage_keeps_delivery_ordered(
            frames in proptest::collection::vec(
                (edge_u64(), proptest::collection::vec(any::<u64>(), 0..4),
                 proptest::collection::vec((any::<u8>(), any::<u16>(), edge_seq(), proptest::collection::vec(any::<u8>(), 0..8)), 0..8)),
                1..8),
        ) {
            let mut ep = target();
            let mut t = 0;
            let mut delivered = Vec::new();
            for (next, phi, records) in frames {
                t += 1_000_000;
                ep.handle_frame(Time::from_nanos(t), ReplicaId::new(0, 1), authentic(next, phi, records));
                ep.handle_timeout(Time::from_nanos(t));
                while ep.poll_transmit(Time::from_nanos(t)).is_some() {}
                while let Some(e) = ep.poll_event() {
                    if let Event::Deliver { seq, .. } = e {
                        delivered.push(seq);
                    }
                }
            }
            let want: Vec<u64> = (0..delivered.len() as u64).collect();
            prop_assert_eq!(delivered, want);
        }
    }
}

/// Acks near `u64::MAX` from every kind of peer (a remote receiver, a peer of the same RSM),
/// reaching a replica that is sending and receiving, never overflow (test builds check), and
/// the streams still complete.
#[test]
fn acks_near_u64_max_do_not_overflow() {
    let m = uniform(4, 1);
    let mut net = Net::new(Strategy::Picsou, m.clone(), ProtocolParams::default());
    net.run(200, Duration::from_secs(5));
    for (from, to) in [(ReplicaId::new(1, 2), 0usize), (ReplicaId::new(0, 1), 0), (ReplicaId::new(0, 3), 4)] {
        let local = net.eps[to].local();
        let key = crate::keys::derive_link_key(&[9; 32], from, local);
        let kind = crate::wire::FrameKind::between(from, local);
        for (i, next) in [u64::MAX, u64::MAX - 1, u64::MAX - 64, u64::MAX - 65].into_iter().enumerate() {
            let ack = AckReport { next, phi: vec![u64::MAX; 4] };
            let mut b = crate::wire::FrameBuilder::new(kind, from, local, &ack);
            // A record at u64::MAX too, in the last frame only: it is unscheduled, which proves
            // the peer faulty and quarantines it (later frames from it would be ignored).
            if i == 3 {
                b.push(
                    if kind == crate::wire::FrameKind::Cross { RecordKind::First } else { RecordKind::Forward },
                    u64::MAX,
                    b"x",
                    b"",
                );
            }
            let frame = b.finish(&key);
            let now = net.now;
            net.eps[to].handle_frame(now, from, frame);
            net.eps[to].handle_timeout(now);
            while net.eps[to].poll_transmit(now).is_some() {}
        }
    }
    net.run(400, Duration::from_secs(20));
    net.assert_all_delivered(400);
}

/// A small new message in a large frame of records this replica does not keep is copied out
/// of the frame, so a peer cannot pin the frame's memory with it; a frame of new messages is
/// kept as is (no copy).
#[test]
fn a_small_message_does_not_pin_a_large_frame() {
    let within = |frame: &Bytes, p: &Bytes| {
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        range.contains(&(p.as_ptr() as usize))
    };
    for pad in [false, true] {
        let mut net = Net::new(Strategy::Picsou, uniform(4, 1), ProtocolParams::default());
        let from = ReplicaId::new(0, 1);
        let to = ReplicaId::new(1, 0);
        let key = crate::keys::derive_link_key(&[9; 32], from, to);
        let first = (0..64).find(|&s| net.eps[4].plan.allows_incoming(s, RecordKind::First, 1)).unwrap();
        let mut b = crate::wire::FrameBuilder::new(crate::wire::FrameKind::Cross, from, to, &AckReport::default());
        b.push(RecordKind::First, first, &[7; 100], b"");
        if pad {
            // Records far beyond the receive window: authentic, but not kept.
            for k in 0..64 {
                b.push(RecordKind::First, u64::MAX / 2 + k, &[0; 16 * 1024], b"");
            }
        }
        let frame = b.finish(&key);
        net.eps[4].handle_frame(Time::ZERO, from, frame.clone());
        let held = net.eps[4].inc.held.get(first).expect("the new message is held");
        assert_eq!(held.payload.as_ref(), &[7; 100][..]);
        assert_eq!(within(&frame, &held.payload), !pad, "pad={pad}: copied iff the frame is mostly not kept");
    }
}

/// Every slot of the send window and of retention is memory a replica touches (hundreds of
/// thousands of them by default): keep the per-message records small.
#[test]
fn per_message_records_stay_small() {
    let held = size_of::<Option<Held>>();
    let out = size_of::<Option<OutMsg>>();
    assert!(held <= 72, "a retention slot takes {held} bytes");
    assert!(out <= 88, "a send window slot takes {out} bytes");
}

/// `poll_timeout` computed the way the engine did before it had a timer table: a scan of every
/// destination and peer, straight from the definitions of the deadlines.
fn poll_timeout_by_scan(ep: &Endpoint) -> Option<Time> {
    let p = &ep.params;
    let l = &ep.layout;
    let me = l.me();
    let library = p.dissemination == Dissemination::Library;
    let ack = (0..l.n_dest())
        .filter_map(|slot| {
            let d = l.dest(slot);
            let link = &ep.links[d];
            if link.ack_due {
                return None;
            }
            let changed = link.sent_version != ep.inc.version;
            match d {
                Dest::Remote(_) => Some(link.last_sent + if changed { p.ack_interval } else { p.ack_keepalive }),
                Dest::Peer(q) if q == me || !library => None,
                Dest::Peer(_) => {
                    let interval = p.ack_interval * 4;
                    Some(link.last_sent + if changed { interval } else { p.ack_keepalive.max(interval) })
                }
            }
        })
        .min();
    let repair = (library && l.peers().any(|q| q != me && ep.peers.awaits_repair(q))).then_some(ep.timers.repair);
    let suspicion = (ep.plan.strategy() == Strategy::Picsou)
        .then(|| {
            (0..l.n_dest())
                .map(|slot| l.dest(slot))
                .filter(|&d| d != Dest::Peer(me) && !ep.contact(d).suspected)
                .map(|d| ep.contact(d).silent_from(p.suspect_after))
                .min()
        })
        .flatten();
    let conviction_end = ep.convictions.ends().min();
    [ack, repair, ep.timers.otu, suspicion, conviction_end].into_iter().flatten().min()
}

/// The timer table's answer is exactly the earliest deadline (never later, nor earlier).
fn assert_timer_table_exact(ep: &Endpoint) {
    assert_eq!(ep.poll_timeout(), poll_timeout_by_scan(ep), "timer table of {}", ep.local());
}

mod timer_table {
    use proptest::prelude::{ProptestConfig, any, prop, proptest};
    use proptest::strategy::Strategy as _;

    use super::*;

    /// What the network does in one random run.
    #[derive(Clone, Debug)]
    struct Run {
        strategy: Strategy,
        n0: usize,
        n1: usize,
        application: bool,
        messages: u64,
        crash: Option<(usize, u64)>,
        steps: Vec<Step>,
    }

    /// One step of a run.
    #[derive(Clone, Debug)]
    struct Step {
        /// How far time advances, in µs.
        advance: u64,
        /// Which endpoint gets an early `handle_timeout`.
        early: usize,
        /// Block or unblock the link of (endpoint, peer).
        block: Option<(usize, usize)>,
        /// Drop this step's frames.
        drop: bool,
    }

    fn run() -> impl proptest::strategy::Strategy<Value = Run> {
        (
            prop::sample::select(Strategy::ALL.to_vec()),
            1usize..5,
            1usize..5,
            any::<bool>(),
            1u64..200,
            prop::option::of((0usize..10, 0u64..300)),
            prop::collection::vec(
                (0u64..30_000, 0usize..10, prop::option::of((0usize..10, 0usize..10)), prop::bool::weighted(0.1))
                    .prop_map(|(advance, early, block, drop)| Step { advance, early, block, drop }),
                1..300,
            ),
        )
            .prop_map(|(strategy, n0, n1, application, messages, crash, steps)| Run {
                strategy,
                n0,
                n1,
                application,
                messages,
                crash,
                steps,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Random deployments, loss, blocked links, crashes, late and early timeouts: after
        /// every input and output, `poll_timeout` equals a scan of every deadline.
        #[test]
        fn timer_table_matches_a_scan(r in run()) {
            let f = |n: usize| (n as u64 - 1) / 2;
            let m = Membership::new(
                RsmSpec::uniform("a", r.n0, FaultModel::Cft, f(r.n0)),
                RsmSpec::uniform("b", r.n1, FaultModel::Cft, f(r.n1)),
            )
            .unwrap();
            let dissemination = if r.application { Dissemination::Application } else { Dissemination::Library };
            let params = ProtocolParams {
                dissemination,
                suspect_after: Duration::from_millis(20),
                otu_timeout: Duration::from_millis(5),
                ..ProtocolParams::default()
            };
            let mut net = Net::new(r.strategy, m, params);
            let n = net.eps.len();
            let mut queue: Vec<(Time, usize, usize, Bytes)> = Vec::new();
            for (step, &Step { advance, early, block, drop }) in r.steps.iter().enumerate() {
                if let Some((who, at)) = r.crash && step as u64 == at {
                    net.crashed.insert(who % n);
                }
                let live: Vec<usize> = (0..n).filter(|i| !net.crashed.contains(i)).collect();
                for &i in &live {
                    if i < net.n0 {
                        while net.eps[i].next_submit() < r.messages && net.eps[i].submit_capacity() > 0 {
                            let s = net.eps[i].next_submit();
                            net.eps[i].submit(net.now, s, Bytes::from(vec![1; 40]), Bytes::new()).unwrap();
                            assert_timer_table_exact(&net.eps[i]);
                        }
                    }
                    while let Some(t) = net.eps[i].poll_transmit(net.now) {
                        assert_timer_table_exact(&net.eps[i]);
                        if !drop {
                            let latency = Duration::from_micros(100 + (queue.len() as u64 * 37) % 900);
                            queue.push((net.now + latency, i, net.idx(t.to), t.frame.into_bytes()));
                        }
                    }
                    while net.eps[i].poll_event().is_some() {}
                }
                if let Some((i, peer)) = block {
                    let (i, peer) = (i % n, peer % n);
                    if i != peer {
                        let blocked = step % 3 != 0;
                        net.eps[i].set_blocked(rid(net.n0, peer), blocked);
                        assert_timer_table_exact(&net.eps[i]);
                    }
                }
                net.now = net.now + Duration::from_micros(advance);
                queue.sort_by_key(|q| q.0);
                let due = queue.partition_point(|q| q.0 <= net.now);
                for (_, from, to, frame) in queue.drain(..due) {
                    if !net.crashed.contains(&to) {
                        net.eps[to].handle_frame(net.now, rid(net.n0, from), frame);
                        assert_timer_table_exact(&net.eps[to]);
                    }
                }
                for &i in &live {
                    // Timeouts at their deadline or late (the step may have jumped past it),
                    // and now and then early.
                    if net.eps[i].poll_timeout().is_some_and(|t| t <= net.now) || early % n == i {
                        net.eps[i].handle_timeout(net.now);
                        assert_timer_table_exact(&net.eps[i]);
                    }
                }
            }
        }
    }

    /// Time given as earlier than before is taken as the latest time seen: no panic, and the
    /// timers stay exact.
    #[test]
    fn time_going_backwards_is_clamped() {
        let mut net = Net::new(Strategy::Picsou, uniform(4, 1), ProtocolParams::default());
        net.run(50, Duration::from_millis(20));
        let late = net.now;
        let ep = &mut net.eps[0];
        ep.handle_timeout(Time::ZERO);
        assert_timer_table_exact(ep);
        while let Some(t) = ep.poll_transmit(Time::ZERO) {
            assert!(!t.frame.is_empty());
        }
        assert_timer_table_exact(ep);
        assert!(ep.poll_timeout().is_none_or(|t| t >= late), "deadlines follow the latest time seen");
    }
}

/// A verifier that refuses everything and counts how often it was asked.
struct CountingRefuser(std::sync::atomic::AtomicU64);

impl crate::proof::ProofVerifier for CountingRefuser {
    fn verify(&self, _: StreamId, _: u64, _: &[u8], _: &[u8]) -> Result<(), crate::proof::ProofError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(crate::proof::ProofError::Malformed("refused".into()))
    }
}

/// A peer whose authenticated frame proves it faulty (here: an invalid proof) is quarantined:
/// its other records and later frames cost no proof check, until the quarantine ends; an
/// unauthentic frame (which anyone could inject) quarantines nobody.
#[test]
fn a_peer_proven_faulty_is_quarantined_and_its_proofs_checked_once() {
    let m = Membership::new(RsmSpec::uniform("s", 4, FaultModel::Bft, 1), RsmSpec::uniform("r", 4, FaultModel::Bft, 1))
        .unwrap();
    let params = ProtocolParams::default();
    let local = ReplicaId::new(1, 0);
    let refuser = Arc::new(CountingRefuser(Default::default()));
    let cfg = EndpointConfig::new(
        Arc::new(m),
        local,
        Strategy::Picsou,
        params.clone(),
        LinkKeys::derived(local, [9; 32]),
        refuser.clone(),
    );
    let mut ep = Endpoint::new(cfg, Time::ZERO).unwrap();
    let from = ReplicaId::new(0, 1);
    let key = crate::keys::derive_link_key(&[9; 32], from, local);
    let mine: Vec<u64> = (0..64).filter(|&s| ep.plan.allows_incoming(s, RecordKind::First, 1)).take(3).collect();
    let frame = |seqs: &[u64], key: &[u8; 32]| {
        let mut b = crate::wire::FrameBuilder::new(crate::wire::FrameKind::Cross, from, local, &AckReport::default());
        for &s in seqs {
            b.push(RecordKind::First, s, b"m", b"not a certificate");
        }
        b.finish(key)
    };
    let calls = || refuser.0.load(std::sync::atomic::Ordering::Relaxed);
    let misbehaviors = |ep: &mut Endpoint| {
        std::iter::from_fn(|| ep.poll_event()).filter(|e| matches!(e, Event::PeerMisbehaved { .. })).count()
    };
    // Garbage under the wrong key: reported, not proof of anything.
    ep.handle_frame(Time::ZERO, from, frame(&mine, &[1; 32]));
    assert_eq!(misbehaviors(&mut ep), 1);
    assert!(!ep.is_quarantined(from));
    // Three records with invalid proofs: the first one is checked and quarantines the peer.
    ep.handle_frame(Time::ZERO, from, frame(&mine, &key));
    assert_eq!((calls(), misbehaviors(&mut ep)), (1, 1));
    assert!(ep.is_quarantined(from));
    // More of the same within the quarantine: dropped before authentication.
    let t = Time::ZERO + params.suspect_after * 5;
    ep.handle_frame(t, from, frame(&mine, &key));
    assert_eq!((calls(), misbehaviors(&mut ep)), (1, 0));
    // After it (ten silence periods), the peer is heard again — and quarantined again, for twice
    // as long, at its next invalid proof.
    let t = Time::ZERO + params.suspect_after * 11;
    ep.handle_frame(t, from, frame(&mine, &key));
    assert_eq!((calls(), misbehaviors(&mut ep)), (2, 1));
    ep.handle_frame(t + params.suspect_after * 15, from, frame(&mine, &key));
    assert_eq!(calls(), 2, "the second quarantine lasts twenty silence periods");
    // Other peers are not affected.
    assert!(!ep.is_quarantined(ReplicaId::new(0, 2)));
}

/// Frames are checked with the session key of the sender's current connection; within one
/// incarnation an ack never moves backwards, across an authenticated restart it may.
#[test]
fn frames_need_the_current_session_key_and_only_a_restart_moves_acks_back() {
    use crate::handshake::{Incarnation, Session, SessionDirection};
    let m = uniform(4, 1);
    let mut net = Net::new(Strategy::Picsou, m, ProtocolParams::default());
    net.run(200, Duration::from_secs(5));
    let (from, to) = (ReplicaId::new(1, 2), 0usize);
    let local = net.eps[to].local();
    let link_key = crate::keys::derive_link_key(&[9; 32], from, local);
    let frame = |key: &[u8; 32], next: u64| {
        let b = crate::wire::FrameBuilder::new(
            crate::wire::FrameKind::Cross,
            from,
            local,
            &AckReport { next, phi: vec![] },
        );
        b.finish(key)
    };
    // What each frame costs: the misbehaviours it is reported for.
    let feed = |net: &mut Net, f: Bytes| {
        let now = net.now;
        net.eps[to].handle_frame(now, from, f);
        let mut reasons = Vec::new();
        while let Some(e) = net.eps[to].poll_event() {
            if let Event::PeerMisbehaved { reason, .. } = e {
                reasons.push(reason);
            }
        }
        reasons
    };
    // Before any session the link key is the frames' key (transports without sessions).
    assert_eq!(feed(&mut net, frame(&link_key, 200)), vec![]);
    let first = Session { key: [1; 32], peer_incarnation: Incarnation([1; 16]) };
    net.eps[to].set_session(from, SessionDirection::Receive, &first);
    // Another connection's frame (the link key's, or a replay of an older session) is refused.
    assert!(matches!(feed(&mut net, frame(&link_key, 200))[..], [Misbehavior::BadFrame(_)]));
    assert_eq!(feed(&mut net, frame(&first.key, 200)), vec![]);
    // The same incarnation: an ack going back is ignored and reported.
    assert_eq!(feed(&mut net, frame(&first.key, 150)), vec![Misbehavior::AckWentBack { last: 200, next: 150 }]);
    // A new connection of the same incarnation (a reconnect): still no going back.
    let reconnect = Session { key: [2; 32], ..first };
    net.eps[to].set_session(from, SessionDirection::Receive, &reconnect);
    assert!(matches!(feed(&mut net, frame(&first.key, 200))[..], [Misbehavior::BadFrame(_)]));
    assert_eq!(feed(&mut net, frame(&reconnect.key, 150)), vec![Misbehavior::AckWentBack { last: 200, next: 150 }]);
    // A restart (new incarnation, authenticated by its handshake): its ack may go back, once.
    let restarted = Session { key: [3; 32], peer_incarnation: Incarnation([2; 16]) };
    net.eps[to].set_session(from, SessionDirection::Receive, &restarted);
    assert_eq!(feed(&mut net, frame(&restarted.key, 100)), vec![]);
    assert_eq!(feed(&mut net, frame(&restarted.key, 50)), vec![Misbehavior::AckWentBack { last: 100, next: 50 }]);
    // Nothing of that stalls the stream.
    net.run(400, Duration::from_secs(20));
    net.assert_all_delivered(400);
}
