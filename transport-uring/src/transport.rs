//! [`UringTransport`]: the node-thread side of the io_uring transport.
//!
//! The node thread only touches memory: `send` appends to a per-peer batch (no lock, no
//! atomic read-modify-write), `flush` moves each batch into the peer's shared queue with one
//! lock and rings the doorbell (a system call only if the ring thread sleeps), and `poll`
//! takes the events the ring thread published, sleeping on a condition variable when there are
//! none. All socket work happens in the ring thread (see [`crate::driver`]), which is why a
//! slow or dead peer never blocks the node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use picsou_core::ReplicaId;
use picsou_runtime::transport::{
    ConfigError, EncodedFrame, SendStatus, Transport, TransportError, TransportEvent, TransportOptions, TransportSetup,
    TransportStats, Wake,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::bufring::MAX_ENTRIES;
use crate::driver;
use crate::shared::{Counters, Doorbell, Inbox, LinkState, PeerLink, Shared};

/// Pending accepted connections the kernel keeps before the ring accepts them.
const LISTEN_BACKLOG: i32 = 1024;

/// Peer ids to indices without hashing: `send` runs once per frame.
#[derive(Debug, Default)]
struct PeerTable {
    /// `[rsm][index]` → position in the peer list, `u32::MAX` if none.
    slots: Vec<Vec<u32>>,
}

impl PeerTable {
    fn insert(&mut self, id: ReplicaId, i: usize) {
        let rsm = usize::from(id.rsm.0);
        if self.slots.len() <= rsm {
            self.slots.resize(rsm + 1, Vec::new());
        }
        let row = &mut self.slots[rsm];
        let at = usize::from(id.index);
        if row.len() <= at {
            row.resize(at + 1, u32::MAX);
        }
        row[at] = i as u32;
    }

    fn get(&self, id: ReplicaId) -> Option<usize> {
        let i = *self.slots.get(usize::from(id.rsm.0))?.get(usize::from(id.index))?;
        (i != u32::MAX).then_some(i as usize)
    }
}

/// A peer as the node thread sees it.
struct NodePeer {
    link: Arc<PeerLink>,
    /// Frames sent since the last flush.
    batch: Vec<EncodedFrame>,
    /// Frame bytes ever accepted (mirrors [`PeerLink::handed`]).
    handed: u64,
}

/// TCP sockets driven by io_uring in a transport-owned thread. See the crate documentation.
pub struct UringTransport {
    shared: Arc<Shared>,
    peers: Vec<NodePeer>,
    index: PeerTable,
    /// Peers with a non-empty batch.
    dirty: Vec<usize>,
    max_queued: u64,
    rx_limit: usize,
    /// Frames dropped by `send` (unknown or down peer).
    dropped: u64,
    local_addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for UringTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringTransport").field("listen", &self.local_addr).finish_non_exhaustive()
    }
}

impl UringTransport {
    /// Listens on `setup.listen`, starts the ring thread and dials every peer. Does not probe
    /// first (see [`crate::open`]): a ring that cannot be set up is
    /// [`TransportError::Unavailable`].
    pub fn new(setup: TransportSetup, opts: &TransportOptions) -> Result<Self, TransportError> {
        validate(opts)?;
        let listener = listen(setup.listen, opts)?;
        let local_addr = listener.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(setup.listen);
        let checked = setup.checked_peers()?;
        let mut peers = Vec::with_capacity(checked.len());
        let mut cfg_peers = Vec::with_capacity(checked.len());
        let mut index = PeerTable::default();
        for (id, addr, key) in checked {
            let link = Arc::new(PeerLink::new(id));
            index.insert(id, peers.len());
            peers.push(NodePeer { link: link.clone(), batch: Vec::new(), handed: 0 });
            cfg_peers.push((link, addr, key));
        }
        let doorbell = Doorbell::new().map_err(|e| TransportError::Io { context: "creating an eventfd", source: e })?;
        let rx_limit = opts.tcp.max_queued_bytes.saturating_mul(4).max(setup.max_frame_bytes.saturating_mul(2));
        let shared = Arc::new(Shared {
            doorbell,
            inbox: Arc::new(Inbox::default()),
            counters: Counters::default(),
            receiving: AtomicBool::new(true),
            drained: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            disconnects: std::sync::Mutex::new(Vec::new()),
            disconnect_pending: AtomicBool::new(false),
        });
        let known = setup.peers.iter().map(|(id, _)| *id).collect();
        let cfg = driver::Config {
            local: setup.local,
            listener,
            peers: cfg_peers,
            keys: setup.keys.clone(),
            session: setup.session,
            known,
            max_frame: setup.max_frame_bytes,
            tcp: opts.tcp.clone(),
            uring: opts.uring.clone(),
            rx_limit,
        };
        let thread = driver::spawn(cfg, shared.clone())?;
        Ok(Self {
            shared,
            peers,
            index,
            dirty: Vec::new(),
            max_queued: opts.tcp.max_queued_bytes as u64,
            rx_limit,
            dropped: 0,
            local_addr,
            thread: Some(thread),
        })
    }

