//! What only the io_uring transport has: a provided buffer ring that runs dry, a ring thread
//! that stops reading when the node stops polling, zero-copy sends (the contract every
//! transport keeps is checked by the conformance suite, `tests/conformance.rs`).

mod common;

use std::time::{Duration, Instant};

use picsou_core::ReplicaId;
use picsou_runtime::transport::{Transport, TransportOptions};
use picsou_transport_conformance::Node;
use picsou_transport_conformance::harness::{A, B, addresses, exchange, options, run_until, setup, wait_connected};
use picsou_transport_uring::UringTransport;

const TIMEOUT: Duration = Duration::from_secs(60);

fn uring_nodes(ids: &[ReplicaId], opts: &TransportOptions) -> Vec<Node<UringTransport>> {
    let all = addresses(ids);
    ids.iter()
        .map(|&id| Node::new(id, Box::new(UringTransport::new(setup(id, &all), opts).expect("start uring transport"))))
        .collect()
}

fn large(seq: u64) -> usize {
    100_000 + (seq as usize * 7919) % 200_000
}

#[test]
fn tiny_buffer_ring_rearms_after_enobufs_and_loses_nothing() {
    if !common::uring_here() {
        return;
    }
    let mut opts = options();
    opts.uring.recv_buffers = 4;
    opts.uring.recv_buffer_size = 4096;
    let mut nodes = uring_nodes(&[A, B], &opts);
    for n in &mut nodes {
        // Only large frames: each needs dozens of 4 KiB buffers, so the ring of 4 runs dry.
        n.sizer = Box::new(large);
    }
    wait_connected(&mut nodes, TIMEOUT);
    let total = 300;
    run_until(&mut nodes, Duration::from_secs(60), "300 large frames", |ns| {
        ns[0].pump_to(B, total, 16);
        ns[1].received_from(A) == total
    });
    let rearms = nodes[1].t.recv_rearms_after_enobufs();
    println!("multishot receives re-armed after ENOBUFS: {rearms}");
    assert!(rearms > 0, "the 4-buffer ring never ran dry: the test did not exercise the re-arm");
    assert!(nodes[1].rejected.is_empty() && nodes[0].downs.is_empty());
}

#[test]
fn a_node_that_stops_polling_pushes_back_instead_of_buffering_without_bound() {
    if !common::uring_here() {
        return;
    }
    let mut opts = options();
    opts.tcp.max_queued_bytes = 1 << 20;
    // The ring stops reading past max(4 × max_queued_bytes, 2 × max frame) = 4 MiB undelivered.
    let limit = 4u64 << 20;
    let mut nodes = uring_nodes(&[A, B], &opts);
    wait_connected(&mut nodes, TIMEOUT);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        nodes[0].pump_to(B, u64::MAX, 64);
        nodes[0].poll(Duration::from_millis(1));
    }
    let sent = nodes[0].next_send[&B];
    let received = nodes[1].t.stats().bytes_received;
    // Beyond the limit: what the 256 × 64 KiB provided buffers and one large-frame receive
    // held when reading stopped.
    let slack = (256u64 << 16) + (2 << 20);
    println!("sent {sent} frames; received (undelivered) {received} bytes");
    assert!(received <= limit + slack, "{received} bytes received while the node did not poll");
    assert!(nodes[0].blocked.contains(&B), "the sender never felt the back pressure");
    run_until(&mut nodes, Duration::from_secs(30), "every frame once the node polls", |ns| {
        ns[0].pump_to(B, sent, 64);
        ns[1].received_from(A) == sent
    });
}

#[test]
fn zero_copy_sends_deliver_the_same_bytes() {
    if !common::uring_here() {
        return;
    }
    let mut opts = options();
    // Frames of 64 KiB and more go out with SEND_ZC (their buffers held until the
    // notification); the rest in vectored batches between them.
    opts.uring.zerocopy_threshold = 64 * 1024;
    let mut nodes = uring_nodes(&[A, B], &opts);
    wait_connected(&mut nodes, TIMEOUT);
    exchange(&mut nodes, 3_000, TIMEOUT);
}
