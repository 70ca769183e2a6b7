//! [`RdmaTransport`]: the [`Transport`] over any [`Device`], driven from the node thread.
//!
//! Like the TCP transport it has no thread of its own: `send` queues, `flush` writes records
//! into peers' rings, `poll` reaps completions, reads rings, and runs the bootstrap sockets and
//! timers through one mio poller. What differs is waiting: frames arrive in memory, which no
//! system call reports. In busy mode `poll` spins on ring memory for `spin_us` after the
//! last activity, then sleeps in steps growing to [`BUSY_MAX_SLEEP`] (checking memory between
//! steps) so an idle replica does not hold a core; in event mode every write carries an
//! immediate and `poll` blocks on the completion channel, arming it and checking memory once
//! more first.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use picsou_core::ReplicaId;
use picsou_core::keys::LinkKeys;
use picsou_runtime::transport::accept::{self, Acceptor, Arrival, MioAcceptor};
use picsou_runtime::transport::handshake::SessionDirection;
use picsou_runtime::transport::{
    ConfigError, EncodedFrame, Rejection, Report, SendStatus, Transport, TransportError, TransportEvent,
    TransportOptions, TransportSetup, TransportStats, Wake,
};

use crate::incoming::{InResources, Incoming};
use crate::link::{Config, Ctx, KIND_DATA, KIND_RECV_OUT, MAX_PEERS, RECV_DEPTH, SQ_DEPTH, split_wr_id};
use crate::memory::Memory;
use crate::outgoing::{OutResources, Outgoing};
use crate::ring::{CREDIT_BYTES, Geometry};
use crate::verbs::{Completion, Device, QpCaps};
use crate::wire::{self, DIAL_LEN};

/// Send queue slots beyond [`SQ_DEPTH`]: a provider frees a slot when it completes the work
/// request, which we learn later, but providers may also keep a slot back.
const SQ_SLACK: u32 = 16;
/// Receive queue room beyond [`RECV_DEPTH`]: soft-RoCE frees a receive slot only after its
/// completion is visible, so a queue kept exactly full refuses the repost.
const RECV_SLACK: u32 = 32;
/// Busy mode: longest sleep between two looks at memory.
pub const BUSY_MAX_SLEEP: Duration = Duration::from_millis(1);
const BUSY_FIRST_SLEEP: Duration = Duration::from_micros(10);
const COMPLETIONS_PER_POLL: usize = 256;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const CHANNEL: Token = Token(2);
const FIRST_PEER_TOKEN: usize = 3;

/// A [`Ctx`] over the transport's fields, borrowed one by one (so the peers stay borrowable
/// next to it).
macro_rules! ctx {
    ($t:ident, $now:expr) => {
        Ctx {
            registry: $t.poll.registry(),
            report: Report { events: &mut $t.pending, stats: &mut $t.stats },
            cfg: &$t.cfg,
            now: $now,
        }
    };
}

/// Wakes `poll`: a flag the spinning loop sees plus the poller's waker for when it sleeps.
#[derive(Debug)]
struct RdmaWaker {
    flag: AtomicBool,
    waker: Waker,
}

impl Wake for RdmaWaker {
    fn wake(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            tracing::debug!("waking the rdma transport: {e}");
        }
    }
}

/// One peer: the link we write on and the link it writes on.
struct Peer<Q> {
    out: Outgoing<Q>,
    inc: Incoming<Q>,
}

/// The RDMA transport over device `D`. See the crate documentation.
pub struct RdmaTransport<D: Device> {
    poll: Poll,
    mio_events: Events,
    waker: Arc<RdmaWaker>,
    cfg: Config,
    keys: LinkKeys,
    peers: Vec<Peer<D::Qp>>,
    peer_index: HashMap<ReplicaId, usize>,
    /// The listener and the accepted connections waiting for their dial (a hello, then
    /// connection info).
    acceptor: MioAcceptor,
    receiving: bool,
    pending: Vec<TransportEvent>,
    stats: TransportStats,
    completions: Vec<Completion>,
    local_addr: SocketAddr,
    describe: String,
    // Registrations before the device: dropped after the queue pairs, before the device.
    _regions: Vec<D::Region>,
    dev: D,
}