    /// The address actually listened on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many times a multishot receive was re-armed because the provided buffer ring ran
    /// dry (`ENOBUFS`). Often non-zero means `recv_buffers` is too small for the load.
    pub fn recv_rearms_after_enobufs(&self) -> u64 {
        self.shared.counters.enobufs.load(Ordering::Relaxed)
    }
}

/// Rejects options the ring cannot use, naming the field.
fn validate(opts: &TransportOptions) -> Result<(), ConfigError> {
    let u = &opts.uring;
    let bad = |field, value: &dyn std::fmt::Display, expected: String| {
        Err(ConfigError::Option { field, value: value.to_string(), expected })
    };
    if !u.recv_buffers.is_power_of_two() || u.recv_buffers > MAX_ENTRIES {
        return bad("transport.uring.recv_buffers", &u.recv_buffers, format!("must be a power of two ≤ {MAX_ENTRIES}"));
    }
    if u.recv_buffer_size < 64 {
        return bad("transport.uring.recv_buffer_size", &u.recv_buffer_size, "must be at least 64".into());
    }
    if !u.entries.is_power_of_two() || !(8..=32768).contains(&u.entries) {
        return bad("transport.uring.entries", &u.entries, "must be a power of two in 8..=32768".into());
    }
    if opts.tcp.max_queued_bytes == 0 {
        return bad("transport.tcp.max_queued_bytes", &0, "must be positive".into());
    }
    Ok(())
}

/// The listening socket: `SO_REUSEADDR` (a restarted replica rebinds while old connections
/// linger) and the receive buffer set before `listen`, so accepted sockets inherit it and the
/// TCP window scale is negotiated for it. Blocking: io_uring accepts wait on it themselves.
fn listen(addr: SocketAddr, opts: &TransportOptions) -> Result<Socket, TransportError> {
    let err = |source| TransportError::Listen { address: addr, source };
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    if opts.tcp.recv_buffer > 0
        && let Err(e) = sock.set_recv_buffer_size(opts.tcp.recv_buffer)
    {
        tracing::warn!(%addr, size = opts.tcp.recv_buffer, "cannot set the receive buffer: {e}");
    }
    sock.bind(&addr.into()).map_err(err)?;
    sock.listen(LISTEN_BACKLOG).map_err(err)?;
    Ok(sock)
}

impl Transport for UringTransport {
    fn kind(&self) -> &'static str {
        "uring"
    }

    fn send(&mut self, peer: ReplicaId, frame: EncodedFrame) -> SendStatus {
        let Some(i) = self.index.get(peer) else {
            self.dropped += 1;
            return SendStatus::Room;
        };
        let p = &mut self.peers[i];
        if frame.is_empty() || p.link.state() == LinkState::Down {
            self.dropped += 1;
            return SendStatus::Room;
        }
        p.handed += frame.len() as u64;
        if p.batch.is_empty() {
            self.dirty.push(i);
        }
        p.batch.push(frame);
        if p.handed - p.link.retired.load(Ordering::Acquire) > self.max_queued {
            // `handed` first: the ring thread reads it after seeing `full`.
            p.link.handed.store(p.handed, Ordering::Release);
            p.link.full.store(true, Ordering::SeqCst);
            SendStatus::Full
        } else {
            SendStatus::Room
        }
    }

    fn flush(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        for &i in &self.dirty {
            let p = &mut self.peers[i];
            p.link.handed.store(p.handed, Ordering::Release);
            let mut q = p.link.queue();
            if q.is_empty() {
                std::mem::swap(&mut *q, &mut p.batch);
            } else {
                q.append(&mut p.batch);
            }
        }
        self.dirty.clear();
        self.shared.doorbell.ring();
    }

    fn poll(&mut self, timeout: Option<Duration>, events: &mut Vec<TransportEvent>) -> Result<(), TransportError> {
        match self.shared.inbox.take(timeout, events, self.rx_limit) {
            Ok(taken) => {
                if taken.was_over {
                    self.shared.drained.store(true, Ordering::SeqCst);
                    self.shared.doorbell.ring();
                }
                Ok(())
            }
            Err(why) => {
                Err(TransportError::Io { context: "io_uring transport thread", source: std::io::Error::other(why) })
            }
        }
    }

    fn waker(&self) -> Arc<dyn Wake> {
        self.shared.inbox.clone()
    }

    fn set_receiving(&mut self, receiving: bool) {
        if self.shared.receiving.swap(receiving, Ordering::SeqCst) != receiving {
            self.shared.doorbell.ring();
        }
    }

    fn has_sessions(&self) -> bool {
        true
    }

    fn disconnect(&mut self, peer: ReplicaId, for_how_long: Duration) {
        let until = std::time::Instant::now() + for_how_long;
        self.shared.disconnects.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((peer, until));
        self.shared.disconnect_pending.store(true, Ordering::Release);
        self.shared.doorbell.ring();
    }

    fn stats(&self) -> TransportStats {
        let mut s = self.shared.counters.load();
        s.frames_dropped += self.dropped;
        s
    }
}

impl Drop for UringTransport {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.doorbell.ring();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the io_uring transport thread panicked");
        }
    }
}
