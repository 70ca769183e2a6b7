//! The protocol engine: one [`Endpoint`] per replica per link between its RSM and the other.
//!
//! An endpoint plays both roles at once: it is a *sender* of its RSM's stream to the other RSM
//! (module `sender`: flow control, QUACKs, duplicate-QUACK loss detection, resends) and a
//! *receiver* of the other RSM's stream (module `receiver`: validation, in-order delivery,
//! forwarding and repair inside its RSM). Module `output` turns queued records and due acks
//! into frames; `plan` says which replica sends what to whom under each strategy.
//!
//! Everything is driven by the caller: inputs are [`Endpoint::submit`],
//! [`Endpoint::handle_frame`], [`Endpoint::handle_timeout`] and [`Endpoint::local_has`];
//! outputs are pulled with [`Endpoint::poll_transmit`], [`Endpoint::poll_event`] and
//! [`Endpoint::poll_timeout`]. After any input, drain the outputs.

use bytes::Bytes;

use crate::config::{ConfigError, EndpointConfig};
use crate::ids::ReplicaId;
use crate::proof::ProofError;
use crate::time::Time;
use crate::wire::{DecodeError, EncodedFrame, RecordKind};

/// A frame the engine wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination replica (of either RSM).
    pub to: ReplicaId,
    /// The encoded, authenticated frame: one buffer, or a head and a record section shared
    /// with other frames (forwards; see [`EncodedFrame`]).
    pub frame: EncodedFrame,
}

/// Where a resuming replica's streams continue (see [`Endpoint::resuming`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStart {
    /// First seq of the outgoing stream to transmit: a QUACK observed before the restart.
    pub transmit: u64,
    /// First seq of the incoming stream to deliver.
    pub receive: u64,
}

/// Something the application should know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Library-managed dissemination: the next message of the incoming stream, in order,
    /// exactly once.
    Deliver {
        /// Position in the stream.
        seq: u64,
        /// The message.
        payload: Bytes,
    },
    /// Application-managed dissemination: a message received first-hand from the other RSM,
    /// exactly once, in arrival order; the application spreads it inside its RSM.
    Received {
        /// Position in the stream.
        seq: u64,
        /// The message.
        payload: Bytes,
        /// Its proof, for the application to pass on.
        proof: Bytes,
    },
    /// The other RSM has definitely received every message below `up_to` (at least one
    /// correct replica holds each); their resend state is freed.
    Quacked {
        /// One past the highest definitely received seq.
        up_to: u64,
    },
    /// This replica resent a message (resend `number` of its rotation).
    Resent {
        /// The message.
        seq: u64,
        /// Its resend number.
        number: u16,
    },
    /// A peer sent something a correct replica never sends; the input was dropped.
    PeerMisbehaved {
        /// The peer (as the transport identified it).
        peer: ReplicaId,
        /// What it did.
        reason: Misbehavior,
    },
}

/// What a misbehaving (or broken) peer did.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misbehavior {
    /// The bytes are not a valid, authentic frame.
    #[error("bad frame: {0}")]
    BadFrame(#[from] DecodeError),
    /// The frame's authenticated source is not the peer it came from.
    #[error("frame claims source {claimed} but arrived from another peer")]
    WrongSource {
        /// Claimed source.
        claimed: ReplicaId,
    },
    /// The frame is addressed to another replica.
    #[error("frame addressed to {dst}")]
    WrongDestination {
        /// Its destination.
        dst: ReplicaId,
    },
    /// A message's proof does not verify.
    #[error("invalid proof for seq {seq}: {error}")]
    InvalidProof {
        /// The message.
        seq: u64,
        /// Why.
        error: ProofError,
    },
    /// A record that the schedule does not assign to this sender (or kind of frame).
    #[error("unscheduled {kind:?} of seq {seq}")]
    Unscheduled {
        /// The message.
        seq: u64,
        /// Role claimed.
        kind: RecordKind,
    },
    /// A cross-RSM frame from a replica of this RSM, or an internal frame from the other RSM.
    #[error("frame kind does not match the link it arrived on")]
    WrongFrameKind,
    /// The transport named a peer that is not in the membership (or this replica itself).
    #[error("unknown peer")]
    UnknownPeer,
}

