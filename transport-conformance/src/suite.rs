//! The scenarios every transport passes, written against `dyn Transport` only.
//!
//! Each takes a [`Kit`]: how to make the transport under test and what it supports. What a
//! kit does not support is skipped, not faked: only transports that listen on real addresses
//! meet hostile connections and taken ports, and only those whose frames follow the hello on
//! the same byte stream meet an oversized length prefix.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use picsou_core::ReplicaId;
use picsou_core::handshake::{self as wire, CHALLENGE_LEN, HandshakeError, SessionContext};
use picsou_core::keys::LinkKeys;
use picsou_runtime::transport::framer::FramingError;
use picsou_runtime::transport::handshake::{self, SessionDirection};
use picsou_runtime::transport::{Rejection, SendStatus, Transport, TransportError, TransportOptions};

use crate::harness::{
    self, A, B, C, MAX_FRAME, Node, SECRET, addresses, exchange, free_addr, init_logs, make_frame, mixed_size, run_for,
    run_until,
};

/// Makes the transport of `local` among `all` (replica, address) with these options.
pub type Make =
    dyn Fn(ReplicaId, &[(ReplicaId, SocketAddr)], &TransportOptions) -> Result<Box<dyn Transport>, TransportError>;

/// A transport under test: how to make it and what it supports.
pub struct Kit {
    /// Makes one.
    pub make: Box<Make>,
    /// The options of every scenario (scenarios change the queue limits of some).
    pub options: TransportOptions,
    /// Frames per direction in the exchange between three.
    pub frames: u64,
    /// Largest frame sent.
    pub max_frame: usize,
    /// Generous time for each phase.
    pub timeout: Duration,
    /// It dials its peers at start (`PeerUp` before any frame). The in-memory transport does
    /// not: its links exist from the start and report up on their first frame.
    pub dials: bool,
    /// It listens on a real address (hostile connections and taken ports apply).
    pub listens: bool,
    /// Frames follow the hello on the same byte stream (a length prefix over the limit can be
    /// sent after a valid hello).
    pub framed_stream: bool,
}

impl Kit {
    /// The transport of `id` among `all`, with `opts`.
    pub fn start_with(&self, id: ReplicaId, all: &[(ReplicaId, SocketAddr)], opts: &TransportOptions) -> Node {
        init_logs();
        let t = (self.make)(id, all, opts).unwrap_or_else(|e| panic!("start the transport of {id}: {e}"));
        let max = self.max_frame;
        let mut n = Node::new(id, t);
        n.sizer = Box::new(move |s| mixed_size(s, max));
        n
    }

    /// The transport of `id` among `all`, with the kit's options.
    pub fn start(&self, id: ReplicaId, all: &[(ReplicaId, SocketAddr)]) -> Node {
        self.start_with(id, all, &self.options)
    }

    /// Waits until the nodes are connected every way (at once for a transport that does not
    /// dial).
    pub fn wait_connected(&self, nodes: &mut [Node]) {
        if self.dials {
            harness::wait_connected(nodes, self.timeout);
        }
    }

    /// Waits until `nodes[i]`'s link to `peer` is up again after a restart.
    fn wait_up(&self, nodes: &mut [Node], i: usize, peer: ReplicaId) {
        if self.dials {
            run_until(nodes, self.timeout, "the link up again", |ns| ns[i].ups.contains(&peer));
        }
    }
}

/// Three transports, every pair both ways, mixed frame sizes, frames in one and two parts:
/// everything arrives in order and intact, nothing is dropped, refused or reported down, and
/// the counters agree.
pub fn exchange_between_three(kit: &Kit) {
    let all = addresses(&[A, B, C]);
    let mut nodes: Vec<Node> = all.iter().map(|&(id, _)| kit.start(id, &all)).collect();
    kit.wait_connected(&mut nodes);
    exchange(&mut nodes, kit.frames, kit.timeout);
    sessions_agree(&nodes);
    // A send's completion may be reaped after the receiver already has the bytes.
    let total = 2 * kit.frames;
    run_until(&mut nodes, kit.timeout, "send counters", |ns| ns.iter().all(|n| n.t.stats().frames_sent == total));
    for n in &nodes {
        let s = n.t.stats();
        assert_eq!(s.frames_received, total, "{}: {s:?}", n.id);
        assert_eq!((s.frames_dropped, s.rejected), (0, 0), "{}: {s:?}", n.id);
    }
}

