//! Starting: probe, then io_uring, TCP, or a clear error.

mod common;

use common::*;
use picsou_core::ReplicaId;
use picsou_runtime::transport::TransportError;
use picsou_transport_uring::{open, open_with_probe};

const A: ReplicaId = ReplicaId::new(0, 0);
const B: ReplicaId = ReplicaId::new(1, 0);

fn deployment() -> picsou_runtime::transport::TransportSetup {
    setup(A, &[(A, free_addr()), (B, free_addr())])
}

#[test]
fn failed_probe_with_fallback_gives_tcp() {
    let mut opts = options();
    opts.uring.fallback = true;
    let why = "io_uring_setup: EPERM — blocked by seccomp (test)".to_string();
    let t = open_with_probe(deployment(), &opts, Err(why)).expect("falls back to tcp");
    assert_eq!(t.kind(), "tcp");
}

#[test]
fn failed_probe_without_fallback_is_unavailable_with_the_reason() {
    let mut opts = options();
    opts.uring.fallback = false;
    let why = "io_uring_setup: EPERM — blocked by seccomp (test)".to_string();
    match open_with_probe(deployment(), &opts, Err(why.clone())) {
        Err(TransportError::Unavailable { kind, reason }) => {
            assert_eq!(kind, "uring");
            assert_eq!(reason, why);
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(t) => panic!("started a {} transport", t.kind()),
    }
}

#[test]
fn probe_here_and_open() {
    require_uring!();
    let mut opts = options();
    opts.uring.fallback = false;
    let t = open(deployment(), &opts).expect("io_uring works here");
    assert_eq!(t.kind(), "uring");
}

#[test]
fn bad_uring_options_are_config_errors() {
    let mut opts = options();
    opts.uring.recv_buffers = 1000;
    match picsou_transport_uring::UringTransport::new(deployment(), &opts) {
        Err(TransportError::Config(m)) => assert!(m.contains("recv_buffers"), "{m}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}
