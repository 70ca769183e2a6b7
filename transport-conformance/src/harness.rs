//! Driving transports from the test thread as the node drives them (send, flush, poll), several
//! in turn, and checking every frame that arrives.
//!
//! Frame `seq` from `from` to `to` carries the three of them and a pattern derived from them,
//! so a lost, repeated, reordered, swapped or corrupted frame is caught at the receiver.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use picsou_core::ReplicaId;
use picsou_core::keys::LinkKeys;
use picsou_runtime::transport::handshake::{self, Session, SessionContext, SessionDirection};
use picsou_runtime::transport::{
    EncodedFrame, LinkError, Rejection, SendStatus, Transport, TransportEvent, TransportOptions, TransportSetup,
};

/// The deployment secret every test transport derives its link keys from.
pub const SECRET: [u8; 32] = [42; 32];
/// Largest frame a test transport accepts.
pub const MAX_FRAME: usize = 1 << 20;

/// Replicas of the scenarios.
pub const A: ReplicaId = ReplicaId::new(0, 0);
/// Replicas of the scenarios.
pub const B: ReplicaId = ReplicaId::new(1, 0);
/// Replicas of the scenarios.
pub const C: ReplicaId = ReplicaId::new(1, 1);

/// Logs to the test's output when `RUST_LOG` is set (e.g. `picsou_runtime=debug`).
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    picsou_runtime::transport::ports::free_loopback_addr().expect("a free loopback port")
}

/// `ids` with fresh loopback addresses.
pub fn addresses(ids: &[ReplicaId]) -> Vec<(ReplicaId, SocketAddr)> {
    ids.iter().map(|&id| (id, free_addr())).collect()
}

/// The setup of `local` among `all` (it must be listed; everyone else is a peer).
pub fn setup(local: ReplicaId, all: &[(ReplicaId, SocketAddr)]) -> TransportSetup {
    let listen = all.iter().find(|(id, _)| *id == local).map(|(_, a)| *a).expect("local listed");
    TransportSetup {
        local,
        listen,
        peers: all.iter().filter(|(id, _)| *id != local).copied().collect(),
        keys: LinkKeys::derived(local, SECRET),
        session: SessionContext { deployment: [4; 32], incarnation: handshake::new_incarnation() },
        max_frame_bytes: MAX_FRAME,
    }
}

/// Options with quick redials (and no silent fallback from io_uring to TCP).
pub fn options() -> TransportOptions {
    let mut o = TransportOptions::default();
    o.tcp.backoff_min = Duration::from_millis(5);
    o.tcp.backoff_max = Duration::from_millis(100);
    o.tcp.connect_timeout = Duration::from_secs(1);
    o.uring.fallback = false;
    o
}

/// A deterministic mix of sizes: mostly small, some medium, a few large (up to `max`); the
/// first two are the extremes.
pub fn mixed_size(seq: u64, max: usize) -> usize {
    match seq {
        0 => 60,
        1 => max,
        _ => {
            let h = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
            match h % 100 {
                0 => {
                    let lo = 16_384.min(max);
                    lo + (h / 100) as usize % (max - lo + 1)
                }
                1..=9 => (2_000 + (h / 100) as usize % 14_000).min(max),
                _ => (60 + (h / 100) as usize % 1_940).min(max),
            }
        }
    }
}

/// Frame `seq` from `from` to `to` (at least 18 bytes): length prefix, magic, identities,
/// sequence, then a pattern depending on all of them.
pub fn make_frame(from: ReplicaId, to: ReplicaId, seq: u64, len: usize) -> Bytes {
    let mut f = vec![0u8; len.max(18)];
    let len = f.len();
    f[..4].copy_from_slice(&(len as u32).to_le_bytes());
    f[4..6].copy_from_slice(b"PQ");
    f[6] = from.rsm.0;
    f[7] = from.index as u8;
    f[8] = to.rsm.0;
    f[9] = to.index as u8;
    f[10..18].copy_from_slice(&seq.to_le_bytes());
    let salt = (seq as u8).wrapping_mul(31) ^ f[7].wrapping_mul(7) ^ f[9];
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_add(salt);
    }
    Bytes::from(f)
}

/// The sequence number of a frame built by [`make_frame`].
pub fn seq_of(frame: &[u8]) -> u64 {
    frame.get(10..18).and_then(|b| b.try_into().ok()).map_or(u64::MAX, u64::from_le_bytes)
}

