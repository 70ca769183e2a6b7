//! The transport conformance suite on io_uring transports.

mod common;

use std::time::Duration;

use picsou_runtime::transport::Transport;
use picsou_transport_conformance::harness::{options, setup};
use picsou_transport_conformance::{Kit, conformance_tests};
use picsou_transport_uring::UringTransport;

fn kit() -> Option<Kit> {
    if !common::uring_here() {
        return None;
    }
    Some(Kit {
        make: Box::new(|id, all, opts| Ok(Box::new(UringTransport::new(setup(id, all), opts)?) as Box<dyn Transport>)),
        options: options(),
        frames: 10_000,
        max_frame: 300 * 1024,
        timeout: Duration::from_secs(60),
        dials: true,
        listens: true,
        framed_stream: true,
    })
}

conformance_tests!(kit());
