//! Peers that die and come back, and connections that must be refused.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use picsou_core::ReplicaId;
use picsou_core::keys::LinkKeys;
use picsou_runtime::transport::{SendStatus, hello};
use picsou_transport_uring::UringTransport;

const A: ReplicaId = ReplicaId::new(0, 0);
const B: ReplicaId = ReplicaId::new(1, 0);
/// Configured in A's deployment, never running: its identity is what the impostor claims.
const D: ReplicaId = ReplicaId::new(1, 3);

fn start(id: ReplicaId, all: &[(ReplicaId, std::net::SocketAddr)]) -> Node {
    Node::new(id, Box::new(UringTransport::new(setup(id, all), &options()).expect("start uring transport")))
}

#[test]
fn dead_peer_goes_down_drops_frames_and_comes_back() {
    require_uring!();
    let all = [(A, free_addr()), (B, free_addr())];
    let mut nodes = vec![start(A, &all), start(B, &all)];
    wait_connected(&mut nodes);
    exchange(&mut nodes, 200, Duration::from_secs(30));

    // B crashes: A notices (its outgoing connection hangs up) and reports it once.
    let b = nodes.pop().expect("B");
    drop(b);
    run_until(&mut nodes, Duration::from_secs(10), "PeerDown(B)", |ns| ns[0].downs.contains(&B));
    let dropped_before = nodes[0].t.stats().frames_dropped;
    for seq in 0..10 {
        let status = nodes[0].t.send(B, make_frame(A, B, seq, 100).into());
        assert_eq!(status, SendStatus::Room, "frames to a down peer are dropped, never Full");
    }
    nodes[0].t.flush();
    // Dropped at once while waiting to redial, or when the redial in progress fails.
    run_until(&mut nodes, Duration::from_secs(5), "10 frames dropped", |ns| {
        ns[0].t.stats().frames_dropped == dropped_before + 10
    });
    // Redials keep failing (backoff), but PeerDown is not repeated.
    nodes[0].poll(Duration::from_millis(200));
    assert_eq!(nodes[0].downs.iter().filter(|&&p| p == B).count(), 1, "{:?}", nodes[0].downs);

    // B restarts on the same address: A's redial succeeds, traffic resumes both ways.
    nodes[0].ups.clear();
    nodes.push(start(B, &all));
    run_until(&mut nodes, Duration::from_secs(10), "PeerUp(B) after restart", |ns| ns[0].ups.contains(&B));
    // Fresh streams: the restarted B expects sequence numbers from 0, and so does A from B.
    nodes[0].next_send.clear();
    nodes[0].next_recv.clear();
    nodes[0].downs.clear();
    run_until(&mut nodes, Duration::from_secs(10), "B's dial to A", |ns| ns[1].t.stats().connects >= 2);
    nodes[1].downs.clear();
    exchange(&mut nodes, 500, Duration::from_secs(30));
}

#[test]
fn garbage_bad_hellos_and_oversized_frames_are_rejected_while_good_peers_continue() {
    require_uring!();
    let d_addr = free_addr();
    let all = [(A, free_addr()), (B, free_addr()), (D, d_addr)];
    let mut nodes = vec![start(A, &all), start(B, &all[..2])];
    run_until(&mut nodes, Duration::from_secs(10), "A and B connected", |ns| {
        ns[0].t.stats().connects >= 2 && ns[1].t.stats().connects >= 2
    });
    for n in &mut nodes {
        n.poll(Duration::ZERO);
        n.downs.clear();
    }
    let a_addr = all[0].1;
    let a_rejected = |ns: &[Node]| ns[0].rejected.len();

    // 1. Garbage on the port.
    let mut s = TcpStream::connect(a_addr).expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    run_until(&mut nodes, Duration::from_secs(5), "garbage rejected", |ns| a_rejected(ns) >= 1);
    assert_eq!(nodes[0].rejected.last().map(|r| r.0), Some(None));

    // 2. A hello claiming D under the wrong key.
    let mut s2 = TcpStream::connect(a_addr).expect("connect");
    s2.write_all(&hello::encode(D, A, hello::next_nonce(), &[1; 32])).expect("write");
    run_until(&mut nodes, Duration::from_secs(5), "bad key rejected", |ns| a_rejected(ns) >= 2);
    let (claimed, reason) = nodes[0].rejected.last().cloned().expect("rejection");
    assert_eq!(claimed, Some(D));
    assert!(reason.contains("authentication"), "{reason}");

    // 3. D's real key (an insider), then a length prefix above the maximum.
    let key = LinkKeys::derived(D, SECRET).key_for(A).expect("key");
    let mut s3 = TcpStream::connect(a_addr).expect("connect");
    s3.write_all(&hello::encode(D, A, hello::next_nonce(), &key)).expect("write");
    let mut huge = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
    huge.extend_from_slice(b"PQ");
    s3.write_all(&huge).expect("write");
    run_until(&mut nodes, Duration::from_secs(5), "oversized frame rejected", |ns| a_rejected(ns) >= 3);
    let (claimed, reason) = nodes[0].rejected.last().cloned().expect("rejection");
    assert_eq!(claimed, Some(D));
    assert!(reason.contains("length"), "{reason}");

    // 4. A hello cut short by a close.
    let mut s4 = TcpStream::connect(a_addr).expect("connect");
    s4.write_all(&hello::encode(D, A, hello::next_nonce(), &key)[..10]).expect("write");
    drop(s4);
    run_until(&mut nodes, Duration::from_secs(5), "truncated hello rejected", |ns| a_rejected(ns) >= 4);

    // The good peer was never disturbed: traffic flows both ways, nothing dropped.
    nodes[0].rejected.clear();
    nodes[0].downs.retain(|&p| p != D);
    exchange(&mut nodes[..2], 1_000, Duration::from_secs(30));
    assert_eq!(nodes[1].t.stats().frames_dropped, 0);
    assert!(nodes[1].downs.is_empty());
    drop((s, s2, s3));
}
