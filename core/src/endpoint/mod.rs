//! The protocol engine: one [`Endpoint`] per replica per link between its RSM and the other.
//!
//! An endpoint plays both roles at once: it is a *sender* of its RSM's stream to the other RSM
//! (module `sender`: flow control, QUACKs, duplicate-QUACK loss detection, resends) and a
//! *receiver* of the other RSM's stream (module `receiver`: validation, in-order delivery,
//! forwarding and repair inside its RSM). Module `output` turns queued records and due acks
//! into frames; `plan` says which replica sends what to whom under each strategy.
//!
//! Its state is grouped by what it describes: the outgoing and incoming streams (`outgoing`,
//! `incoming`), the replicas of the other RSM as receivers (`remote`) and of this RSM as peers
//! (`peer`), each with its liveness and clock (`contact`), the outgoing side of every destination
//! (`link`), and the deadlines (`timers`). `index` types the indices of all three kinds of
//! table. Byzantine behaviours plug in at a few points (`hooks`, feature `adversary`).
//!
//! # Usage contract
//!
//! The engine does no I/O and reads no clock: the caller feeds it inputs, each with the current
//! time, and carries out what it asks for. In the style of `quinn-proto`'s `Connection`:
//!
//! - **Inputs.** [`Endpoint::submit`] (the next message of this RSM's committed stream: every
//!   replica of the RSM submits every message, in order from 0 or from its resume point),
//!   [`Endpoint::handle_frame`] (a frame the transport received, with the replica at the other
//!   end of its authenticated channel), [`Endpoint::handle_timeout`] (once the deadline of
//!   [`Endpoint::poll_timeout`] is reached), [`Endpoint::set_blocked`] (the transport to a peer
//!   is full, or has room again) and [`Endpoint::local_has`] (application-managed
//!   dissemination).
//! - **Outputs.** After every input, drain them in this order:
//!   1. [`Endpoint::poll_transmit`] until `None`: frames to send, each to its replica. Frames are
//!      built when asked for, so a transport that is busy should ask later rather than queue:
//!      later frames batch more and carry fresher acks.
//!   2. [`Endpoint::poll_event`] until `None`: deliveries, QUACKs, resends, misbehaving peers.
//!      Events wait in the engine until polled; none is lost by polling late.
//!   3. [`Endpoint::poll_timeout`]: when to call `handle_timeout` next. It depends on the frames
//!      built in (1), so ask after them. It is cheap (a timer table, no scan), so asking after
//!      every input is fine.
//! - **Getters** (`quacked`, `received`, `submit_capacity`, `next_submit`, `stats`, `local`)
//!   may be called at any time.
//!
//! **Time never goes backwards**: every `now` given to an endpoint (inputs and `poll_transmit`)
//! must be at or after the previous one. An earlier time is taken as the latest one seen: the
//! engine stays consistent and never panics, but it then runs on the caller's latest clock
//! reading. Calling `handle_timeout` before the deadline is harmless (it does what is due by
//! then); calling it late delays acks, failure suspicion and resends by as much.
//!
//! Mistakes of the caller are refused, never undefined: submitting out of order, beyond
//! [`Endpoint::submit_capacity`] or too large returns a [`SubmitError`] and changes nothing; a
//! frame whose MAC does not match the replica it is said to come from is reported as
//! [`Event::PeerMisbehaved`] like any other bad input from a peer.

mod contact;
mod error;
mod event;
mod evidence;
mod hooks;
mod incoming;
mod index;
mod lagging;
mod link;
mod misbehavior;
mod offsets;
mod outgoing;
mod output;
mod peer;
mod plan;
mod receiver;
mod remote;
mod rtt;
mod sender;
mod stats;
mod stored_proof;
mod timers;

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

pub use self::error::{LocalHasError, SubmitError};
pub use self::event::Event;
pub use self::misbehavior::Misbehavior;
pub use self::output::Transmit;
pub use self::plan::decode_number as decode_resend_number;
pub use self::stats::EndpointStats;

use self::contact::Contact;
use self::evidence::{Convictions, PairFailures};
use self::hooks::Hooks;
use self::incoming::InStream;
use self::index::{Dest, Layout, PeerIdx};
use self::lagging::Lagging;
use self::link::Links;
use self::outgoing::OutStream;
use self::peer::PeerTracker;
use self::plan::Plan;
use self::remote::RemoteTracker;
use self::rtt::RttEstimator;
use self::timers::TimerTable;
use crate::bufpool::BufPool;
use crate::config::{ConfigError, Dissemination, EndpointConfig, FaultModel, ProtocolParams, Strategy};
use crate::handshake::{Session, SessionDirection};
use crate::ids::ReplicaId;
use crate::proof::StreamId;
use crate::time::Time;
use crate::wire::{DecodeError, Limits, RecordKind};

