//! Starting: probe, then io_uring, TCP, or a clear error.

mod common;

use picsou_core::ReplicaId;
use picsou_runtime::transport::{ConfigError, TransportError};
use picsou_transport_conformance::harness::{free_addr, options, setup};
use picsou_transport_uring::{ProbeError, open, open_with_probe};

const A: ReplicaId = ReplicaId::new(0, 0);
const B: ReplicaId = ReplicaId::new(1, 0);

fn deployment() -> picsou_runtime::transport::TransportSetup {
    setup(A, &[(A, free_addr()), (B, free_addr())])
}

#[test]
fn failed_probe_with_fallback_gives_tcp() {
    let mut opts = options();
    opts.uring.fallback = true;
    let why = ProbeError::Setup(std::io::Error::from_raw_os_error(libc::EPERM));
    let t = open_with_probe(deployment(), &opts, Err(why)).expect("falls back to tcp");
    assert_eq!(t.kind(), "tcp");
}

#[test]
fn failed_probe_without_fallback_is_unavailable_with_the_reason() {
    let mut opts = options();
    opts.uring.fallback = false;
    let why = ProbeError::Setup(std::io::Error::from_raw_os_error(libc::EPERM));
    let text = why.to_string();
    match open_with_probe(deployment(), &opts, Err(why)) {
        Err(TransportError::Unavailable { kind, source }) => {
            assert_eq!(kind, "uring");
            assert!(matches!(source.downcast_ref::<ProbeError>(), Some(ProbeError::Setup(_))), "{source}");
            assert!(text.starts_with("io_uring_setup: EPERM"), "{text}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(t) => panic!("started a {} transport", t.kind()),
    }
}

#[test]
fn probe_here_and_open() {
    if !common::uring_here() {
        return;
    }
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
        Err(TransportError::Config(ConfigError::Option { field, .. })) => {
            assert_eq!(field, "transport.uring.recv_buffers");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}
