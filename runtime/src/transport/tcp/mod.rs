//! TCP transport: non-blocking sockets driven by mio (epoll) from the node thread.
//!
//! The transport has no thread of its own: everything happens inside the node's calls to
//! [`Transport::send`], [`Transport::flush`] and [`Transport::poll`], so frames never cross a
//! thread boundary and no lock is taken on the data path.
//!
//! Connections are one-way (see [`crate::transport`]): for every peer there is one
//! `outgoing::Outgoing` connection that we dial and only write to (the shared
//! [`link`](super::link) life cycle), and any number of `incoming::Incoming` connections that
//! peers dialled and we only read from. An accepted connection waits in the shared
//! [`accept`](super::accept) loop until its hello proves which peer holds it; a newer
//! authenticated connection of the same peer replaces the older one (the peer restarted or
//! redialled).
//!
//! Readiness is edge-triggered: a socket is reported once when it becomes readable or
//! writable, so every reader and writer continues until `WouldBlock`, except readers that
//! spend their per-poll budget (`READ_BUDGET`, fairness between peers): those stay on a ready
//! list that the next poll serves without sleeping.
//!
//! Timers (redials, connect timeouts, hello deadlines) are few, one per peer or per waiting
//! connection, so they are found by a scan rather than kept in a timer wheel.

mod incoming;
mod outgoing;
mod queue;
mod socket;
mod waker;

pub use socket::{connect_status, probe_closed};

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use picsou_core::ReplicaId;
use picsou_core::bufpool::BufPool;

use self::incoming::{FramesProgress, Incoming};
use self::outgoing::Outgoing;
use self::waker::TcpWaker;
use super::accept::{self, Acceptor, Arrival, MioAcceptor};
use super::handshake::{HELLO_LEN, SessionDirection};
use super::{
    EncodedFrame, Rejection, Report, SendStatus, TcpOptions, Transport, TransportError, TransportEvent, TransportSetup,
    TransportStats, Wake,
};

/// Token of the listening socket.
const LISTENER: Token = Token(0);
/// Token of the waker.
const WAKER: Token = Token(1);
/// Outgoing connection `i` (index in the peer list) uses token `FIRST_PEER_TOKEN + i` for every
/// redial; incoming connections take fresh tokens after those, never reused.
const FIRST_PEER_TOKEN: usize = 2;
/// Bytes read from one incoming connection per poll before the others get their turn.
const READ_BUDGET: usize = 1 << 20;
/// Readiness events fetched per `epoll_wait`.
const EVENTS_CAPACITY: usize = 1024;

/// What the parts of the transport share while handling one call: the poller's registry, where
/// events and counters go, and the options.
struct Ctx<'a> {
    registry: &'a Registry,
    report: Report<'a>,
    opts: &'a TcpOptions,
    local: ReplicaId,
    now: Instant,
}

/// The readiness an event reported (hints: handlers confirm with system calls).
#[derive(Clone, Copy, Debug)]
struct Readiness {
    /// Readable, or the read side closed.
    readable: bool,
    /// Writable, or the write side closed.
    writable: bool,
    /// An error is pending on the socket.
    error: bool,
}

impl Readiness {
    fn of(event: &Event) -> Self {
        Self {
            readable: event.is_readable() || event.is_read_closed(),
            writable: event.is_writable() || event.is_write_closed(),
            error: event.is_error(),
        }
    }
}

/// The TCP transport. See the module documentation.
#[derive(Debug)]
pub struct TcpTransport {
    poll: Poll,
    mio_events: Events,
    waker: Arc<TcpWaker>,
    local: ReplicaId,
    max_frame: usize,
    /// Buffers of large received frames, recycled (see [`picsou_core::bufpool`]).
    frame_pool: BufPool,
    opts: TcpOptions,
    /// Our outgoing connections, one per peer.
    peers: Vec<Outgoing>,
    /// Index in `peers` of each peer.
    peer_index: HashMap<ReplicaId, usize>,
    /// The listener and the accepted connections waiting for their hello.
    acceptor: MioAcceptor,
    /// Authenticated incoming connections.
    incoming: HashMap<Token, Incoming>,
    /// The authenticated incoming connection of each peer.
    incoming_by_peer: HashMap<ReplicaId, Token>,
    /// Incoming connections that may have unread bytes.
    ready: VecDeque<Token>,
    receiving: bool,
    /// Events produced outside `poll` (or not yet handed out).
    pending: Vec<TransportEvent>,
    stats: TransportStats,
    /// When the last poll round began (timers of a flush between polls use it).
    last_poll: Instant,
}

