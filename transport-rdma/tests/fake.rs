//! The transport over the in-memory fake device, on any machine: the conformance suite (busy
//! and event polling) and the RDMA scenarios of `scenarios`. The same run on a real device in
//! `device.rs`.

mod scenarios;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use picsou_core::ReplicaId;
use picsou_core::handshake;
use picsou_core::keys::LinkKeys;
use picsou_runtime::transport::options::RdmaPolling;
use picsou_runtime::transport::{ConfigError, LinkError, Rejection, Transport, TransportError, TransportOptions};
use picsou_transport_conformance::harness::{A, B, SECRET, addresses, exchange, run_until, setup};
use picsou_transport_conformance::suite;
use picsou_transport_rdma::RdmaTransport;
use picsou_transport_rdma::error::RdmaLinkError;
use picsou_transport_rdma::fake::FakeDevice;
use picsou_transport_rdma::wire::{self, WireError};
use scenarios::*;

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
            RdmaTransport::with_device(dev, setup(id, all), opts)
        }),
        frames: 5_000,
        max_frame: 300 * 1024,
        timeout: Duration::from_secs(60),
    }
}

fn event_options(ring: usize) -> TransportOptions {
    let mut o = options(ring);
    o.rdma.polling = RdmaPolling::Event;
    o
}

mod busy {
    use super::*;

    picsou_transport_conformance::conformance_tests!(Some(bench(256).kit(options(1 << 20))));
}

mod event {
    use super::*;

    picsou_transport_conformance::conformance_tests!(Some(
        Bench { frames: 3_000, ..bench(256) }.kit(event_options(1 << 20))
    ));
}

#[test]
fn without_inline_every_write_reads_staging() {
    let b = Bench { frames: 2_000, max_frame: 64 * 1024, ..bench(0) };
    suite::exchange_between_three(&b.kit(options(256 * 1024)));
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
fn forged_connection_info_is_refused_while_good_peers_continue() {
    let b = bench(256);
    let opts = options(64 * 1024);
    let d = ReplicaId::new(1, 3);
    let all = addresses(&[A, B, d]);
    let mut nodes = vec![b.node(A, &all, &opts, 8192), b.node(B, &all[..2], &opts, 8192)];
    run_until(&mut nodes, b.timeout, "A and B connected", |ns| ns[0].t.connected(B) && ns[1].t.connected(A));
    for n in &mut nodes {
        n.downs.clear();
    }
    // D's real hello (an insider) but connection info tagged under another key.
    let key = LinkKeys::derived(d, SECRET).key_for(A).unwrap();
    let info = wire::Info {
        endpoint: picsou_transport_rdma::verbs::Endpoint { gid: [0; 16], lid: 0, qpn: 1, psn: 1, mtu: 3 },
        event: false,
        addr: 0,
        len: 16,
        rkey: 0,
    };
    let mut s = TcpStream::connect(all[0].1).unwrap();
    s.set_nonblocking(true).unwrap();
    let mut challenge = [0u8; handshake::CHALLENGE_LEN];
    let mut got = 0;
    run_until(&mut nodes, b.timeout, "a challenge", |_| {
        if let Ok(n) = s.read(&mut challenge[got..]) {
            got += n;
        }
        got == challenge.len()
    });
    s.set_nonblocking(false).unwrap();
    let ctx = handshake::SessionContext { deployment: [4; 32], incarnation: handshake::Incarnation([9; 16]) };
    let (hello, _) = handshake::answer(&challenge, d, A, &key, &ctx, &[1; 16]).unwrap();
    s.write_all(&wire::encode_dial(&hello, &info, &[7; 32])).unwrap();
    run_until(&mut nodes, b.timeout, "forged dial refused", |ns| !ns[0].rejected.is_empty());
    let (claimed, reason) = &nodes[0].rejected[0];
    assert_eq!(*claimed, Some(d));
    let wire = match reason {
        Rejection::Transport(e) => e.downcast_ref::<WireError>(),
        _ => None,
    };
    assert_eq!(wire, Some(&WireError::DialTag), "{reason}");
    // The good peer was never disturbed.
    nodes[0].rejected.clear();
    nodes[0].downs.retain(|(p, _)| *p != d);
    exchange(&mut nodes, 1_000, b.timeout);
    assert_eq!(nodes[1].t.stats().frames_dropped, 0);
    drop(s);
}

#[test]
fn bad_options_are_config_errors() {
    let all = addresses(&[A, B]);
    let mut opts = options(100);
    match RdmaTransport::with_device(FakeDevice::new(false), setup(A, &all), &opts) {
        Err(TransportError::Config(ConfigError::Option { field, .. })) => {
            assert_eq!(field, "transport.rdma.ring_bytes")
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    opts.rdma.ring_bytes = 64 * 1024;
    opts.rdma.polling = RdmaPolling::Event;
    match RdmaTransport::with_device(FakeDevice::new(false), setup(A, &all), &opts) {
        Err(TransportError::Config(ConfigError::Option { field, .. })) => assert_eq!(field, "transport.rdma.polling"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn different_ring_sizes_refuse_to_connect_and_say_why() {
    let b = bench(256);
    let all = addresses(&[A, B]);
    let mut nodes = vec![b.node(A, &all, &options(64 * 1024), 1024), b.node(B, &all, &options(32 * 1024), 1024)];
    // Whoever dials first after both listen learns it (the other's first dial may have been
    // refused before its peer listened).
    run_until(&mut nodes, b.timeout, "a PeerDown naming the ring sizes", |ns| {
        ns.iter().any(|n| {
            n.downs.iter().any(|(_, r)| {
                matches!(r, LinkError::Transport(e)
                    if matches!(e.downcast_ref::<RdmaLinkError>(), Some(RdmaLinkError::RingSizeMismatch { .. })))
            })
        })
    });
    assert!(!nodes[0].t.connected(B) && !nodes[1].t.connected(A));
}
