//! The transport conformance suite on the runtime's own transports: TCP and in-memory.

use std::time::Duration;

use picsou_runtime::transport::mem::MemNetwork;
use picsou_runtime::transport::tcp::TcpTransport;
use picsou_runtime::transport::{Transport, TransportError};
use picsou_transport_conformance::harness::{options, setup};
use picsou_transport_conformance::{Kit, conformance_tests};

mod tcp {
    use super::*;

    fn kit() -> Option<Kit> {
        Some(Kit {
            make: Box::new(|id, all, opts| {
                Ok(Box::new(TcpTransport::new(setup(id, all), &opts.tcp)?) as Box<dyn Transport>)
            }),
            options: options(),
            frames: 10_000,
            max_frame: 300 * 1024,
            timeout: Duration::from_secs(30),
            dials: true,
            listens: true,
            framed_stream: true,
        })
    }

    conformance_tests!(kit());
}

mod mem {
    use super::*;

    fn kit() -> Option<Kit> {
        // Links of the in-memory network say `Full` past 256 KiB, like a socket's queue.
        let net = MemNetwork::with_link_bytes(256 * 1024);
        Some(Kit {
            make: Box::new(move |id, all, _| {
                let peers: Vec<_> = all.iter().map(|(r, _)| *r).filter(|&r| r != id).collect();
                Ok::<_, TransportError>(Box::new(net.transport(id, &peers)?) as Box<dyn Transport>)
            }),
            options: options(),
            frames: 10_000,
            max_frame: 300 * 1024,
            timeout: Duration::from_secs(30),
            dials: false,
            listens: false,
            framed_stream: false,
        })
    }

    conformance_tests!(kit());
}
