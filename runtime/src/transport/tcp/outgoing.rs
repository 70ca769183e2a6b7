//! The outgoing connection to one peer: the shared [`Link`] life cycle over a socket we dial,
//! run the session handshake on (read the challenge, answer with a hello, read the
//! confirmation), and then only write frames to. The link is up, and reports its session and
//! `PeerUp`, once the peer's confirmation verified.
//!
//! Writes use `writev`, which raises `SIGPIPE` on a reset connection; the Rust runtime ignores
//! that signal in every Rust `main`, so the write fails with `EPIPE` and the peer goes down.
//!
//! Readiness events are hints only: every decision is confirmed by a system call (`take_error`,
//! `peer_addr`, a read or a write returning `WouldBlock`). This keeps the machine correct when
//! an event meant for a previous socket of the same peer (same token) arrives after a redial.

use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Interest, Token};
use picsou_core::ReplicaId;
use picsou_core::keys::MacKey;

use super::queue::{Drain, SendQueue, Written, drain_into};
use super::{Ctx, Readiness, socket};
use crate::transport::accept::write_now;
use crate::transport::handshake::{DialHandshake, DialProgress, SessionContext, SessionDirection};
use crate::transport::link::{Due, Link, Released};
use crate::transport::{EncodedFrame, LinkError, SendStatus, TcpOptions, TransportEvent, TransportStats};

/// An established connection.
#[derive(Debug)]
pub(super) struct Up {
    stream: TcpStream,
    /// The last write hit `WouldBlock`: wait for writable readiness before writing again.
    write_blocked: bool,
}

/// A connection in the making: connecting, then the handshake.
#[derive(Debug)]
pub(super) struct Dial {
    stream: TcpStream,
    /// Set once the connect completed.
    handshake: Option<DialHandshake>,
}

/// Our sending side towards one peer.
#[derive(Debug)]
pub(super) struct Outgoing {
    addr: SocketAddr,
    key: MacKey,
    session: SessionContext,
    /// Token of this peer's socket in the poller (the same for every redial).
    token: Token,
    /// The life cycle; while dialling, the socket being connected and its handshake.
    link: Link<Dial, Up, SendQueue>,
}

impl Outgoing {
    /// A peer not dialled yet, due for its first dial at `now` ([`Outgoing::on_timer`]).
    pub(super) fn new(
        peer: ReplicaId,
        addr: SocketAddr,
        key: MacKey,
        session: SessionContext,
        token: Token,
        opts: &TcpOptions,
        now: std::time::Instant,
    ) -> Self {
        Self { addr, key, session, token, link: Link::new(peer, opts.backoff_min, opts.backoff_max, now) }
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
        let peer = self.link.peer();
        if let Some((dial, _)) = self.link.dialing_mut() {
            if dial.handshake.is_none() {
                match socket::connect_status(&dial.stream) {
                    Ok(true) => {
                        tracing::trace!(%peer, addr = %self.addr, "connected; handshake");
                        dial.handshake = Some(DialHandshake::new(ctx.local, peer, self.key, self.session));
                    }
                    Ok(false) => return,
                    Err(source) => return self.fail(LinkError::Connect { addr: self.addr, source }, ctx),
                }
            }
            self.continue_handshake(ctx);
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
        self.link.dialing(Dial { stream, handshake: None }, Some(ctx.now + ctx.opts.connect_timeout));
    }

    /// Reads what the handshake needs, answers the challenge; once the confirmation verified,
    /// the link is up (its session reported first) and frames flow.
    fn continue_handshake(&mut self, ctx: &mut Ctx<'_>) {
        let peer = self.link.peer();
        let addr = self.addr;
        let session = loop {
            let Some((Dial { stream, handshake: Some(hs) }, _)) = self.link.dialing_mut() else { return };
            match hs.read_from(stream) {
                Ok(Ok(DialProgress::More)) => return,
                Ok(Ok(DialProgress::Send(hello))) => {
                    if !write_now(stream, &hello) {
                        let source = std::io::Error::other("cannot send the hello");
                        return self.fail(LinkError::Write { addr, source }, ctx);
                    }
                }
                Ok(Ok(DialProgress::Done(session))) => break session,
                Ok(Err(reason)) => return self.fail(LinkError::Handshake { addr, reason }, ctx),
                Err(source) => return self.fail(LinkError::Connect { addr, source }, ctx),
            }
        };
        ctx.report.events.push(TransportEvent::Session { peer, direction: SessionDirection::Send, session });
        if !self.link.connected(ctx.now, &mut ctx.report, |d| Up { stream: d.stream, write_blocked: false }) {
            return;
        }
        tracing::debug!(%peer, addr = %self.addr, "connected");
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
            Some(Released::Dialing(Dial { mut stream, .. }) | Released::Up(Up { mut stream, .. })) => {
                let _ = ctx.registry.deregister(&mut stream);
            }
            None => {}
        }
    }
}
