//! The transport over the in-memory fake device: every scenario of `common`, on any machine.
//! The same scenarios run on a real device in `device.rs`.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use picsou_core::keys::LinkKeys;
use picsou_runtime::transport::options::RdmaPolling;
use picsou_runtime::transport::{Transport, TransportError, TransportOptions, hello};
use picsou_transport_rdma::RdmaTransport;
use picsou_transport_rdma::fake::FakeDevice;
use picsou_transport_rdma::wire;

fn bench(inline: u32) -> Bench<FakeDevice> {
    bench_with(inline, false)
}

/// `withhold`: devices hold back each queue pair's last completion (see
/// `FakeDevice::withhold_last_completion`).
fn bench_with(inline: u32, withhold: bool) -> Bench<FakeDevice> {
    Bench {
        make: Box::new(move |id, all, opts| {
            let event = opts.rdma.polling == RdmaPolling::Event;
            let dev = FakeDevice::with_inline(event, inline);
            dev.withhold_last_completion(withhold);
            RdmaTransport::with_device(dev, setup(id, all), opts).expect("start the transport on a fake device")
        }),
        frames: 10_000,
        max_frame: 300 * 1024,
        timeout: Duration::from_secs(60),
    }
}

fn event_options(ring: usize) -> TransportOptions {
    let mut o = options(ring);
    o.rdma.polling = RdmaPolling::Event;
    o
}

#[test]
fn three_transports_exchange_10k_frames_each_way_busy() {
    three_way_exchange(&bench(256), &options(4 << 20));
}

#[test]
fn three_transports_exchange_in_event_mode() {
    let b = Bench { frames: 3_000, ..bench(256) };
    three_way_exchange(&b, &event_options(1 << 20));
}

#[test]
fn without_inline_every_write_reads_staging() {
    let b = Bench { frames: 2_000, max_frame: 64 * 1024, ..bench(0) };
    three_way_exchange(&b, &options(256 * 1024));
}

#[test]
fn a_small_ring_wraps_hundreds_of_times() {
    wrap_around(&bench(256), 16 * 1024, 5_000);
}

#[test]
fn credit_exhaustion_blocks_then_resumes() {
    credit_exhaustion(&bench(256), &options(16 * 1024));
}

#[test]
fn credit_exhaustion_in_event_mode() {
    // With immediates: the blocked sender sleeps on its channel until a credit write wakes it.
    credit_exhaustion(&bench(256), &event_options(16 * 1024));
}

#[test]
fn withheld_completions_are_nudged_out() {
    // Each fill of a full ring waits for the completion of its last write, which these devices
    // hold back until something else is posted: only the sender's nudge releases it.
    wrap_around(&bench_with(256, true), 16 * 1024, 2_000);
    credit_exhaustion(&bench_with(256, true), &options(16 * 1024));
    credit_exhaustion(&bench_with(256, true), &event_options(16 * 1024));
}

#[test]
fn error_completion_resets_and_reconnects() {
    error_completion_and_reconnect(&bench(256), &options(64 * 1024));
}

#[test]
fn error_completion_resets_and_reconnects_in_event_mode() {
    error_completion_and_reconnect(&bench(256), &event_options(64 * 1024));
}

#[test]
fn a_restarted_peer_is_redialled() {
    peer_restart(&bench(256), &options(64 * 1024));
}

