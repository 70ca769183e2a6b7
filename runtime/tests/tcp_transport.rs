//! The TCP transport over loopback: bulk exchange, peer restarts, hostile connections,
//! backpressure and the waker.
//!
//! Transports are driven from the test thread like the node drives them (send, flush, poll),
//! several of them in turn. Frames carry their sender and a sequence number, and their bytes
//! are a function of both, so the receiver checks order and content exactly.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use picsou_core::ReplicaId;
use picsou_core::keys::LinkKeys;
use picsou_runtime::transport::tcp::TcpTransport;
use picsou_runtime::transport::{
    EncodedFrame, SendStatus, TcpOptions, Transport, TransportError, TransportEvent, TransportSetup, hello,
};

const SECRET: [u8; 32] = [42; 32];
const MAX_FRAME: usize = 1 << 20;
const A: ReplicaId = ReplicaId::new(0, 0);
const B: ReplicaId = ReplicaId::new(1, 0);
const C: ReplicaId = ReplicaId::new(1, 1);

/// A loopback address nobody listens on (bound, then released).
fn free_addr() -> SocketAddr {
    picsou_runtime::transport::ports::free_loopback_addr().expect("a free loopback port")
}

fn test_opts() -> TcpOptions {
    TcpOptions {
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(1),
        ..TcpOptions::default()
    }
}

/// Mixed sizes: mostly small frames, every 97th up to 300 KiB.
fn size_for(seq: u64) -> usize {
    let s = seq as usize;
    if s.is_multiple_of(97) { 60 + s.wrapping_mul(7919) % (300 * 1024 - 60) } else { 60 + s.wrapping_mul(131) % 2000 }
}

/// Frame `seq` from `from`: length prefix, magic, seq, sender, then bytes derived from both.
fn make_frame(from: ReplicaId, seq: u64) -> Bytes {
    let len = size_for(seq);
    let mut f = vec![0u8; len];
    f[..4].copy_from_slice(&(len as u32).to_le_bytes());
    f[4..6].copy_from_slice(b"PQ");
    f[6..14].copy_from_slice(&seq.to_le_bytes());
    f[14] = from.rsm.0;
    f[15..17].copy_from_slice(&from.index.to_le_bytes());
    for (i, b) in f.iter_mut().enumerate().skip(17) {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i * 7) as u8;
    }
    Bytes::from(f)
}

/// A transport and what the test saw of it.
struct Node {
    id: ReplicaId,
    peers: Vec<ReplicaId>,
    t: TcpTransport,
    /// Next sequence number to send, per peer.
    sent: HashMap<ReplicaId, u64>,
    /// Next sequence number expected, per peer.
    expected: HashMap<ReplicaId, u64>,
    /// Peers that said `Full` and have not said `Writable` since.
    full: HashSet<ReplicaId>,
    /// Times `send` said `Full`.
    fulls: u64,
    /// Every event but frames, in order.
    others: Vec<TransportEvent>,
    buf: Vec<TransportEvent>,
}