/// One transport under test and what it has seen.
pub struct Node<T: ?Sized + Transport = dyn Transport> {
    /// The replica.
    pub id: ReplicaId,
    /// Its transport.
    pub t: Box<T>,
    /// Peers that said `Full` and have not said `Writable` since.
    pub blocked: HashSet<ReplicaId>,
    /// Next sequence number to send, per peer.
    pub next_send: HashMap<ReplicaId, u64>,
    /// Next sequence number expected, per peer.
    pub next_recv: HashMap<ReplicaId, u64>,
    /// `PeerUp`s seen.
    pub ups: Vec<ReplicaId>,
    /// `PeerDown`s seen.
    pub downs: Vec<(ReplicaId, LinkError)>,
    /// `Writable`s seen.
    pub writables: Vec<ReplicaId>,
    /// Sessions reported, in order.
    pub sessions: Vec<(ReplicaId, SessionDirection, Session)>,
    /// `Rejected`s seen: the claimed peer and why.
    pub rejected: Vec<(Option<ReplicaId>, Rejection)>,
    /// Times `send` said `Full`.
    pub fulls: u64,
    /// Length of frame `seq` of every stream.
    pub sizer: Box<dyn Fn(u64) -> usize>,
    events: Vec<TransportEvent>,
}

impl<T: ?Sized + Transport> Node<T> {
    /// `id` over `t`, sending frames of mixed sizes up to 300 KiB.
    pub fn new(id: ReplicaId, t: Box<T>) -> Self {
        Self {
            id,
            t,
            blocked: HashSet::new(),
            next_send: HashMap::new(),
            next_recv: HashMap::new(),
            ups: Vec::new(),
            downs: Vec::new(),
            writables: Vec::new(),
            sessions: Vec::new(),
            rejected: Vec::new(),
            fulls: 0,
            sizer: Box::new(|s| mixed_size(s, 300 * 1024)),
            events: Vec::new(),
        }
    }

    /// Sends up to `burst` frames of the stream to `to` (stopping at `Full` or at `total`),
    /// then flushes.
    pub fn pump_to(&mut self, to: ReplicaId, total: u64, burst: usize) {
        if self.blocked.contains(&to) {
            return;
        }
        let next = self.next_send.entry(to).or_insert(0);
        for _ in 0..burst {
            if *next >= total {
                break;
            }
            let f = make_frame(self.id, to, *next, (self.sizer)(*next));
            // Every other frame in two parts, as forwarded record sections go.
            let cut = if *next % 2 == 1 { f.len() / 2 } else { f.len() };
            let f = EncodedFrame { head: f.slice(..cut), shared: f.slice(cut..) };
            *next += 1;
            if self.t.send(to, f) == SendStatus::Full {
                self.fulls += 1;
                self.blocked.insert(to);
                break;
            }
        }
        self.t.flush();
    }

    /// Polls once (waiting at most `wait`), checking every frame: in order per sender, with
    /// exactly the bytes [`make_frame`] builds. Returns the number of events.
    pub fn poll(&mut self, wait: Duration) -> usize {
        self.events.clear();
        self.t.poll(Some(wait), &mut self.events).expect("poll");
        let n = self.events.len();
        for ev in std::mem::take(&mut self.events) {
            match ev {
                TransportEvent::Frame { from, frame } => {
                    if self.t.has_sessions() {
                        let session =
                            self.sessions.iter().any(|(q, d, _)| *q == from && *d == SessionDirection::Receive);
                        assert!(session, "{}: a frame from {from} before the session of its connection", self.id);
                    }
                    let expected = self.next_recv.entry(from).or_insert(0);
                    let seq = seq_of(&frame);
                    assert_eq!(seq, *expected, "{} got frame {seq} from {from}, expected {expected}", self.id);
                    let want = make_frame(from, self.id, seq, (self.sizer)(seq));
                    assert!(frame == want, "{}: frame {seq} from {from} differs ({} bytes)", self.id, frame.len());
                    *expected += 1;
                }
                TransportEvent::Session { peer, direction, session } => {
                    self.sessions.push((peer, direction, session));
                }
                TransportEvent::PeerUp(p) => {
                    if self.t.has_sessions() {
                        let session =
                            self.sessions.iter().rev().find(|(q, d, _)| *q == p && *d == SessionDirection::Send);
                        assert!(session.is_some(), "{}: PeerUp({p}) before its session", self.id);
                    }
                    self.ups.push(p);
                }
                TransportEvent::PeerDown { peer, reason } => self.downs.push((peer, reason)),
                TransportEvent::Writable(p) => {
                    self.writables.push(p);
                    self.blocked.remove(&p);
                }
                TransportEvent::Rejected { claimed, reason, .. } => self.rejected.push((claimed, reason)),
            }
        }
        n
    }

