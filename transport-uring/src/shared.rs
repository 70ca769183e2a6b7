//! State shared by the node thread (which calls the [`Transport`] methods) and the ring thread.
//!
//! The node thread never touches the ring and the ring thread never blocks on the node, so
//! every hand-over is a short critical section or an atomic:
//! - [`PeerLink`]: frames for one peer (the node appends a whole batch per `flush`, the ring
//!   takes the whole queue per wake-up), the peer's connection state (read by `send` to drop
//!   frames to a down peer) and the byte counters that decide `Full` and `Writable`.
//! - [`Doorbell`]: wakes the ring thread through an eventfd that the ring keeps a read armed
//!   on, but only when the ring is about to sleep (an `idle` flag, Dekker-style with `work`),
//!   so a busy ring costs the node no system call.
//! - [`Inbox`]: events for the node (received frames first of all) and the parker the node's
//!   `poll` sleeps on.
//! - [`Counters`]: the ring thread's statistics, published once per ring iteration.
//!
//! [`Transport`]: picsou_runtime::Transport

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use picsou_core::ReplicaId;
use picsou_runtime::transport::{EncodedFrame, TransportEvent, TransportStats, Wake};

/// Connection state of an outgoing link, as `send` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum LinkState {
    /// First dial in progress (frames queue: the peer is expected).
    Connecting = 0,
    /// Connected: frames queue and flow.
    Up = 1,
    /// Lost or never reached, redialling with backoff: frames are dropped.
    Down = 2,
}

/// One outgoing link, shared by `send`/`flush` (node thread) and the ring thread. Fields
/// written by different threads sit on different cache lines (`send` reads `state` and
/// `retired` for every frame; they change rarely, so those reads stay cache hits).
#[derive(Debug)]
pub(crate) struct PeerLink {
    /// The peer.
    pub(crate) id: ReplicaId,
    /// Frames flushed by the node, not yet taken by the ring thread.
    pub(crate) queue: Mutex<Vec<EncodedFrame>>,
    state: AtomicU8,
    /// Frame bytes written to the socket or dropped, ever (written by the ring thread only).
    /// `handed - retired` is what is queued in user space, which decides `Full`.
    pub(crate) retired: Padded<AtomicU64>,
    /// Frame bytes accepted by `send`, ever, as of the last flush or `Full` (written by the
    /// node thread only).
    pub(crate) handed: Padded<AtomicU64>,
    /// `send` said `Full`: the ring thread reports `Writable` once below half the limit.
    pub(crate) full: AtomicBool,
}