impl Node {
    fn start(id: ReplicaId, listen: SocketAddr, peers: &[(ReplicaId, SocketAddr)], opts: &TcpOptions) -> Self {
        let setup = TransportSetup {
            local: id,
            listen,
            peers: peers.to_vec(),
            keys: LinkKeys::derived(id, SECRET),
            max_frame_bytes: MAX_FRAME,
        };
        let t = TcpTransport::new(setup, opts).expect("start the transport");
        Self {
            id,
            peers: peers.iter().map(|p| p.0).collect(),
            t,
            sent: HashMap::new(),
            expected: HashMap::new(),
            full: HashSet::new(),
            fulls: 0,
            others: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// `id` in a deployment where everyone knows everyone in `all`.
    fn in_mesh(id: ReplicaId, all: &[(ReplicaId, SocketAddr)], opts: &TcpOptions) -> Self {
        let listen = all.iter().find(|p| p.0 == id).expect("own address").1;
        let peers: Vec<_> = all.iter().copied().filter(|p| p.0 != id).collect();
        Self::start(id, listen, &peers, opts)
    }

    /// Flushes and polls once; checks every frame against the expected sequence.
    fn pump(&mut self, timeout: Duration) {
        self.t.flush();
        let mut events = std::mem::take(&mut self.buf);
        self.t.poll(Some(timeout), &mut events).expect("poll");
        for ev in events.drain(..) {
            match ev {
                TransportEvent::Frame { from, frame } => {
                    let seq = self.expected.entry(from).or_insert(0);
                    let want = make_frame(from, *seq);
                    assert!(
                        frame == want,
                        "{}: frame from {from} is not #{seq} (len {}, seq field {:?})",
                        self.id,
                        frame.len(),
                        frame.get(6..14)
                    );
                    *seq += 1;
                }
                TransportEvent::Writable(p) => {
                    self.full.remove(&p);
                    self.others.push(ev);
                }
                other => self.others.push(other),
            }
        }
        self.buf = events;
    }

    /// Sends up to `burst` frames to `to` while it has room and fewer than `limit` were sent.
    fn send_burst(&mut self, to: ReplicaId, limit: u64, burst: usize) {
        for _ in 0..burst {
            let seq = self.sent.entry(to).or_insert(0);
            if *seq >= limit || self.full.contains(&to) {
                return;
            }
            let f = make_frame(self.id, *seq);
            // Every other frame in two parts, as forwarded record sections go.
            let cut = if *seq % 2 == 1 { f.len() / 2 } else { f.len() };
            let status = self.t.send(to, EncodedFrame { head: f.slice(..cut), shared: f.slice(cut..) });
            *seq += 1;
            if status == SendStatus::Full {
                self.full.insert(to);
                self.fulls += 1;
            }
        }
    }

    fn sent_to(&self, to: ReplicaId) -> u64 {
        self.sent.get(&to).copied().unwrap_or(0)
    }

    fn received_from(&self, from: ReplicaId) -> u64 {
        self.expected.get(&from).copied().unwrap_or(0)
    }

    fn count(&self, pred: impl Fn(&TransportEvent) -> bool) -> usize {
        self.others.iter().filter(|e| pred(e)).count()
    }

    fn is_up(&self, peer: ReplicaId) -> bool {
        let last = self.others.iter().rev().find(|e| match e {
            TransportEvent::PeerUp(p) => *p == peer,
            TransportEvent::PeerDown { peer: p, .. } => *p == peer,
            _ => false,
        });
        matches!(last, Some(TransportEvent::PeerUp(_)))
    }
}

/// Pumps every node until `done` holds; fails after `limit`.
fn pump_until(nodes: &mut [&mut Node], limit: Duration, what: &str, mut done: impl FnMut(&[&mut Node]) -> bool) {
    let deadline = Instant::now() + limit;
    while !done(nodes) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for n in nodes.iter_mut() {
            n.pump(Duration::from_millis(1));
        }
    }
}

/// Pumps every node for `d`.
fn pump_for(nodes: &mut [&mut Node], d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        for n in nodes.iter_mut() {
            n.pump(Duration::from_millis(1));
        }
    }
}

/// Waits until every node's outgoing connections are up, then forgets the events so far (the
/// first transports started saw their first dials refused).
fn connect_all(nodes: &mut [&mut Node]) {
    pump_until(nodes, Duration::from_secs(3), "connections", |ns| {
        ns.iter().all(|n| n.peers.iter().all(|&p| n.is_up(p)))
    });
    for n in nodes.iter_mut() {
        n.others.clear();
    }
}

#[test]
fn three_transports_exchange_ten_thousand_frames_each_way() {
    const N: u64 = 10_000;
    let all = [(A, free_addr()), (B, free_addr()), (C, free_addr())];
    let opts = TcpOptions { max_queued_bytes: 1 << 20, ..test_opts() };
    let (mut a, mut b, mut c) =
        (Node::in_mesh(A, &all, &opts), Node::in_mesh(B, &all, &opts), Node::in_mesh(C, &all, &opts));
    let mut nodes = [&mut a, &mut b, &mut c];
    connect_all(&mut nodes);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done = nodes.iter().all(|n| n.peers.iter().all(|&p| n.received_from(p) == N));
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "timed out exchanging frames");
        for n in nodes.iter_mut() {
            for p in n.peers.clone() {
                n.send_burst(p, N, 64);
            }
            n.pump(Duration::ZERO);
        }
    }
    for n in &nodes {
        let s = n.t.stats();
        assert_eq!(s.frames_dropped, 0, "{}: {s:?}", n.id);
        assert_eq!(s.frames_sent, 2 * N, "{}: {s:?}", n.id);
        assert_eq!(s.frames_received, 2 * N, "{}: {s:?}", n.id);
        assert_eq!(s.rejected, 0, "{}: {s:?}", n.id);
        assert_eq!(n.count(|e| matches!(e, TransportEvent::PeerDown { .. })), 0, "{}: {:?}", n.id, n.others);
    }
}

