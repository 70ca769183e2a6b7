//! Our sending side towards one peer: dial, bootstrap exchange, RDMA writes of records into the
//! peer's ring, and redial with backoff when anything fails.
//!
//! ```text
//!          dial           TCP connected: dial sent         answer checked, QP → RTS: PeerUp
//!   Down ───────► Connecting ──────────────────► Handshake ─────────────────────────────► Up
//!    ▲                 │ refused, timed out            │ closed, bad answer                │ error completion,
//!    └─────────────────┴───────────────────────────────┴───────────────────────────────────┘ socket closed
//! ```
//!
//! Frames are queued while connecting and dropped while down, like the TCP transport. Up, a
//! flush copies queued frames into records in the staging region (as many as the ring has
//! room for, by the credit the receiver last published and the writes the adapter finished)
//! and posts one RDMA write per contiguous run, all runs of a flush with one doorbell; runs no
//! longer than the inline limit are posted inline. Writes are signaled every
//! [`SIGNAL_EVERY`] and whenever a record asked for credit (the sender may be about to block,
//! and staging space is only reused after its write completed). Any error completion, an
//! impossible credit, or the bootstrap socket closing takes the link down: the queue pair is
//! reset to INIT (its generation is bumped, so completions of the old connection are ignored)
//! and the peer is redialled with exponential backoff.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Token};
use picsou_core::ReplicaId;
use picsou_core::keys::MacKey;
use picsou_runtime::transport::backoff::Backoff;
use picsou_runtime::transport::tcp::{connect_status, probe_closed};
use picsou_runtime::transport::{EncodedFrame, SendStatus, TransportEvent, TransportStats, hello};

use crate::memory::Memory;
use crate::ring::{FrameQueue, Geometry, RingWriter, Span, load_credit};
use crate::transport::{Ctx, KIND_DATA, KIND_RECV_OUT, RECV_DEPTH, SQ_DEPTH, read_some, repost, wr_id};
use crate::verbs::{Payload, QueuePair, Registered, WriteRequest, status_name};
use crate::wire::{self, ACCEPT_LEN, DIAL_LEN, Info};

