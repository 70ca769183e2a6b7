//! # picsou-transport-uring
//!
//! The io_uring transport of the Picsou runtime: the same wire and the same contract as the
//! TCP transport (`picsou_runtime::transport::tcp`) — one-way connections (we dial a peer to
//! send to it and only read from connections we accept), the 40-byte authenticated hello
//! first, length-prefixed frames after it, `Full`/`Writable` backpressure per peer, frames to a
//! down peer dropped and counted, redials with exponential backoff — so a uring replica and a
//! tcp replica talk to each other, and switching is one line of configuration.
//!
//! What differs is who does the I/O: a transport-owned thread runs one io_uring for every
//! socket, and the node thread only exchanges memory with it.
//!
//! ```text
//!  node thread                          ring thread (one io_uring)
//!  send ─▶ per-peer batch                 SENDMSG of ≤256 frames / SEND_ZC per connection
//!  flush ─▶ per-peer queue (1 lock) ─┐    CONNECT + LINK_TIMEOUT, POLL_ADD (hang-up watch)
//!          doorbell (eventfd) ───────┴─▶  READ on the eventfd wakes the ring
//!  poll ◀─ inbox (Mutex + Condvar) ◀────  multishot RECV into a provided buffer ring
//!                                         (large frames: RECV in place), multishot ACCEPT;
//!                                         one io_uring_enter per iteration
//! ```
//!
//! Why a thread of its own: the node thread keeps only engine work, every socket operation of
//! an iteration reaches the kernel in one `io_uring_enter` from the ring thread, and socket
//! work overlaps the engine's on another core. The price is one hand-over per `flush` and per
//! batch of received events (a short lock each), which batching amortises.
//!
//! Choices, each explained where it is made:
//! - receive: multishot `RECV` with a provided buffer ring ([`UringOptions::recv_buffers`] ×
//!   [`UringOptions::recv_buffer_size`]), bytes copied into per-frame allocations
//!   (`bufring`, `assembler`); the rest of a large frame (≥ 128 KiB still missing)
//!   is received in place, straight into the frame's allocation, and a connection carrying
//!   large frames stays in place until a small frame shows up (`driver::incoming`); frames
//!   of 64 KiB or more get buffers recycled through a pool shared by the connections, as in
//!   the TCP transport (fresh ones were page-faulted in frame after frame);
//! - send: vectored `SENDMSG` batches, `SEND_ZC` for frames of at least
//!   [`UringOptions::zerocopy_threshold`] when non-zero (`driver::sendq`);
//! - no registered (fixed) buffers or files: they would need a copy of every frame into the
//!   registered region, which costs more than the pinning saves (`driver`).
//!
//! Starting: [`open`] probes io_uring first ([`probe()`]); if it is unusable it falls back to TCP
//! with one warning, or fails with a reason naming the fix, as [`UringOptions::fallback`]
//! says.
//!
//! [`UringOptions::recv_buffers`]: picsou_runtime::transport::UringOptions::recv_buffers
//! [`UringOptions::recv_buffer_size`]: picsou_runtime::transport::UringOptions::recv_buffer_size
//! [`UringOptions::zerocopy_threshold`]: picsou_runtime::transport::UringOptions::zerocopy_threshold
//! [`UringOptions::fallback`]: picsou_runtime::transport::UringOptions::fallback

mod assembler;
mod bufring;

/// Fuzzing support: feeds `chunks` (bytes as received, in any split) to the frame assembler of
/// an incoming connection accepting frames up to `max_frame` bytes; returns the frames it
/// completed, or its error (after which the stream is dead).
#[doc(hidden)]
pub fn assemble_for_fuzzing(
    chunks: &[&[u8]],
    max_frame: usize,
) -> (Vec<bytes::Bytes>, Result<(), picsou_runtime::transport::framer::FramingError>) {
    let mut a = assembler::Assembler::new(max_frame, None);
    let mut frames = Vec::new();
    for chunk in chunks {
        if let Err(e) = a.feed(chunk, &mut |f| frames.push(f)) {
            return (frames, Err(e));
        }
    }
    (frames, Ok(()))
}
mod driver;
mod errno;
mod probe;
mod shared;
mod transport;

use picsou_runtime::transport::tcp::TcpTransport;
use picsou_runtime::transport::{Transport, TransportError, TransportOptions, TransportSetup};

pub use crate::probe::{ProbeError, probe};
pub use crate::transport::UringTransport;

/// Starts the io_uring transport, or the TCP transport if io_uring is unusable here and
/// `opts.uring.fallback` allows it.
pub fn open(setup: TransportSetup, opts: &TransportOptions) -> Result<Box<dyn Transport>, TransportError> {
    open_with_probe(setup, opts, probe())
}

/// [`open`] with the probe's verdict given: the fallback decision, testable without a host
/// where io_uring is broken.
#[doc(hidden)]
pub fn open_with_probe(
    setup: TransportSetup,
    opts: &TransportOptions,
    probed: Result<(), ProbeError>,
) -> Result<Box<dyn Transport>, TransportError> {
    let unavailable = match probed {
        Ok(()) => match UringTransport::new(setup.clone(), opts) {
            Ok(t) => return Ok(Box::new(t)),
            Err(TransportError::Unavailable { source, .. }) => source,
            Err(e) => return Err(e),
        },
        Err(e) => Box::new(e),
    };
    if opts.uring.fallback {
        tracing::warn!("io_uring unavailable ({unavailable}); falling back to tcp");
        Ok(Box::new(TcpTransport::new(setup, &opts.tcp)?))
    } else {
        Err(TransportError::Unavailable { kind: "uring", source: unavailable })
    }
}
