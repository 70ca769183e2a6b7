//! The outgoing connection to one peer: a small state machine that dials, says hello, writes
//! frames, and redials with backoff when the connection breaks.
//!
//! ```text
//!          dial               connected: hello queued, PeerUp
//!   Down ────────► Connecting ──────────────────────────────► Up
//!    ▲                │ refused, timed out                      │ EOF, reset, write error
//!    └────────────────┴─────────────────────────────────────────┘ (redial after a backoff)
//! ```
//!
//! Frames are queued while connecting (the first dial of a starting replica should not lose
//! the first frames) and dropped while down: the protocol recovers lost frames, and queueing
//! for a dead peer would only grow memory. `PeerDown` is reported once per loss of an
//! established connection and once for the first failed dial; failed redials of a peer already
//! reported down are only logged, so a dead peer does not flood the node with events.
//!
//! Writes use `writev`, which raises `SIGPIPE` on a reset connection; the Rust runtime ignores
//! that signal in every Rust `main`, so the write fails with `EPIPE` and the peer goes down.
//!
//! Readiness events are hints only: every decision is confirmed by a system call (`take_error`,
//! `peer_addr`, a read or a write returning `WouldBlock`). This keeps the machine correct when
//! an event meant for a previous socket of the same peer (same token) arrives after a redial.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Interest, Token};
use picsou_core::ReplicaId;
use picsou_core::keys::MacKey;

use super::queue::{Drain, SendQueue, Written, drain_into};
use super::{Ctx, Readiness, socket};
use crate::transport::backoff::Backoff;
use crate::transport::{EncodedFrame, SendStatus, TcpOptions, TransportEvent, TransportStats, hello};

/// Shortest redial delay, whatever the options say.
const MIN_BACKOFF: Duration = Duration::from_millis(1);
/// A connection that lasted this long was a success: the backoff starts again from its
/// minimum. Resetting on every completed connect instead would make a peer that accepts and
/// then immediately closes (it rejects our hello: a key mismatch) be redialled at the minimum
/// delay forever.
const STABLE_AFTER: Duration = Duration::from_secs(1);

/// Where the connection is.
#[derive(Debug)]
enum Link {
    /// A non-blocking connect is in flight.
    Connecting {
        /// The socket.
        stream: TcpStream,
        /// Give up then.
        deadline: Instant,
    },
    /// Connected; the hello is the first thing in the queue.
    Up {
        /// The socket.
        stream: TcpStream,
        /// When the connect completed.
        since: Instant,
        /// The last write hit `WouldBlock`: wait for writable readiness before writing again.
        write_blocked: bool,
    },
    /// Not connected; dial again then.
    Down {
        /// Next dial attempt.
        retry_at: Instant,
    },
}

/// Our sending side towards one peer.
#[derive(Debug)]
pub(super) struct Outgoing {
    peer: ReplicaId,
    addr: SocketAddr,
    key: MacKey,
    /// Token of this peer's socket in the poller (the same for every redial).
    token: Token,
    link: Link,
    queue: SendQueue,
    backoff: Backoff,
    /// `send` said `Full` and the node waits for `Writable`.
    reported_full: bool,
    /// `PeerDown` was reported and no `PeerUp` since.
    announced_down: bool,
}

impl Outgoing {
    /// A peer not dialled yet, due for its first dial at `now` ([`Outgoing::on_timer`]).
    pub(super) fn new(
        peer: ReplicaId,
        addr: SocketAddr,
        key: MacKey,
        token: Token,
        opts: &TcpOptions,
        now: Instant,
    ) -> Self {
        Self {
            peer,
            addr,
            key,
            token,
            link: Link::Down { retry_at: now },
            queue: SendQueue::default(),
            // A zero delay would redial in a tight loop when dials fail synchronously.
            backoff: Backoff::new(opts.backoff_min.max(MIN_BACKOFF), opts.backoff_max),
            reported_full: false,
            announced_down: false,
        }
    }

    /// Takes a frame for the peer (see the module documentation for what happens when down).
    /// Takes no [`Ctx`]: nothing here needs the clock, which would otherwise be read per frame.
    pub(super) fn send(&mut self, frame: EncodedFrame, stats: &mut TransportStats, max_queued: usize) -> SendStatus {
        if matches!(self.link, Link::Down { .. }) {
            stats.frames_dropped += 1;
            return SendStatus::Room;
        }
        if !frame.is_empty() {
            self.queue.push(frame);
        }
        if self.queue.bytes() > max_queued {
            self.reported_full = true;
            SendStatus::Full
        } else {
            SendStatus::Room
        }
    }

    /// Writes queued frames if the socket can take them.
    pub(super) fn flush(&mut self, ctx: &mut Ctx<'_>) {
        if let Link::Up { write_blocked: false, .. } = self.link
            && !self.queue.is_empty()
        {
            self.write(ctx);
        }
    }