/// Reads the challenge an acceptor sends on a connection, polling the nodes meanwhile.
fn read_challenge(nodes: &mut [Node], s: &mut TcpStream, timeout: Duration) -> [u8; CHALLENGE_LEN] {
    s.set_nonblocking(true).expect("non-blocking");
    let mut challenge = [0u8; CHALLENGE_LEN];
    let mut got = 0;
    run_until(nodes, timeout, "a challenge", |_| {
        match s.read(&mut challenge[got..]) {
            Ok(n) => got += n,
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
        }
        got == CHALLENGE_LEN
    });
    s.set_nonblocking(false).expect("blocking");
    challenge
}

/// Where the transport has sessions, both ends of every connection hold the same session key,
/// and every connection has its own.
fn sessions_agree(nodes: &[Node]) {
    if !nodes.iter().all(|n| n.t.has_sessions()) {
        return;
    }
    let last = |n: &Node, peer: ReplicaId, dir: SessionDirection| {
        n.sessions.iter().rev().find(|(p, d, _)| *p == peer && *d == dir).map(|(_, _, s)| s.key)
    };
    let mut keys = std::collections::HashSet::new();
    for x in nodes {
        for y in nodes.iter().filter(|y| y.id != x.id) {
            let sent = last(x, y.id, SessionDirection::Send).expect("a session per peer");
            assert_eq!(Some(sent), last(y, x.id, SessionDirection::Receive), "{} -> {}: keys differ", x.id, y.id);
            assert!(keys.insert(sent), "a session key used twice");
        }
    }
}

/// A peer that goes away is reported down once; frames to it are dropped and counted, never
/// `Full` and never blocking; failed redials are not reported again; it comes back on the same
/// address and traffic resumes both ways.
pub fn peer_down_and_back(kit: &Kit) {
    let all = addresses(&[A, B]);
    let mut nodes = vec![kit.start(A, &all), kit.start(B, &all)];
    kit.wait_connected(&mut nodes);
    exchange(&mut nodes, 100, kit.timeout);
    drop(nodes.pop());
    // Some transports learn it from the connection, others from the next frame.
    let mut seq = 100;
    let deadline = Instant::now() + kit.timeout;
    while nodes[0].downs_of(B) == 0 {
        assert!(Instant::now() < deadline, "no PeerDown(B): {:?}", harness::progress(&nodes));
        let status = nodes[0].t.send(B, make_frame(A, B, seq, 100).into());
        assert_eq!(status, SendStatus::Room, "a peer going away never fills up");
        nodes[0].t.flush();
        seq += 1;
        nodes[0].poll(Duration::from_millis(1));
    }
    let dropped = nodes[0].t.stats().frames_dropped;
    let start = Instant::now();
    for i in 0..10 {
        assert_eq!(nodes[0].t.send(B, make_frame(A, B, seq + i, 100).into()), SendStatus::Room);
    }
    nodes[0].t.flush();
    assert!(start.elapsed() < Duration::from_secs(1), "sending to a dead peer took {:?}", start.elapsed());
    // Dropped at once while waiting to redial, or when the redial in progress fails.
    run_until(&mut nodes, kit.timeout, "10 frames dropped", |ns| ns[0].t.stats().frames_dropped == dropped + 10);
    // Redials keep failing (with backoff), but PeerDown is not repeated.
    run_for(&mut nodes, Duration::from_millis(200));
    assert_eq!(nodes[0].downs_of(B), 1, "{:?}", nodes[0].downs);

    nodes[0].restart_streams();
    nodes.push(kit.start(B, &all));
    kit.wait_up(&mut nodes, 0, B);
    kit.wait_up(&mut nodes, 1, A);
    nodes[0].restart_streams();
    exchange(&mut nodes, 300, kit.timeout);
    assert!(nodes[0].t.stats().connects >= 2, "{:?}", nodes[0].t.stats());
}

