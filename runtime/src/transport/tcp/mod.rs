//! TCP transport: non-blocking sockets driven by mio (epoll) from the node thread.
//!
//! The transport has no thread of its own: everything happens inside the node's calls to
//! [`Transport::send`], [`Transport::flush`] and [`Transport::poll`], so frames never cross a
//! thread boundary and no lock is taken on the data path.
//!
//! Connections are one-way (see [`crate::transport`]): for every peer there is one
//! `outgoing::Outgoing` connection that we dial and only write to, and any number of
//! `incoming::Incoming` connections that peers dialled and we only read from. An incoming
//! connection counts once its hello proves which peer holds it; a newer authenticated
//! connection of the same peer replaces the older one (the peer restarted or redialled).
//!
//! Readiness is edge-triggered: a socket is reported once when it becomes readable or
//! writable, so every reader and writer continues until `WouldBlock`, except readers that
//! spend their per-poll budget (`READ_BUDGET`, fairness between peers): those stay on a ready
//! list that the next poll serves without sleeping.
//!
//! Timers (redials, connect timeouts, hello deadlines) are few, one per peer or per pending
//! connection, so they are found by a scan rather than kept in a timer wheel.

mod incoming;
mod outgoing;
mod queue;
mod socket;
mod waker;

pub use socket::{connect_status, probe_closed};

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use picsou_core::ReplicaId;
use picsou_core::bufpool::BufPool;
use picsou_core::keys::LinkKeys;

use self::incoming::{FramesProgress, HELLO_TIMEOUT, HelloProgress, Incoming};
use self::outgoing::Outgoing;
use self::waker::TcpWaker;
use super::{
    EncodedFrame, SendStatus, TcpOptions, Transport, TransportError, TransportEvent, TransportSetup, TransportStats,
    Wake, hello,
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
/// Connections allowed to wait for their hello at once; more are refused on accept, so that
/// clients which connect and say nothing cannot exhaust file descriptors.
const MAX_UNAUTHENTICATED: usize = 256;
/// After an accept error other than "no more connections" (e.g. out of file descriptors), wait
/// this long before accepting again instead of spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Readiness events fetched per `epoll_wait`.
const EVENTS_CAPACITY: usize = 1024;

/// What the parts of the transport share while handling one call: the poller's registry, the
/// event buffer, the counters and the options.
struct Ctx<'a> {
    registry: &'a Registry,
    events: &'a mut Vec<TransportEvent>,
    stats: &'a mut TransportStats,
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
    listener: TcpListener,
    waker: Arc<TcpWaker>,
    local: ReplicaId,
    keys: LinkKeys,
    max_frame: usize,
    /// Buffers of large received frames, recycled (see [`picsou_core::bufpool`]).
    frame_pool: BufPool,
    opts: TcpOptions,
    /// Our outgoing connections, one per peer.
    peers: Vec<Outgoing>,
    /// Index in `peers` of each peer.
    peer_index: HashMap<ReplicaId, usize>,
    /// Accepted connections.
    incoming: HashMap<Token, Incoming>,
    /// The authenticated incoming connection of each peer.
    incoming_by_peer: HashMap<ReplicaId, Token>,
    /// Newest hello nonce accepted from each peer (replay protection).
    last_nonce: HashMap<ReplicaId, u64>,
    /// Incoming connections that may have unread bytes.
    ready: VecDeque<Token>,
    next_token: usize,
    receiving: bool,
    /// Events produced outside `poll` (or not yet handed out).
    pending: Vec<TransportEvent>,
    stats: TransportStats,
    accept_retry_at: Option<Instant>,
    /// When the last poll round began (timers of a flush between polls use it).
    last_poll: Instant,
}