#[test]
fn a_dead_peer_drops_frames_without_blocking_and_comes_back() {
    let all = [(A, free_addr()), (B, free_addr())];
    let opts = test_opts();
    let mut a = Node::in_mesh(A, &all, &opts);
    let mut b = Node::in_mesh(B, &all, &opts);
    connect_all(&mut [&mut a, &mut b]);
    a.send_burst(B, 100, 100);
    pump_until(&mut [&mut a, &mut b], Duration::from_secs(3), "first frames", |ns| ns[1].received_from(A) == 100);

    // Frames to a replica that is not in the deployment are dropped and counted.
    assert_eq!(a.t.send(ReplicaId::new(1, 9), make_frame(A, 0).into()), SendStatus::Room);
    assert_eq!(a.t.stats().frames_dropped, 1);

    drop(b);
    pump_until(&mut [&mut a], Duration::from_secs(3), "PeerDown", |ns| {
        ns[0].count(|e| matches!(e, TransportEvent::PeerDown { peer: B, .. })) == 1
    });
    let dropped_before = a.t.stats().frames_dropped;
    let start = Instant::now();
    for _ in 0..200 {
        a.send_burst(B, u64::MAX, 1);
        a.pump(Duration::ZERO);
    }
    assert!(start.elapsed() < Duration::from_secs(2), "sending to a dead peer took {:?}", start.elapsed());
    assert_eq!(a.fulls, 0, "a dead peer never fills up");
    pump_until(&mut [&mut a], Duration::from_secs(3), "dropped frames", |ns| {
        ns[0].t.stats().frames_dropped >= dropped_before + 200
    });
    // Failed redials are not reported again.
    pump_for(&mut [&mut a], Duration::from_millis(250));
    assert_eq!(a.count(|e| matches!(e, TransportEvent::PeerDown { peer: B, .. })), 1, "{:?}", a.others);

    // The replica restarts on the same address: A redials and frames flow again.
    let mut b2 = Node::in_mesh(B, &all, &opts);
    pump_until(&mut [&mut a, &mut b2], Duration::from_secs(3), "reconnection", |ns| ns[0].is_up(B) && ns[1].is_up(A));
    let first = a.sent_to(B);
    b2.expected.insert(A, first);
    a.send_burst(B, first + 500, 500);
    pump_until(&mut [&mut a, &mut b2], Duration::from_secs(3), "frames after the restart", |ns| {
        ns[1].received_from(A) == first + 500
    });
    assert_eq!(a.count(|e| matches!(e, TransportEvent::PeerUp(p) if *p == B)), 1, "{:?}", a.others);
    assert!(a.t.stats().connects >= 4, "{:?}", a.t.stats());
}

#[test]
fn hostile_connections_are_rejected_and_good_peers_carry_on() {
    let (addr_a, addr_b, addr_c) = (free_addr(), free_addr(), free_addr());
    let opts = test_opts();
    // C is a member A knows (and dials in vain), impersonated below by raw sockets.
    let mut a = Node::start(A, addr_a, &[(B, addr_b), (C, addr_c)], &opts);
    let mut b = Node::start(B, addr_b, &[(A, addr_a)], &opts);
    pump_until(&mut [&mut a, &mut b], Duration::from_secs(3), "connections", |ns| ns[0].is_up(B) && ns[1].is_up(A));
    a.others.clear();
    let exchange = |a: &mut Node, b: &mut Node, upto: u64| {
        a.send_burst(B, upto, usize::MAX);
        b.send_burst(A, upto, usize::MAX);
        pump_until(&mut [a, b], Duration::from_secs(3), "frames", |ns| {
            ns[0].received_from(B) == upto && ns[1].received_from(A) == upto
        });
    };
    exchange(&mut a, &mut b, 200);

    // Garbage on the port.
    let mut garbage = TcpStream::connect(addr_a).expect("connect");
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: picsou\r\n\r\n").expect("write");
    // A hello under the wrong key.
    let mut forged = TcpStream::connect(addr_a).expect("connect");
    forged.write_all(&hello::encode(C, A, hello::next_nonce(), &[0u8; 32])).expect("write");
    // A valid hello, then a length prefix over the limit.
    let mut oversized = TcpStream::connect(addr_a).expect("connect");
    let key = LinkKeys::derived(C, SECRET).key_for(A).expect("key");
    oversized.write_all(&hello::encode(C, A, hello::next_nonce(), &key)).expect("write");
    let mut prefix = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
    prefix.extend_from_slice(b"PQ");
    oversized.write_all(&prefix).expect("write");

    let rejected = |n: &Node| n.count(|e| matches!(e, TransportEvent::Rejected { .. }));
    pump_until(&mut [&mut a, &mut b], Duration::from_secs(3), "three rejections", |ns| rejected(ns[0]) == 3);
    let rejections: Vec<_> = a
        .others
        .iter()
        .filter_map(|e| match e {
            TransportEvent::Rejected { claimed, reason, .. } => Some((*claimed, reason.clone())),
            _ => None,
        })
        .collect();
    assert!(rejections.iter().any(|(c, r)| c.is_none() && r.contains("magic")), "{rejections:?}");
    assert!(rejections.iter().any(|(c, r)| *c == Some(C) && r.contains("authentication")), "{rejections:?}");
    assert!(rejections.iter().any(|(c, r)| *c == Some(C) && r.contains("frame length")), "{rejections:?}");
    assert_eq!(a.t.stats().rejected, 3);
    // The transport closed them.
    for s in [&mut garbage, &mut forged, &mut oversized] {
        s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => panic!("the transport wrote on an incoming connection"),
            Err(e) => assert!(
                matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
                "connection not closed: {e}"
            ),
        }
    }
    exchange(&mut a, &mut b, 400);
    assert_eq!(b.t.stats().rejected, 0);
    assert_eq!(a.count(|e| matches!(e, TransportEvent::PeerDown { peer: B, .. })), 0, "{:?}", a.others);
}

