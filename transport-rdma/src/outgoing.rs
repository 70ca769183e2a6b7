//! Our sending side towards one peer: dial, bootstrap exchange, RDMA writes of records into the
//! peer's ring, and redial with backoff when anything fails (the runtime's shared [`Link`] life
//! cycle: a dial here is a TCP connect, then the bootstrap handshake).
//!
//! ```text
//!          dial          TCP connected: dial sent         answer checked, QP → RTS: PeerUp
//!   Down ───────► Dialing (connect ──────────► handshake) ─────────────────────────────► Up
//!    ▲                       │ refused, timed out    │ closed, bad answer                │ error completion,
//!    └───────────────────────┴───────────────────────┴───────────────────────────────────┘ socket closed
//! ```
//!
//! Up, a flush copies queued frames into records in the staging region (as many as the ring
//! has room for, by the credit the receiver last published and the writes the adapter
//! finished) and posts one RDMA write per contiguous run, all runs of a flush with one
//! doorbell; runs no longer than the inline limit are posted inline. Writes are signaled every
//! [`SIGNAL_EVERY`] and whenever a record asked for credit (the sender may be about to block,
//! and staging space is only reused after its write completed). Any error completion, an
//! impossible credit, or the bootstrap socket closing takes the link down: the queue pair is
//! reset to INIT (its generation is bumped, so completions of the old connection are ignored)
//! and the peer is redialled with exponential backoff.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Token};
use picsou_core::ReplicaId;
use picsou_core::keys::MacKey;
use picsou_runtime::transport::handshake::{DialHandshake, DialProgress, Session, SessionDirection};
use picsou_runtime::transport::link::{Due, Link, Released, State};
use picsou_runtime::transport::tcp::{connect_status, probe_closed};
use picsou_runtime::transport::{EncodedFrame, LinkError, SendStatus, TransportEvent, TransportStats};

use crate::error::RdmaLinkError;
use crate::link::{Ctx, KIND_DATA, KIND_RECV_OUT, RECV_DEPTH, SQ_DEPTH, repost, wr_id};
use crate::memory::Memory;
use crate::ring::{FrameQueue, Geometry, RingWriter, Span, load_credit};
use crate::verbs::{Payload, QueuePair, Registered, WriteRequest};
use crate::wire::{self, ACCEPT_LEN, DIAL_LEN, Info};

/// Signal at least every this many writes (send queue slots are only freed by completions).
pub(crate) const SIGNAL_EVERY: u32 = 32;
/// A sender blocked this long with signaled writes outstanding posts an empty signaled write.
pub(crate) const NUDGE_AFTER: Duration = Duration::from_millis(5);
/// Time for the bootstrap exchange once TCP is connected.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A dial in progress: the TCP connect, then (once connected) the bootstrap exchange.
#[derive(Debug)]
struct Dial {
    stream: TcpStream,
    handshake: Option<Box<Handshake>>,
}

/// The bootstrap exchange as far as it went: the session handshake (challenge, hello,
/// confirmation), our dial message (the hello and our connection info) and the peer's answer.
#[derive(Debug)]
struct Handshake {
    session: DialHandshake,
    info: Info,
    /// Built once the challenge arrived.
    dial: Option<[u8; DIAL_LEN]>,
    sent: usize,
    /// The confirmation verified.
    confirmed: Option<Session>,
    answer: [u8; ACCEPT_LEN],
    got: usize,
}

/// An established connection.
#[derive(Debug)]
struct Up {
    stream: TcpStream,
    w: RingWriter,
    ring_addr: u64,
    ring_rkey: u32,
    /// Writes carry immediates (one side is in event mode).
    imm: bool,
    /// Work requests posted on this connection.
    posted: u64,
    /// Work requests known complete.
    retired: u64,
    /// Signaled writes in flight: (index, ring position after them).
    signaled: VecDeque<(u64, u64)>,
    /// Unsignaled writes since the last signaled one.
    since_signal: u32,
    /// Receives consumed by credit immediates and not posted again yet.
    recv_owed: u32,
    /// Blocked since then with signaled writes outstanding (see [`NUDGE_AFTER`]).
    stalled_since: Option<Instant>,
    /// Nudges posted.
    nudges: u64,
}