/// Signal at least every this many writes (send queue slots are only freed by completions).
pub(crate) const SIGNAL_EVERY: u32 = 32;
/// Shortest redial delay, whatever the options say.
const MIN_BACKOFF: Duration = Duration::from_millis(1);
/// A connection that lasted this long was a success: the backoff starts again from its minimum.
const STABLE_AFTER: Duration = Duration::from_secs(1);
/// A sender blocked this long with signaled writes outstanding posts an empty signaled write.
pub(crate) const NUDGE_AFTER: Duration = Duration::from_millis(5);
/// Time for the bootstrap exchange once TCP is connected.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An established connection.
#[derive(Debug)]
struct Up {
    stream: TcpStream,
    since: Instant,
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

/// Where the link is.
#[derive(Debug)]
enum Link {
    /// Not connected; dial again then.
    Down { retry_at: Instant },
    /// A non-blocking TCP connect is in flight.
    Connecting { stream: TcpStream, deadline: Instant },
    /// Our dial is (being) sent; waiting for the answer.
    Handshake {
        stream: TcpStream,
        deadline: Instant,
        dial: Box<[u8; DIAL_LEN]>,
        sent: usize,
        answer: Box<[u8; ACCEPT_LEN]>,
        got: usize,
    },
    /// Writing.
    Up(Box<Up>),
}

/// Our sending side towards one peer.
pub(crate) struct Outgoing<Q> {
    pub(crate) peer: ReplicaId,
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
    pub(crate) queue: FrameQueue,
    link: Link,
    /// Connection generation (in every work request id).
    epoch: u16,
    backoff: Backoff,
    reported_full: bool,
    announced_down: bool,
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
            peer,
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
            queue: FrameQueue::default(),
            link: Link::Down { retry_at: now },
            epoch: 0,
            backoff: Backoff::new(backoff.0.max(MIN_BACKOFF), backoff.1),
            reported_full: false,
            announced_down: false,
            spans: Vec::new(),
            inline_bufs: [Vec::new(), Vec::new()],
        }
    }

    /// Whether the link is up.
    pub(crate) fn is_up(&self) -> bool {
        matches!(self.link, Link::Up(_))
    }

    /// The link's state, for diagnostics.
    pub(crate) fn state(&self) -> String {
        match &self.link {
            Link::Up(up) => format!(
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
                self.queue.len()
            ),
            Link::Down { .. } => "down".into(),
            Link::Connecting { .. } => "connecting".into(),
            Link::Handshake { .. } => "handshake".into(),
        }
    }

    /// The queue pair's inline limit.
    pub(crate) fn max_inline(&self) -> u32 {
        self.qp.max_inline()
    }

    /// Takes a frame (dropped while down).
    /// Takes no [`Ctx`]: nothing here needs the clock, which would otherwise be read per frame.
    pub(crate) fn send(&mut self, frame: EncodedFrame, stats: &mut TransportStats, max_queued: usize) -> SendStatus {
        if matches!(self.link, Link::Down { .. }) || frame.is_empty() {
            tracing::trace!(peer = %self.peer, len = frame.len(), "frame dropped (link down or empty frame)");
            stats.frames_dropped += 1;
            return SendStatus::Room;
        }
        self.queue.push(frame);
        if self.queue.bytes() > max_queued {
            self.reported_full = true;
            SendStatus::Full
        } else {
            SendStatus::Room
        }
    }

    /// When [`Outgoing::on_timer`] has something to do.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.link {
            Link::Down { retry_at } => Some(*retry_at),
            Link::Connecting { deadline, .. } | Link::Handshake { deadline, .. } => Some(*deadline),
            Link::Up(up) => up.stalled_since.map(|t| t + NUDGE_AFTER),
        }
    }

    /// Dials when due; gives up connects and handshakes that take too long.
    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        match &self.link {
            Link::Down { retry_at } if *retry_at <= ctx.now => self.dial(ctx),
            Link::Connecting { deadline, .. } if *deadline <= ctx.now => {
                let reason = format!("connect to {} timed out", self.addr);
                self.fail(reason, ctx);
            }
            Link::Handshake { deadline, .. } if *deadline <= ctx.now => {
                let reason = format!("no answer from {} within {HANDSHAKE_TIMEOUT:?}", self.addr);
                self.fail(reason, ctx);
            }
            Link::Up(up) if up.stalled_since.is_some_and(|t| t + NUDGE_AFTER <= ctx.now) => {
                self.pump(ctx);
            }
            _ => {}
        }
    }

    fn dial(&mut self, ctx: &mut Ctx<'_>) {
        let mut stream = match TcpStream::connect(self.addr) {
            Ok(s) => s,
            Err(e) => return self.fail(format!("dial {}: {e}", self.addr), ctx),
        };
        if let Err(e) = ctx.registry.register(&mut stream, self.token, Interest::READABLE | Interest::WRITABLE) {
            return self.fail(format!("register the socket to {}: {e}", self.addr), ctx);
        }
        let _ = stream.set_nodelay(true);
        self.link = Link::Connecting { stream, deadline: ctx.now + ctx.cfg.tcp.connect_timeout };
    }

    /// The poller reported readiness on this link's socket.
    pub(crate) fn on_ready(&mut self, ctx: &mut Ctx<'_>) {
        match &mut self.link {
            Link::Down { .. } => {}
            Link::Connecting { stream, .. } => match connect_status(stream) {
                Ok(true) => self.start_handshake(ctx),
                Ok(false) => {}
                Err(e) => self.fail(format!("connect to {}: {e}", self.addr), ctx),
            },
            Link::Handshake { .. } => self.continue_handshake(ctx),
            Link::Up(up) => {
                if let Err(reason) = probe_closed(&mut up.stream) {
                    self.fail(reason, ctx);
                }
            }
        }
    }

    /// TCP is connected: get the queue pair ready and send our dial.
    fn start_handshake(&mut self, ctx: &mut Ctx<'_>) {
        let Link::Connecting { stream, .. } = std::mem::replace(&mut self.link, Link::Down { retry_at: ctx.now })
        else {
            return;
        };
        if self.qp_used {
            if let Err(e) = self.qp.reset() {
                self.link = Link::Connecting { stream, deadline: ctx.now };
                return self.fail(format!("reset the queue pair: {e}"), ctx);
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
        let h = hello::encode(ctx.cfg.local, self.peer, hello::next_nonce(), &self.key);
        let dial = Box::new(wire::encode_dial(&h, &info, &self.key));
        self.link = Link::Handshake {
            stream,
            deadline: ctx.now + HANDSHAKE_TIMEOUT,
            dial,
            sent: 0,
            answer: Box::new([0; ACCEPT_LEN]),
            got: 0,
        };
        self.continue_handshake(ctx);
    }

    fn continue_handshake(&mut self, ctx: &mut Ctx<'_>) {
        let Link::Handshake { stream, dial, sent, answer, got, .. } = &mut self.link else { return };
        while *sent < DIAL_LEN {
            match stream.write(&dial[*sent..]) {
                Ok(0) => return self.fail(format!("{} closed during the handshake", self.addr), ctx),
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(format!("send the dial to {}: {e}", self.addr), ctx),
            }
        }
        match read_some(stream, &mut answer[..], got) {
            Ok(false) => return,
            Ok(true) => {}
            Err(why) => {
                let reason = format!("{} {why} during the handshake (it refused us: see its log)", self.addr);
                return self.fail(reason, ctx);
            }
        }
        let remote = match wire::decode_accept(dial, answer, &self.key) {
            Ok(i) => i,
            Err(e) => return self.fail(format!("answer from {}: {e}", self.addr), ctx),
        };
        if remote.len != self.staging_reg.len as u64 {
            let reason = format!(
                "{}'s ring is {} bytes and ours {}: transport.rdma.ring_bytes must be the same on every replica",
                self.peer, remote.len, self.staging_reg.len
            );
            return self.fail(reason, ctx);
        }
        let geo = match Geometry::new(remote.len as usize) {
            Ok(g) => g,
            Err(e) => return self.fail(format!("{}'s ring: {e}", self.peer), ctx),
        };
        let imm = ctx.cfg.event || remote.event;
        self.qp_used = true;
        if imm && let Err(e) = self.qp.post_recvs(wr_id(KIND_RECV_OUT, self.idx, self.epoch, 0), RECV_DEPTH) {
            return self.fail(format!("post receives: {e}"), ctx);
        }
        if let Err(e) = self.qp.connect(&remote.endpoint) {
            return self.fail(format!("connect the queue pair to {}: {e}", self.peer), ctx);
        }
        let Link::Handshake { stream, .. } = std::mem::replace(&mut self.link, Link::Down { retry_at: ctx.now }) else {
            return;
        };
        tracing::debug!(peer = %self.peer, addr = %self.addr, inline = self.qp.max_inline(), imm, "rdma link up");
        ctx.stats.connects += 1;
        self.announced_down = false;
        ctx.events.push(TransportEvent::PeerUp(self.peer));
        self.link = Link::Up(Box::new(Up {
            stream,
            since: ctx.now,
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
        }));
        self.pump(ctx);
    }

    /// Posts the receives that credit immediates consumed. True if it posted any.
    pub(crate) fn repost_receives(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Link::Up(up) = &mut self.link else { return false };
        if up.recv_owed == 0 {
            return false;
        }
        match repost(&mut self.qp, wr_id(KIND_RECV_OUT, self.idx, self.epoch, 0), &mut up.recv_owed) {
            Ok(did) => did,
            Err(e) => {
                let reason = format!("post a receive: {e}");
                self.fail(reason, ctx);
                false
            }
        }
    }

    /// Writes as many queued frames as the ring has room for. True if it posted writes.
    pub(crate) fn pump(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Link::Up(up) = &mut self.link else { return false };
        if self.queue.is_empty() {
            return false;
        }
        if let Some(head) = load_credit(&self.credit, 0)
            && let Err(e) = up.w.set_credit(head)
        {
            let reason = format!("{} published an impossible credit: {e}", self.peer);
            self.fail(reason, ctx);
            return false;
        }
        // Room in the send queue for the (at most two) writes of a fill.
        // Room for the (at most two) writes of a fill, and one more for a nudge.
        let sq_full = up.posted - up.retired + 3 > u64::from(SQ_DEPTH);
        self.spans.clear();
        let filled =
            if sq_full { Default::default() } else { up.w.fill(&self.staging, &mut self.queue, &mut self.spans) };
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
                self.staging.read_bytes((s.pos % size) as usize, buf);
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
        let Link::Up(up) = &mut self.link else { return false };
        if let Err(e) = posted {
            let reason = format!("post writes to {}: {e}", self.peer);
            self.fail(reason, ctx);
            return false;
        }
        up.posted += n as u64;
        tracing::trace!(peer = %self.peer, writes = n, frames = filled.frames, tail = up.w.tail(), "posted");
        ctx.stats.frames_sent += filled.frames;
        ctx.stats.bytes_sent += filled.bytes;
        if self.reported_full && self.queue.bytes() <= ctx.cfg.max_queued / 2 {
            self.reported_full = false;
            ctx.events.push(TransportEvent::Writable(self.peer));
        }
        true
    }

    /// A completion of this link's queue pair.
    pub(crate) fn on_completion(&mut self, kind: u64, epoch: u16, counter: u32, status: u32, ctx: &mut Ctx<'_>) {
        if epoch != self.epoch {
            return;
        }
        if status != 0 {
            let what = if kind == KIND_DATA { "RDMA write" } else { "receive" };
            let reason = format!("{what} to {} completed with error: {}", self.peer, status_name(status));
            return self.fail(reason, ctx);
        }
        let Link::Up(up) = &mut self.link else { return };
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
        let Link::Up(up) = &mut self.link else { return false };
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
            Err(e) => {
                let reason = format!("post a completion nudge to {}: {e}", self.peer);
                self.fail(reason, ctx);
                false
            }
        }
    }

    /// Posts a write the peer must refuse (just past its ring), so that its error completion
    /// exercises the failure path. False if the link is not up.
    pub(crate) fn inject_bad_write(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Link::Up(up) = &mut self.link else { return false };
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
            Err(e) => {
                self.fail(format!("post the injected write: {e}"), ctx);
                true
            }
        }
    }

    /// The dial failed or the connection broke: reset the queue pair, drop the queue,
    /// schedule a redial, report the peer down (once).
    pub(crate) fn fail(&mut self, reason: String, ctx: &mut Ctx<'_>) {
        match std::mem::replace(&mut self.link, Link::Down { retry_at: ctx.now }) {
            Link::Connecting { mut stream, .. } | Link::Handshake { mut stream, .. } => {
                let _ = ctx.registry.deregister(&mut stream);
            }
            Link::Up(mut up) => {
                let _ = ctx.registry.deregister(&mut up.stream);
                ctx.stats.disconnects += 1;
                if ctx.now.saturating_duration_since(up.since) >= STABLE_AFTER {
                    self.backoff.reset();
                }
            }
            Link::Down { .. } => {}
        }
        // Stop the adapter now (a reset QP neither sends nor receives); completions of this
        // connection are ignored from here on.
        self.epoch = self.epoch.wrapping_add(1);
        if self.qp_used {
            match self.qp.reset() {
                Ok(()) => self.qp_used = false,
                Err(e) => tracing::warn!(peer = %self.peer, "reset the queue pair: {e}"),
            }
        }
        let delay = self.backoff.next_delay();
        self.link = Link::Down { retry_at: ctx.now + delay };
        ctx.stats.frames_dropped += self.queue.clear();
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