impl TcpTransport {
    /// Starts listening on `setup.listen` and dialling every peer.
    pub fn new(setup: TransportSetup, opts: &TcpOptions) -> Result<Self, TransportError> {
        let peer_keys = setup.checked_peers()?;
        let TransportSetup { local, listen, keys, session, max_frame_bytes, .. } = setup;
        let poll = Poll::new().map_err(|source| TransportError::Io { context: "create the poller", source })?;
        let mut listener =
            socket::listen(listen, opts).map_err(|source| TransportError::Listen { address: listen, source })?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|source| TransportError::Io { context: "register the listener", source })?;
        let waker = Waker::new(poll.registry(), WAKER)
            .map_err(|source| TransportError::Io { context: "create the waker", source })?;
        let peer_index = peer_keys.iter().enumerate().map(|(i, (peer, _, _))| (*peer, i)).collect();
        let waiting = Acceptor::new(local, keys, session, peer_keys.iter().map(|(peer, _, _)| *peer), HELLO_LEN);
        // Incoming connections take tokens after those of the outgoing ones.
        let acceptor = MioAcceptor::new(listener, waiting, FIRST_PEER_TOKEN + peer_keys.len(), |_| {});
        let mut t = Self {
            poll,
            mio_events: Events::with_capacity(EVENTS_CAPACITY),
            waker: Arc::new(TcpWaker(waker)),
            local,
            max_frame: max_frame_bytes,
            frame_pool: super::framer::receive_pool(),
            opts: opts.clone(),
            peers: Vec::with_capacity(peer_keys.len()),
            peer_index,
            acceptor,
            incoming: HashMap::new(),
            incoming_by_peer: HashMap::new(),
            ready: VecDeque::new(),
            receiving: true,
            pending: Vec::new(),
            stats: TransportStats::default(),
            last_poll: Instant::now(),
        };
        let now = Instant::now();
        for (i, (peer, addr, key)) in peer_keys.into_iter().enumerate() {
            t.peers.push(Outgoing::new(peer, addr, key, session, Token(FIRST_PEER_TOKEN + i), opts, now));
        }
        // Dial everyone now (their first dial is due immediately).
        t.run_peer_timers(now);
        tracing::debug!(replica = %local, %listen, peers = t.peers.len(), "tcp transport started");
        Ok(t)
    }

    /// Splits the transport into its outgoing connections and the context they work in.
    fn parts(&mut self, now: Instant) -> (&mut [Outgoing], Ctx<'_>) {
        let ctx = Ctx {
            registry: self.poll.registry(),
            report: Report { events: &mut self.pending, stats: &mut self.stats },
            opts: &self.opts,
            local: self.local,
            now,
        };
        (&mut self.peers, ctx)
    }

    /// Where events and counters go.
    fn report(&mut self) -> Report<'_> {
        Report { events: &mut self.pending, stats: &mut self.stats }
    }

    /// Handles the readiness events of the last `epoll_wait`; true if the waker fired.
    fn dispatch(&mut self, now: Instant) -> bool {
        let events = std::mem::replace(&mut self.mio_events, Events::with_capacity(0));
        let mut woken = false;
        for event in &events {
            match event.token() {
                LISTENER => self.accept_all(now),
                WAKER => woken = true,
                token => {
                    let peer = token.0.checked_sub(FIRST_PEER_TOKEN).filter(|&i| i < self.peers.len());
                    if let Some(i) = peer {
                        let (peers, mut ctx) = self.parts(now);
                        peers[i].on_ready(Readiness::of(event), &mut ctx);
                    } else if self.acceptor.is_waiting(token) {
                        self.read_hello(token);
                    } else {
                        // Read in `service_ready`, also when the socket reports an error or a
                        // hang-up: the read returns it. Unknown tokens belong to connections
                        // closed earlier in this batch.
                        self.list_ready(token);
                    }
                }
            }
        }
        self.mio_events = events;
        woken
    }

    /// Accepts every pending connection; those whose hello is already there carry frames.
    fn accept_all(&mut self, now: Instant) {
        let mut report = Report { events: &mut self.pending, stats: &mut self.stats };
        for (token, a) in self.acceptor.accept_all(self.poll.registry(), now, &mut report) {
            self.authenticated(token, a);
        }
    }

    /// Reads the hello of a waiting connection; once it verified, the connection carries frames.
    fn read_hello(&mut self, token: Token) {
        let mut report = Report { events: &mut self.pending, stats: &mut self.stats };
        if let Some(a) = self.acceptor.read(token, self.poll.registry(), &mut report) {
            self.authenticated(token, a);
        }
    }

    /// The connection becomes the peer's incoming connection (replacing an older one).
    fn authenticated(&mut self, token: Token, a: Arrival<TcpStream>) {
        let peer = a.peer;
        // Before any frame of the connection: the engine checks them with its session key.
        self.pending.push(TransportEvent::Session { peer, direction: SessionDirection::Receive, session: a.session });
        self.incoming.insert(token, Incoming::new(a.conn, a.source, peer, self.max_frame, self.frame_pool.clone()));
        self.stats.connects += 1;
        // A peer that dials us is up: if our link to it is down (it restarted), redial now.
        if let Some(&i) = self.peer_index.get(&peer) {
            self.peers[i].peer_alive(Instant::now());
        }
        if let Some(old) = self.incoming_by_peer.insert(peer, token)
            && old != token
        {
            tracing::debug!(%peer, "a newer connection replaces the previous one");
            self.stats.disconnects += 1;
            self.close(old);
        }
        // Frames may follow the hello already.
        self.list_ready(token);
    }

    /// Puts an incoming connection on the ready list (once).
    fn list_ready(&mut self, token: Token) {
        if let Some(conn) = self.incoming.get_mut(&token)
            && !conn.listed
        {
            conn.listed = true;
            self.ready.push_back(token);
        }
    }

    /// Serves every connection on the ready list once; those that spend their budget go back
    /// on it for the next round.
    fn service_ready(&mut self) {
        for _ in 0..self.ready.len() {
            let Some(token) = self.ready.pop_front() else { break };
            let Some(conn) = self.incoming.get_mut(&token) else { continue };
            conn.listed = false;
            self.service(token);
        }
    }

    /// Reads the frames an incoming connection has (while receiving).
    fn service(&mut self, token: Token) {
        if !self.receiving {
            // `set_receiving(true)` lists every connection again.
            return;
        }
        let Some(conn) = self.incoming.get_mut(&token) else { return };
        match conn.read_frames(READ_BUDGET, &mut self.pending, &mut self.stats) {
            FramesProgress::Drained => {}
            FramesProgress::Budget => self.list_ready(token),
            FramesProgress::Closed => {
                tracing::debug!(peer = %conn.peer(), source = %conn.source(), "incoming connection closed by the peer");
                self.stats.disconnects += 1;
                self.close(token);
            }
            FramesProgress::Failed(e) => {
                tracing::debug!(peer = %conn.peer(), source = %conn.source(), "incoming connection failed: {e}");
                self.stats.disconnects += 1;
                self.close(token);
            }
            FramesProgress::Bad(e) => {
                let (peer, source) = (conn.peer(), conn.source().to_owned());
                self.close(token);
                accept::reject(&mut self.report(), source, Some(peer), Rejection::Framing(e));
            }
        }
    }

    /// Forgets an incoming connection (dropping it closes the socket).
    fn close(&mut self, token: Token) {
        let Some(mut conn) = self.incoming.remove(&token) else { return };
        if self.incoming_by_peer.get(&conn.peer()) == Some(&token) {
            self.incoming_by_peer.remove(&conn.peer());
        }
        let _ = self.poll.registry().deregister(conn.stream_mut());
    }

    /// Dials, redials and times out outgoing connections as due.
    fn run_peer_timers(&mut self, now: Instant) {
        let (peers, mut ctx) = self.parts(now);
        for p in peers {
            if p.deadline().is_some_and(|d| d <= now) {
                p.on_timer(&mut ctx);
            }
        }
    }

    /// Runs every due timer.
    fn run_timers(&mut self, now: Instant) {
        self.run_peer_timers(now);
        let mut report = Report { events: &mut self.pending, stats: &mut self.stats };
        for (token, a) in self.acceptor.run_timers(self.poll.registry(), now, &mut report) {
            self.authenticated(token, a);
        }
    }

    /// The earliest timer.
    fn next_timer(&self) -> Option<Instant> {
        let peers = self.peers.iter().filter_map(Outgoing::deadline);
        peers.chain(self.acceptor.next_deadline()).min()
    }
}