/// The receiver stops reading: the sender's queue fills and `send` says `Full`, and stays
/// blocked while the receiver does not read. When it reads again, `Writable` comes and every
/// frame arrives, none dropped; the stream goes on.
pub fn backpressure(kit: &Kit) {
    let mut opts = kit.options.clone();
    opts.tcp.max_queued_bytes = 64 * 1024;
    opts.tcp.send_buffer = 32 * 1024;
    opts.tcp.recv_buffer = 32 * 1024;
    let all = addresses(&[A, B]);
    let mut nodes = vec![kit.start_with(A, &all, &opts), kit.start_with(B, &all, &opts)];
    for n in &mut nodes {
        n.sizer = Box::new(|_| 4096);
    }
    kit.wait_connected(&mut nodes);
    nodes[1].t.set_receiving(false);
    // Send until a `Full` stays unanswered: kernel buffers, rings and the queue are full.
    let deadline = Instant::now() + kit.timeout;
    loop {
        assert!(Instant::now() < deadline, "send never stayed Full: {:?}", harness::progress(&nodes));
        assert!(nodes[0].next_send.get(&B).is_none_or(|&n| n < 100_000), "100,000 frames and no backpressure");
        nodes[0].pump_to(B, u64::MAX, 16);
        nodes[1].poll(Duration::ZERO);
        if nodes[0].blocked.contains(&B) {
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until && nodes[0].blocked.contains(&B) {
                nodes[0].poll(Duration::from_millis(5));
                nodes[1].poll(Duration::ZERO);
            }
            if nodes[0].blocked.contains(&B) {
                break;
            }
        } else {
            nodes[0].poll(Duration::ZERO);
        }
    }
    let queued = nodes[0].next_send[&B];
    run_for(&mut nodes, Duration::from_millis(50));
    // A receiver that stopped reading delivers at most what was in flight when it stopped.
    assert!(nodes[1].received_from(A) < queued, "the paused receiver took everything");
    assert!(nodes[0].blocked.contains(&B), "Writable while the receiver does not read");
    let writables = nodes[0].writables.len();
    nodes[1].t.set_receiving(true);
    run_until(&mut nodes, kit.timeout, "Writable and every frame", |ns| {
        ns[0].writables.len() > writables && ns[1].received_from(A) == queued
    });
    assert_eq!(nodes[0].t.stats().frames_dropped, 0);
    assert!(nodes[0].fulls > 0);
    exchange(&mut nodes, queued + 500, kit.timeout);
}