impl TcpTransport {
    /// Starts listening on `setup.listen` and dialling every peer.
    pub fn new(setup: TransportSetup, opts: &TcpOptions) -> Result<Self, TransportError> {
        let TransportSetup { local, listen, peers: peer_list, keys, max_frame_bytes } = setup;
        let poll = Poll::new().map_err(|source| TransportError::Io { context: "create the poller", source })?;
        let mut listener = socket::listen(listen, opts)
            .map_err(|source| TransportError::Listen { address: listen.to_string(), source })?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|source| TransportError::Io { context: "register the listener", source })?;
        let waker = Waker::new(poll.registry(), WAKER)
            .map_err(|source| TransportError::Io { context: "create the waker", source })?;
        let mut peer_index = HashMap::new();
        let mut peer_keys = Vec::with_capacity(peer_list.len());
        for &(peer, addr) in &peer_list {
            if peer == local {
                return Err(TransportError::Config(format!("{local} is in its own peer list")));
            }
            if peer_index.insert(peer, peer_keys.len()).is_some() {
                return Err(TransportError::Config(format!("peer {peer} is listed twice")));
            }
            let key = keys.key_for(peer).ok_or_else(|| TransportError::Config(format!("no link key for {peer}")))?;
            peer_keys.push((peer, addr, key));
        }
        let mut t = Self {
            poll,
            mio_events: Events::with_capacity(EVENTS_CAPACITY),
            listener,
            waker: Arc::new(TcpWaker(waker)),
            local,
            keys,
            max_frame: max_frame_bytes,
            frame_pool: super::framer::receive_pool(),
            opts: opts.clone(),
            peers: Vec::with_capacity(peer_keys.len()),
            peer_index,
            incoming: HashMap::new(),
            incoming_by_peer: HashMap::new(),
            last_nonce: HashMap::new(),
            ready: VecDeque::new(),
            next_token: FIRST_PEER_TOKEN + peer_keys.len(),
            receiving: true,
            pending: Vec::new(),
            stats: TransportStats::default(),
            accept_retry_at: None,
            last_poll: Instant::now(),
        };
        let now = Instant::now();
        for (i, (peer, addr, key)) in peer_keys.into_iter().enumerate() {
            t.peers.push(Outgoing::new(peer, addr, key, Token(FIRST_PEER_TOKEN + i), opts, now));
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
            events: &mut self.pending,
            stats: &mut self.stats,
            opts: &self.opts,
            local: self.local,
            now,
        };
        (&mut self.peers, ctx)
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

