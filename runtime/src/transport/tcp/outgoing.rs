//! The outgoing connection to one peer: the shared [`Link`] life cycle over a socket we dial,
//! say hello on, and write frames to.
//!
//! Writes use `writev`, which raises `SIGPIPE` on a reset connection; the Rust runtime ignores
//! that signal in every Rust `main`, so the write fails with `EPIPE` and the peer goes down.
//!
//! Readiness events are hints only: every decision is confirmed by a system call (`take_error`,
//! `peer_addr`, a read or a write returning `WouldBlock`). This keeps the machine correct when
//! an event meant for a previous socket of the same peer (same token) arrives after a redial.

use std::net::SocketAddr;

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Interest, Token};
use picsou_core::ReplicaId;
use picsou_core::keys::MacKey;

use super::queue::{Drain, SendQueue, Written, drain_into};
use super::{Ctx, Readiness, socket};
use crate::transport::link::{Due, Link, Released};
use crate::transport::{EncodedFrame, LinkError, SendStatus, TcpOptions, TransportStats, hello};

/// An established connection.
#[derive(Debug)]
pub(super) struct Up {
    stream: TcpStream,
    /// The last write hit `WouldBlock`: wait for writable readiness before writing again.
    write_blocked: bool,
}

/// Our sending side towards one peer.
#[derive(Debug)]
pub(super) struct Outgoing {
    addr: SocketAddr,
    key: MacKey,
    /// Token of this peer's socket in the poller (the same for every redial).
    token: Token,
    /// The life cycle; while dialling, the socket being connected.
    link: Link<TcpStream, Up, SendQueue>,
}

impl Outgoing {
    /// A peer not dialled yet, due for its first dial at `now` ([`Outgoing::on_timer`]).
    pub(super) fn new(
        peer: ReplicaId,
        addr: SocketAddr,
        key: MacKey,
        token: Token,
        opts: &TcpOptions,
        now: std::time::Instant,
    ) -> Self {
        Self { addr, key, token, link: Link::new(peer, opts.backoff_min, opts.backoff_max, now) }
    }

    /// The peer dialled us: redial now if the link is down (see [`Link::peer_alive`]).
    pub(super) fn peer_alive(&mut self, now: std::time::Instant) {
        self.link.peer_alive(now);
    }

    /// Takes a frame for the peer. Takes no [`Ctx`]: nothing here needs the clock, which would
    /// otherwise be read per frame.
    #[inline]
    pub(super) fn send(&mut self, frame: EncodedFrame, stats: &mut TransportStats, max_queued: usize) -> SendStatus {
        self.link.send(frame, stats, max_queued)
    }

    /// Writes queued frames if the socket can take them.
    pub(super) fn flush(&mut self, ctx: &mut Ctx<'_>) {
        if let Some((Up { write_blocked: false, .. }, queue)) = self.link.up_mut()
            && !queue.is_empty()
        {
            self.write(ctx);
        }
    }

    /// The poller reported readiness on this peer's token.
    pub(super) fn on_ready(&mut self, ready: Readiness, ctx: &mut Ctx<'_>) {
        if let Some((stream, _)) = self.link.dialing_mut() {
            match socket::connect_status(stream) {
                Ok(true) => self.connected(ctx),
                Ok(false) => {}
                Err(source) => self.fail(LinkError::Connect { addr: self.addr, source }, ctx),
            }
            return;
        }
        let Some((up, _)) = self.link.up_mut() else { return };
        if ready.writable {
            up.write_blocked = false;
        }
        if ready.readable || ready.error {
            // The peer never writes on this connection: readability means EOF or a reset (or
            // a misbehaving peer, whose bytes are discarded).
            if let Err(reason) = socket::probe_closed(&mut up.stream) {
                self.fail(reason, ctx);
                return;
            }
        }
        self.flush(ctx);
    }

    /// Runs the dial timer and the connect timeout.
    pub(super) fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        match self.link.due(ctx.now) {
            Some(Due::Dial) => self.dial(ctx),
            Some(Due::DialTimedOut) => {
                let reason = LinkError::ConnectTimeout { addr: self.addr, after: ctx.opts.connect_timeout };
                self.fail(reason, ctx);
            }
            None => {}
        }
    }

    /// When [`Outgoing::on_timer`] has something to do.
    pub(super) fn deadline(&self) -> Option<std::time::Instant> {
        self.link.deadline()
    }

    /// Starts a non-blocking connect.
    fn dial(&mut self, ctx: &mut Ctx<'_>) {
        let mut stream = match TcpStream::connect(self.addr) {
            Ok(s) => s,
            Err(source) => return self.fail(LinkError::Dial { addr: self.addr, source }, ctx),
        };
        socket::configure_outgoing(&stream, ctx.opts);
        if let Err(source) = ctx.registry.register(&mut stream, self.token, Interest::READABLE | Interest::WRITABLE) {
            return self.fail(LinkError::Dial { addr: self.addr, source }, ctx);
        }
        tracing::trace!(peer = %self.link.peer(), addr = %self.addr, "dialling");
        self.link.dialing(stream, Some(ctx.now + ctx.opts.connect_timeout));
    }

    /// The connect completed: say hello and start writing.
    fn connected(&mut self, ctx: &mut Ctx<'_>) {
        if !self.link.connected(ctx.now, &mut ctx.report, |stream| Up { stream, write_blocked: false }) {
            return;
        }
        let peer = self.link.peer();
        tracing::debug!(%peer, addr = %self.addr, "connected");
        let hello = hello::encode(ctx.local, peer, hello::next_nonce(), &self.key);
        self.link.queue_mut().push_hello(Bytes::copy_from_slice(&hello));
        self.write(ctx);
    }

    /// Drains the queue into the socket (while up).
    fn write(&mut self, ctx: &mut Ctx<'_>) {
        let Some((up, queue)) = self.link.up_mut() else { return };
        let mut written = Written::default();
        let outcome = drain_into(queue, &mut up.stream, &mut written);
        ctx.report.stats.frames_sent += written.frames;
        ctx.report.stats.bytes_sent += written.bytes;
        match outcome {
            Drain::Empty => {}
            Drain::Blocked => up.write_blocked = true,
            Drain::Failed(source) => return self.fail(LinkError::Write { addr: self.addr, source }, ctx),
        }
        self.link.drained(ctx.opts.max_queued_bytes, &mut ctx.report);
    }

    /// The dial failed or the connection broke: the link goes down, the socket is closed.
    fn fail(&mut self, reason: LinkError, ctx: &mut Ctx<'_>) {
        match self.link.down(ctx.now, reason, &mut ctx.report) {
            Some(Released::Dialing(mut stream) | Released::Up(Up { mut stream, .. })) => {
                let _ = ctx.registry.deregister(&mut stream);
            }
            None => {}
        }
    }
}