impl<D: Device> std::fmt::Debug for RdmaTransport<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdmaTransport").field("listen", &self.local_addr).field("device", &self.describe).finish()
    }
}

/// Checks the options the transport uses, naming the field.
pub(crate) fn validate(opts: &TransportOptions) -> Result<Geometry, ConfigError> {
    let geo = Geometry::new(opts.rdma.ring_bytes).map_err(|e| ConfigError::Option {
        field: "transport.rdma.ring_bytes",
        value: opts.rdma.ring_bytes.to_string(),
        expected: e.to_string(),
    })?;
    if opts.tcp.max_queued_bytes == 0 {
        return Err(ConfigError::Option {
            field: "transport.tcp.max_queued_bytes",
            value: "0".into(),
            expected: "must be positive".into(),
        });
    }
    Ok(geo)
}

/// Bootstrap sockets carry a few small messages each way: send them at once.
fn nodelay(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
}

fn device_err(context: &'static str) -> impl FnOnce(crate::verbs::VerbsError) -> TransportError {
    move |e| TransportError::Device { context, source: Box::new(e) }
}

fn io_err(context: &'static str) -> impl FnOnce(io::Error) -> TransportError {
    move |source| TransportError::Io { context, source }
}

impl<D: Device> RdmaTransport<D> {
    /// Starts the transport on `dev`: registers a ring and a staging region per peer, creates
    /// two queue pairs per peer, listens for dials and dials every peer.
    pub fn with_device(dev: D, setup: TransportSetup, opts: &TransportOptions) -> Result<Self, TransportError> {
        let geo = validate(opts)?;
        let peer_list = setup.checked_peers()?;
        let TransportSetup { local, listen, keys, session, max_frame_bytes, .. } = setup;
        if peer_list.len() >= MAX_PEERS {
            return Err(ConfigError::TooManyPeers { count: peer_list.len(), max: MAX_PEERS - 1 }.into());
        }
        let cfg = Config {
            local,
            session,
            geo,
            event: opts.rdma.polling == picsou_runtime::transport::options::RdmaPolling::Event,
            max_frame: max_frame_bytes,
            max_queued: opts.tcp.max_queued_bytes,
            tcp: opts.tcp.clone(),
            spin: Duration::from_micros(opts.rdma.spin_us),
        };
        if cfg.event && dev.completion_fd().is_none() {
            return Err(ConfigError::Option {
                field: "transport.rdma.polling",
                value: "\"event\"".into(),
                expected: "needs a device with a completion channel".into(),
            }
            .into());
        }
        let poll = Poll::new().map_err(io_err("create the poller"))?;
        let mut listener =
            TcpListener::bind(listen).map_err(|source| TransportError::Listen { address: listen, source })?;
        let local_addr = listener.local_addr().unwrap_or(listen);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io_err("register the listener"))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(io_err("create the waker"))?;
        if let Some(fd) = dev.completion_fd() {
            poll.registry()
                .register(&mut SourceFd(&fd), CHANNEL, Interest::READABLE)
                .map_err(io_err("register the completion channel"))?;
        }
        let unavailable = |what: &str, e: crate::verbs::VerbsError| {
            crate::hw::unavailable(crate::hw::explain(what, &e, geo.size as usize, peer_list.len()))
        };
        // Receives are needed whenever either end of a connection is in event mode.
        let caps =
            QpCaps { send_depth: SQ_DEPTH + SQ_SLACK, recv_depth: RECV_DEPTH + RECV_SLACK, inline: opts.rdma.inline };
        let now = Instant::now();
        let mut regions = Vec::new();
        let mut peers = Vec::with_capacity(peer_list.len());
        let mut peer_index = HashMap::new();
        for (i, &(peer, addr, key)) in peer_list.iter().enumerate() {
            peer_index.insert(peer, i);
            // One protection domain per peer: its queue pairs reach only its own ring and
            // credit word, whatever rkeys it learns (see `Device`).
            let domain = dev.alloc_domain().map_err(|e| unavailable("allocate a protection domain", e))?;
            let mut register = |bytes: usize, remote: bool| {
                let mem = Arc::new(Memory::new(bytes));
                let (region, reg) =
                    dev.register(&domain, &mem, remote).map_err(|e| unavailable("register memory", e))?;
                regions.push(region);
                Ok::<_, TransportError>((mem, reg))
            };
            let (staging, staging_reg) = register(geo.size as usize, false)?;
            let (credit, credit_reg) = register(CREDIT_BYTES, true)?;
            let (ring, ring_reg) = register(geo.size as usize, true)?;
            let (source, source_reg) = register(CREDIT_BYTES, false)?;
            let out_qp = dev.create_qp(&domain, caps).map_err(|e| unavailable("create a queue pair", e))?;
            let in_qp = dev.create_qp(&domain, caps).map_err(|e| unavailable("create a queue pair", e))?;
            let out = Outgoing::new(
                peer,
                i,
                addr,
                key,
                Token(FIRST_PEER_TOKEN + 2 * i),
                OutResources { qp: out_qp, staging, staging_reg, credit, credit_reg },
                (opts.tcp.backoff_min, opts.tcp.backoff_max),
                now,
            );
            let inc = Incoming::new(
                peer,
                i,
                Token(FIRST_PEER_TOKEN + 2 * i + 1),
                InResources { qp: in_qp, ring, ring_reg, source, source_reg },
            );
            peers.push(Peer { out, inc });
        }
        let describe = dev.describe();
        let inline = peers.first().map_or(0, |p| p.out.max_inline());
        let mut t = Self {
            poll,
            mio_events: Events::with_capacity(256),
            waker: Arc::new(RdmaWaker { flag: AtomicBool::new(false), waker }),
            cfg,
            acceptor: MioAcceptor::new(
                listener,
                Acceptor::new(local, keys.clone(), session, peer_list.iter().map(|(p, _, _)| *p), DIAL_LEN),
                FIRST_PEER_TOKEN + 2 * peer_list.len(),
                nodelay,
            ),
            keys,
            peers,
            peer_index,
            receiving: true,
            pending: Vec::new(),
            stats: TransportStats::default(),
            completions: Vec::with_capacity(COMPLETIONS_PER_POLL),
            local_addr,
            describe,
            _regions: regions,
            dev,
        };
        tracing::info!(
            replica = %local,
            %listen,
            device = %t.describe,
            ring = t.cfg.geo.size,
            inline,
            event = t.cfg.event,
            "rdma transport started"
        );
        t.run_timers(now);
        Ok(t)
    }

    /// The address actually listened on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The device in use, for logs.
    pub fn device(&self) -> &str {
        &self.describe
    }

    /// The inline limit the device granted (the same for every queue pair).
    pub fn max_inline(&self) -> u32 {
        self.peers.first().map_or(0, |p| p.out.max_inline())
    }

    /// Whether our link to `peer` is up and its link to us is established.
    pub fn connected(&self, peer: ReplicaId) -> bool {
        self.peer_index.get(&peer).is_some_and(|&i| self.peers[i].out.is_up() && self.peers[i].inc.is_up())
    }

    /// Every link's state, for diagnostics (test failure messages, debug logs).
    #[doc(hidden)]
    pub fn debug_state(&self) -> String {
        self.peers
            .iter()
            .map(|p| format!("{}: out {}; in {}", p.out.peer(), p.out.state(), p.inc.state()))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Test hook: posts a write to `peer` that its adapter must refuse (past the end of its
    /// ring), so the error completion takes the link down and it reconnects. False if the
    /// link is not up.
    #[doc(hidden)]
    pub fn inject_bad_write(&mut self, peer: ReplicaId) -> bool {
        let Some(&i) = self.peer_index.get(&peer) else { return false };
        let now = Instant::now();
        let mut ctx = ctx!(self, now);
        self.peers[i].out.inject_bad_write(&mut ctx)
    }

    /// Reaps completions, writes what the rings have room for, reads rings. True if anything
    /// happened.
    fn progress(&mut self) -> Result<bool, TransportError> {
        let mut did = self.reap()?;
        let mut ctx = ctx!(self, Instant::now());
        for p in &mut self.peers {
            did |= p.out.repost_receives(&mut ctx);
            if p.out.has_queued() {
                did |= p.out.pump(&mut ctx);
            }
        }
        for p in &mut self.peers {
            // Receives go back even while not receiving: writers would stall on RNR otherwise.
            did |= p.inc.repost_receives(&mut ctx);
            if self.receiving {
                did |= p.inc.drain(&mut ctx);
            }
        }
        Ok(did)
    }

    /// Handles the completions the device has.
    fn reap(&mut self) -> Result<bool, TransportError> {
        self.completions.clear();
        self.dev
            .poll_cq(&mut self.completions, COMPLETIONS_PER_POLL)
            .map_err(device_err("poll the completion queue"))?;
        if self.completions.is_empty() {
            return Ok(false);
        }
        let mut ctx = ctx!(self, Instant::now());
        for c in &self.completions {
            let (kind, i, epoch, counter) = split_wr_id(c.wr_id);
            tracing::trace!(kind, peer = i, epoch, counter, status = c.status, "completion");
            let Some(p) = self.peers.get_mut(i) else { continue };
            match kind {
                KIND_DATA | KIND_RECV_OUT => p.out.on_completion(kind, epoch, counter, c.status, &mut ctx),
                _ => p.inc.on_completion(kind, epoch, counter, c.status, &mut ctx),
            }
        }
        Ok(true)
    }

    /// Runs the poller once, waiting at most `wait`; true if the waker fired.
    fn io(&mut self, wait: Option<Duration>) -> Result<bool, TransportError> {
        match self.poll.poll(&mut self.mio_events, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.mio_events.clear(),
            Err(source) => return Err(TransportError::Io { context: "poll", source }),
        }
        let events = std::mem::replace(&mut self.mio_events, Events::with_capacity(0));
        let mut woken = false;
        let now = Instant::now();
        for event in &events {
            match event.token() {
                LISTENER => self.accept_all(now),
                WAKER => woken = true,
                CHANNEL => self.dev.take_events().map_err(device_err("read the completion channel"))?,
                token => self.on_socket(token, now),
            }
        }
        self.mio_events = events;
        Ok(woken)
    }

    fn on_socket(&mut self, token: Token, now: Instant) {
        let k = token.0 - FIRST_PEER_TOKEN;
        if k < 2 * self.peers.len() {
            let mut ctx = ctx!(self, now);
            let p = &mut self.peers[k / 2];
            if k.is_multiple_of(2) {
                p.out.on_ready(&mut ctx);
            } else {
                p.inc.on_ready(&mut ctx);
            }
        } else {
            self.read_dial(token);
        }
    }

    /// Accepts every pending connection; those whose dial is already there are established.
    fn accept_all(&mut self, now: Instant) {
        let mut report = Report { events: &mut self.pending, stats: &mut self.stats };
        for (_, a) in self.acceptor.accept_all(self.poll.registry(), now, &mut report) {
            self.dialled(a);
        }
    }

    /// Reads an accepted connection's dial; establishes the connection once it is complete
    /// and authentic.
    fn read_dial(&mut self, token: Token) {
        let mut report = Report { events: &mut self.pending, stats: &mut self.stats };
        if let Some(a) = self.acceptor.read(token, self.poll.registry(), &mut report) {
            self.dialled(a);
        }
    }

    /// A dial whose hello verified: check its connection info, then establish the peer's
    /// incoming side on this connection.
    fn dialled(&mut self, a: Arrival<TcpStream>) {
        let Arrival { conn: mut stream, source, peer, message, session, .. } = a;
        let _ = self.poll.registry().deregister(&mut stream);
        let (Some(&i), Some(key)) = (self.peer_index.get(&peer), self.keys.key_for(peer)) else { return };
        let Ok(dial) = <&[u8; DIAL_LEN]>::try_from(&message[..]) else { return };
        let info = match wire::decode_dial(dial, &key) {
            Ok(info) => info,
            Err(e) => {
                let mut report = Report { events: &mut self.pending, stats: &mut self.stats };
                return accept::reject(&mut report, source, Some(peer), Rejection::Transport(Box::new(e)));
            }
        };
        // Before any frame of the connection: the engine checks them with its session key.
        self.pending.push(TransportEvent::Session { peer, direction: SessionDirection::Receive, session });
        let mut ctx = ctx!(self, Instant::now());
        if let Err(e) = self.peers[i].inc.establish(stream, source.clone(), dial, &info, &key, &mut ctx) {
            tracing::warn!(%peer, %source, "incoming rdma connection failed: {e}");
            self.peers[i].inc.close(&mut ctx);
        }
    }

    fn run_timers(&mut self, now: Instant) {
        let mut ctx = ctx!(self, now);
        for p in &mut self.peers {
            if p.out.deadline().is_some_and(|d| d <= now) {
                p.out.on_timer(&mut ctx);
            }
        }
        let mut report = Report { events: &mut self.pending, stats: &mut self.stats };
        for (_, a) in self.acceptor.run_timers(self.poll.registry(), now, &mut report) {
            self.dialled(a);
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        let outs = self.peers.iter().filter_map(|p| p.out.deadline());
        outs.chain(self.acceptor.next_deadline()).min()
    }
}

impl<D: Device> Transport for RdmaTransport<D> {
    fn kind(&self) -> &'static str {
        "rdma"
    }

    fn has_sessions(&self) -> bool {
        true
    }

    fn disconnect(&mut self, peer: ReplicaId, for_how_long: Duration) {
        let now = Instant::now();
        self.acceptor.ban(peer, now + for_how_long);
        if let Some(&i) = self.peer_index.get(&peer) {
            tracing::info!(%peer, "disconnected for {for_how_long:?}: proven faulty");
            let mut ctx = ctx!(self, now);
            self.peers[i].inc.close(&mut ctx);
        }
    }

    fn send(&mut self, peer: ReplicaId, frame: EncodedFrame) -> SendStatus {
        let Some(&i) = self.peer_index.get(&peer) else {
            self.stats.frames_dropped += 1;
            return SendStatus::Room;
        };
        self.peers[i].out.send(frame, &mut self.stats, self.cfg.max_queued)
    }

    fn flush(&mut self) {
        if let Err(e) = self.reap() {
            tracing::warn!("{e}");
        }
        let mut ctx = ctx!(self, Instant::now());
        for p in &mut self.peers {
            if p.out.has_queued() {
                p.out.pump(&mut ctx);
            }
        }
    }

    fn poll(&mut self, timeout: Option<Duration>, events: &mut Vec<TransportEvent>) -> Result<(), TransportError> {
        let start = events.len();
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut rounds: u32 = 0;
        let mut idle_since: Option<Instant> = None;
        let mut sleep = BUSY_FIRST_SLEEP;
        loop {
            // Sockets and timers every round while busy; every 16th while spinning.
            let mut woken = false;
            if idle_since.is_none() || rounds.is_multiple_of(16) {
                woken |= self.io(Some(Duration::ZERO))?;
                self.run_timers(Instant::now());
            }
            rounds = rounds.wrapping_add(1);
            let did = self.progress()?;
            events.append(&mut self.pending);
            woken |= self.waker.flag.swap(false, Ordering::SeqCst);
            if events.len() > start || woken {
                return Ok(());
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(());
            }
            if did {
                idle_since = None;
                sleep = BUSY_FIRST_SLEEP;
                continue;
            }
            let until = [deadline, self.next_timer()].into_iter().flatten().min();
            let max_wait = until.map(|u| u.saturating_duration_since(now));
            if self.cfg.event {
                tracing::trace!(?max_wait, "arming and sleeping");
                self.dev.arm().map_err(device_err("arm the completion channel"))?;
                // A completion may have landed before the arm: look once more.
                if self.progress()? || !self.pending.is_empty() {
                    continue;
                }
                if self.io(max_wait)? {
                    self.waker.flag.store(false, Ordering::SeqCst);
                    events.append(&mut self.pending);
                    return Ok(());
                }
                self.run_timers(Instant::now());
            } else {
                let since = *idle_since.get_or_insert(now);
                if now.duration_since(since) < self.cfg.spin {
                    std::hint::spin_loop();
                    continue;
                }
                let step = max_wait.map_or(sleep, |m| m.min(sleep));
                if step < Duration::from_millis(1) {
                    std::thread::sleep(step);
                } else if self.io(Some(step))? {
                    self.waker.flag.store(false, Ordering::SeqCst);
                    events.append(&mut self.pending);
                    return Ok(());
                }
                sleep = (sleep * 2).min(BUSY_MAX_SLEEP);
                rounds = 0;
            }
        }
    }

    fn waker(&self) -> Arc<dyn Wake> {
        self.waker.clone()
    }

    fn set_receiving(&mut self, receiving: bool) {
        self.receiving = receiving;
    }

    fn stats(&self) -> TransportStats {
        self.stats.clone()
    }
}
