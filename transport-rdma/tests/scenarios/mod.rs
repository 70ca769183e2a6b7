//! Helpers and scenarios shared by the integration tests. Every scenario is generic over the
//! device, so the same checks run on the in-memory fake (everywhere) and on a real RDMA device
//! (`tests/device.rs`, skipped with a visible message where there is none).

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use picsou_core::ReplicaId;
use picsou_core::keys::LinkKeys;
use picsou_runtime::transport::{
    EncodedFrame, SendStatus, Transport, TransportEvent, TransportOptions, TransportSetup,
};
use picsou_transport_rdma::RdmaTransport;
use picsou_transport_rdma::verbs::Device;

pub const SECRET: [u8; 32] = [42; 32];
pub const MAX_FRAME: usize = 1 << 20;

pub const A: ReplicaId = ReplicaId::new(0, 0);
pub const B: ReplicaId = ReplicaId::new(1, 0);
pub const C: ReplicaId = ReplicaId::new(1, 1);

/// Logs to the test's output when `RUST_LOG` is set (e.g. `picsou_transport_rdma=debug`).
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

/// A setup for `local` among `all`.
pub fn setup(local: ReplicaId, all: &[(ReplicaId, SocketAddr)]) -> TransportSetup {
    let listen = all.iter().find(|(id, _)| *id == local).map(|(_, a)| *a).expect("local listed");
    TransportSetup {
        local,
        listen,
        peers: all.iter().filter(|(id, _)| *id != local).copied().collect(),
        keys: LinkKeys::derived(local, SECRET),
        max_frame_bytes: MAX_FRAME,
    }
}

/// Options with quick redials and the given ring size.
pub fn options(ring: usize) -> TransportOptions {
    let mut o = TransportOptions::default();
    o.tcp.backoff_min = Duration::from_millis(5);
    o.tcp.backoff_max = Duration::from_millis(100);
    o.rdma.ring_bytes = ring;
    o
}

/// Frame sizes: mostly small, some medium, a few large (up to `max`); the first two are the
/// extremes.
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

/// Frame `seq` from `from` to `to`: identities, sequence, then a pattern depending on all of
/// them (a swapped or corrupted byte is caught).
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

pub fn seq_of(frame: &[u8]) -> u64 {
    u64::from_le_bytes(frame[10..18].try_into().expect("8 bytes"))
}

/// One transport under test and what it has seen.
pub struct Node<D: Device> {
    pub id: ReplicaId,
    pub t: RdmaTransport<D>,
    pub blocked: HashSet<ReplicaId>,
    pub next_send: HashMap<ReplicaId, u64>,
    pub next_recv: HashMap<ReplicaId, u64>,
    pub ups: Vec<ReplicaId>,
    pub downs: Vec<(ReplicaId, String)>,
    pub writables: Vec<ReplicaId>,
    pub rejected: Vec<(Option<ReplicaId>, String)>,
    pub fulls: u64,
    pub sizer: Box<dyn Fn(u64) -> usize>,
    events: Vec<TransportEvent>,
}

impl<D: Device> Node<D> {
    pub fn new(id: ReplicaId, t: RdmaTransport<D>, max_size: usize) -> Self {
        Self {
            id,
            t,
            blocked: HashSet::new(),
            next_send: HashMap::new(),
            next_recv: HashMap::new(),
            ups: Vec::new(),
            downs: Vec::new(),
            writables: Vec::new(),
            rejected: Vec::new(),
            fulls: 0,
            sizer: Box::new(move |s| mixed_size(s, max_size)),
            events: Vec::new(),
        }
    }

    /// Sends up to `burst` frames of the stream to `to` (stopping at `Full` or `total`).
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