/// Idle recycled frame buffers kept per endpoint: enough for a few large frames per peer.
const FRAME_POOL_BUFFERS: usize = 32;
/// ... and at most this much idle capacity.
const FRAME_POOL_BYTES: usize = 32 << 20;

/// Where a resuming replica's streams continue (see [`Endpoint::resuming`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStart {
    /// First seq of the outgoing stream to submit: a QUACK observed before the restart.
    pub transmit: u64,
    /// First seq of the incoming stream to deliver.
    pub receive: u64,
}

/// Buffers reused across inputs, so the hot paths allocate nothing.
#[derive(Debug, Default)]
struct Scratch {
    /// Seqs that loss detection found lost, while a report is being handled.
    escalate: Vec<u64>,
    /// Seqs to repair to one peer, during a repair pass.
    repair: Vec<u64>,
    /// Seqs of the records of one received frame that were new, while it is being handled.
    fresh: Vec<(u64, RecordKind)>,
}

/// The engine of one replica on one link. See the [module docs](self) for how to drive it.
pub struct Endpoint {
    local: ReplicaId,
    params: ProtocolParams,
    plan: Plan,
    layout: Layout,
    limits: Limits,
    /// The latest time seen (time given as earlier is taken as this).
    latest: Time,
    /// The stream this replica's RSM sends.
    out: OutStream,
    /// The stream the other RSM sends.
    inc: InStream,
    /// The replicas of the other RSM, as receivers of `out`.
    remotes: RemoteTracker,
    /// The replicas of this RSM.
    peers: PeerTracker,
    /// The outgoing side of every destination.
    links: Links,
    timers: TimerTable,
    /// Whether some replica was distrusted at the last check.
    any_suspected: bool,
    /// Failed first copies per (sender, receiver) pair, the evidence for convictions.
    failures: PairFailures,
    /// Replicas convicted from that evidence, by destination slot.
    convictions: Convictions,
    /// A conviction happened during the current input (applied once at its end).
    distrust_changed: bool,
    /// Peers whose frames are ignored for a while, by destination slot: those that sent an
    /// authenticated frame proving them faulty (see [`Misbehavior::proves_fault`]).
    quarantine: Convictions,
    /// The senders (this RSM) and receivers (the other) not distrusted, in order: what a
    /// reassigned message is drawn from.
    trusted_senders: Vec<u16>,
    trusted_receivers: Vec<u16>,
    /// Buffers of large outgoing frames, recycled (see [`crate::bufpool`]).
    frame_pool: BufPool,
    scratch: Scratch,
    hooks: Hooks,
    /// Whether this replica fell beyond its peers' retention (see `lagging`).
    lagging: Lagging,
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
        let layout = Layout::new(local, remote_spec.n(), local_spec.n());
        let mut keys = Vec::with_capacity(layout.n_dest());
        for slot in 0..layout.n_dest() {
            let peer = layout.replica(layout.dest(slot));
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
        let remote_contact = Contact::new(now, RttEstimator::new(p.initial_rtt, p.min_rto, p.max_rto, p.ack_interval));
        // Peers report on change at a quarter of the cross-RSM pace (see `output`).
        let peer_contact =
            Contact::new(now, RttEstimator::new(p.repair_delay, p.min_rto, p.max_rto, p.ack_interval * 4));
        let remote_bft = remote_spec.fault == FaultModel::Bft;
        let remotes =
            RemoteTracker::new(&remote_spec.stakes(), remote_spec.f, remote_bft, now, start.transmit, &remote_contact);
        // Evidence fades over ten silence periods; a first conviction lasts fifty (see
        // `evidence` for why neither is permanent).
        let failures = PairFailures::new(
            (local_spec.stakes(), local_spec.f),
            (remote_spec.stakes(), remote_spec.f),
            p.suspect_after * 10,
            now,
        );
        let convictions = Convictions::new(layout.n_dest(), p.suspect_after * 50);
        // A proven-faulty peer is ignored for ten silence periods, doubling with each repeat: long
        // enough that it costs nothing (it is treated as crashed: silent, then distrusted and its
        // duties reassigned), short enough that a replica repaired by its operator rejoins.
        let quarantine = Convictions::new(layout.n_dest(), p.suspect_after * 10);
        let peers = PeerTracker::new(layout.n_local(), now, &peer_contact);
        let timers = Self::timer_table(&layout, p, now);
        let mut this = Self {
            local,
            plan,
            layout,
            limits,
            latest: now,
            out: OutStream::new(start.transmit, remote_spec.stakes(), remote_spec.f),
            inc: InStream::new(
                StreamId { from: remote_rsm, to: local.rsm },
                cfg.verifier.clone(),
                remote_bft,
                p.recv_window,
                p.phi_bits,
                start.receive,
            ),
            remotes,
            peers,
            links: Links::new(layout, keys, now),
            timers,
            any_suspected: false,
            failures,
            convictions,
            distrust_changed: false,
            quarantine,
            trusted_senders: (0..layout.n_local() as u16).collect(),
            trusted_receivers: (0..layout.n_remote() as u16).collect(),
            frame_pool: BufPool::new(FRAME_POOL_BUFFERS, FRAME_POOL_BYTES),
            scratch: Scratch::default(),
            hooks: Hooks::new(&cfg, now),
            lagging: Lagging::new(local_spec.stakes(), local_spec.f),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
            params: cfg.params,
        };
        for slot in 0..layout.n_dest() {
            this.update_silence_timer(layout.dest(slot));
        }
        Ok(this)
    }