/// Our sending side towards one peer.
pub(crate) struct Outgoing<Q> {
    idx: usize,
    addr: SocketAddr,
    key: MacKey,
    token: Token,
    qp: Q,
    /// The queue pair left INIT since its last reset.
    qp_used: bool,
    staging: Arc<Memory>,
    staging_reg: Registered,
    credit: Arc<Memory>,
    credit_reg: Registered,
    link: Link<Dial, Box<Up>, FrameQueue>,
    /// Connection generation (in every work request id).
    epoch: u16,
    spans: Vec<Span>,
    inline_bufs: [Vec<u8>; 2],
}

/// The resources of an outgoing link, allocated and registered once.
pub(crate) struct OutResources<Q> {
    pub(crate) qp: Q,
    pub(crate) staging: Arc<Memory>,
    pub(crate) staging_reg: Registered,
    pub(crate) credit: Arc<Memory>,
    pub(crate) credit_reg: Registered,
}

/// Reads into `buf[*got..]` until full or `WouldBlock`: `Ok(true)` when full; the peer closing
/// first is `UnexpectedEof`.
fn read_some(stream: &mut TcpStream, buf: &mut [u8], got: &mut usize) -> io::Result<bool> {
    while *got < buf.len() {
        match stream.read(&mut buf[*got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => *got += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl<Q: QueuePair> Outgoing<Q> {
    /// A peer not dialled yet, due for its first dial at `now`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        peer: ReplicaId,
        idx: usize,
        addr: SocketAddr,
        key: MacKey,
        token: Token,
        res: OutResources<Q>,
        backoff: (Duration, Duration),
        now: Instant,
    ) -> Self {
        Self {
            idx,
            addr,
            key,
            token,
            qp: res.qp,
            qp_used: false,
            staging: res.staging,
            staging_reg: res.staging_reg,
            credit: res.credit,
            credit_reg: res.credit_reg,
            link: Link::new(peer, backoff.0, backoff.1, now),
            epoch: 0,
            spans: Vec::new(),
            inline_bufs: [Vec::new(), Vec::new()],
        }
    }

    /// The peer.
    pub(crate) fn peer(&self) -> ReplicaId {
        self.link.peer()
    }

    /// Whether the link is up.
    pub(crate) fn is_up(&self) -> bool {
        self.link.up().is_some()
    }

    /// Whether frames wait to be written.
    pub(crate) fn has_queued(&self) -> bool {
        !self.link.queue().is_empty()
    }

    /// The link's state, for diagnostics.
    pub(crate) fn state(&self) -> String {
        match self.link.state() {
            State::Up { conn: up, .. } => format!(
                "up: tail {} credit {} (word {:?}) completed {} free {} posted {} retired {} signaled {:?} nudges {} queued {} frames",
                up.w.tail(),
                up.w.credit(),
                load_credit(&self.credit, 0),
                up.w.completed(),
                up.w.free(),
                up.posted,
                up.retired,
                up.signaled,
                up.nudges,
                self.link.queue().len()
            ),
            State::Down { .. } => "down".into(),
            State::Dialing { conn: Dial { handshake: None, .. }, .. } => "connecting".into(),
            State::Dialing { .. } => "handshake".into(),
        }
    }

    /// The queue pair's inline limit.
    pub(crate) fn max_inline(&self) -> u32 {
        self.qp.max_inline()
    }

    /// Takes a frame (dropped while down). Takes no [`Ctx`]: nothing here needs the clock,
    /// which would otherwise be read per frame.
    #[inline]
    pub(crate) fn send(&mut self, frame: EncodedFrame, stats: &mut TransportStats, max_queued: usize) -> SendStatus {
        self.link.send(frame, stats, max_queued)
    }

    /// When [`Outgoing::on_timer`] has something to do.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.link.deadline().or_else(|| self.link.up().and_then(|up| up.stalled_since).map(|t| t + NUDGE_AFTER))
    }

    /// Dials when due; gives up connects and handshakes that take too long; nudges a stalled
    /// sender.
    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        match self.link.due(ctx.now) {
            Some(Due::Dial) => self.dial(ctx),
            Some(Due::DialTimedOut) => {
                let handshaking =
                    matches!(self.link.state(), State::Dialing { conn: Dial { handshake: Some(_), .. }, .. });
                let reason = if handshaking {
                    RdmaLinkError::HandshakeTimeout { addr: self.addr, after: HANDSHAKE_TIMEOUT }.into()
                } else {
                    LinkError::ConnectTimeout { addr: self.addr, after: ctx.cfg.tcp.connect_timeout }
                };
                self.fail(reason, ctx);
            }
            None => {
                if self.link.up().and_then(|up| up.stalled_since).is_some_and(|t| t + NUDGE_AFTER <= ctx.now) {
                    self.pump(ctx);
                }
            }
        }
    }

    fn dial(&mut self, ctx: &mut Ctx<'_>) {
        let mut stream = match TcpStream::connect(self.addr) {
            Ok(s) => s,
            Err(source) => return self.fail(LinkError::Dial { addr: self.addr, source }, ctx),
        };
        if let Err(source) = ctx.registry.register(&mut stream, self.token, Interest::READABLE | Interest::WRITABLE) {
            return self.fail(LinkError::Dial { addr: self.addr, source }, ctx);
        }
        let _ = stream.set_nodelay(true);
        self.link.dialing(Dial { stream, handshake: None }, Some(ctx.now + ctx.cfg.tcp.connect_timeout));
    }

    /// The poller reported readiness on this link's socket.
    pub(crate) fn on_ready(&mut self, ctx: &mut Ctx<'_>) {
        if let Some((dial, _)) = self.link.dialing_mut() {
            if dial.handshake.is_some() {
                return self.continue_handshake(ctx);
            }
            match connect_status(&dial.stream) {
                Ok(true) => self.start_handshake(ctx),
                Ok(false) => {}
                Err(source) => self.fail(LinkError::Connect { addr: self.addr, source }, ctx),
            }
            return;
        }
        if let Some((up, _)) = self.link.up_mut()
            && let Err(reason) = probe_closed(&mut up.stream)
        {
            self.fail(reason, ctx);
        }
    }

    /// TCP is connected: get the queue pair ready and send our dial.
    fn start_handshake(&mut self, ctx: &mut Ctx<'_>) {
        if self.qp_used {
            if let Err(source) = self.qp.reset() {
                return self.fail(RdmaLinkError::Verbs { what: "reset the queue pair", source }.into(), ctx);
            }
            self.qp_used = false;
        }
        self.epoch = self.epoch.wrapping_add(1);
        // The receiver's first credit must not be mistaken for one of a previous connection.
        self.credit.zero();
        let info = Info {
            endpoint: self.qp.local(),
            event: ctx.cfg.event,
            addr: self.credit_reg.addr,
            len: self.credit_reg.len as u64,
            rkey: self.credit_reg.rkey,
        };
        let session = DialHandshake::new(ctx.cfg.local, self.link.peer(), self.key, ctx.cfg.session);
        let Some((dial, deadline)) = self.link.dialing_mut() else { return };
        dial.handshake = Some(Box::new(Handshake {
            session,
            info,
            dial: None,
            sent: 0,
            confirmed: None,
            answer: [0; ACCEPT_LEN],
            got: 0,
        }));
        *deadline = Some(ctx.now + HANDSHAKE_TIMEOUT);
        self.continue_handshake(ctx);
    }

    fn continue_handshake(&mut self, ctx: &mut Ctx<'_>) {
        let (addr, peer) = (self.addr, self.link.peer());
        let Some((Dial { stream, handshake: Some(hs) }, _)) = self.link.dialing_mut() else { return };
        let handshake_failed = |e: io::Error| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                RdmaLinkError::HandshakeClosed { addr }.into()
            } else {
                RdmaLinkError::Handshake { addr, source: e }.into()
            }
        };
        // The challenge, then our dial with the hello that answers it.
        if hs.dial.is_none() {
            match hs.session.read_from(stream) {
                Ok(Ok(DialProgress::More)) => return,
                Ok(Ok(DialProgress::Send(hello))) => hs.dial = Some(wire::encode_dial(&hello, &hs.info, &self.key)),
                Ok(Ok(DialProgress::Done(_))) => return,
                Ok(Err(reason)) => return self.fail(LinkError::Handshake { addr, reason }, ctx),
                Err(e) => return self.fail(handshake_failed(e), ctx),
            }
        }
        let Some(dial_message) = hs.dial else { return };
        while hs.sent < DIAL_LEN {
            match stream.write(&dial_message[hs.sent..]) {
                Ok(0) => return self.fail(RdmaLinkError::HandshakeClosed { addr }.into(), ctx),
                Ok(n) => hs.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return self.fail(RdmaLinkError::Handshake { addr, source }.into(), ctx),
            }
        }
        // The confirmation, then the answer.
        if hs.confirmed.is_none() {
            match hs.session.read_from(stream) {
                Ok(Ok(DialProgress::Done(session))) => hs.confirmed = Some(session),
                Ok(Ok(_)) => return,
                Ok(Err(reason)) => return self.fail(LinkError::Handshake { addr, reason }, ctx),
                Err(e) => return self.fail(handshake_failed(e), ctx),
            }
        }
        let Some(session) = hs.confirmed else { return };
        match read_some(stream, &mut hs.answer, &mut hs.got) {
            Ok(false) => return,
            Ok(true) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return self.fail(RdmaLinkError::HandshakeClosed { addr }.into(), ctx);
            }
            Err(source) => return self.fail(RdmaLinkError::Handshake { addr, source }.into(), ctx),
        }
        let remote = match wire::decode_accept(&dial_message, &hs.answer, &self.key) {
            Ok(i) => i,
            Err(source) => return self.fail(RdmaLinkError::BadAnswer { addr, source }.into(), ctx),
        };
        if remote.len != self.staging_reg.len as u64 {
            let ours = self.staging_reg.len as u64;
            return self.fail(RdmaLinkError::RingSizeMismatch { peer, theirs: remote.len, ours }.into(), ctx);
        }
        let geo = match Geometry::new(remote.len as usize) {
            Ok(g) => g,
            Err(source) => return self.fail(RdmaLinkError::BadRing { peer, source }.into(), ctx),
        };
        let imm = ctx.cfg.event || remote.event;
        self.qp_used = true;
        if imm && let Err(source) = self.qp.post_recvs(wr_id(KIND_RECV_OUT, self.idx, self.epoch, 0), RECV_DEPTH) {
            return self.fail(RdmaLinkError::Verbs { what: "post receives", source }.into(), ctx);
        }
        if let Err(source) = self.qp.connect(&remote.endpoint) {
            return self.fail(RdmaLinkError::Verbs { what: "connect the queue pair", source }.into(), ctx);
        }
        tracing::debug!(%peer, %addr, inline = self.qp.max_inline(), imm, "rdma link up");
        ctx.report.events.push(TransportEvent::Session { peer, direction: SessionDirection::Send, session });
        let up = |dial: Dial| {
            Box::new(Up {
                stream: dial.stream,
                w: RingWriter::new(geo),
                ring_addr: remote.addr,
                ring_rkey: remote.rkey,
                imm,
                posted: 0,
                retired: 0,
                signaled: VecDeque::new(),
                since_signal: 0,
                recv_owed: 0,
                stalled_since: None,
                nudges: 0,
            })
        };
        if self.link.connected(ctx.now, &mut ctx.report, up) {
            self.pump(ctx);
        }
    }

    /// Posts the receives that credit immediates consumed. True if it posted any.
    pub(crate) fn repost_receives(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Some((up, _)) = self.link.up_mut() else { return false };
        if up.recv_owed == 0 {
            return false;
        }
        match repost(&mut self.qp, wr_id(KIND_RECV_OUT, self.idx, self.epoch, 0), &mut up.recv_owed) {
            Ok(did) => did,
            Err(source) => {
                self.fail(RdmaLinkError::Verbs { what: "post a receive", source }.into(), ctx);
                false
            }
        }
    }

    /// Writes as many queued frames as the ring has room for. True if it posted writes.
    pub(crate) fn pump(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let peer = self.link.peer();
        let Some((up, queue)) = self.link.up_mut() else { return false };
        if queue.is_empty() {
            return false;
        }
        if let Some(head) = load_credit(&self.credit, 0)
            && let Err(source) = up.w.set_credit(head)
        {
            self.fail(RdmaLinkError::ImpossibleCredit { peer, source }.into(), ctx);
            return false;
        }
        // Room for the (at most two) writes of a fill, and one more for a nudge.
        let sq_full = up.posted - up.retired + 3 > u64::from(SQ_DEPTH);
        self.spans.clear();
        let filled = if sq_full { Default::default() } else { up.w.fill(&self.staging, queue, &mut self.spans) };
        if self.spans.is_empty() {
            // Blocked on credit or on completions.
            if !up.signaled.is_empty() {
                let since = *up.stalled_since.get_or_insert(ctx.now);
                if ctx.now.saturating_duration_since(since) >= NUDGE_AFTER
                    && up.posted - up.retired < u64::from(SQ_DEPTH)
                {
                    return self.nudge(ctx);
                }
            }
            return false;
        }
        let size = up.w.geometry().size;
        let max_inline = u64::from(self.qp.max_inline());
        let n = self.spans.len();
        for (k, s) in self.spans.iter().enumerate() {
            if s.len <= max_inline {
                let buf = &mut self.inline_bufs[k];
                buf.resize(s.len as usize, 0);
                #[allow(unsafe_code)]
                // SAFETY: the span was built in staging by this thread and is not posted yet;
                // nobody writes it until its write completes.
                unsafe {
                    self.staging.read_bytes((s.pos % size) as usize, buf);
                }
            }
        }
        let none = WriteRequest {
            wr_id: 0,
            signaled: false,
            remote_addr: 0,
            rkey: 0,
            payload: Payload::Inline(&[]),
            imm: None,
        };
        let mut wrs = [none; 2];
        for (k, s) in self.spans.iter().enumerate() {
            let off = s.pos % size;
            let index = up.posted + k as u64;
            let signaled = s.want_credit
                || up.since_signal + 1 >= SIGNAL_EVERY
                || up.posted - up.retired + k as u64 + 1 >= u64::from(SQ_DEPTH / 2);
            if signaled {
                up.since_signal = 0;
                up.signaled.push_back((index, s.end()));
            } else {
                up.since_signal += 1;
            }
            let payload = if s.len <= max_inline {
                Payload::Inline(&self.inline_bufs[k])
            } else {
                Payload::Registered {
                    lkey: self.staging_reg.lkey,
                    addr: self.staging_reg.addr + off,
                    len: s.len as u32,
                }
            };
            wrs[k] = WriteRequest {
                wr_id: wr_id(KIND_DATA, self.idx, self.epoch, index as u32),
                signaled,
                remote_addr: up.ring_addr + off,
                rkey: up.ring_rkey,
                payload,
                // One immediate per flush wakes the receiver once every run before it landed.
                imm: (up.imm && k + 1 == n).then_some(s.end() as u32),
            };
        }
        let posted = self.qp.post_writes(&wrs[..n]);
        let Some((up, _)) = self.link.up_mut() else { return false };
        if let Err(source) = posted {
            self.fail(RdmaLinkError::Verbs { what: "post RDMA writes", source }.into(), ctx);
            return false;
        }
        up.posted += n as u64;
        tracing::trace!(%peer, writes = n, frames = filled.frames, tail = up.w.tail(), "posted");
        ctx.report.stats.frames_sent += filled.frames;
        ctx.report.stats.bytes_sent += filled.bytes;
        self.link.drained(ctx.cfg.max_queued, &mut ctx.report);
        true
    }

    /// A completion of this link's queue pair.
    pub(crate) fn on_completion(&mut self, kind: u64, epoch: u16, counter: u32, status: u32, ctx: &mut Ctx<'_>) {
        if epoch != self.epoch {
            return;
        }
        if status != 0 {
            let what = if kind == KIND_DATA { "RDMA write" } else { "receive" };
            let reason = RdmaLinkError::Completion { what, peer: self.link.peer(), status };
            return self.fail(reason.into(), ctx);
        }
        let Some((up, _)) = self.link.up_mut() else { return };
        if kind == KIND_RECV_OUT {
            // A credit arrived with an immediate (event mode): post a receive for the next one
            // (in `repost_receives`).
            up.recv_owed += 1;
            return;
        }
        // Index of the completed write: the latest posted one whose low 32 bits are `counter`.
        let last = up.posted.saturating_sub(1);
        let index = last - u64::from((last as u32).wrapping_sub(counter));
        up.retired = up.retired.max(index + 1);
        while let Some(&(i, end)) = up.signaled.front() {
            if i > index {
                break;
            }
            up.w.set_completed(end);
            up.signaled.pop_front();
            up.stalled_since = None;
        }
    }

    /// Posts an empty signaled write. Blocked with signaled writes outstanding for
    /// [`NUDGE_AFTER`], the sender asks for a fresh completion: it implies every earlier write
    /// completed (RC completes in order), which frees staging even if an earlier completion
    /// was lost or withheld (soft-RoCE under load does both).
    fn nudge(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Some((up, _)) = self.link.up_mut() else { return false };
        let index = up.posted;
        let payload = if self.qp.max_inline() > 0 {
            Payload::Inline(&[])
        } else {
            Payload::Registered { lkey: self.staging_reg.lkey, addr: self.staging_reg.addr, len: 0 }
        };
        let wr = WriteRequest {
            wr_id: wr_id(KIND_DATA, self.idx, self.epoch, index as u32),
            signaled: true,
            remote_addr: up.ring_addr,
            rkey: up.ring_rkey,
            payload,
            imm: None,
        };
        match self.qp.post_writes(&[wr]) {
            Ok(()) => {
                up.posted += 1;
                up.nudges += 1;
                up.signaled.push_back((index, up.w.tail()));
                up.stalled_since = Some(ctx.now);
                true
            }
            Err(source) => {
                self.fail(RdmaLinkError::Verbs { what: "post a completion nudge", source }.into(), ctx);
                false
            }
        }
    }

    /// Posts a write the peer must refuse (just past its ring), so that its error completion
    /// exercises the failure path. False if the link is not up.
    pub(crate) fn inject_bad_write(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Some((up, _)) = self.link.up_mut() else { return false };
        let index = up.posted;
        let size = up.w.geometry().size;
        let zero = [0u8; 8];
        let payload = if self.qp.max_inline() >= 8 {
            Payload::Inline(&zero)
        } else {
            Payload::Registered { lkey: self.staging_reg.lkey, addr: self.staging_reg.addr, len: 8 }
        };
        let wr = WriteRequest {
            wr_id: wr_id(KIND_DATA, self.idx, self.epoch, index as u32),
            signaled: true,
            remote_addr: up.ring_addr + size,
            rkey: up.ring_rkey,
            payload,
            imm: None,
        };
        match self.qp.post_writes(&[wr]) {
            Ok(()) => {
                up.posted += 1;
                up.signaled.push_back((index, up.w.tail()));
                true
            }
            Err(source) => {
                self.fail(RdmaLinkError::Verbs { what: "post the injected write", source }.into(), ctx);
                true
            }
        }
    }

    /// The dial failed or the connection broke: the link goes down (its queue dropped, a
    /// redial scheduled, reported once), the socket closes, and the queue pair is reset.
    pub(crate) fn fail(&mut self, reason: LinkError, ctx: &mut Ctx<'_>) {
        match self.link.down(ctx.now, reason, &mut ctx.report) {
            Some(Released::Dialing(Dial { mut stream, .. })) => {
                let _ = ctx.registry.deregister(&mut stream);
            }
            Some(Released::Up(mut up)) => {
                let _ = ctx.registry.deregister(&mut up.stream);
            }
            None => {}
        }
        // Stop the adapter now (a reset QP neither sends nor receives); completions of this
        // connection are ignored from here on.
        self.epoch = self.epoch.wrapping_add(1);
        if self.qp_used {
            match self.qp.reset() {
                Ok(()) => self.qp_used = false,
                Err(e) => tracing::warn!(peer = %self.link.peer(), "reset the queue pair: {e}"),
            }
        }
    }
}