impl Transport for TcpTransport {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn send(&mut self, peer: ReplicaId, frame: EncodedFrame) -> SendStatus {
        let Some(&i) = self.peer_index.get(&peer) else {
            tracing::debug!(%peer, "frame to an unknown peer dropped");
            self.stats.frames_dropped += 1;
            return SendStatus::Room;
        };
        self.peers[i].send(frame, &mut self.stats, self.opts.max_queued_bytes)
    }

    fn flush(&mut self) {
        // The time of the last poll: flushing only schedules redials with it, and a clock
        // read per flush showed in profiles.
        let (peers, mut ctx) = self.parts(self.last_poll);
        for p in peers {
            p.flush(&mut ctx);
        }
    }

    fn poll(&mut self, timeout: Option<Duration>, events: &mut Vec<TransportEvent>) -> Result<(), TransportError> {
        let start = events.len();
        // One clock read per round (the clock showed in profiles when read per step).
        let mut now = Instant::now();
        let deadline = timeout.and_then(|t| now.checked_add(t));
        loop {
            let wait = if !self.pending.is_empty() || !self.ready.is_empty() {
                Some(Duration::ZERO)
            } else {
                let until = match (deadline, self.next_timer()) {
                    (Some(d), Some(t)) => Some(d.min(t)),
                    (d, t) => d.or(t),
                };
                until.map(|u| u.saturating_duration_since(now))
            };
            match self.poll.poll(&mut self.mio_events, wait) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.mio_events.clear(),
                Err(source) => return Err(TransportError::Io { context: "poll", source }),
            }
            if wait != Some(Duration::ZERO) {
                now = Instant::now();
            }
            self.last_poll = now;
            let woken = self.dispatch(now);
            self.run_timers(now);
            self.service_ready();
            events.append(&mut self.pending);
            if events.len() > start || woken || deadline.is_some_and(|d| now >= d) {
                return Ok(());
            }
            now = Instant::now();
        }
    }

    fn waker(&self) -> Arc<dyn Wake> {
        self.waker.clone()
    }

    fn set_receiving(&mut self, receiving: bool) {
        if receiving && !self.receiving {
            // Readiness that arrived while paused was consumed without reading.
            let tokens: Vec<Token> = self.incoming.keys().copied().collect();
            for token in tokens {
                self.list_ready(token);
            }
        }
        self.receiving = receiving;
    }

    fn stats(&self) -> TransportStats {
        self.stats.clone()
    }

    fn has_sessions(&self) -> bool {
        true
    }

    fn disconnect(&mut self, peer: ReplicaId, for_how_long: Duration) {
        self.acceptor.ban(peer, Instant::now() + for_how_long);
        if let Some(token) = self.incoming_by_peer.get(&peer).copied() {
            tracing::info!(%peer, "disconnected for {for_how_long:?}: proven faulty");
            self.stats.disconnects += 1;
            self.close(token);
        }
    }
}