    /// Frames received in order from `from`.
    pub fn received_from(&self, from: ReplicaId) -> u64 {
        self.next_recv.get(&from).copied().unwrap_or(0)
    }

    /// `PeerDown`s of `peer` seen.
    pub fn downs_of(&self, peer: ReplicaId) -> usize {
        self.downs.iter().filter(|(p, _)| *p == peer).count()
    }

    /// Starts fresh streams (after a restart: the frames in flight were lost) and forgets the
    /// link events seen.
    pub fn restart_streams(&mut self) {
        self.next_send.clear();
        self.next_recv.clear();
        self.blocked.clear();
        self.downs.clear();
        self.ups.clear();
    }
}

/// Polls every node until `done` holds; panics with `what` and everyone's progress after
/// `timeout`.
pub fn run_until<T: ?Sized + Transport>(
    nodes: &mut [Node<T>],
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&mut [Node<T>]) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done(nodes) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {:?}", progress(nodes));
        for n in nodes.iter_mut() {
            n.poll(Duration::from_millis(1));
        }
    }
}

/// Polls every node for `d`.
pub fn run_for<T: ?Sized + Transport>(nodes: &mut [Node<T>], d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        for n in nodes.iter_mut() {
            n.poll(Duration::from_millis(1));
        }
    }
}

/// Waits until every node's outgoing links are up (`PeerUp` from each peer) and its
/// transport counts a connection each way with every other node; then forgets the link
/// events so far (nodes dial peers whose listeners may not exist yet: those first dials fail).
pub fn wait_connected<T: ?Sized + Transport>(nodes: &mut [Node<T>], timeout: Duration) {
    let ids: Vec<ReplicaId> = nodes.iter().map(|n| n.id).collect();
    let want = 2 * (nodes.len() as u64 - 1);
    run_until(nodes, timeout, "all connections", |ns| {
        ns.iter().all(|n| n.t.stats().connects >= want && ids.iter().all(|&p| p == n.id || n.ups.contains(&p)))
    });
    for n in nodes.iter_mut() {
        n.poll(Duration::ZERO);
        n.downs.clear();
        n.ups.clear();
    }
}

/// Every node streams frames `0..total` to every other node; checks that all arrive, and that
/// nothing was refused or went down meanwhile.
pub fn exchange<T: ?Sized + Transport>(nodes: &mut [Node<T>], total: u64, timeout: Duration) {
    let ids: Vec<ReplicaId> = nodes.iter().map(|n| n.id).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let done = nodes.iter().all(|n| ids.iter().filter(|&&p| p != n.id).all(|&p| n.received_from(p) == total));
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "exchange timed out: {:?}", progress(nodes));
        for n in nodes.iter_mut() {
            for &to in &ids {
                if to != n.id {
                    n.pump_to(to, total, 64);
                }
            }
            n.poll(Duration::ZERO);
        }
        // Let transport threads run when every sender is blocked or done.
        nodes[0].poll(Duration::from_micros(200));
    }
    for n in nodes.iter() {
        assert!(n.rejected.is_empty(), "{}: unexpected rejections: {:?}", n.id, n.rejected);
        assert!(n.downs.is_empty(), "{}: unexpected peer downs: {:?}", n.id, n.downs);
    }
}

/// Everyone's streams and counters, for failure messages.
pub fn progress<T: ?Sized + Transport>(nodes: &[Node<T>]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| {
            format!(
                "{} ({}): sent {:?} received {:?} blocked {:?} downs {:?} {:?}",
                n.id,
                n.t.kind(),
                n.next_send,
                n.next_recv,
                n.blocked,
                n.downs,
                n.t.stats()
            )
        })
        .collect()
}
