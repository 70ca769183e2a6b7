//! # picsou-transport-rdma
//!
//! The RDMA verbs transport of the Picsou runtime, with a Mu-style data path: a sender
//! RDMA-writes its frames straight into a ring in the receiver's memory, and the receiver finds
//! them by polling that memory — no receive work requests, no receiver CPU on the data path.
//!
//! ```text
//!   node thread (sender)                                  node thread (receiver)
//!   send ─▶ per-peer queue                                poll ─▶ ring of that sender:
//!   flush ─▶ records into staging ──RDMA WRITE (RC QP)──▶        header seq? trailer hash?
//!            (offsets = ring offsets)                            segments ─▶ Frame events
//!            credit word ◀────────RDMA WRITE [head, !head]──── consumed head, lazily
//! ```
//!
//! * **Connections** are one-way, as in the other transports: we dial every peer to write to
//!   it. Dialling is a TCP bootstrap ([`wire`]): the authenticated 40-byte hello, then queue
//!   pair details (GID, QPN, PSN, MTU) and the address and key of our credit word; the peer
//!   answers with its queue pair and the address, size and key of the ring it dedicates to us,
//!   tagged under the link key. Both queue pairs go to RTS; the socket stays open as a
//!   liveness signal. One RC queue pair per peer and direction; a broken connection's queue
//!   pair is reset (on hardware: replaced by a fresh one) before the next.
//! * **Rings** ([`ring`]): one per remote sender, in registered memory; records carry a
//!   sequence number in the header and a hash of it in the trailer, so a half-written record is
//!   never consumed and no slot needs zeroing; many small frames share a record, records are
//!   contiguous, so a flush is one write (two when it wraps, posted with one doorbell); writes
//!   up to the device's inline limit go inline; writes are signaled every 32 and when the
//!   sender runs low on space (selective signalling). The receiver writes its head back
//!   after a quarter of the ring or when a record asks for it; the sender never overruns.
//! * **Failures**: any error completion, an impossible credit, or the bootstrap socket
//!   closing marks the peer down (`PeerDown` once), resets the queue pair and redials with
//!   exponential backoff; frames to a down peer are dropped, as in TCP.
//! * **Waiting** ([`RdmaPolling`]): `busy` spins on ring memory, then sleeps in short steps;
//!   `event` makes every write carry an immediate so `poll` blocks on a completion channel.
//! * **The device** is behind a small trait ([`verbs::Device`]): [`hw::HwDevice`] over
//!   `sideway` (which loads libibverbs at run time: the crate builds and runs its other tests
//!   without rdma-core), and [`fake::FakeDevice`], in-process memory copies, so everything but
//!   the adapter itself is tested on any machine.
//!
//! [`RdmaPolling`]: picsou_runtime::transport::options::RdmaPolling

pub mod error;
pub mod fake;
pub mod hw;
mod incoming;
mod link;
pub mod memory;
mod outgoing;
pub mod ring;
mod transport;
pub mod verbs;
pub mod wire;

use picsou_runtime::transport::options::RdmaPolling;
use picsou_runtime::transport::{Transport, TransportError, TransportOptions, TransportSetup};

pub use crate::hw::{HwDevice, probe};
pub use crate::transport::{BUSY_MAX_SLEEP, RdmaTransport};

/// Starts the RDMA transport on the device `[transport.rdma]` names, or fails with
/// [`TransportError::Unavailable`] naming the fix (no libibverbs, no kernel support, no device,
/// memory locking too low).
pub fn open(setup: TransportSetup, opts: &TransportOptions) -> Result<Box<dyn Transport>, TransportError> {
    Ok(Box::new(open_hw(setup, opts)?))
}

/// [`open`] with the concrete type (for tests and benchmarks that use its extra methods).
pub fn open_hw(setup: TransportSetup, opts: &TransportOptions) -> Result<RdmaTransport<HwDevice>, TransportError> {
    crate::transport::validate(opts)?;
    let dev = HwDevice::open(&opts.rdma, setup.peers.len(), opts.rdma.polling == RdmaPolling::Event)?;
    RdmaTransport::with_device(dev, setup, opts)
}