    /// The timer table of a new endpoint: cross-RSM links pace acks at `ack_interval` (on
    /// change) and `ack_keepalive`; links to peers, with library-managed dissemination only, at
    /// a quarter of that pace on change and as keep-alives, which also feed the peers' failure
    /// suspicion (`suspect_after`).
    fn timer_table(layout: &Layout, p: &ProtocolParams, now: Time) -> TimerTable {
        const REMOTE: u8 = 0;
        const PEER: u8 = 1;
        let library = p.dissemination == Dissemination::Library;
        let classes = (0..layout.n_dest())
            .map(|slot| match layout.dest(slot) {
                Dest::Remote(_) => Some(REMOTE),
                Dest::Peer(q) => (q != layout.me() && library).then_some(PEER),
            })
            .collect();
        let peer_interval: Duration = p.ack_interval * 4;
        let waits = [(p.ack_interval, p.ack_keepalive), (peer_interval, p.ack_keepalive.max(peer_interval))];
        TimerTable::new(classes, &waits, now + p.repair_delay)
    }

    /// This replica.
    #[must_use]
    pub fn local(&self) -> ReplicaId {
        self.local
    }

    /// The next seq [`Endpoint::submit`] expects.
    #[must_use]
    pub fn next_submit(&self) -> u64 {
        self.out.next_submit
    }

    /// How many more messages [`Endpoint::submit`] accepts right now (backpressure): messages
    /// may run at most `max_buffered` ahead of the QUACK, and none is accepted while
    /// `max_buffered_bytes` are buffered beyond it (so with large messages, check again after
    /// each `submit`).
    #[must_use]
    pub fn submit_capacity(&self) -> u64 {
        self.out.capacity(&self.params)
    }

    /// The next event for the application, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The current QUACK of the outgoing stream: every seq below it is held by at least one
    /// correct replica of the other RSM.
    #[must_use]
    pub fn quacked(&self) -> u64 {
        self.out.quack.value()
    }

    /// The cumulative ack of the incoming stream: every seq below it is held here.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.inc.window.next()
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> EndpointStats {
        let mut s = self.stats.clone();
        s.quack = self.out.quack.value();
        s.srtt_ns = self.remotes.median_srtt_ns();
        s
    }

