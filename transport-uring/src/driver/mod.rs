//! The ring thread: one io_uring drives every socket of the transport.
//!
//! Each loop iteration:
//! 1. takes the node's work if the doorbell rang (frames flushed per peer, `set_receiving`,
//!    a drained inbox);
//! 2. starts one send per connected peer that has frames and none in flight (a `sendmsg` over
//!    up to [`sendq::MAX_IOV`] frames, or a `SEND_ZC` for one large frame);
//! 3. fires due timers (redials, hello deadlines, a delayed accept re-arm);
//! 4. publishes events, counters and retired bytes to the node (one lock per iteration);
//! 5. submits everything queued in one `io_uring_enter`, sleeping in the same call if nothing
//!    is ready (until a completion, the doorbell's eventfd read, or the next timer);
//! 6. handles completions.
//!
//! Operations in use: multishot `ACCEPT` on the listener; `CONNECT` linked to a
//! `LINK_TIMEOUT` (the connect timeout) for dials; `POLL_ADD` watching each outgoing
//! connection for hang-up (we never read from them, so without it a dead peer would go
//! unnoticed until the next write); `SENDMSG` (`MSG_WAITALL`, so the kernel finishes a batch
//! itself) and `SEND_ZC`; multishot `RECV` with a provided buffer ring on each accepted
//! connection, re-armed after `ENOBUFS` or any completion without `F_MORE`; a single `RECV`
//! (`MSG_WAITALL`) straight into a large frame's buffer for the rest of that frame (see
//! `incoming`); `READ` of the doorbell eventfd; `ASYNC_CANCEL` to stop a multishot receive
//! (pausing, switching to a direct receive) and at shutdown.
//!
//! Registered (fixed) buffers are not used: frames are `Bytes` built by the engine, so
//! sending from a registered region would need a copy into it, which costs more than the page
//! pinning it saves; receives already use kernel-selected provided buffers, the fast path for
//! many connections. Registered files would save an fd lookup per operation, too small to
//! matter next to a TCP send.

mod incoming;
mod ops;
mod outgoing;
mod receiving;
mod sending;
mod sendq;
mod shutdown;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use picsou_core::ReplicaId;
use picsou_core::bufpool::BufPool;
use picsou_core::keys::{LinkKeys, MacKey};
use picsou_runtime::transport::accept::{Acceptor, HELLO_TIMEOUT};
use picsou_runtime::transport::handshake::{HELLO_LEN, SessionContext};
use picsou_runtime::transport::link::Due;
use picsou_runtime::transport::{
    LinkError, Report, TcpOptions, TransportError, TransportEvent, TransportStats, UringOptions,
};
use socket2::Socket;

use self::incoming::Incoming;
use self::ops::{IGNORED, Op, Ops};
use self::outgoing::Outgoing;
use crate::bufring::BufRing;
use crate::errno::completion_error;
use crate::probe::ProbeError;
use crate::shared::{PeerLink, Shared, ThreadFailure};

/// Longest sleep in `io_uring_enter` without a timer due: bounds how late a missed wake-up
/// could be noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Completions handled per batch (bounds the stack of work between two publishes).
const CQE_BATCH: usize = 1024;
/// Buffer group id of the receive buffer ring.
const BGID: u16 = 0;

/// Everything the ring thread needs to start.
pub(crate) struct Config {
    /// This replica.
    pub(crate) local: ReplicaId,
    /// The bound, listening socket.
    pub(crate) listener: Socket,
    /// Outgoing links: shared state, address, link key.
    pub(crate) peers: Vec<(Arc<PeerLink>, SocketAddr, MacKey)>,
    /// Link keys, to verify hellos.
    pub(crate) keys: LinkKeys,
    /// Deployment id and incarnation, for every handshake.
    pub(crate) session: SessionContext,
    /// The peers that may connect.
    pub(crate) known: Vec<ReplicaId>,
    /// Largest frame accepted.
    pub(crate) max_frame: usize,
    /// Socket options, backoff, queue limit.
    pub(crate) tcp: TcpOptions,
    /// Ring options.
    pub(crate) uring: UringOptions,
    /// Undelivered received bytes above which reading pauses.
    pub(crate) rx_limit: usize,
}

