//! Our receiving side from one peer: its ring, the queue pair its writes arrive on, and the
//! credit writes back.
//!
//! The ring and the queue pair are allocated once; each authenticated dial from the peer
//! replaces the previous connection (the peer restarted or reconnected): the queue pair is
//! reset, the ring zeroed, and a reader starts at position 0. Reading is polling memory
//! (`RingReader`); each poll consumes at most `READ_BUDGET` ring bytes per peer so one fast
//! peer cannot starve the others. Credits go back as a 16-byte RDMA write (inline when the
//! device allows), signaled every [`CREDIT_SIGNAL_EVERY`]; a credit that finds the send queue
//! full is owed and retried. A malformed record (only the peer itself can write its ring) is
//! reported as `Rejected` and the connection closed; so is an error completion or the
//! bootstrap socket closing (without `Rejected`).

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Interest, Token};
use picsou_core::ReplicaId;
use picsou_runtime::transport::accept;
use picsou_runtime::transport::tcp::probe_closed;
use picsou_runtime::transport::{Rejection, TransportEvent};

use crate::link::{Ctx, KIND_CREDIT, KIND_RECV_IN, READ_BUDGET, RECV_DEPTH, SQ_DEPTH, repost, wr_id};
use crate::memory::Memory;
use crate::ring::{CREDIT_BYTES, RingReader, store_credit};
use crate::verbs::{Payload, QueuePair, Registered, VerbsError, WriteRequest, status_name};
use crate::wire::{Info, encode_accept};

/// Why an authenticated dial could not be taken (the connection is closed; the dialler sees
/// it and redials).
#[derive(Debug, thiserror::Error)]
pub(crate) enum EstablishError {
    /// A verbs call failed.
    #[error("{what}: {source}")]
    Verbs {
        /// What was being done.
        what: &'static str,
        /// The device's error.
        #[source]
        source: VerbsError,
    },
    /// The answer could not be sent.
    #[error("send the answer: {0}")]
    Answer(#[source] io::Error),
    /// The socket could not be registered with the poller.
    #[error("register the socket: {0}")]
    Register(#[source] io::Error),
    /// The dialler's credit word is too small.
    #[error("credit word of {0} bytes")]
    CreditWord(u64),
}

/// Signal at least every this many credit writes.
const CREDIT_SIGNAL_EVERY: u32 = 16;

/// An established incoming connection.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    source: String,
    reader: RingReader,
    /// The sender's credit word.
    credit_addr: u64,
    credit_rkey: u32,
    imm: bool,
    posted: u64,
    retired: u64,
    since_signal: u32,
    /// A credit that could not be posted yet.
    owed: Option<u64>,
    /// Receives consumed by data immediates and not posted again yet.
    recv_owed: u32,
}

/// The resources of an incoming link, allocated and registered once.
pub(crate) struct InResources<Q> {
    pub(crate) qp: Q,
    pub(crate) ring: Arc<Memory>,
    pub(crate) ring_reg: Registered,
    pub(crate) source: Arc<Memory>,
    pub(crate) source_reg: Registered,
}

/// Our receiving side from one peer.
pub(crate) struct Incoming<Q> {
    pub(crate) peer: ReplicaId,
    idx: usize,
    token: Token,
    qp: Q,
    qp_used: bool,
    ring: Arc<Memory>,
    ring_reg: Registered,
    /// Source of credit writes when they cannot be inline.
    source: Arc<Memory>,
    source_reg: Registered,
    conn: Option<Conn>,
    epoch: u16,
    frames: Vec<Bytes>,
}

impl<Q: QueuePair> Incoming<Q> {
    pub(crate) fn new(peer: ReplicaId, idx: usize, token: Token, res: InResources<Q>) -> Self {
        Self {
            peer,
            idx,
            token,
            qp: res.qp,
            qp_used: false,
            ring: res.ring,
            ring_reg: res.ring_reg,
            source: res.source,
            source_reg: res.source_reg,
            conn: None,
            epoch: 0,
            frames: Vec::new(),
        }
    }