    /// Polls once, checking every frame: in order per sender, exactly the bytes sent.
    pub fn poll(&mut self, wait: Duration) -> usize {
        self.events.clear();
        self.t.poll(Some(wait), &mut self.events).expect("poll");
        let n = self.events.len();
        for ev in std::mem::take(&mut self.events) {
            match ev {
                TransportEvent::Frame { from, frame } => {
                    let expected = self.next_recv.entry(from).or_insert(0);
                    let seq = seq_of(&frame);
                    assert_eq!(seq, *expected, "{} got frame {seq} from {from}, expected {expected}", self.id);
                    let want = make_frame(from, self.id, seq, (self.sizer)(seq));
                    assert!(frame == want, "{}: frame {seq} from {from} differs ({} bytes)", self.id, frame.len());
                    *expected += 1;
                }
                TransportEvent::PeerUp(p) => self.ups.push(p),
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

    pub fn received_from(&self, from: ReplicaId) -> u64 {
        self.next_recv.get(&from).copied().unwrap_or(0)
    }

    pub fn down_peers(&self) -> Vec<ReplicaId> {
        self.downs.iter().map(|(p, _)| *p).collect()
    }
}

/// Polls every node until `done` holds or `timeout` passes (then panics with `what`).
pub fn run_until<D: Device>(
    nodes: &mut [Node<D>],
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&mut [Node<D>]) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done(nodes) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {:?}", progress(nodes));
        for n in nodes.iter_mut() {
            n.poll(Duration::from_millis(1));
        }
    }
}

/// Waits until every pair of nodes is connected both ways.
pub fn wait_connected<D: Device>(nodes: &mut [Node<D>], timeout: Duration) {
    let ids: Vec<ReplicaId> = nodes.iter().map(|n| n.id).collect();
    run_until(nodes, timeout, "all connections", |ns| {
        ns.iter().all(|n| ids.iter().filter(|&&p| p != n.id).all(|&p| n.t.connected(p)))
    });
    // Nodes dial peers whose listeners may not exist yet: forget those first failures.
    for n in nodes.iter_mut() {
        n.poll(Duration::ZERO);
        n.downs.clear();
        n.ups.clear();
    }
}

/// Every node streams `total` frames to every other node; checks all arrive.
pub fn exchange<D: Device>(nodes: &mut [Node<D>], total: u64, timeout: Duration) {
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
    }
    for n in nodes.iter() {
        assert!(n.rejected.is_empty(), "{}: unexpected rejections: {:?}", n.id, n.rejected);
        assert!(n.downs.is_empty(), "{}: unexpected peer downs: {:?}", n.id, n.downs);
    }
}

pub fn progress<D: Device>(nodes: &[Node<D>]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| {
            format!(
                "{}: sent {:?} received {:?} blocked {:?} downs {:?} {:?} [{}]",
                n.id,
                n.next_send,
                n.next_recv,
                n.blocked,
                n.downs,
                n.t.stats(),
                n.t.debug_state()
            )
        })
        .collect()
}

/// Makes the transport of a replica among (replica, address) pairs with these options.
pub type Maker<D> = dyn Fn(ReplicaId, &[(ReplicaId, SocketAddr)], &TransportOptions) -> RdmaTransport<D>;

/// How the scenarios make transports and how big they make things.
pub struct Bench<D: Device> {
    pub make: Box<Maker<D>>,
    /// Frames per direction in the exchange scenarios.
    pub frames: u64,
    /// Largest frame.
    pub max_frame: usize,
    /// Generous timeout for each phase.
    pub timeout: Duration,
}

impl<D: Device> Bench<D> {
    pub fn nodes(&self, ids: &[ReplicaId], opts: &TransportOptions, max_size: usize) -> Vec<Node<D>> {
        init_logs();
        let all: Vec<_> = ids.iter().map(|&id| (id, free_addr())).collect();
        ids.iter().map(|&id| Node::new(id, (self.make)(id, &all, opts), max_size)).collect()
    }
}

/// Three transports, every pair both ways, mixed frame sizes up to `max_frame`.
pub fn three_way_exchange<D: Device>(b: &Bench<D>, opts: &TransportOptions) {
    let mut nodes = b.nodes(&[A, B, C], opts, b.max_frame);
    wait_connected(&mut nodes, b.timeout);
    exchange(&mut nodes, b.frames, b.timeout);
    run_until(&mut nodes, b.timeout, "send counters", |ns| ns.iter().all(|n| n.t.stats().frames_sent == 2 * b.frames));
    for n in &nodes {
        let s = n.t.stats();
        assert_eq!(s.frames_received, 2 * b.frames, "{}: {s:?}", n.id);
        assert_eq!(s.frames_dropped, 0, "{}: {s:?}", n.id);
    }
}

/// A small ring: many laps, frames cut across the end of the ring, credits every lap.
pub fn wrap_around<D: Device>(b: &Bench<D>, ring: usize, frames: u64) {
    let opts = options(ring);
    let mut nodes = b.nodes(&[A, B], &opts, ring / 2);
    for n in &mut nodes {
        // Sizes up to half the ring: frames span records and cross the end of the ring.
        let half = ring / 2;
        n.sizer = Box::new(move |s| if s % 50 == 7 { half } else { 40 + (s as usize * 37) % 900 });
    }
    wait_connected(&mut nodes, b.timeout);
    exchange(&mut nodes, frames, b.timeout);
    let sent = nodes[0].t.stats().bytes_sent;
    let laps = sent / ring as u64;
    println!("{frames} frames, {sent} bytes through a {ring}-byte ring: {laps} laps");
    assert!(laps >= 10, "only {laps} laps of the ring");
}