    /// Handles a frame that the transport received from `from`. Invalid input is dropped and
    /// reported as [`Event::PeerMisbehaved`]; it never panics.
    pub fn handle_frame(&mut self, now: Time, from: ReplicaId, frame: Bytes) {
        let now = self.clock(now);
        self.stats.frames_received += 1;
        self.stats.bytes_received += frame.len() as u64;
        let Some(d) = self.layout.dest_of(from) else {
            self.misbehaved(from, Misbehavior::UnknownPeer);
            return;
        };
        // A quarantined peer costs no authentication, decoding or proof checks.
        if self.quarantine.is_convicted(now, self.layout.slot(d)) {
            self.stats.misbehaviors += 1;
            return;
        }
        let key = self.links[d].recv_key;
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
        let cross = matches!(d, Dest::Remote(_));
        if cross != (frame.kind == crate::wire::FrameKind::Cross) {
            self.misbehaved(from, Misbehavior::WrongFrameKind);
            return;
        }
        let suspect_after = self.params.suspect_after;
        let contact = self.contact_mut(d);
        let was_silent = !cross && contact.silent(now, suspect_after);
        contact.heard(now);
        contact.on_timestamps(now, frame.ts, frame.echo);
        self.update_silence_timer(d);
        if !self.report_in_order(from, d, frame.ack.next) {
            self.on_records(now, from, cross, frame.records, section);
            return;
        }
        match d {
            Dest::Remote(j) => self.on_remote_report(now, j, frame.ack),
            Dest::Peer(p) => {
                self.peers.on_report(p, now, frame.ack, was_silent);
                self.check_lagging();
            }
        }
        self.on_records(now, from, cross, frame.records, section);
    }

