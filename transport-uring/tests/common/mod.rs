//! Helpers shared by the integration tests: deployments on loopback, verifiable frames, and a
//! driver that pumps several transports from the test thread.

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

pub const SECRET: [u8; 32] = [42; 32];
pub const MAX_FRAME: usize = 1 << 20;

/// Why io_uring tests cannot run here, if they cannot (`PICSOU_TEST_NO_URING=1` pretends the
/// probe failed, to check that skips are visible).
pub fn uring_unavailable() -> Option<String> {
    if std::env::var_os("PICSOU_TEST_NO_URING").is_some() {
        return Some("PICSOU_TEST_NO_URING is set".into());
    }
    picsou_transport_uring::probe().err()
}

/// Skips the test, saying why, if io_uring is unusable here. The reason goes straight to the
/// process's stderr, which the test harness does not capture: a skip is never silent.
#[macro_export]
macro_rules! require_uring {
    () => {
        if let Some(why) = $crate::common::uring_unavailable() {
            use std::io::Write as _;
            // The harness names each test's thread after the test.
            let test = std::thread::current().name().unwrap_or(module_path!()).to_string();
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: io_uring unavailable here: {why}");
            return;
        }
    };
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    picsou_runtime::transport::ports::free_loopback_addr().expect("a free loopback port")
}

/// A setup for `local` among `all` (id, address).
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

/// Options with quick redials.
pub fn options() -> TransportOptions {
    let mut o = TransportOptions::default();
    o.tcp.backoff_min = Duration::from_millis(5);
    o.tcp.backoff_max = Duration::from_millis(50);
    o.uring.fallback = false;
    o
}

/// A deterministic mix of sizes: mostly small, some medium, a few up to 300 KiB; the first
/// two are the extremes.
pub fn size_of_frame(seq: u64) -> usize {
    match seq {
        0 => 60,
        1 => 300 * 1024,
        _ => {
            let h = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
            match h % 100 {
                0 => 65_536 + (h / 100) as usize % (300 * 1024 - 65_536 + 1),
                1..=9 => 2_000 + (h / 100) as usize % 62_000,
                _ => 60 + (h / 100) as usize % 1_940,
            }
        }
    }
}

/// Frame `seq` from `from` to `to`: length prefix, magic, identities, sequence, then a pattern
/// that depends on all of them (a swapped or corrupted byte is caught).
pub fn make_frame(from: ReplicaId, to: ReplicaId, seq: u64, len: usize) -> Bytes {
    let mut f = vec![0u8; len];
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
    u64::from_le_bytes(frame[10..18].try_into().expect("8 bytes"))
}

/// One transport under test and what it has seen.
pub struct Node<T: ?Sized + Transport = dyn Transport> {
    pub id: ReplicaId,
    pub t: Box<T>,
    pub blocked: HashSet<ReplicaId>,
    pub next_send: HashMap<ReplicaId, u64>,
    pub next_recv: HashMap<ReplicaId, u64>,
    pub ups: Vec<ReplicaId>,
    pub downs: Vec<ReplicaId>,
    pub writables: Vec<ReplicaId>,
    pub rejected: Vec<(Option<ReplicaId>, String)>,
    pub fulls: u64,
    /// Length of frame `seq` of every stream (default [`size_of_frame`]).
    pub sizer: fn(u64) -> usize,
    events: Vec<TransportEvent>,
}

impl<T: ?Sized + Transport> Node<T> {
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
            rejected: Vec::new(),
            fulls: 0,
            sizer: size_of_frame,
            events: Vec::new(),
        }
    }

    /// Sends up to `burst` frames of the stream to `to` (stopping at `Full` or at `total`).
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
                    let expected_seq = self.next_recv.entry(from).or_insert(0);
                    let seq = seq_of(&frame);
                    assert_eq!(seq, *expected_seq, "{} got frame {seq} from {from}, expected {expected_seq}", self.id);
                    let want = make_frame(from, self.id, seq, (self.sizer)(seq));
                    assert!(frame == want, "{}: frame {seq} from {from} differs ({} bytes)", self.id, frame.len());
                    *expected_seq += 1;
                }
                TransportEvent::PeerUp(p) => self.ups.push(p),
                TransportEvent::PeerDown { peer, .. } => self.downs.push(peer),
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
}

/// Polls every node until `done` holds or `timeout` passes (then panics with `what`).
pub fn run_until<T: ?Sized + Transport>(
    nodes: &mut [Node<T>],
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&mut [Node<T>]) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done(nodes) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for n in nodes.iter_mut() {
            n.poll(Duration::from_millis(1));
        }
    }
}

/// Waits until every node's transport counts a connection each way with every other node.
pub fn wait_connected<T: ?Sized + Transport>(nodes: &mut [Node<T>]) {
    let want = 2 * (nodes.len() as u64 - 1);
    run_until(nodes, Duration::from_secs(10), "all connections", |ns| ns.iter().all(|n| n.t.stats().connects >= want));
    // A node dials peers whose listeners may not exist yet: forget the first dials' failures
    // (all reported by now: counters are published after the events that precede them).
    for n in nodes.iter_mut() {
        n.poll(Duration::ZERO);
        n.downs.clear();
        n.ups.clear();
    }
}

/// Every node streams `total` frames to every other node; checks all arrive.
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
        // Let the ring threads run when every sender is blocked or done.
        nodes[0].poll(Duration::from_micros(200));
    }
    for n in nodes.iter() {
        let all: Vec<_> = nodes.iter().map(|n| (n.id, &n.rejected, &n.downs, n.t.stats())).collect();
        assert!(n.rejected.is_empty(), "{}: unexpected rejections: {all:?}", n.id);
        assert!(n.downs.is_empty(), "{}: unexpected peer downs: {all:?}", n.id);
    }
}

fn progress<T: ?Sized + Transport>(nodes: &[Node<T>]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| {
            format!(
                "{}: sent {:?} received {:?} blocked {:?} {:?}",
                n.id,
                n.next_send,
                n.next_recv,
                n.blocked,
                n.t.stats()
            )
        })
        .collect()
}