/// The receiver stops reading: the sender fills the ring, then its queue, sees `Full`; when the
/// receiver reads again, every frame arrives and the sender gets `Writable`.
pub fn credit_exhaustion<D: Device>(b: &Bench<D>, opts: &TransportOptions) {
    let ring = opts.rdma.ring_bytes;
    let mut opts = opts.clone();
    opts.tcp.max_queued_bytes = 4 * ring;
    let mut nodes = b.nodes(&[A, B], &opts, 4096);
    for n in &mut nodes {
        n.sizer = Box::new(|_| 1000);
    }
    wait_connected(&mut nodes, b.timeout);
    nodes[1].t.set_receiving(false);
    let deadline = Instant::now() + b.timeout;
    while !nodes[0].blocked.contains(&B) {
        assert!(Instant::now() < deadline, "never Full: {:?}", progress(&nodes));
        nodes[0].pump_to(B, u64::MAX, 16);
        nodes[0].poll(Duration::ZERO);
        nodes[1].poll(Duration::ZERO);
    }
    let queued = nodes[0].next_send[&B];
    // Nothing can have been consumed: the ring holds at most its size.
    let sent = nodes[0].t.stats().bytes_sent;
    assert!(sent <= ring as u64, "{sent} bytes written into a {ring}-byte ring nobody reads");
    assert_eq!(nodes[1].received_from(A), 0);
    for _ in 0..20 {
        nodes[0].poll(Duration::from_millis(5));
        nodes[1].poll(Duration::from_millis(5));
    }
    assert!(nodes[0].blocked.contains(&B), "Writable while the receiver does not read");
    assert_eq!(nodes[0].t.stats().bytes_sent, sent, "wrote past the credit");
    nodes[1].t.set_receiving(true);
    run_until(&mut nodes, b.timeout, "Writable and every frame", |ns| {
        !ns[0].writables.is_empty() && ns[1].received_from(A) == queued
    });
    assert_eq!(nodes[0].t.stats().frames_dropped, 0);
    assert!(nodes[0].fulls > 0);
    // And the stream goes on.
    exchange(&mut nodes, queued + 500, b.timeout);
}

/// A write the peer refuses: error completion, PeerDown, queue pair reset, reconnect, and
/// fresh streams flow again both ways.
pub fn error_completion_and_reconnect<D: Device>(b: &Bench<D>, opts: &TransportOptions) {
    let mut nodes = b.nodes(&[A, B], opts, 8192);
    wait_connected(&mut nodes, b.timeout);
    exchange(&mut nodes, 200, b.timeout);
    assert!(nodes[0].t.inject_bad_write(B), "link up");
    run_until(&mut nodes, b.timeout, "PeerDown(B) after the refused write", |ns| ns[0].down_peers().contains(&B));
    let reason = nodes[0].downs[0].1.clone();
    assert!(reason.contains("completed with error"), "{reason}");
    let connects = nodes[0].t.stats().connects;
    run_until(&mut nodes, b.timeout, "PeerUp(B) again", |ns| ns[0].ups.contains(&B) && ns[0].t.connected(B));
    assert!(nodes[0].t.stats().connects > connects);
    // Frames in flight at the failure were lost: both streams restart from 0.
    for n in &mut nodes {
        n.next_send.clear();
        n.next_recv.clear();
        n.downs.clear();
        n.ups.clear();
    }
    // B's incoming side saw A redial; B's own link to A was never down.
    exchange(&mut nodes, 300, b.timeout);
}

/// A peer that goes away is reported down once and frames to it are dropped; it comes back on
/// the same address and traffic resumes.
pub fn peer_restart<D: Device>(b: &Bench<D>, opts: &TransportOptions) {
    init_logs();
    let all = [(A, free_addr()), (B, free_addr())];
    let mut nodes: Vec<Node<D>> =
        vec![Node::new(A, (b.make)(A, &all, opts), 8192), Node::new(B, (b.make)(B, &all, opts), 8192)];
    wait_connected(&mut nodes, b.timeout);
    exchange(&mut nodes, 100, b.timeout);
    drop(nodes.pop());
    run_until(&mut nodes, b.timeout, "PeerDown(B)", |ns| ns[0].down_peers().contains(&B));
    let dropped = nodes[0].t.stats().frames_dropped;
    for seq in 0..10 {
        assert_eq!(nodes[0].t.send(B, make_frame(A, B, seq, 100).into()), SendStatus::Room);
    }
    nodes[0].t.flush();
    // Dropped at once while waiting to redial, or when the redial in progress fails.
    run_until(&mut nodes, b.timeout, "10 frames dropped", |ns| ns[0].t.stats().frames_dropped == dropped + 10);
    nodes[0].poll(Duration::from_millis(200));
    assert_eq!(nodes[0].down_peers().iter().filter(|&&p| p == B).count(), 1, "{:?}", nodes[0].downs);
    nodes.push(Node::new(B, (b.make)(B, &all, opts), 8192));
    nodes[0].ups.clear();
    run_until(&mut nodes, b.timeout, "both links after the restart", |ns| ns[0].t.connected(B) && ns[1].t.connected(A));
    for n in &mut nodes {
        n.next_send.clear();
        n.next_recv.clear();
        n.downs.clear();
    }
    exchange(&mut nodes, 300, b.timeout);
}