    /// The connection's state, for diagnostics.
    pub(crate) fn state(&self) -> String {
        match &self.conn {
            Some(c) => {
                format!("up: head {} posted {} retired {} owed {:?}", c.reader.head(), c.posted, c.retired, c.owed)
            }
            None => "none".into(),
        }
    }

    /// Whether a connection is established.
    pub(crate) fn is_up(&self) -> bool {
        self.conn.is_some()
    }

    /// Takes an authenticated dial: replaces any previous connection, readies the queue pair
    /// and the ring, answers. `dial` is the dialler's message, `remote` its parsed info.
    pub(crate) fn establish(
        &mut self,
        mut stream: TcpStream,
        source: String,
        dial: &[u8; crate::wire::DIAL_LEN],
        remote: &Info,
        key: &picsou_core::keys::MacKey,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), EstablishError> {
        let verbs = |what| move |source| EstablishError::Verbs { what, source };
        if self.conn.is_some() {
            tracing::debug!(peer = %self.peer, "a newer connection replaces the previous one");
            self.close(ctx);
        }
        if self.qp_used {
            self.qp.reset().map_err(verbs("reset the queue pair"))?;
            self.qp_used = false;
        }
        self.epoch = self.epoch.wrapping_add(1);
        self.ring.zero();
        let imm = ctx.cfg.event || remote.event;
        self.qp_used = true;
        if imm {
            self.qp
                .post_recvs(wr_id(KIND_RECV_IN, self.idx, self.epoch, 0), RECV_DEPTH)
                .map_err(verbs("post receives"))?;
        }
        self.qp.connect(&remote.endpoint).map_err(verbs("connect the queue pair"))?;
        let info = Info {
            endpoint: self.qp.local(),
            event: ctx.cfg.event,
            addr: self.ring_reg.addr,
            len: ctx.cfg.geo.size,
            rkey: self.ring_reg.rkey,
        };
        let answer = encode_accept(dial, &info, key);
        // The socket's send buffer is empty: 80 bytes go out in one write.
        match io::Write::write(&mut stream, &answer) {
            Ok(n) if n == answer.len() => {}
            Ok(_) => return Err(EstablishError::Answer(io::ErrorKind::WriteZero.into())),
            Err(e) => return Err(EstablishError::Answer(e)),
        }
        ctx.registry.register(&mut stream, self.token, Interest::READABLE).map_err(EstablishError::Register)?;
        if remote.len < CREDIT_BYTES as u64 {
            return Err(EstablishError::CreditWord(remote.len));
        }
        self.conn = Some(Conn {
            stream,
            source,
            reader: RingReader::new(ctx.cfg.geo, ctx.cfg.max_frame),
            credit_addr: remote.addr,
            credit_rkey: remote.rkey,
            imm,
            posted: 0,
            retired: 0,
            since_signal: 0,
            owed: None,
            recv_owed: 0,
        });
        ctx.report.stats.connects += 1;
        tracing::debug!(peer = %self.peer, imm, "incoming rdma connection established");
        Ok(())
    }

    /// The socket of the connection became readable (it should stay silent: EOF or error).
    pub(crate) fn on_ready(&mut self, ctx: &mut Ctx<'_>) {
        let Some(c) = &mut self.conn else { return };
        if let Err(reason) = probe_closed(&mut c.stream) {
            tracing::debug!(peer = %self.peer, "incoming connection: {reason}");
            self.close(ctx);
        }
    }

    /// Posts the receives that data immediates consumed. True if it did anything.
    pub(crate) fn repost_receives(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Some(c) = &mut self.conn else { return false };
        if c.recv_owed == 0 {
            return false;
        }
        match repost(&mut self.qp, wr_id(KIND_RECV_IN, self.idx, self.epoch, 0), &mut c.recv_owed) {
            Ok(posted) => posted,
            Err(e) => {
                tracing::debug!(peer = %self.peer, "post a receive: {e}");
                self.close(ctx);
                true
            }
        }
    }