    /// Accepts every pending connection (edge-triggered: until `WouldBlock`).
    fn accept_all(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, source)) => {
                    let waiting = self.incoming.values().filter(|c| c.peer().is_none()).count();
                    if waiting >= MAX_UNAUTHENTICATED {
                        self.reject_source(
                            source,
                            None,
                            format!("over {MAX_UNAUTHENTICATED} connections without hello"),
                        );
                        continue;
                    }
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if let Err(e) = self.poll.registry().register(&mut stream, token, Interest::READABLE) {
                        tracing::warn!(%source, "cannot register an accepted connection: {e}");
                        continue;
                    }
                    tracing::trace!(%source, "accepted");
                    self.incoming.insert(token, Incoming::new(stream, source, now));
                    // The hello may already be there.
                    self.list_ready(token);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
                Err(e) => {
                    tracing::warn!("accept: {e}; retrying in {ACCEPT_RETRY:?}");
                    self.accept_retry_at = Some(now + ACCEPT_RETRY);
                    return;
                }
            }
        }
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

    /// Reads what an incoming connection has: its hello, then (while receiving) frames.
    fn service(&mut self, token: Token) {
        let Some(conn) = self.incoming.get_mut(&token) else { return };
        if conn.peer().is_none() {
            match conn.read_hello() {
                HelloProgress::Pending => return,
                HelloProgress::Complete(h) => {
                    if !self.authenticate(token, &h) {
                        return;
                    }
                }
                HelloProgress::Garbage(reason) => return self.reject(token, None, reason),
                HelloProgress::Closed { partial: true } => {
                    return self.reject(token, None, "closed in the middle of its hello".into());
                }
                HelloProgress::Closed { partial: false } => {
                    tracing::debug!(source = %conn.source(), "connection closed before its hello");
                    return self.close(token);
                }
                HelloProgress::Failed(e) => {
                    tracing::debug!(source = %conn.source(), "connection failed before its hello: {e}");
                    return self.close(token);
                }
            }
        }
        if !self.receiving {
            // `set_receiving(true)` lists every connection again.
            return;
        }
        let Some(conn) = self.incoming.get_mut(&token) else { return };
        match conn.read_frames(READ_BUDGET, &mut self.pending, &mut self.stats) {
            FramesProgress::Drained => {}
            FramesProgress::Budget => self.list_ready(token),
            FramesProgress::Closed => {
                tracing::debug!(peer = ?conn.peer(), source = %conn.source(), "incoming connection closed by the peer");
                self.stats.disconnects += 1;
                self.close(token);
            }
            FramesProgress::Failed(e) => {
                tracing::debug!(peer = ?conn.peer(), source = %conn.source(), "incoming connection failed: {e}");
                self.stats.disconnects += 1;
                self.close(token);
            }
            FramesProgress::Bad(e) => {
                let peer = conn.peer();
                self.reject(token, peer, e.to_string());
            }
        }
    }

    /// Checks a complete hello; on success the connection becomes the peer's incoming
    /// connection (replacing an older one), on failure it is rejected. True if accepted.
    fn authenticate(&mut self, token: Token, h: &[u8; hello::HELLO_LEN]) -> bool {
        let claimed = hello::parse(h).ok().map(|c| c.from);
        let last = claimed.and_then(|p| self.last_nonce.get(&p).copied()).unwrap_or(0);
        let (peers, keys) = (&self.peer_index, &self.keys);
        let verified =
            hello::verify(h, self.local, |p| if peers.contains_key(&p) { keys.key_for(p) } else { None }, last);
        let c = match verified {
            Ok(c) => c,
            Err(e) => {
                self.reject(token, claimed, e.to_string());
                return false;
            }
        };
        self.last_nonce.insert(c.from, c.nonce);
        let Some(conn) = self.incoming.get_mut(&token) else { return false };
        conn.authenticated(c.from, self.max_frame, self.frame_pool.clone());
        tracing::debug!(peer = %c.from, source = %conn.source(), "incoming connection authenticated");
        self.stats.connects += 1;
        if let Some(old) = self.incoming_by_peer.insert(c.from, token)
            && old != token
        {
            tracing::debug!(peer = %c.from, "a newer connection replaces the previous one");
            self.stats.disconnects += 1;
            self.close(old);
        }
        true
    }

    /// Closes an incoming connection and reports why.
    fn reject(&mut self, token: Token, claimed: Option<ReplicaId>, reason: String) {
        let Some(source) = self.incoming.get(&token).map(Incoming::source) else { return };
        self.close(token);
        self.reject_source(source, claimed, reason);
    }

    /// Reports a rejected connection.
    fn reject_source(&mut self, source: SocketAddr, claimed: Option<ReplicaId>, reason: String) {
        tracing::debug!(%source, ?claimed, "rejected: {reason}");
        self.stats.rejected += 1;
        self.pending.push(TransportEvent::Rejected { source: source.to_string(), claimed, reason });
    }

    /// Forgets an incoming connection (dropping it closes the socket).
    fn close(&mut self, token: Token) {
        let Some(mut conn) = self.incoming.remove(&token) else { return };
        if let Some(peer) = conn.peer()
            && self.incoming_by_peer.get(&peer) == Some(&token)
        {
            self.incoming_by_peer.remove(&peer);
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
        let expired: Vec<Token> = self
            .incoming
            .iter()
            .filter(|(_, c)| c.hello_deadline().is_some_and(|d| d <= now))
            .map(|(&t, _)| t)
            .collect();
        for token in expired {
            self.reject(token, None, format!("no hello within {HELLO_TIMEOUT:?}"));
        }
        if self.accept_retry_at.is_some_and(|t| t <= now) {
            self.accept_retry_at = None;
            self.accept_all(now);
        }
    }

    /// The earliest timer.
    fn next_timer(&self) -> Option<Instant> {
        let peers = self.peers.iter().filter_map(Outgoing::deadline);
        let hellos = self.incoming.values().filter_map(Incoming::hello_deadline);
        peers.chain(hellos).chain(self.accept_retry_at).min()
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
}