    /// Handles the passing of time: due acks, repairs inside the receiving RSM, and OTU
    /// takeovers. Call it at or after [`Endpoint::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Time) {
        let now = self.clock(now);
        self.timers.take_due_acks(now, &mut self.links, self.inc.version);
        self.repair_peers(now);
        self.otu_check(now);
        self.check_suspicions(now);
        // A receiver that fell silent or stuck since stops holding the window back.
        if self.out.released < self.out.next_submit {
            self.release(now);
        }
    }

    /// When [`Endpoint::handle_timeout`] should next be called: the earliest deadline, never
    /// later. O(1).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let next = self.timers.next(&self.links, self.inc.version, self.repair_pending());
        match (next, self.convictions.next_end()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Application-managed dissemination: the local RSM holds `seq` of the incoming stream (it
    /// arrived through the application's own channels), so this replica's acks cover it.
    pub fn local_has(&mut self, _now: Time, seq: u64) -> Result<(), LocalHasError> {
        if self.params.dissemination != Dissemination::Application {
            return Err(LocalHasError::LibraryManaged);
        }
        match self.inc.window.insert(seq) {
            crate::ack::Insert::BeyondWindow => Err(LocalHasError::BeyondWindow { seq, next: self.inc.window.next() }),
            crate::ack::Insert::New => {
                self.inc.changed();
                Ok(())
            }
            crate::ack::Insert::Duplicate => Ok(()),
        }
    }

    /// Tells the engine that the transport to `peer` is full (`true`) or has room again.
    ///
    /// While a peer is blocked, [`Endpoint::poll_transmit`] skips it and its records wait in
    /// the engine, so a stalled or dead peer never holds up the others, and frames (with their
    /// timestamps and acks) are built only when they can leave. Unknown peers are ignored.
    pub fn set_blocked(&mut self, peer: ReplicaId, blocked: bool) {
        if let Some(d) = self.layout.dest_of(peer) {
            self.links[d].blocked = blocked;
        }
    }

    /// Gives the engine the session of a connection with `peer`, as the transport's handshake
    /// established it ([`crate::handshake`]): frames to the peer are MACed with `session.key`
    /// from now on ([`SessionDirection::Send`]: our connection to it), or frames from it are
    /// checked with it ([`SessionDirection::Receive`]: its connection to us). Frames under the
    /// previous key, still in flight, then fail authentication and are dropped: the protocol
    /// recovers them as lost.
    ///
    /// A new incarnation of the peer means it restarted, authenticated by the handshake: that
    /// is the only way its acks may move backwards (a restart from an older checkpoint). Within
    /// one incarnation a report whose ack is lower than the last one is stale or a lie, and is
    /// ignored (its records are still taken). Without sessions (a transport that has none, the
    /// simulator) an ack going backwards is taken as a restart, as before sessions existed.
    /// Unknown peers are ignored.
    pub fn set_session(&mut self, peer: ReplicaId, direction: SessionDirection, session: &Session) {
        let Some(d) = self.layout.dest_of(peer) else { return };
        if d == Dest::Peer(self.layout.me()) {
            return;
        }
        let link = &mut self.links[d];
        match direction {
            SessionDirection::Send => link.send_key = session.key,
            SessionDirection::Receive => {
                link.recv_key = session.key;
                if link.incarnation != Some(session.peer_incarnation) {
                    link.restarted = link.incarnation.is_some();
                    link.incarnation = Some(session.peer_incarnation);
                }
            }
        }
    }

    /// Every replica this one has a link with: the other replicas of both RSMs.
    pub fn linked_replicas(&self) -> Vec<ReplicaId> {
        let me = self.layout.replica(Dest::Peer(self.layout.me()));
        (0..self.layout.n_dest()).map(|slot| self.layout.replica(self.layout.dest(slot))).filter(|&r| r != me).collect()
    }

    /// Whether a report from `peer` with cumulative ack `next` may be taken: acks move
    /// backwards only across an authenticated restart (see [`Endpoint::set_session`]).
    fn report_in_order(&mut self, peer: ReplicaId, d: Dest, next: u64) -> bool {
        let link = &mut self.links[d];
        if link.incarnation.is_none() || std::mem::take(&mut link.restarted) {
            return true;
        }
        let previous = match d {
            Dest::Remote(j) => Some(self.remotes[j].report.next),
            Dest::Peer(p) => self.peers[p].report.as_ref().map(|r| r.next),
        };
        match previous {
            Some(last) if next < last => {
                self.misbehaved(peer, Misbehavior::AckWentBack { last, next });
                false
            }
            _ => true,
        }
    }

    /// `now`, or the latest time seen if `now` is earlier (time never goes backwards).
    fn clock(&mut self, now: Time) -> Time {
        self.latest = self.latest.max(now);
        self.latest
    }

    /// The liveness and clock state of a destination.
    fn contact(&self, d: Dest) -> &Contact {
        match d {
            Dest::Remote(j) => &self.remotes[j].contact,
            Dest::Peer(p) => &self.peers[p].contact,
        }
    }

    fn contact_mut(&mut self, d: Dest) -> &mut Contact {
        match d {
            Dest::Remote(j) => &mut self.remotes[j].contact,
            Dest::Peer(p) => &mut self.peers[p].contact,
        }
    }

    /// Whether destination `d` has been silent for longer than its silence limit.
    fn silent(&self, now: Time, d: Dest) -> bool {
        self.contact(d).silent(now, self.params.suspect_after)
    }

    /// Whether peer `p` has been silent too long.
    fn peer_silent(&self, now: Time, p: PeerIdx) -> bool {
        self.silent(now, Dest::Peer(p))
    }

    /// Keeps `d`'s suspicion deadline in the timer table: when it becomes silent, while it is
    /// not suspected (Picsou only; never for this replica).
    fn update_silence_timer(&mut self, d: Dest) {
        let at = (self.plan.strategy() == Strategy::Picsou && d != Dest::Peer(self.layout.me()))
            .then(|| self.contact(d))
            .filter(|c| !c.suspected)
            .map(|c| c.silent_from(self.params.suspect_after));
        self.timers.set_silence(self.layout.slot(d), at);
    }

    /// Whether a repair pass is waiting to happen.
    fn repair_pending(&self) -> bool {
        self.peers.any_awaiting_repair() && self.params.dissemination == Dissemination::Library
    }

    /// Reports a misbehaving peer, and quarantines it if what it did proves it faulty.
    fn misbehaved(&mut self, peer: ReplicaId, reason: Misbehavior) {
        self.stats.misbehaviors += 1;
        if reason.proves_fault()
            && let Some(d) = self.layout.dest_of(peer)
            && d != Dest::Peer(self.layout.me())
        {
            let slot = self.layout.slot(d);
            if !self.quarantine.is_convicted(self.latest, slot) {
                self.quarantine.convict(self.latest, slot);
            }
        }
        self.events.push_back(Event::PeerMisbehaved { peer, reason });
    }

    /// Whether frames from `peer` are being ignored (it proved itself faulty; see
    /// [`Misbehavior::proves_fault`]).
    pub fn is_quarantined(&self, peer: ReplicaId) -> bool {
        self.quarantined_for(peer).is_some()
    }

    /// How much longer frames from `peer` are ignored, if it is quarantined: what a transport
    /// should refuse its connections for (see `Transport::disconnect` in the runtime).
    pub fn quarantined_for(&self, peer: ReplicaId) -> Option<Duration> {
        let d = self.layout.dest_of(peer)?;
        let until = self.quarantine.until(self.latest, self.layout.slot(d))?;
        Some(until.saturating_since(self.latest))
    }
}

#[cfg(test)]
mod tests;