/// Garbage on the port, a hello under the wrong key and a hello cut short are refused and
/// reported (with the peer claimed, where it got that far) and closed; so is an insider's
/// frame over the length limit where frames follow the hello. The good peer never notices.
pub fn hostile_connections(kit: &Kit) {
    if !kit.listens {
        return;
    }
    // D is a member A knows (and dials in vain), impersonated by raw sockets.
    let d = ReplicaId::new(1, 3);
    let all = addresses(&[A, B, d]);
    let mut nodes = vec![kit.start(A, &all), kit.start(B, &all[..2])];
    run_until(&mut nodes, kit.timeout, "A and B connected", |ns| {
        ns[0].ups.contains(&B) && ns[1].ups.contains(&A) && ns.iter().all(|n| n.t.stats().connects >= 2)
    });
    // Each dialled the other before it listened, perhaps: forget those first failures.
    for n in &mut nodes {
        n.downs.clear();
    }
    let a_addr = all[0].1;
    let key = LinkKeys::derived(d, SECRET).key_for(A).expect("D's key");
    // D holds its real key but not the deployment's sessions: the harness's context.
    let ctx = SessionContext { deployment: [4; 32], incarnation: handshake::new_incarnation() };
    let mut hostile = Vec::new();
    let mut expect = |nodes: &mut Vec<Node>,
                      what: &str,
                      bytes: &dyn Fn(&[u8; CHALLENGE_LEN]) -> Vec<u8>,
                      close: bool,
                      check: &dyn Fn(&Rejection) -> bool| {
        let mut s = TcpStream::connect(a_addr).expect("connect");
        // The acceptor speaks first: its challenge.
        let challenge = read_challenge(nodes, &mut s, kit.timeout);
        s.write_all(&bytes(&challenge)).expect("write");
        if close {
            drop(s);
        } else {
            hostile.push(s);
        }
        let before = nodes[0].rejected.len();
        run_until(nodes, kit.timeout, what, |ns| ns[0].rejected.len() > before);
        let (claimed, reason) = nodes[0].rejected.last().expect("rejection");
        assert!(check(reason), "{what}: {claimed:?} {reason}");
        *claimed
    };
    let hello = |c: &[u8; CHALLENGE_LEN], key: &[u8; 32]| wire::answer(c, d, A, key, &ctx, &[5; 16]).expect("hello").0;
    let garbage = |_: &[u8; CHALLENGE_LEN]| b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let claimed = expect(&mut nodes, "garbage refused", &garbage, false, &|r| {
        matches!(r, Rejection::Handshake(HandshakeError::BadMagic))
    });
    assert_eq!(claimed, None);
    let forged = |c: &[u8; CHALLENGE_LEN]| hello(c, &[1; 32]).to_vec();
    let claimed = expect(&mut nodes, "a hello under the wrong key refused", &forged, false, &|r| {
        matches!(r, Rejection::Handshake(HandshakeError::BadTag(_)))
    });
    assert_eq!(claimed, Some(d));
    // A genuine hello recorded on one connection and replayed on another.
    let mut recorded = None;
    let mut s = TcpStream::connect(a_addr).expect("connect");
    let challenge = read_challenge(&mut nodes, &mut s, kit.timeout);
    recorded.get_or_insert(hello(&challenge, &key));
    drop(s);
    let recorded = recorded.expect("recorded");
    let replayed = |_: &[u8; CHALLENGE_LEN]| recorded.to_vec();
    let claimed = expect(&mut nodes, "a replayed hello refused", &replayed, false, &|r| {
        matches!(r, Rejection::Handshake(HandshakeError::BadTag(_)))
    });
    assert_eq!(claimed, Some(d));
    let cut = |c: &[u8; CHALLENGE_LEN]| hello(c, &key)[..10].to_vec();
    let claimed =
        expect(&mut nodes, "a hello cut short refused", &cut, true, &|r| matches!(r, Rejection::ClosedMidHello));
    assert_eq!(claimed, None);
    let mut refused = 4;
    if kit.framed_stream {
        let insider = |c: &[u8; CHALLENGE_LEN]| {
            let mut m = hello(c, &key).to_vec();
            m.extend_from_slice(&((MAX_FRAME + 1) as u32).to_le_bytes());
            m.extend_from_slice(b"PQ");
            m
        };
        let claimed = expect(&mut nodes, "an oversized frame refused", &insider, false, &|r| {
            matches!(r, Rejection::Framing(FramingError::BadLength { .. }))
        });
        assert_eq!(claimed, Some(d));
        refused += 1;
    }
    assert_eq!(nodes[0].t.stats().rejected, refused);
    // The transport closed them, having written nothing after its challenge but, to the one
    // whose hello verified, its confirmation.
    for s in &mut hostile {
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut rest = [0u8; 2 * wire::CONFIRM_LEN];
        let mut got = 0;
        loop {
            match s.read(&mut rest[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => {
                    assert!(
                        matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
                        "connection not closed: {e}"
                    );
                    break;
                }
            }
            assert!(got <= wire::CONFIRM_LEN, "the transport wrote frames on an incoming connection");
        }
    }
    nodes[0].rejected.clear();
    nodes[0].downs.retain(|(p, _)| *p != d);
    exchange(&mut nodes, 1_000, kit.timeout);
    assert_eq!(nodes[1].t.stats().frames_dropped, 0);
    assert_eq!(nodes[1].t.stats().rejected, 0);
}

/// `disconnect` closes the peer's connection to us and refuses its redials (authentic hellos,
/// reported `Quarantined`) until the time given; then it connects again and frames flow. Our
/// own link to it is untouched.
pub fn disconnect_quarantined(kit: &Kit) {
    if !kit.listens {
        return;
    }
    let all = addresses(&[A, B]);
    let mut nodes: Vec<Node> = all.iter().map(|&(id, _)| kit.start(id, &all)).collect();
    kit.wait_connected(&mut nodes);
    let ban = Duration::from_millis(700);
    let start = Instant::now();
    nodes[0].t.disconnect(B, ban);
    run_until(&mut nodes, kit.timeout, "B's link to A down", |ns| ns[1].downs.iter().any(|(p, _)| *p == A));
    run_until(&mut nodes, kit.timeout, "B's redial refused", |ns| {
        ns[0].rejected.iter().any(|(c, r)| *c == Some(B) && matches!(r, Rejection::Quarantined))
    });
    assert!(start.elapsed() < ban, "refused only during the quarantine");
    assert!(nodes[0].downs.is_empty(), "A's own link to B stays up");
    nodes[1].ups.clear();
    run_until(&mut nodes, kit.timeout + ban, "B back up after the quarantine", |ns| ns[1].ups.contains(&A));
    assert!(start.elapsed() >= ban);
    for n in &mut nodes {
        n.rejected.clear();
        n.downs.clear();
    }
    exchange(&mut nodes, 200, kit.timeout);
}

/// An idle `poll` sleeps until its timeout; `Wake::wake` from another thread interrupts a
/// `poll` without one; a wake before a `poll` makes it return at once.
pub fn waker_and_idle_poll(kit: &Kit) {
    let all = [(A, free_addr())];
    let mut n = kit.start(A, &all);
    let mut events = Vec::new();
    let start = Instant::now();
    n.t.poll(Some(Duration::from_millis(50)), &mut events).expect("poll");
    let took = start.elapsed();
    assert!(events.is_empty(), "{events:?}");
    assert!(took >= Duration::from_millis(50) && took < Duration::from_secs(2), "an idle poll of 50 ms took {took:?}");
    let waker = n.t.waker();
    let mut t = n.t;
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
    t.waker().wake();
    let start = Instant::now();
    t.poll(Some(Duration::from_secs(5)), &mut Vec::new()).expect("poll");
    assert!(start.elapsed() < Duration::from_secs(1), "a pending wake did not end the poll");
}

/// Frames to a replica that is not in the deployment are dropped and counted.
pub fn unknown_peer(kit: &Kit) {
    let mut n = kit.start(A, &[(A, free_addr())]);
    let stranger = ReplicaId::new(1, 9);
    assert_eq!(n.t.send(stranger, make_frame(A, stranger, 0, 100).into()), SendStatus::Room);
    n.t.flush();
    assert_eq!(n.t.stats().frames_dropped, 1);
}

/// A port that is taken is a [`TransportError::Listen`], not a panic or a silent retry.
pub fn listen_error(kit: &Kit) {
    if !kit.listens {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address");
    match (kit.make)(A, &[(A, addr)], &kit.options) {
        Err(TransportError::Listen { address, .. }) => assert_eq!(address, addr),
        Err(e) => panic!("expected a listen error, got {e}"),
        Ok(t) => panic!("a {} transport started on a taken port", t.kind()),
    }
}