#[test]
fn garbage_bad_hellos_and_forged_dials_are_rejected_while_good_peers_continue() {
    let b = bench(256);
    let opts = options(64 * 1024);
    let d = picsou_core::ReplicaId::new(1, 3);
    let all = [(A, free_addr()), (B, free_addr()), (d, free_addr())];
    let mut nodes =
        vec![Node::new(A, (b.make)(A, &all, &opts), 8192), Node::new(B, (b.make)(B, &all[..2], &opts), 8192)];
    run_until(&mut nodes, b.timeout, "A and B connected", |ns| ns[0].t.connected(B) && ns[1].t.connected(A));
    for n in &mut nodes {
        n.downs.clear();
    }
    let a_addr = all[0].1;
    let rejected = |ns: &[Node<FakeDevice>]| ns[0].rejected.len();

    // 1. Garbage on the port.
    let mut s1 = TcpStream::connect(a_addr).unwrap();
    s1.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    run_until(&mut nodes, b.timeout, "garbage rejected", |ns| rejected(ns) >= 1);
    assert_eq!(nodes[0].rejected[0].0, None);

    // 2. A hello claiming D under the wrong key.
    let mut s2 = TcpStream::connect(a_addr).unwrap();
    let h = hello::encode(d, A, hello::next_nonce(), &[1; 32]);
    let info = wire::Info {
        endpoint: picsou_transport_rdma::verbs::Endpoint { gid: [0; 16], lid: 0, qpn: 1, psn: 1, mtu: 3 },
        event: false,
        addr: 0,
        len: 16,
        rkey: 0,
    };
    s2.write_all(&wire::encode_dial(&h, &info, &[1; 32])).unwrap();
    run_until(&mut nodes, b.timeout, "bad key rejected", |ns| rejected(ns) >= 2);
    let (claimed, reason) = nodes[0].rejected[1].clone();
    assert_eq!(claimed, Some(d));
    assert!(reason.contains("authentication"), "{reason}");

    // 3. D's real hello (an insider) but connection info tagged under another key.
    let key = LinkKeys::derived(d, SECRET).key_for(A).unwrap();
    let mut s3 = TcpStream::connect(a_addr).unwrap();
    let mut dial = wire::encode_dial(&hello::encode(d, A, hello::next_nonce(), &key), &info, &[7; 32]);
    s3.write_all(&dial).unwrap();
    run_until(&mut nodes, b.timeout, "forged dial rejected", |ns| rejected(ns) >= 3);
    let (claimed, reason) = nodes[0].rejected[2].clone();
    assert_eq!(claimed, Some(d));
    assert!(reason.contains("connection info failed authentication"), "{reason}");

    // 4. A dial cut short by a close.
    dial = wire::encode_dial(&hello::encode(d, A, hello::next_nonce(), &key), &info, &key);
    let mut s4 = TcpStream::connect(a_addr).unwrap();
    s4.write_all(&dial[..50]).unwrap();
    drop(s4);
    run_until(&mut nodes, b.timeout, "truncated dial rejected", |ns| rejected(ns) >= 4);

    // The good peer was never disturbed.
    nodes[0].rejected.clear();
    nodes[0].downs.retain(|(p, _)| *p != d);
    exchange(&mut nodes, 1_000, b.timeout);
    assert_eq!(nodes[1].t.stats().frames_dropped, 0);
    drop((s1, s2, s3));
}

#[test]
fn idle_poll_sleeps_until_its_timeout_and_the_waker_interrupts_it() {
    for opts in [options(64 * 1024), event_options(64 * 1024)] {
        let b = bench(256);
        let mut nodes = b.nodes(&[A, B], &opts, 1024);
        wait_connected(&mut nodes, b.timeout);
        let mut events = Vec::new();
        let start = Instant::now();
        nodes[0].t.poll(Some(Duration::from_millis(50)), &mut events).unwrap();
        let took = start.elapsed();
        assert!(events.is_empty(), "{events:?}");
        assert!(took >= Duration::from_millis(50) && took < Duration::from_secs(2), "{took:?}");
        let waker = nodes[0].t.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            waker.wake();
        });
        let start = Instant::now();
        nodes[0].t.poll(None, &mut events).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
    }
}

#[test]
fn bad_options_are_config_errors() {
    let all = [(A, free_addr()), (B, free_addr())];
    let mut opts = options(100);
    match RdmaTransport::with_device(FakeDevice::new(false), setup(A, &all), &opts) {
        Err(TransportError::Config(m)) => assert!(m.contains("ring_bytes"), "{m}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    opts.rdma.ring_bytes = 64 * 1024;
    opts.rdma.polling = RdmaPolling::Event;
    match RdmaTransport::with_device(FakeDevice::new(false), setup(A, &all), &opts) {
        Err(TransportError::Config(m)) => assert!(m.contains("event"), "{m}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn different_ring_sizes_refuse_to_connect_and_say_why() {
    let b = bench(256);
    let all = [(A, free_addr()), (B, free_addr())];
    let mut nodes = vec![
        Node::new(A, (b.make)(A, &all, &options(64 * 1024)), 1024),
        Node::new(B, (b.make)(B, &all, &options(32 * 1024)), 1024),
    ];
    // Whoever dials first after both listen learns it (the other's first dial may have been
    // refused before its peer listened).
    run_until(&mut nodes, b.timeout, "a PeerDown naming ring_bytes", |ns| {
        ns.iter().any(|n| n.downs.iter().any(|(_, r)| r.contains("ring_bytes")))
    });
    assert!(!nodes[0].t.connected(B) && !nodes[1].t.connected(A));
}