/// Starts the ring thread; returns once its ring is set up (or why it could not be).
pub(crate) fn spawn(cfg: Config, shared: Arc<Shared>) -> Result<std::thread::JoinHandle<()>, TransportError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let name = format!("picsou-uring-{}", cfg.local);
    let handle = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _guard = PanicReport(shared.clone());
            match Driver::new(cfg, shared.clone()) {
                Ok(mut d) => {
                    let _ = tx.send(Ok(()));
                    if let Err(e) = d.run() {
                        tracing::error!("io_uring transport thread failed: {e}");
                        shared.inbox.fail(ThreadFailure::Ring(Arc::new(e)));
                    }
                    d.shutdown();
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })
        .map_err(|e| TransportError::Io { context: "spawning the io_uring thread", source: e })?;
    match rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let _ = handle.join();
            Err(TransportError::Io { context: "io_uring thread", source: io::Error::other("died while starting") })
        }
    }
}

/// Tells the node if the ring thread dies by panic (a bug), so `poll` fails instead of
/// waiting forever.
struct PanicReport(Arc<Shared>);

impl Drop for PanicReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.inbox.fail(ThreadFailure::Panicked);
        }
    }
}

/// The ring thread's state.
struct Driver {
    ring: IoUring,
    ops: Ops,
    bufs: Option<BufRing>,
    /// Target of the doorbell eventfd read.
    wake_buf: Box<[u8; 8]>,
    shared: Arc<Shared>,
    local: ReplicaId,
    listener: Socket,
    out: Vec<Outgoing>,
    conns: Vec<Option<Incoming>>,
    free_conns: Vec<usize>,
    conn_epoch: u32,
    /// The authenticated incoming connection of each peer.
    by_peer: HashMap<ReplicaId, usize>,
    /// Accepted connections waiting for their hello, keyed by slot in `conns`.
    acceptor: Acceptor<usize, ()>,
    /// Events not yet published, and the frame bytes among them.
    events: Vec<TransportEvent>,
    rx_bytes: usize,
    stats: TransportStats,
    /// Receives re-armed after `ENOBUFS`.
    enobufs: u64,
    /// `set_receiving`.
    receiving: bool,
    /// The node has too many undelivered bytes.
    paused: bool,
    max_frame: usize,
    /// Buffers of large received frames, recycled (see [`picsou_core::bufpool`]).
    frame_pool: BufPool,
    tcp: TcpOptions,
    zero_copy_min: usize,
    rx_limit: usize,
    cqes: Vec<(u64, i32, u32)>,
    spare_frames: Vec<picsou_runtime::transport::EncodedFrame>,
}

/// Whether an io_uring errno is a benign end of waiting.
fn benign_wait_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN))
}

impl Driver {
    /// Sets up the ring (in the ring thread: it is a single-issuer ring) and the buffer ring.
    fn new(cfg: Config, shared: Arc<Shared>) -> Result<Self, TransportError> {
        let unavailable = |e: ProbeError| TransportError::Unavailable { kind: "uring", source: Box::new(e) };
        let entries = cfg.uring.entries.max(8);
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_cqsize(entries.saturating_mul(8))
            .build(entries)
            .or_else(|_| IoUring::builder().setup_cqsize(entries.saturating_mul(8)).build(entries))
            .map_err(|e| unavailable(ProbeError::Setup(e)))?;
        let mut zero_copy_min = cfg.uring.zerocopy_threshold;
        if zero_copy_min > 0 {
            let mut probe = io_uring::Probe::new();
            let zc = ring.submitter().register_probe(&mut probe).is_ok() && probe.is_supported(opcode::SendZc::CODE);
            if !zc {
                tracing::warn!("io_uring SEND_ZC unsupported by this kernel; zero-copy sends disabled");
                zero_copy_min = 0;
            }
        }
        let bufs = BufRing::register(&ring.submitter(), cfg.uring.recv_buffers, cfg.uring.recv_buffer_size, BGID)
            .map_err(|e| unavailable(ProbeError::BufRing(e)))?;
        let now = Instant::now();
        let out = cfg
            .peers
            .into_iter()
            .map(|(link, addr, key)| Outgoing::new(link, addr, key, cfg.session, &cfg.tcp, now))
            .collect();
        let receiving = shared.receiving.load(Ordering::SeqCst);
        Ok(Self {
            ring,
            ops: Ops::default(),
            bufs: Some(bufs),
            wake_buf: Box::new([0; 8]),
            shared,
            local: cfg.local,
            listener: cfg.listener,
            out,
            conns: Vec::new(),
            free_conns: Vec::new(),
            conn_epoch: 0,
            by_peer: HashMap::new(),
            acceptor: Acceptor::new(cfg.local, cfg.keys, cfg.session, cfg.known, HELLO_LEN),
            events: Vec::new(),
            rx_bytes: 0,
            stats: TransportStats::default(),
            enobufs: 0,
            receiving,
            paused: false,
            max_frame: cfg.max_frame,
            frame_pool: picsou_runtime::transport::framer::receive_pool(),
            tcp: cfg.tcp,
            zero_copy_min,
            rx_limit: cfg.rx_limit,
            cqes: Vec::with_capacity(CQE_BATCH),
            spare_frames: Vec::new(),
        })
    }