/// Why [`Endpoint::submit`] refused a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// Messages must be submitted as 0, 1, 2, … with no gap or repeat.
    #[error("out of order: expected seq {expected}, got {got}")]
    OutOfOrder {
        /// The seq expected next.
        expected: u64,
        /// The seq given.
        got: u64,
    },
    /// Too far ahead of the QUACK (`max_buffered` messages or `max_buffered_bytes` bytes
    /// buffered); try again once `Quacked` advances.
    #[error(
        "backpressure: seq {seq} is beyond QUACK {quack} + {max_buffered} buffered messages, or max_buffered_bytes are buffered"
    )]
    Backpressure {
        /// The seq given.
        seq: u64,
        /// Current QUACK.
        quack: u64,
        /// Configured limit.
        max_buffered: u64,
    },
    /// The payload exceeds `max_payload_bytes`.
    #[error("payload of {len} bytes exceeds {max}")]
    PayloadTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why [`Endpoint::local_has`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocalHasError {
    /// Only valid with application-managed dissemination.
    #[error("local_has is only valid with application-managed dissemination")]
    LibraryManaged,
    /// Too far beyond the cumulative ack.
    #[error("seq {seq} is beyond the receive window (cumulative ack {next})")]
    BeyondWindow {
        /// The seq given.
        seq: u64,
        /// Cumulative ack.
        next: u64,
    },
}

/// Counters, for reports and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointStats {
    /// Frames handed out by `poll_transmit`.
    pub frames_sent: u64,
    /// Bytes handed out by `poll_transmit`.
    pub bytes_sent: u64,
    /// Frames given to `handle_frame`.
    pub frames_received: u64,
    /// Bytes given to `handle_frame`.
    pub bytes_received: u64,
    /// Frames that carried only an ack.
    pub ack_only_frames: u64,
    /// First sends of messages.
    pub first_sends: u64,
    /// Resends of messages.
    pub resends: u64,
    /// Forwards inside the receiving RSM.
    pub forwards: u64,
    /// Repairs inside the receiving RSM.
    pub repairs: u64,
    /// Messages delivered (or handed over as `Received`).
    pub delivered: u64,
    /// Copies of messages already held.
    pub duplicates: u64,
    /// Frames or records dropped as misbehaviour.
    pub misbehaviors: u64,
    /// Current QUACK.
    pub quack: u64,
    /// Smoothed RTT estimate, in nanoseconds.
    pub srtt_ns: u64,
}

mod offsets;
mod output;
mod plan;
mod receiver;
mod rtt;
mod sender;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::ack::ReceiveWindow;
use crate::adversary::Behavior;
use crate::bufpool::BufPool;
use crate::config::{Dissemination, FaultModel, ProtocolParams};
use crate::keys::MacKey;
use crate::proof::{ProofVerifier, StreamId};
use crate::quack::QuackTracker;
use crate::seqring::SeqRing;
use crate::wire::{AckReport, Limits, RecordSection};

use self::offsets::StreamOffsets;
use self::plan::Plan;
use self::rtt::{DeliveryRate, RttEstimator, SendDelay};

/// Outgoing frames of at least this many bytes are built in recycled buffers: below it the
/// allocator's own free lists serve as well.
const POOLED_FRAME_MIN: usize = 64 * 1024;
/// Idle recycled frame buffers kept per endpoint: enough for a few large frames per peer.
const FRAME_POOL_BUFFERS: usize = 32;
/// ... and at most this much idle capacity.
const FRAME_POOL_BYTES: usize = 32 << 20;

/// A message's proof as the engine stores it. Most deployments' proofs are empty (CFT), and a
/// `Bytes` handle would take 32 bytes in every slot of the send window and of retention —
/// windows of hundreds of thousands of slots, all of which a replica touches. Boxed, an empty
/// proof takes 8 bytes and a real one an allocation, which BFT's signature checks dwarf.
#[derive(Debug, Default)]
struct StoredProof(Option<Box<Bytes>>);

impl StoredProof {
    fn new(proof: Bytes) -> Self {
        Self((!proof.is_empty()).then(|| Box::new(proof)))
    }