#[test]
fn a_paused_receiver_pushes_back_and_everything_arrives_after_resuming() {
    let all = [(A, free_addr()), (B, free_addr())];
    let opts =
        TcpOptions { max_queued_bytes: 64 * 1024, send_buffer: 32 * 1024, recv_buffer: 32 * 1024, ..test_opts() };
    let mut a = Node::in_mesh(A, &all, &opts);
    let mut b = Node::in_mesh(B, &all, &opts);
    connect_all(&mut [&mut a, &mut b]);
    b.t.set_receiving(false);
    // Send until the transport says Full (bounded: 100 MB would mean no backpressure).
    let deadline = Instant::now() + Duration::from_secs(3);
    while a.fulls == 0 {
        assert!(a.sent_to(B) < 100_000 && Instant::now() < deadline, "send never said Full");
        a.send_burst(B, u64::MAX, 16);
        a.pump(Duration::ZERO);
        b.pump(Duration::ZERO);
    }
    let sent = a.sent_to(B);
    // While paused nothing is delivered and A stays blocked.
    for _ in 0..50 {
        a.pump(Duration::from_millis(1));
        b.pump(Duration::from_millis(1));
    }
    assert_eq!(b.received_from(A), 0);
    assert!(a.full.contains(&B), "Writable while the receiver is paused: {:?}", a.others);

    b.t.set_receiving(true);
    pump_until(&mut [&mut a, &mut b], Duration::from_secs(3), "Writable and delivery", |ns| {
        !ns[0].full.contains(&B) && ns[1].received_from(A) == sent
    });
    assert!(a.others.contains(&TransportEvent::Writable(B)));
    // And it keeps flowing.
    let more = sent + 1000;
    let deadline = Instant::now() + Duration::from_secs(3);
    while b.received_from(A) < more {
        assert!(Instant::now() < deadline, "frames after resuming");
        a.send_burst(B, more, 32);
        a.pump(Duration::ZERO);
        b.pump(Duration::ZERO);
    }
    assert_eq!(a.t.stats().frames_dropped, 0);
}

#[test]
fn the_waker_interrupts_a_blocking_poll() {
    let mut t = Node::start(A, free_addr(), &[], &test_opts()).t;
    let waker = t.waker();
    let blocked = std::thread::spawn(move || {
        let start = Instant::now();
        let mut events = Vec::new();
        t.poll(None, &mut events).expect("poll");
        (start.elapsed(), events, t)
    });
    std::thread::sleep(Duration::from_millis(200));
    waker.wake();
    let (elapsed, events, mut t) = blocked.join().expect("poll thread");
    assert!(events.is_empty(), "{events:?}");
    assert!(elapsed >= Duration::from_millis(150), "poll returned before the wake: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "poll did not return after the wake: {elapsed:?}");
    // A wake before the poll makes the next poll return at once.
    t.waker().wake();
    let start = Instant::now();
    t.poll(Some(Duration::from_secs(5)), &mut Vec::new()).expect("poll");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_taken_address_is_a_listen_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let setup = TransportSetup {
        local: A,
        listen: taken.local_addr().expect("address"),
        peers: Vec::new(),
        keys: LinkKeys::derived(A, SECRET),
        max_frame_bytes: MAX_FRAME,
    };
    let err = TcpTransport::new(setup, &test_opts()).expect_err("the port is taken");
    assert!(matches!(err, TransportError::Listen { .. }), "{err}");
}