    /// The loop (see the module documentation), until the transport is dropped.
    fn run(&mut self) -> io::Result<()> {
        self.arm_wake();
        self.arm_accept();
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            if self.shared.doorbell.take_work() {
                self.take_work();
            }
            self.start_sends();
            self.fire_timers(Instant::now());
            self.publish();
            self.wait()?;
            self.reap();
        }
    }

    /// Queues `sqes` (linked ones together), submitting first if the queue lacks room.
    /// Returns false if the kernel would not take them (the caller undoes its bookkeeping).
    ///
    /// # Safety
    /// Every buffer the entries point to must stay valid until each operation's last
    /// completion.
    #[allow(unsafe_code)]
    unsafe fn push(&mut self, sqes: &[squeue::Entry]) -> bool {
        for attempt in 0..2 {
            // SAFETY: forwarded from the caller.
            if unsafe { self.ring.submission().push_multiple(sqes) }.is_ok() {
                return true;
            }
            if attempt == 0
                && let Err(e) = self.ring.submit()
                && !benign_wait_error(&e)
            {
                tracing::warn!("io_uring submit: {e}");
            }
        }
        tracing::warn!("io_uring submission queue full; operation dropped");
        false
    }

    /// Arms the read of the doorbell's eventfd, which wakes a sleeping ring.
    fn arm_wake(&mut self) {
        let ud = self.ops.insert(Op::Wake);
        let sqe = opcode::Read::new(Fd(self.shared.doorbell.fd()), self.wake_buf.as_mut_ptr(), 8).build().user_data(ud);
        #[allow(unsafe_code)]
        // SAFETY: the kernel writes 8 bytes into `wake_buf`, a heap allocation owned by the
        // driver and freed only after every operation completed (or leaked, see `shutdown`).
        // The eventfd lives in `shared`, which the driver holds.
        let ok = unsafe { self.push(&[sqe]) };
        if !ok {
            self.ops.remove(ud);
        }
    }

    /// Asks the kernel to cancel operation `target` (it then completes with `ECANCELED`).
    fn cancel(&mut self, target: u64) {
        let sqe = opcode::AsyncCancel2::new(CancelBuilder::user_data(target)).build().user_data(IGNORED);
        #[allow(unsafe_code)]
        // SAFETY: a cancellation names no user memory.
        let _ = unsafe { self.push(&[sqe]) };
    }

    /// Disconnects and bans the peers `Transport::disconnect` named.
    fn take_disconnects(&mut self) {
        let disconnects =
            std::mem::take(&mut *self.shared.disconnects.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for (peer, until) in disconnects {
            self.acceptor.ban(peer, until);
            if let Some(&conn) = self.by_peer.get(&peer) {
                tracing::info!(%peer, "disconnected: proven faulty");
                self.close_conn(conn, None);
            }
        }
    }

    /// Takes what the node handed over: frames (dropped at once for a peer waiting to
    /// redial), peers to disconnect, and the reading switches.
    fn take_work(&mut self) {
        if self.shared.disconnect_pending.swap(false, Ordering::Acquire) {
            self.take_disconnects();
        }
        for p in 0..self.out.len() {
            let mut frames = std::mem::take(&mut self.spare_frames);
            std::mem::swap(&mut *self.out[p].shared.queue(), &mut frames);
            if !frames.is_empty() {
                let o = &mut self.out[p];
                if o.link.is_down() {
                    // Down: drop, like frames to a crashed replica.
                    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
                    self.stats.frames_dropped += frames.len() as u64;
                    o.retired += bytes;
                    frames.clear();
                } else {
                    let queue = o.link.queue_mut();
                    for f in frames.drain(..) {
                        queue.push(f);
                    }
                }
            }
            self.spare_frames = frames;
        }
        let receiving = self.shared.receiving.load(Ordering::SeqCst);
        let mut paused = self.paused;
        if self.shared.drained.swap(false, Ordering::SeqCst) && paused {
            paused = self.shared.inbox.backlog() > self.rx_limit;
        }
        self.set_reading(receiving, paused);
    }

    /// Redials, the delayed accept re-arm, hello deadlines.
    fn fire_timers(&mut self, now: Instant) {
        for p in 0..self.out.len() {
            match self.out[p].link.due(now) {
                Some(Due::Dial) => self.dial(p),
                Some(Due::DialTimedOut) => {
                    let reason = LinkError::ConnectTimeout { addr: self.out[p].addr, after: HELLO_TIMEOUT };
                    self.lose(p, reason);
                }
                None => {}
            }
        }
        if self.acceptor.retry_due(now) {
            self.arm_accept();
        }
        let mut report = Report { events: &mut self.events, stats: &mut self.stats };
        for (i, ()) in self.acceptor.expire(now, &mut report) {
            self.close_conn(i, None);
        }
    }

    /// When [`Driver::fire_timers`] next has something to do (at most [`MAX_SLEEP`] away).
    fn next_deadline(&self, now: Instant) -> Instant {
        let links = self.out.iter().filter_map(|o| o.link.deadline());
        links.chain(self.acceptor.next_deadline()).fold(now + MAX_SLEEP, Instant::min)
    }

    /// Hands events, retired bytes and counters to the node.
    fn publish(&mut self) {
        let half = self.tcp.max_queued_bytes / 2;
        for o in &mut self.out {
            if o.retired == o.published {
                continue;
            }
            o.published = o.retired;
            o.shared.retired.store(o.retired, Ordering::SeqCst);
            if o.shared.full.load(Ordering::SeqCst) {
                let queued = o.shared.handed.load(Ordering::SeqCst).saturating_sub(o.retired);
                if queued <= half as u64 && o.shared.full.swap(false, Ordering::SeqCst) {
                    self.events.push(TransportEvent::Writable(o.shared.id));
                }
            }
        }
        if !self.events.is_empty() {
            let backlog = self.shared.inbox.push(&mut self.events, self.rx_bytes);
            self.rx_bytes = 0;
            if backlog > self.rx_limit && !self.paused {
                tracing::debug!(backlog, "node not keeping up: pausing receives");
                self.set_reading(self.receiving, true);
            }
        }
        self.shared.counters.store(&self.stats, self.enobufs);
    }

    /// Submits, sleeping until a completion or the next timer when nothing is ready.
    fn wait(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let timeout = self.next_deadline(now).saturating_duration_since(now);
        let ready = !self.ring.completion().is_empty();
        let res = if ready || timeout.is_zero() || !self.shared.doorbell.go_idle() {
            self.ring.submit()
        } else {
            let ts = Timespec::from(timeout);
            let args = SubmitArgs::new().timespec(&ts);
            let r = self.ring.submitter().submit_with_args(1, &args);
            self.shared.doorbell.wake_up();
            r
        };
        match res {
            Ok(_) => Ok(()),
            Err(e) if benign_wait_error(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Handles the completions that are ready (a bounded number of rounds, so events get
    /// published regularly under load).
    fn reap(&mut self) {
        let mut batch = std::mem::take(&mut self.cqes);
        for _ in 0..4 {
            batch.clear();
            batch.extend(self.ring.completion().take(CQE_BATCH).map(|c| (c.user_data(), c.result(), c.flags())));
            if batch.is_empty() {
                break;
            }
            for &(ud, res, flags) in &batch {
                self.complete(ud, res, flags);
            }
        }
        self.cqes = batch;
    }

    /// Dispatches one completion to its operation's handler. Unknown `user_data` (a slot
    /// already freed) is ignored, after giving back any provided buffer it carries.
    fn complete(&mut self, ud: u64, res: i32, flags: u32) {
        if ud == IGNORED {
            return;
        }
        let Some(op) = self.ops.get_mut(ud) else {
            if let (Some(bid), Some(bufs)) = (cqueue::buffer_select(flags), &mut self.bufs) {
                bufs.recycle(bid);
            }
            return;
        };
        match op {
            Op::Wake => {
                self.ops.remove(ud);
                self.arm_wake();
            }
            Op::Accept => self.on_accept(ud, res, flags),
            Op::Connect { .. } => self.on_connect(ud, res),
            Op::Watch { peer, epoch } => {
                let (p, epoch) = (*peer, *epoch);
                self.ops.remove(ud);
                if self.out[p].up(epoch).is_some() {
                    let why = if res < 0 { LinkError::Broken(completion_error(res)) } else { LinkError::Closed };
                    self.lose(p, why);
                } else if self.out[p].dialing(epoch) {
                    // The handshake's next message (or the end of the connection) is there.
                    self.continue_handshake(p);
                }
            }
            Op::Send { .. } => self.on_send(ud, res, flags),
            Op::Recv { conn, epoch } => {
                let (conn, epoch) = (*conn, *epoch);
                self.on_recv(ud, conn, epoch, res, flags);
            }
            Op::RecvDirect { .. } => self.on_recv_direct(ud, res),
        }
    }
}