/// Keeps a value on its own cache lines (two: adjacent-line prefetching pairs them).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl PeerLink {
    /// A link in state [`LinkState::Connecting`].
    pub(crate) fn new(id: ReplicaId) -> Self {
        Self {
            id,
            queue: Mutex::new(Vec::new()),
            state: AtomicU8::new(LinkState::Connecting as u8),
            handed: Padded(AtomicU64::new(0)),
            retired: Padded(AtomicU64::new(0)),
            full: AtomicBool::new(false),
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> LinkState {
        match self.state.load(Ordering::Acquire) {
            0 => LinkState::Connecting,
            1 => LinkState::Up,
            _ => LinkState::Down,
        }
    }

    /// Sets the state (ring thread).
    pub(crate) fn set_state(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// The frame queue, even if a thread panicked while holding it (a `Vec` of frames stays
    /// consistent whatever happened).
    pub(crate) fn queue(&self) -> MutexGuard<'_, Vec<EncodedFrame>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Wakes the ring thread: an eventfd plus the flags that make most wake-ups free.
#[derive(Debug)]
pub(crate) struct Doorbell {
    eventfd: File,
    /// The ring thread is about to block (or blocks) in `io_uring_enter`.
    idle: AtomicBool,
    /// Something for the ring thread: frames, a control change, shutdown.
    work: AtomicBool,
}

impl Doorbell {
    /// Creates the eventfd.
    pub(crate) fn new() -> io::Result<Self> {
        #[allow(unsafe_code)]
        // SAFETY: `eventfd` takes no pointers; a non-negative result is a new descriptor that
        // nothing else owns, so wrapping it in an `OwnedFd` is sound.
        let fd = unsafe {
            let fd = libc::eventfd(0, libc::EFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        Ok(Self { eventfd: File::from(fd), idle: AtomicBool::new(false), work: AtomicBool::new(false) })
    }

    /// The eventfd, for the ring's read.
    pub(crate) fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.eventfd.as_raw_fd()
    }

    /// Signals work; writes the eventfd only if the ring thread is idle.
    pub(crate) fn ring(&self) {
        self.work.store(true, Ordering::SeqCst);
        if self.idle.load(Ordering::SeqCst) && self.idle.swap(false, Ordering::SeqCst) {
            // Fails only if the counter would overflow, i.e. a wake-up is pending anyway.
            if let Err(e) = (&self.eventfd).write_all(&1u64.to_ne_bytes()) {
                tracing::debug!("waking the io_uring thread: {e}");
            }
        }
    }

    /// Ring thread: takes the work flag.
    pub(crate) fn take_work(&self) -> bool {
        self.work.load(Ordering::SeqCst) && self.work.swap(false, Ordering::SeqCst)
    }

    /// Ring thread: announces it is about to block; returns false (and stays awake) if work
    /// arrived meanwhile. Pairs with [`Doorbell::ring`]: either the node sees `idle` and writes
    /// the eventfd, or the ring sees `work`.
    pub(crate) fn go_idle(&self) -> bool {
        self.idle.store(true, Ordering::SeqCst);
        if self.work.load(Ordering::SeqCst) {
            self.idle.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Ring thread: awake again.
    pub(crate) fn wake_up(&self) {
        self.idle.store(false, Ordering::SeqCst);
    }
}

/// Why the ring thread stopped: every later `poll` reports it.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum ThreadFailure {
    /// The ring failed (`io_uring_enter`).
    #[error("io_uring: {0}")]
    Ring(#[source] std::sync::Arc<io::Error>),
    /// The thread panicked (a bug).
    #[error("the io_uring transport thread panicked")]
    Panicked,
}

/// What the ring thread hands to the node, under one lock.
#[derive(Debug, Default)]
struct InboxState {
    events: Vec<TransportEvent>,
    /// Bytes of received frames in `events` (bounded: see [`Inbox::push`]).
    backlog: usize,
    /// The node sleeps in `poll`.
    waiting: bool,
    /// [`Wake::wake`] was called.
    woken: bool,
    /// The ring thread died: every later `poll` reports it.
    failure: Option<ThreadFailure>,
}

/// Events for the node thread and the parker its `poll` sleeps on.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    state: Mutex<InboxState>,
    cond: Condvar,
}

/// What [`Inbox::take`] found.
pub(crate) struct Taken {
    /// The backlog was over the limit: the ring thread may have paused receiving and must be
    /// told it can resume.
    pub(crate) was_over: bool,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ring thread: appends `events` (carrying `bytes` of frames); wakes the node if it
    /// sleeps. Returns the backlog after the push, so the ring can stop reading when the node
    /// does not keep up.
    pub(crate) fn push(&self, events: &mut Vec<TransportEvent>, bytes: usize) -> usize {
        let mut s = self.lock();
        if s.events.is_empty() {
            std::mem::swap(&mut s.events, events);
        } else {
            s.events.append(events);
        }
        s.backlog += bytes;
        let backlog = s.backlog;
        if s.waiting {
            self.cond.notify_one();
        }
        backlog
    }

    /// The current backlog of undelivered frame bytes.
    pub(crate) fn backlog(&self) -> usize {
        self.lock().backlog
    }

    /// Ring thread: records a fatal failure; every later `poll` returns it.
    pub(crate) fn fail(&self, why: ThreadFailure) {
        let mut s = self.lock();
        s.failure = Some(why);
        self.cond.notify_all();
    }

    /// Node thread: moves ready events to `out`, waiting up to `timeout` (`None`: forever)
    /// for some, a wake-up or a failure. `over` is the backlog above which the ring pauses.
    pub(crate) fn take(
        &self,
        timeout: Option<Duration>,
        out: &mut Vec<TransportEvent>,
        over: usize,
    ) -> Result<Taken, ThreadFailure> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.lock();
        loop {
            if !s.events.is_empty() {
                let was_over = s.backlog > over;
                s.backlog = 0;
                s.woken = false;
                if out.is_empty() {
                    std::mem::swap(out, &mut s.events);
                } else {
                    out.append(&mut s.events);
                }
                return Ok(Taken { was_over });
            }
            if let Some(why) = &s.failure {
                return Err(why.clone());
            }
            if s.woken {
                s.woken = false;
                return Ok(Taken { was_over: false });
            }
            let wait = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(Taken { was_over: false }),
                },
            };
            s.waiting = true;
            s = match wait {
                None => self.cond.wait(s).unwrap_or_else(PoisonError::into_inner),
                Some(left) => self.cond.wait_timeout(s, left).unwrap_or_else(PoisonError::into_inner).0,
            };
            s.waiting = false;
        }
    }
}

impl Wake for Inbox {
    fn wake(&self) {
        let mut s = self.lock();
        s.woken = true;
        self.cond.notify_all();
    }
}

/// The ring thread's counters; it is their only writer and stores them once per iteration.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    frames_received: AtomicU64,
    bytes_received: AtomicU64,
    frames_dropped: AtomicU64,
    connects: AtomicU64,
    disconnects: AtomicU64,
    rejected: AtomicU64,
    /// Multishot receives re-armed after the buffer ring ran dry (not in `TransportStats`:
    /// io_uring specific, for tuning `recv_buffers` and for tests).
    pub(crate) enobufs: AtomicU64,
}

impl Counters {
    /// Publishes the ring thread's running totals.
    pub(crate) fn store(&self, s: &TransportStats, enobufs: u64) {
        let r = Ordering::Relaxed;
        self.enobufs.store(enobufs, r);
        self.frames_sent.store(s.frames_sent, r);
        self.bytes_sent.store(s.bytes_sent, r);
        self.frames_received.store(s.frames_received, r);
        self.bytes_received.store(s.bytes_received, r);
        self.frames_dropped.store(s.frames_dropped, r);
        self.connects.store(s.connects, r);
        self.disconnects.store(s.disconnects, r);
        self.rejected.store(s.rejected, r);
    }

    /// The last published totals.
    pub(crate) fn load(&self) -> TransportStats {
        let r = Ordering::Relaxed;
        TransportStats {
            frames_sent: self.frames_sent.load(r),
            bytes_sent: self.bytes_sent.load(r),
            frames_received: self.frames_received.load(r),
            bytes_received: self.bytes_received.load(r),
            frames_dropped: self.frames_dropped.load(r),
            connects: self.connects.load(r),
            disconnects: self.disconnects.load(r),
            rejected: self.rejected.load(r),
        }
    }
}

/// Everything both threads hold.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Wakes the ring thread.
    pub(crate) doorbell: Doorbell,
    /// Events for the node.
    pub(crate) inbox: std::sync::Arc<Inbox>,
    /// Ring thread statistics.
    pub(crate) counters: Counters,
    /// `set_receiving`.
    pub(crate) receiving: AtomicBool,
    /// The node drained an over-limit backlog: the ring may resume reading.
    pub(crate) drained: AtomicBool,
    /// The transport is being dropped.
    pub(crate) stop: AtomicBool,
    /// Peers to disconnect and refuse until then (`Transport::disconnect`; rare) ...
    pub(crate) disconnects: std::sync::Mutex<Vec<(picsou_core::ReplicaId, std::time::Instant)>>,
    /// ... and whether any wait: the ring thread checks this flag every round, not the lock.
    pub(crate) disconnect_pending: AtomicBool,
}