    fn get(&self) -> &Bytes {
        static EMPTY: Bytes = Bytes::new();
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

/// A message of the outgoing stream that this replica keeps for a sending duty.
#[derive(Debug)]
struct OutMsg {
    payload: Bytes,
    proof: StoredProof,
    /// When the message entered the send window (None: still held back by flow control).
    released_at: Option<Time>,
    /// Loss-detection state, once a receiver reported the message missing or it was resent
    /// (boxed: rare, and inline it would make every slot of the send window half again larger).
    loss: Option<Box<LossTrack>>,
    /// OTU: takeover attempts already made.
    otu_attempts: u64,
    /// Payload bytes in flight ahead of this message when it was released (see
    /// `DeliveryRate`).
    ahead: u64,
    /// Picsou: the receiver of its first copy, if this replica is its first sender.
    first: Option<u16>,
}

/// Duplicate-QUACK state of one message.
#[derive(Debug)]
struct LossTrack {
    /// Resends triggered so far (the current position in the rotation).
    round: usize,
    /// When the current round began.
    round_at: Time,
    /// Bytes in flight when the current round began.
    ahead: u64,
    /// Per remote replica: reports of the message missing in the current round (allocated at
    /// the first counted report, so proactive resends allocate nothing).
    counts: Vec<u8>,
}

/// A message of the incoming stream this replica holds (library-managed dissemination).
#[derive(Debug)]
struct Held {
    payload: Bytes,
    proof: StoredProof,
    /// When this replica got it (repairs wait `repair_delay` after this).
    at: Time,
    /// Forwards and repairs of it still queued: it is not trimmed while any are.
    pending: u32,
    /// Peers of this RSM (indexes below 64) it was queued to, as a forward or a repair.
    /// Links are FIFO and reliable while up, so such a peer gets it unless it restarted or
    /// its connection broke; it is not repaired again before `resend_wait` has passed.
    sent_to: u64,
    /// When it was last queued to a peer.
    sent_at: Time,
    /// Repairs of it so far (each waits twice as long as the previous before another).
    repairs: u8,
}

impl Held {
    fn new(payload: Bytes, proof: Bytes, at: Time) -> Self {
        Self { payload, proof: StoredProof::new(proof), at, pending: 0, sent_to: 0, sent_at: at, repairs: 0 }
    }
}

/// A received record section waiting to be forwarded unchanged to a peer of this RSM.
#[derive(Debug)]
struct QueuedSection {
    section: RecordSection,
    /// Records it holds.
    records: u32,
    /// When it arrived.
    at: Time,
}

/// A record waiting in a destination's queue; payloads are looked up when the frame is built.
#[derive(Clone, Copy, Debug)]
struct Pending {
    seq: u64,
    kind: RecordKind,
    /// Its encoded size, so that sizing a frame needs no payload lookups.
    len: u32,
}

impl Pending {
    fn new(seq: u64, kind: RecordKind, payload: &Bytes, proof: &Bytes) -> Self {
        Self { seq, kind, len: record_len(payload, proof) }
    }
}

/// Encoded size of a record carrying `payload` and `proof`.
fn record_len(payload: &Bytes, proof: &Bytes) -> u32 {
    u32::try_from(crate::wire::FrameBuilder::record_len(payload.len(), proof.len())).unwrap_or(u32::MAX)
}

/// The engine of one replica on one link.
///
/// Destinations are numbered: `0..n_remote` are the replicas of the other RSM, then
/// `n_remote..n_remote + n_local` the replicas of this RSM (this replica's own slot unused).
pub struct Endpoint {
    local: ReplicaId,
    params: ProtocolParams,
    plan: Plan,
    behavior: Option<Behavior>,
    verifier: Arc<dyn ProofVerifier>,
    verify_proofs: bool,
    in_stream: StreamId,
    limits: Limits,
    n_remote: usize,
    n_local: usize,
    remote_stakes: Vec<u64>,
    f_remote: u64,
    keys: Vec<MacKey>,

    // Outgoing stream (this RSM → the other).
    next_submit: u64,
    released: u64,
    /// Payload sizes of the transmitted messages from the QUACK on (front = seq QUACK).
    tx_offsets: StreamOffsets,
    /// Payload bytes released (sent into the window) and not yet QUACKed.
    released_bytes: u64,
    out: SeqRing<OutMsg>,
    quack: QuackTracker,
    reports: Vec<AckReport>,
    /// Per remote replica: RTT from timestamp echoes. Each receiver's reports are timed with
    /// its own estimate, so a Byzantine receiver lying about its RTT only skews its own reports.
    rtt: Vec<RttEstimator>,
    /// Per peer of this RSM: RTT of the link to it, queueing included (a copy sent to it
    /// arrives within about this long; repairs wait for it).
    peer_rtt: Vec<RttEstimator>,
    delivery: DeliveryRate,
    /// How long forwards wait in this replica's queues (repairs wait longer than this).
    forward_delay: SendDelay,
    /// Per destination: the first and latest timestamps this replica put on frames to it
    /// (an echo outside that range is not one of ours), and the latest echo it returned.
    ts_sent: Vec<(u64, u64)>,
    echo_seen: Vec<u64>,
    /// Per destination: the latest timestamp received from it and when it arrived. Frames to
    /// it echo that timestamp plus the time held here, so the peer's sample is the network
    /// round trip alone, however long this replica waited before answering.
    echo_for: Vec<(u64, Time)>,
    next_otu_check: Option<Time>,
    escalate_scratch: Vec<u64>,
    repair_scratch: Vec<u64>,
    /// Buffers of large outgoing frames, recycled (see [`crate::bufpool`]).
    frame_pool: BufPool,

    // Incoming stream (the other RSM → this one).
    window: ReceiveWindow,
    held: SeqRing<Held>,
    held_bytes: usize,
    deliver_next: u64,
    peer_reports: Vec<Option<AckReport>>,
    /// When each destination last sent this replica a valid frame (failure suspicion).
    last_heard: Vec<Time>,
    /// Per destination: the longest recent gap between two of its frames, decaying at a
    /// sixteenth of the speed of time (see `silence_limit`); `None` before its first frame.
    heard_gap: Vec<Option<Duration>>,
    /// Which destinations were suspected at the last check, and whether any was.
    suspected: Vec<bool>,
    any_suspected: bool,
    /// Per sender replica of this RSM: decayed count of its failed first sends (Byzantine-
    /// tolerant RSMs only, see `sender_suspected`).
    first_send_failures: Vec<f64>,
    /// This RSM tolerates Byzantine replicas.
    local_bft: bool,
    failures_at: Time,
    peer_report_version: Vec<u64>,
    /// Per peer of this RSM: when it last restarted or came back from silence, as far as this
    /// replica can tell; what was sent to it before may never have arrived.
    peer_reset_at: Vec<Time>,
    repaired_version: Vec<u64>,
    next_repair: Time,
    report: AckReport,
    report_version: u64,
    built_version: u64,
    lie_report: AckReport,

    // Output.
    /// Per remote receiver: its highest cumulative ack and when it last advanced (pacing).
    ack_progress: Vec<(u64, Time)>,
    queues: Vec<VecDeque<Pending>>,
    /// Per destination (peers of this RSM only): received record sections to forward as they
    /// are, sent before the records in `queues`, and how many records they hold in all.
    sections: Vec<VecDeque<QueuedSection>>,
    section_records: Vec<u64>,
    /// Seqs of the records of one received frame that were new, while it is being handled.
    fresh_scratch: Vec<(u64, RecordKind)>,
    last_sent: Vec<Time>,
    sent_version: Vec<u64>,
    ack_due: Vec<bool>,
    /// Destinations whose transport is full: `poll_transmit` skips them (their records wait).
    blocked: Vec<bool>,
    rr: usize,
    events: VecDeque<Event>,
    stats: EndpointStats,
}

impl Endpoint {
    /// Builds an endpoint; fails if the configuration is invalid.
    pub fn new(cfg: EndpointConfig, now: Time) -> Result<Self, ConfigError> {
        Self::resuming(cfg, now, StreamStart::default())
    }

    /// Builds an endpoint for a replica that resumes after a restart: its outgoing stream
    /// continues at `start.transmit` and its incoming stream at `start.receive`.
    ///
    /// `start.transmit` must be a QUACK the replica observed (checkpointed) before: the engine
    /// treats every seq below it as definitely received by the other RSM and never sends it.
    /// `start.receive` is the first seq the application has not durably applied: deliveries
    /// resume there (seqs from it on that the previous incarnation delivered are delivered
    /// again, in order), fetched from the peers' retained messages (`retention`).
    pub fn resuming(cfg: EndpointConfig, now: Time, start: StreamStart) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let local = cfg.local;
        let membership = &cfg.membership;
        let local_spec = membership.rsm(local.rsm);
        let remote_rsm = local.rsm.other();
        let remote_spec = membership.rsm(remote_rsm);
        let plan = Plan::new(cfg.strategy, membership, local.rsm, local.index)
            .map_err(|e| ConfigError::Invalid { field: "membership".into(), reason: e.to_string() })?;
        let (n_local, n_remote) = (local_spec.n(), remote_spec.n());
        let mut keys = Vec::with_capacity(n_remote + n_local);
        for d in 0..n_remote + n_local {
            let peer = dest_replica(local, n_remote, d);
            let key = if peer == local {
                [0; 32]
            } else {
                cfg.keys.key_for(peer).ok_or_else(|| ConfigError::Invalid {
                    field: "keys".into(),
                    reason: format!("no MAC key for the link {local}–{peer}"),
                })?
            };
            keys.push(key);
        }
        let p = &cfg.params;
        let limits = Limits {
            max_frame_bytes: p.max_frame_bytes_accepted,
            max_payload_bytes: p.max_payload_bytes,
            max_proof_bytes: 64 * 1024,
            max_phi_words: 64,
        };
        let n_dest = n_remote + n_local;
        let mut report = AckReport::default();
        let window = ReceiveWindow::starting_at(p.recv_window, start.receive);
        window.report_into(p.phi_bits, &mut report);
        Ok(Self {
            local,
            plan,
            behavior: cfg.behavior,
            verifier: cfg.verifier.clone(),
            verify_proofs: remote_spec.fault == FaultModel::Bft,
            in_stream: StreamId { from: remote_rsm, to: local.rsm },
            limits,
            n_remote,
            n_local,
            remote_stakes: remote_spec.stakes(),
            f_remote: remote_spec.f,
            keys,
            next_submit: start.transmit,
            released: start.transmit,
            tx_offsets: StreamOffsets::new(start.transmit),
            released_bytes: 0,
            out: SeqRing::new(start.transmit),
            quack: QuackTracker::starting_at(remote_spec.stakes(), remote_spec.f + 1, start.transmit),
            reports: vec![AckReport::default(); n_remote],
            ack_progress: vec![(start.transmit, now); n_remote],
            rtt: vec![RttEstimator::new(p.initial_rtt, p.min_rto, p.max_rto, p.ack_interval); n_remote],
            // Peers report on change at a quarter of the cross-RSM pace (see `output`).
            peer_rtt: vec![RttEstimator::new(p.repair_delay, p.min_rto, p.max_rto, p.ack_interval * 4); n_local],
            delivery: DeliveryRate::default(),
            forward_delay: SendDelay::default(),
            ts_sent: vec![(0, 0); n_dest],
            echo_seen: vec![0; n_dest],
            echo_for: vec![(0, now); n_dest],
            next_otu_check: None,
            escalate_scratch: Vec::new(),
            repair_scratch: Vec::new(),
            frame_pool: BufPool::new(FRAME_POOL_BUFFERS, FRAME_POOL_BYTES),
            window,
            held: SeqRing::new(start.receive),
            held_bytes: 0,
            deliver_next: start.receive,
            peer_reports: vec![None; n_local],
            last_heard: vec![now; n_dest],
            heard_gap: vec![None; n_dest],
            suspected: vec![false; n_dest],
            any_suspected: false,
            first_send_failures: vec![0.0; n_local],
            local_bft: local_spec.fault == FaultModel::Bft,
            failures_at: now,
            peer_report_version: vec![0; n_local],
            peer_reset_at: vec![now; n_local],
            repaired_version: vec![0; n_local],
            next_repair: now + p.repair_delay,
            report,
            report_version: 0,
            built_version: 0,
            lie_report: AckReport::default(),
            queues: vec![VecDeque::new(); n_dest],
            sections: (0..n_dest).map(|_| VecDeque::new()).collect(),
            section_records: vec![0; n_dest],
            fresh_scratch: Vec::new(),
            last_sent: vec![now; n_dest],
            sent_version: vec![0; n_dest],
            ack_due: vec![false; n_dest],
            blocked: vec![false; n_dest],
            rr: 0,
            events: VecDeque::new(),
            stats: EndpointStats::default(),
            params: cfg.params,
        })
    }

    /// This replica.
    pub fn local(&self) -> ReplicaId {
        self.local
    }

    /// The next seq `submit` expects.
    pub fn next_submit(&self) -> u64 {
        self.next_submit
    }

    /// How many more messages `submit` accepts right now (backpressure): messages may run
    /// at most `max_buffered` ahead of the QUACK, and none is accepted while
    /// `max_buffered_bytes` are buffered beyond it (so with large messages, check again after
    /// each `submit`).
    pub fn submit_capacity(&self) -> u64 {
        let quack = self.quack.value();
        if self.tx_offsets.bytes(quack, self.next_submit) >= self.params.max_buffered_bytes {
            return 0;
        }
        (quack + self.params.max_buffered).saturating_sub(self.next_submit)
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The current QUACK of the outgoing stream: every seq below it is held by at least one
    /// correct replica of the other RSM.
    pub fn quacked(&self) -> u64 {
        self.quack.value()
    }

    /// The cumulative ack of the incoming stream: every seq below it is held here.
    pub fn received(&self) -> u64 {
        self.window.next()
    }

    /// Counters.
    pub fn stats(&self) -> EndpointStats {
        let mut s = self.stats.clone();
        s.quack = self.quack.value();
        let mut srtts: Vec<u64> =
            self.rtt.iter().map(|r| u64::try_from(r.srtt().as_nanos()).unwrap_or(u64::MAX)).collect();
        srtts.sort_unstable();
        s.srtt_ns = srtts.get(srtts.len() / 2).copied().unwrap_or(0);
        s
    }

    /// Handles a frame that the transport received from `from`. Invalid input is dropped and
    /// reported as [`Event::PeerMisbehaved`]; it never panics.
    pub fn handle_frame(&mut self, now: Time, from: ReplicaId, frame: Bytes) {
        self.stats.frames_received += 1;
        self.stats.bytes_received += frame.len() as u64;
        let Some(d) = self.dest_index(from) else {
            self.misbehaved(from, Misbehavior::UnknownPeer);
            return;
        };
        let key = self.keys[d];
        let decoded = crate::wire::decode_with_section(frame, &self.limits, |src| (src == from).then_some(key));
        let (frame, section) = match decoded {
            Ok(f) => f,
            Err(DecodeError::UnknownKey(claimed)) => {
                self.misbehaved(from, Misbehavior::WrongSource { claimed });
                return;
            }
            Err(e) => {
                self.misbehaved(from, Misbehavior::BadFrame(e));
                return;
            }
        };
        if frame.dst != self.local {
            self.misbehaved(from, Misbehavior::WrongDestination { dst: frame.dst });
            return;
        }
        let cross = from.rsm != self.local.rsm;
        if cross != (frame.kind == crate::wire::FrameKind::Cross) {
            self.misbehaved(from, Misbehavior::WrongFrameKind);
            return;
        }
        let was_silent = !cross && self.silent(now, d);
        let gap = now.saturating_since(self.last_heard[d]);
        // The wait for the first frame (start-up, connection set-up) says nothing about the
        // peer's pace.
        self.heard_gap[d] = Some(self.heard_gap[d].map_or(Duration::ZERO, |g| gap.max(g.saturating_sub(gap / 16))));
        self.last_heard[d] = now;
        self.on_timestamps(now, d, frame.ts, frame.echo);
        if cross {
            self.on_remote_report(now, usize::from(from.index), frame.ack);
        } else {
            self.on_peer_report(now, usize::from(from.index), frame.ack, was_silent);
        }
        self.on_records(now, from, cross, frame.records, section);
    }

    /// Handles the passing of time: due acks, repairs inside the receiving RSM, and OTU
    /// takeovers. Call it at or after [`Endpoint::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Time) {
        self.mark_due_acks(now);
        self.repair_peers(now);
        self.otu_check(now);
        self.check_suspicions(now);
        // A receiver that fell silent or stuck since stops holding the window back.
        if self.released < self.next_submit {
            self.release(now);
        }
    }

    /// When [`Endpoint::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        [self.next_ack_deadline(), self.next_repair_deadline(), self.next_otu_check, self.next_suspicion()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Application-managed dissemination: the local RSM holds `seq` of the incoming stream (it
    /// arrived through the application's own channels), so this replica's acks cover it.
    pub fn local_has(&mut self, _now: Time, seq: u64) -> Result<(), LocalHasError> {
        if self.params.dissemination != Dissemination::Application {
            return Err(LocalHasError::LibraryManaged);
        }
        match self.window.insert(seq) {
            crate::ack::Insert::BeyondWindow => Err(LocalHasError::BeyondWindow { seq, next: self.window.next() }),
            crate::ack::Insert::New => {
                self.report_changed();
                Ok(())
            }
            crate::ack::Insert::Duplicate => Ok(()),
        }
    }

    /// Records the peer's timestamp (to echo it) and samples the RTT from its echo of ours.
    fn on_timestamps(&mut self, now: Time, d: usize, ts: u64, echo: u64) {
        if ts > self.echo_for[d].0 {
            self.echo_for[d] = (ts, now);
        }
        let (first, _) = self.ts_sent[d];
        let plausible = echo != 0 && first != 0 && echo >= first && echo <= now.as_nanos();
        if plausible && echo > self.echo_seen[d] {
            self.echo_seen[d] = echo;
            let sample = now.saturating_since(Time::from_nanos(echo));
            match d.checked_sub(self.n_remote) {
                None => self.rtt[d].sample(sample),
                Some(p) => self.peer_rtt[p].sample(sample),
            }
        }
    }

    /// Tells the engine that the transport to `peer` is full (`true`) or has room again.
    ///
    /// While a peer is blocked, [`Endpoint::poll_transmit`] skips it and its records wait in
    /// the engine, so a stalled or dead peer never holds up the others, and frames (with their
    /// timestamps and acks) are built only when they can leave. Unknown peers are ignored.
    pub fn set_blocked(&mut self, peer: ReplicaId, blocked: bool) {
        if let Some(d) = self.dest_index(peer) {
            self.blocked[d] = blocked;
        }
    }

    /// How long destination `d` may stay silent before it counts as down (suspected, left out
    /// of pacing and forwarding): `suspect_after`, or twice the longest recent gap between its
    /// frames when that is longer, at most ten times `suspect_after`.
    ///
    /// On a loaded machine a live replica's frames can stop for longer than `suspect_after`
    /// (its thread descheduled, its frames queued behind a backlog), and every false suspicion
    /// makes the senders resend every message in flight that involved it. A replica that was
    /// just that slow is given twice as long before it is suspected again; a crash after a
    /// steady stretch is still detected after `suspect_after`. A Byzantine replica can thereby
    /// delay only its own suspicion, by at most the cap (which is also when pacing stops
    /// waiting for a stuck receiver).
    fn silence_limit(&self, d: usize) -> Duration {
        let s = self.params.suspect_after;
        self.heard_gap[d].map_or(s, |g| (g * 2).clamp(s, s * 10))
    }

    /// Whether destination `d` has been silent for longer than its `silence_limit`.
    fn silent(&self, now: Time, d: usize) -> bool {
        now.saturating_since(self.last_heard[d]) > self.silence_limit(d)
    }

    /// Reports a misbehaving peer.
    fn misbehaved(&mut self, peer: ReplicaId, reason: Misbehavior) {
        self.stats.misbehaviors += 1;
        self.events.push_back(Event::PeerMisbehaved { peer, reason });
    }

    /// The destination index of a replica, or None for unknown replicas and this one.
    fn dest_index(&self, r: ReplicaId) -> Option<usize> {
        let i = usize::from(r.index);
        if r == self.local || r.rsm.0 > 1 {
            None
        } else if r.rsm != self.local.rsm {
            (i < self.n_remote).then_some(i)
        } else {
            (i < self.n_local).then_some(self.n_remote + i)
        }
    }
}

/// The replica behind destination index `d`.
fn dest_replica(local: ReplicaId, n_remote: usize, d: usize) -> ReplicaId {
    if d < n_remote {
        ReplicaId { rsm: local.rsm.other(), index: d as u16 }
    } else {
        ReplicaId { rsm: local.rsm, index: (d - n_remote) as u16 }
    }
}

#[cfg(test)]
mod tests;