    /// Reads complete records into frame events and writes credit back when due. True if it
    /// did anything.
    pub(crate) fn drain(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Some(c) = &mut self.conn else { return false };
        let mut did = false;
        if let Some(head) = c.owed.take() {
            did |= self.post_credit(head, ctx);
        }
        let Some(c) = &mut self.conn else { return did };
        self.frames.clear();
        let outcome = match c.reader.read(&self.ring, READ_BUDGET, &mut self.frames) {
            Ok(o) => o,
            Err(e) => {
                let source = c.source.clone();
                self.close(ctx);
                accept::reject(&mut ctx.report, source, Some(self.peer), Rejection::Transport(Box::new(e)));
                return true;
            }
        };
        for f in self.frames.drain(..) {
            ctx.report.stats.frames_received += 1;
            ctx.report.stats.bytes_received += f.len() as u64;
            ctx.report.events.push(TransportEvent::Frame { from: self.peer, frame: f });
        }
        if outcome.records > 0 {
            did = true;
        }
        if let Some(head) = c.reader.credit_due(outcome.drained) {
            did |= self.post_credit(head, ctx);
        }
        did
    }

    /// Writes `head` into the sender's credit word (or owes it if the send queue is full).
    fn post_credit(&mut self, head: u64, ctx: &mut Ctx<'_>) -> bool {
        let Some(c) = &mut self.conn else { return false };
        if c.posted - c.retired + 1 > u64::from(SQ_DEPTH) {
            c.owed = Some(head);
            return false;
        }
        store_credit(&self.source, 0, head);
        let mut bytes = [0u8; CREDIT_BYTES];
        self.source.read_bytes_atomic(0, &mut bytes);
        let signaled = c.since_signal + 1 >= CREDIT_SIGNAL_EVERY || c.posted - c.retired + 1 >= u64::from(SQ_DEPTH / 2);
        let payload = if self.qp.max_inline() as usize >= CREDIT_BYTES {
            Payload::Inline(&bytes)
        } else {
            Payload::Registered { lkey: self.source_reg.lkey, addr: self.source_reg.addr, len: CREDIT_BYTES as u32 }
        };
        let wr = WriteRequest {
            wr_id: wr_id(KIND_CREDIT, self.idx, self.epoch, c.posted as u32),
            signaled,
            remote_addr: c.credit_addr,
            rkey: c.credit_rkey,
            payload,
            imm: c.imm.then_some(head as u32),
        };
        match self.qp.post_writes(&[wr]) {
            Ok(()) => {
                c.posted += 1;
                c.since_signal = if signaled { 0 } else { c.since_signal + 1 };
                true
            }
            Err(e) => {
                tracing::debug!(peer = %self.peer, "post a credit write: {e}");
                self.close(ctx);
                true
            }
        }
    }

    /// A completion of this side's queue pair.
    pub(crate) fn on_completion(&mut self, kind: u64, epoch: u16, counter: u32, status: u32, ctx: &mut Ctx<'_>) {
        if epoch != self.epoch || self.conn.is_none() {
            return;
        }
        if status != 0 {
            let what = if kind == KIND_CREDIT { "credit write" } else { "receive" };
            tracing::debug!(peer = %self.peer, "{what} completed with error: {}", status_name(status));
            return self.close(ctx);
        }
        let Some(c) = &mut self.conn else { return };
        if kind == KIND_RECV_IN {
            // Data arrived with an immediate: post a receive for the next one (in `drain`).
            c.recv_owed += 1;
            return;
        }
        let last = c.posted.saturating_sub(1);
        let index = last - u64::from((last as u32).wrapping_sub(counter));
        c.retired = c.retired.max(index + 1);
    }

    /// Ends the connection: the queue pair stops, the socket closes (the sender sees it and
    /// redials).
    pub(crate) fn close(&mut self, ctx: &mut Ctx<'_>) {
        let Some(mut c) = self.conn.take() else { return };
        let _ = ctx.registry.deregister(&mut c.stream);
        ctx.report.stats.disconnects += 1;
        self.epoch = self.epoch.wrapping_add(1);
        if self.qp_used {
            match self.qp.reset() {
                Ok(()) => self.qp_used = false,
                Err(e) => tracing::warn!(peer = %self.peer, "reset the queue pair: {e}"),
            }
        }
    }
}