    /// The poller reported readiness on this peer's token.
    pub(super) fn on_ready(&mut self, ready: Readiness, ctx: &mut Ctx<'_>) {
        match &mut self.link {
            Link::Down { .. } => {}
            Link::Connecting { stream, .. } => match socket::connect_status(stream) {
                Ok(true) => self.connected(ctx),
                Ok(false) => {}
                Err(e) => self.fail(format!("connect to {}: {e}", self.addr), ctx),
            },
            Link::Up { stream, write_blocked, .. } => {
                if ready.writable {
                    *write_blocked = false;
                }
                if ready.readable || ready.error {
                    // The peer never writes on this connection: readability means EOF or a
                    // reset (or a misbehaving peer, whose bytes are discarded).
                    if let Err(reason) = socket::probe_closed(stream) {
                        self.fail(reason, ctx);
                        return;
                    }
                }
                self.flush(ctx);
            }
        }
    }

    /// Runs the dial timer and the connect timeout.
    pub(super) fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        match self.link {
            Link::Down { retry_at } if retry_at <= ctx.now => self.dial(ctx),
            Link::Connecting { deadline, .. } if deadline <= ctx.now => {
                let reason = format!("connect to {} timed out after {:?}", self.addr, ctx.opts.connect_timeout);
                self.fail(reason, ctx);
            }
            _ => {}
        }
    }

    /// When [`Outgoing::on_timer`] has something to do.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.link {
            Link::Down { retry_at } => Some(retry_at),
            Link::Connecting { deadline, .. } => Some(deadline),
            Link::Up { .. } => None,
        }
    }

    /// Starts a non-blocking connect.
    fn dial(&mut self, ctx: &mut Ctx<'_>) {
        let mut stream = match TcpStream::connect(self.addr) {
            Ok(s) => s,
            Err(e) => return self.fail(format!("dial {}: {e}", self.addr), ctx),
        };
        socket::configure_outgoing(&stream, ctx.opts);
        if let Err(e) = ctx.registry.register(&mut stream, self.token, Interest::READABLE | Interest::WRITABLE) {
            return self.fail(format!("register the socket to {}: {e}", self.addr), ctx);
        }
        tracing::trace!(peer = %self.peer, addr = %self.addr, "dialling");
        self.link = Link::Connecting { stream, deadline: ctx.now + ctx.opts.connect_timeout };
    }

    /// The connect completed: say hello and start writing.
    fn connected(&mut self, ctx: &mut Ctx<'_>) {
        let Link::Connecting { stream, .. } = std::mem::replace(&mut self.link, Link::Down { retry_at: ctx.now })
        else {
            return;
        };
        tracing::debug!(peer = %self.peer, addr = %self.addr, "connected");
        ctx.stats.connects += 1;
        self.announced_down = false;
        ctx.events.push(TransportEvent::PeerUp(self.peer));
        let hello = hello::encode(ctx.local, self.peer, hello::next_nonce(), &self.key);
        self.queue.push_hello(Bytes::copy_from_slice(&hello));
        self.link = Link::Up { stream, since: ctx.now, write_blocked: false };
        self.write(ctx);
    }

    /// Drains the queue into the socket (state `Up`).
    fn write(&mut self, ctx: &mut Ctx<'_>) {
        let Link::Up { stream, write_blocked, .. } = &mut self.link else { return };
        let mut written = Written::default();
        let outcome = drain_into(&mut self.queue, stream, &mut written);
        ctx.stats.frames_sent += written.frames;
        ctx.stats.bytes_sent += written.bytes;
        match outcome {
            Drain::Empty => {}
            Drain::Blocked => *write_blocked = true,
            Drain::Failed(e) => return self.fail(format!("write to {}: {e}", self.addr), ctx),
        }
        if self.reported_full && self.queue.bytes() <= ctx.opts.max_queued_bytes / 2 {
            self.reported_full = false;
            ctx.events.push(TransportEvent::Writable(self.peer));
        }
    }

    /// The dial failed or the connection broke: drop the socket and the queue, schedule a
    /// redial.
    fn fail(&mut self, reason: String, ctx: &mut Ctx<'_>) {
        match std::mem::replace(&mut self.link, Link::Down { retry_at: ctx.now }) {
            Link::Connecting { mut stream, .. } => {
                let _ = ctx.registry.deregister(&mut stream);
            }
            Link::Up { mut stream, since, .. } => {
                let _ = ctx.registry.deregister(&mut stream);
                ctx.stats.disconnects += 1;
                if ctx.now.saturating_duration_since(since) >= STABLE_AFTER {
                    self.backoff.reset();
                }
            }
            Link::Down { .. } => {}
        }
        let delay = self.backoff.next_delay();
        self.link = Link::Down { retry_at: ctx.now + delay };
        ctx.stats.frames_dropped += self.queue.clear().0.frames;
        if self.reported_full {
            self.reported_full = false;
            ctx.events.push(TransportEvent::Writable(self.peer));
        }
        if self.announced_down {
            tracing::debug!(peer = %self.peer, "{reason}; redial in {delay:?}");
        } else {
            tracing::debug!(peer = %self.peer, "peer down: {reason}; redial in {delay:?}");
            self.announced_down = true;
            ctx.events.push(TransportEvent::PeerDown { peer: self.peer, reason });
        }
    }
}
